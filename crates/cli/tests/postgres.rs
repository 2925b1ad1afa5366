//! The binary on a PostgreSQL store (`--store` / `BLACKBOX_STORE`): every command that opens a
//! store, and the service, on scratch databases of the PostgreSQL server this machine runs
//! (`BLACKBOX_TEST_PG`, by default postgres://postgres@127.0.0.1:5432/postgres). The server
//! must be there: these tests fail without it (`.ci/run` starts it when it is not running).

// Test helpers panic on failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::serve::{Server, http};
use common::{bin, example_session};
use serde_json::{Value, json};

fn admin_url() -> String {
    std::env::var("BLACKBOX_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn admin() -> postgres::Client {
    postgres::Client::connect(&admin_url(), postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "these tests need a PostgreSQL server at {} ({e}); start one (`.ci/run` does), or \
             set BLACKBOX_TEST_PG",
            blackbox_store_pg::redact(&admin_url())
        )
    })
}

/// A database of its own, dropped with the value.
struct Scratch {
    name: String,
    url: String,
}

impl Scratch {
    fn new(what: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bb_test_cli_{what}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let admin = admin_url();
        let base = &admin[..admin.rfind('/').unwrap()];
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// `blackbox ARGS` with the store at `url`: (exit code, stdout, stderr).
fn bb(url: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut c = bin();
    if let Some(u) = url {
        c.env("BLACKBOX_STORE", u);
    }
    let out = c.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new token of `scope` for `tenant`, kept in the database at `url` (`tokens create` through
/// the data directory `dir`); its secret.
fn pg_token(url: &str, dir: &str, tenant: &str, scope: &str) -> String {
    let out = ok(
        Some(url),
        &[
            "tokens",
            "create",
            "--data-dir",
            dir,
            "--tenant",
            tenant,
            "--scope",
            scope,
        ],
    );
    out.lines().last().unwrap().to_owned()
}

/// Verifies the exported log `log` on its own, with data directory `dir`'s public key and
/// HMAC keyring; it must pass.
fn verify_export(log: &std::path::Path, dir: &str) {
    let (code, out, err) = bb(
        None,
        &[
            "verify",
            "--log-file",
            log.to_str().unwrap(),
            "--public-key",
            &format!("{dir}/checkpoint.pub"),
            "--key-file",
            &format!("{dir}/keys/hmac.keys"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
}

/// `blackbox ARGS` with the store at `url`, which must succeed; its standard output.
fn ok(url: Option<&str>, args: &[&str]) -> String {
    let (code, out, err) = bb(url, args);
    assert_eq!(code, 0, "blackbox {args:?}: {err}");
    out
}

#[test]
fn every_command_runs_on_a_postgresql_store() {
    let db = Scratch::new("cmds");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let dir = dir.to_str().unwrap();
    let url = Some(db.url.as_str());
    // --store works as the environment variable does.
    let mut c = bin();
    let out = c
        .args([
            "init",
            "--data-dir",
            dir,
            "--log-name",
            "blackbox/pg",
            "--store",
            &db.url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !std::path::Path::new(dir).join("blackbox.db").exists(),
        "init made a SQLite store beside the PostgreSQL one"
    );
    let session = example_session();
    ok(
        url,
        &[
            "append",
            "--data-dir",
            dir,
            "--file",
            session.to_str().unwrap(),
        ],
    );
    let out = ok(url, &["verify", "--data-dir", dir]);
    assert!(out.starts_with("OK — 8 entries verified"), "{out}");
    let out = ok(
        url,
        &[
            "query",
            "--data-dir",
            dir,
            "--tool",
            "search_kb",
            "--format",
            "json",
        ],
    );
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(
        !rows.is_empty()
            && rows
                .iter()
                .all(|r| r["payload"]["tool_name"] == "search_kb"),
        "{out}"
    );
    // The exported log verifies on its own, with the data directory's public key.
    let log = tmp.path().join("audit.jsonl");
    ok(
        url,
        &[
            "export-log",
            "--data-dir",
            dir,
            "--output",
            log.to_str().unwrap(),
        ],
    );
    verify_export(&log, dir);
    // Without --store the data directory says where its entries are.
    let (code, _, err) = bb(None, &["verify", "--data-dir", dir]);
    assert_eq!(code, 2);
    assert!(
        err.contains("PostgreSQL") && err.contains("--store"),
        "{err}"
    );
    // A second log is not started in a database that holds one.
    let other = tmp.path().join("other");
    let (code, _, err) = bb(url, &["init", "--data-dir", other.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("already holds the Blackbox log `blackbox/pg`"),
        "{err}"
    );
    // A store URL that is not one is refused before anything is opened, password hidden.
    let (code, _, err) = bb(Some("mysql://u:s3cret@h/d"), &["verify", "--data-dir", dir]);
    assert_eq!(code, 2);
    assert!(
        err.contains("not a store URL") && !err.contains("s3cret"),
        "{err}"
    );
    // An unreachable database is named, without its password.
    let (code, _, err) = bb(
        Some("postgres://bb:s3cret@127.0.0.1:1/x"),
        &["verify", "--data-dir", dir],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot reach") && !err.contains("s3cret"),
        "{err}"
    );
}

#[test]
fn the_service_on_postgresql_loses_nothing_acknowledged_across_a_kill_9() {
    let db = Scratch::new("serve");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let dir = dir.to_str().unwrap().to_owned();
    ok(Some(&db.url), &["init", "--data-dir", &dir]);
    let ingest = pg_token(&db.url, &dir, "acme", "ingest");
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let url = db.url.clone();
    for round in 0..2 {
        let mut server = Server::start_with(&dir, |mut c| {
            c.env("BLACKBOX_STORE", &url);
            c
        });
        let stop = Instant::now() + Duration::from_millis(1500);
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (addr, t, acked) = (server.addr, ingest.clone(), Arc::clone(&acked));
                std::thread::spawn(move || {
                    let mut i = 0;
                    while Instant::now() < stop {
                        let body = json!([{"agent_id": format!("a{w}"), "session_id": "s",
                            "event_type": "tool_call", "tool_name": "t", "client_seq": i,
                            "payload": {"round": round, "i": i}}])
                        .to_string();
                        match http(addr, "POST", "/v1/events", Some(&t), Some(&body)) {
                            Ok((200, b)) => {
                                let v: Value = serde_json::from_str(&b).unwrap();
                                for e in v["entries"].as_array().unwrap() {
                                    acked
                                        .lock()
                                        .unwrap()
                                        .insert(e["entry_id"].as_str().unwrap().to_owned());
                                }
                            }
                            // Killed under the writers: the rest are not acknowledged.
                            _ => return,
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        if round == 0 {
            server.kill9();
        }
        for w in writers {
            w.join().unwrap();
        }
        if round == 1 {
            server.stop();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "too few events were acknowledged: {}",
        acked.len()
    );
    let (code, out, err) = bb(Some(&db.url), &["verify", "--data-dir", &dir]);
    assert_eq!(code, 0, "{out}{err}");
    let out = ok(
        Some(&db.url),
        &[
            "query",
            "--data-dir",
            &dir,
            "--tenant-id",
            "acme",
            "--event-type",
            "tool_call",
            "--format",
            "json",
        ],
    );
    let stored: BTreeSet<String> = serde_json::from_str::<Vec<Value>>(&out)
        .unwrap()
        .iter()
        .map(|r| r["entry_id"].as_str().unwrap().to_owned())
        .collect();
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
}

#[test]
fn a_data_directory_of_one_kind_of_store_is_never_reinitialised_for_the_other() {
    let db = Scratch::new("kinds");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let dir = dir.to_str().unwrap();
    ok(None, &["init", "--data-dir", dir]);
    let keys = std::fs::read(format!("{dir}/keys/hmac.keys")).unwrap();
    for args in [
        &["init", "--data-dir", dir][..],
        &["append", "--data-dir", dir, "--file", "/dev/null"],
    ] {
        let (code, _, err) = bb(Some(&db.url), args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    let (code, _, err) = bb(Some(&db.url), &["init", "--data-dir", dir]);
    assert!(err.contains("embedded SQLite store"), "{code}: {err}");
    assert_eq!(
        std::fs::read(format!("{dir}/keys/hmac.keys")).unwrap(),
        keys,
        "the SQLite log's keys were written over"
    );
}

/// A log initialised on `db` and `n` copies of its data directory under `root` (another
/// instance each), `tune` run on the first before it is copied.
fn instance_dirs(
    db: &Scratch,
    root: &std::path::Path,
    n: usize,
    tune: impl FnOnce(&std::path::Path),
) -> Vec<String> {
    let first = root.join("a");
    ok(
        Some(&db.url),
        &["init", "--data-dir", first.to_str().unwrap()],
    );
    tune(&first);
    (0..n)
        .map(|i| {
            let d = root.join(format!("i{i}"));
            copy_dir(&first, &d);
            d.to_str().unwrap().to_owned()
        })
        .collect()
}

/// A service instance on `db` for each data directory of `dirs`.
fn start_instances(db: &Scratch, dirs: &[String]) -> Vec<Server> {
    dirs.iter()
        .map(|d| {
            Server::start_with(d, |mut c| {
                c.env("BLACKBOX_STORE", &db.url);
                c
            })
        })
        .collect()
}

/// A token of `scope` for tenant acme through each data directory of `dirs`.
fn tokens_of(db: &Scratch, dirs: &[String], scope: &str) -> Vec<String> {
    dirs.iter()
        .map(|d| pg_token(&db.url, d, "acme", scope))
        .collect()
}

/// Copies a data directory (its keys and settings: another instance of the same log).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        // Each instance keeps its own tokens and outbox.
        if matches!(
            name.to_str(),
            Some("tokens.db" | "webhooks.db" | "writer.lock")
        ) {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn instances_sharing_a_database_never_fork_a_chain_and_lose_nothing_acknowledged() {
    // Issue 19's test: 3 service instances on one database, 8 concurrent writers each, all on
    // one tenant's chain; 5 rounds, each with a kill -9 of one instance (another each round)
    // under its writers, restarted for the next round. Batches are serialised by the
    // database's writer lock and each instance continues what the others committed (a batch
    // that still meets another's entries is refused, answered 503, and not acknowledged): the
    // chain neither forks nor has a gap, every acknowledged entry is stored once, and the
    // checkpoints all verify.
    let db = Scratch::new("multi");
    let tmp = tempfile::tempdir().unwrap();
    // Checkpoints every 500 entries and every second: many, from every instance.
    let dirs = instance_dirs(&db, tmp.path(), 3, |first| {
        let toml = first.join("blackbox.toml");
        let settings = std::fs::read_to_string(&toml)
            .unwrap()
            .replace("every_entries = 10000", "every_entries = 500")
            .replace("every_seconds = 60", "every_seconds = 1");
        std::fs::write(&toml, settings).unwrap();
    });
    let url = db.url.clone();
    let start = |d: &str| {
        Server::start_with(d, |mut c| {
            c.env("BLACKBOX_STORE", &url);
            c
        })
    };
    let mut servers: Vec<Option<Server>> = dirs.iter().map(|d| Some(start(d))).collect();
    let tokens: Vec<String> = dirs
        .iter()
        .map(|d| pg_token(&db.url, d, "acme", "ingest"))
        .collect();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let refused = Arc::new(AtomicU32::new(0));
    for round in 0..5u32 {
        for (i, s) in servers.iter_mut().enumerate() {
            if s.is_none() {
                *s = Some(start(&dirs[i]));
            }
        }
        let stop = Instant::now() + Duration::from_millis(1_500);
        let writers: Vec<_> = (0..24)
            .map(|w| {
                let addr = servers[w % 3].as_ref().unwrap().addr;
                let t = tokens[w % 3].clone();
                let (acked, refused) = (Arc::clone(&acked), Arc::clone(&refused));
                std::thread::spawn(move || {
                    let mut i = 0;
                    while Instant::now() < stop {
                        let body = json!([{"agent_id": format!("w{w}"), "session_id": "s",
                            "event_type": "tool_call", "tool_name": "t",
                            "payload": {"round": round, "i": i}}])
                        .to_string();
                        match http(addr, "POST", "/v1/events", Some(&t), Some(&body)) {
                            Ok((200, b)) => {
                                let v: Value = serde_json::from_str(&b).unwrap();
                                for e in v["entries"].as_array().unwrap() {
                                    acked
                                        .lock()
                                        .unwrap()
                                        .insert(e["entry_id"].as_str().unwrap().to_owned());
                                }
                            }
                            Ok((503, _)) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(other) => panic!("writer {w}: {other:?}"),
                            // Its instance was killed: what it did not acknowledge may or may
                            // not be stored.
                            Err(_) => return,
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        let victim = (round as usize * 2) % 3;
        servers[victim].take().unwrap().kill9();
        for w in writers {
            w.join().unwrap();
        }
    }
    for s in servers.iter_mut().filter_map(Option::take) {
        let mut s = s;
        s.stop();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "too few acknowledged: {}", acked.len());
    let (code, out, err) = bb(Some(&db.url), &["verify", "--data-dir", &dirs[0]]);
    assert_eq!(code, 0, "{out}{err}");
    let out = ok(
        Some(&db.url),
        &[
            "query",
            "--data-dir",
            &dirs[0],
            "--event-type",
            "tool_call",
            "--format",
            "json",
        ],
    );
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let stored: BTreeSet<String> = rows
        .iter()
        .map(|r| r["entry_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored.len(), rows.len(), "an entry is stored twice");
    let seqs: BTreeSet<u64> = rows.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs.len(), rows.len(), "two entries share a seq");
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored ({} refused with 503): {missing:?}",
        refused.load(Ordering::Relaxed)
    );
    // Checkpoints: each size signed once, whichever instance signed it (heartbeats and closing
    // checkpoints are signed under the database's lock, with the heads as stored).
    let log = exported(Some(&db.url), &dirs[0], &tmp.path().join("multi.jsonl"));
    let mut sizes = Vec::new();
    for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        if let Some(note) = v["checkpoint"].as_str() {
            sizes.push(note.lines().nth(1).unwrap().parse::<u64>().unwrap());
        }
    }
    // Every multiple of 500 the chain passed was signed (by whichever instance got there).
    let size = seqs.iter().max().copied().unwrap_or(0);
    assert!(
        (500..=size).step_by(500).all(|s| sizes.contains(&s)) && sizes.len() >= 10,
        "{size}: {sizes:?}"
    );
    let unique: BTreeSet<u64> = sizes.iter().copied().collect();
    assert_eq!(unique.len(), sizes.len(), "a size signed twice: {sizes:?}");
    // Instances that saw each other's entries take the database's lock before sequencing, so
    // batches are (almost) never refused for meeting another's entries.
    assert!(
        u64::from(refused.load(Ordering::Relaxed)) * 100 < acked.len() as u64,
        "{} of {} requests refused with 503: the instances keep meeting each other's entries",
        refused.load(Ordering::Relaxed),
        acked.len()
    );
    eprintln!(
        "{} acknowledged, {} stored, {} refused with 503",
        acked.len(),
        stored.len(),
        refused.load(Ordering::Relaxed)
    );
}

/// The store's contents as `export-log` writes them (every chain's entries, sidecars and
/// checkpoints, byte for byte).
fn exported(url: Option<&str>, dir: &str, out: &std::path::Path) -> Vec<u8> {
    let _ = std::fs::remove_file(out);
    ok(
        url,
        &[
            "export-log",
            "--data-dir",
            dir,
            "--output",
            out.to_str().unwrap(),
        ],
    );
    std::fs::read(out).unwrap()
}

fn entries_in(db: &Scratch) -> i64 {
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    c.query_opt(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'entries'",
        &[],
    )
    .unwrap()
    .map(|r| r.get::<_, i64>(0))
    .filter(|n| *n > 0)
    .map_or(0, |_| {
        c.query_one("SELECT count(*) FROM entries", &[])
            .unwrap()
            .get(0)
    })
}

#[test]
fn a_log_moves_to_postgresql_and_back_byte_for_byte_and_an_interrupted_move_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir_path = tmp.path().join("data");
    let dir = dir_path.to_str().unwrap();
    ok(None, &["init", "--data-dir", dir]);
    // Two chains: the example session (data subjects: personal sidecars and their index) and
    // 12,000 events (more than one copy batch).
    let session = example_session();
    ok(
        None,
        &[
            "append",
            "--data-dir",
            dir,
            "--file",
            session.to_str().unwrap(),
        ],
    );
    let many = tmp.path().join("many.ndjson");
    std::fs::write(&many, common::events(12_000, "bulk")).unwrap();
    ok(
        None,
        &[
            "append",
            "--data-dir",
            dir,
            "--file",
            many.to_str().unwrap(),
        ],
    );
    let before = exported(None, dir, &tmp.path().join("before.jsonl"));
    // Tokens go with the log, revoked ones revoked.
    let tokens = |url: Option<&str>| -> Vec<(String, bool)> {
        let out = ok(
            url,
            &["tokens", "list", "--data-dir", dir, "--format", "json"],
        );
        let mut v: Vec<(String, bool)> = serde_json::from_str::<Vec<Value>>(&out)
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_owned(),
                    t["revoked_ms"].is_i64(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let make = |url: Option<&str>| {
        let out = ok(
            url,
            &[
                "tokens",
                "create",
                "--data-dir",
                dir,
                "--tenant",
                "acme",
                "--scope",
                "ingest",
                "--format",
                "json",
            ],
        );
        serde_json::from_str::<Value>(&out).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let revoke = |url: Option<&str>, id: &str| {
        ok(url, &["tokens", "revoke", "--data-dir", dir, id]);
    };
    let t1 = make(None);
    let t2 = make(None);
    revoke(None, &t2);
    let subject = |url: Option<&str>| {
        ok(
            url,
            &[
                "query",
                "--data-dir",
                dir,
                "--agent-id",
                "support-bot-1",
                "--format",
                "json",
            ],
        )
    };
    let rows_before = subject(None);

    // Interrupted: killed once the database holds part of the log.
    let db = Scratch::new("move");
    let mut child = bin()
        .args(["migrate", "--from", dir, "--to", &db.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the copy ended ({status}) before it could be interrupted; the test needs a larger log"
            );
        }
        if entries_in(&db) > 0 {
            child.kill().unwrap();
            child.wait().unwrap();
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    let partial = entries_in(&db);
    assert!(partial > 0 && partial < 12_008, "{partial}");
    assert!(dir_path.join("blackbox.db").exists());
    assert!(!dir_path.join("store.postgres").exists());

    // Run again: it resumes, compares, verifies and switches the directory over.
    let (code, out, err) = bb(
        None,
        &[
            "migrate", "--from", dir, "--to", &db.url, "--format", "json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["resumed"], true, "{r}");
    assert_eq!(r["entries"], 12_008, "{r}");
    assert_eq!(
        r["written"].as_i64().unwrap() + partial,
        12_008,
        "entries copied twice or skipped: {r}"
    );
    assert!(!dir_path.join("blackbox.db").exists());
    assert!(dir_path.join("store.postgres").exists());
    let url = Some(db.url.as_str());
    let (code, out, err) = bb(url, &["verify", "--data-dir", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK — 12,008 entries verified"), "{out}");
    assert_eq!(
        exported(url, dir, &tmp.path().join("pg.jsonl")),
        before,
        "the log on PostgreSQL is not the same bytes"
    );
    assert_eq!(subject(url), rows_before);
    let mut want = vec![(t1.clone(), false), (t2.clone(), true)];
    want.sort();
    assert_eq!(tokens(url), want);
    let t3 = make(url);
    revoke(url, &t1);

    // Never over a log: the database holds one now (another directory's copy is refused).
    let other = tmp.path().join("other");
    let other = other.to_str().unwrap();
    ok(None, &["init", "--data-dir", other]);
    let (code, _, err) = bb(None, &["migrate", "--from", other, "--to", &db.url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already holds"), "{err}");
    // The service keeps going on it, then the log moves back.
    ok(
        url,
        &[
            "append",
            "--data-dir",
            dir,
            "--file",
            session.to_str().unwrap(),
        ],
    );
    let on_pg = exported(url, dir, &tmp.path().join("pg2.jsonl"));
    let (code, out, err) = bb(None, &["migrate", "--from", &db.url, "--to", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK — 12,016 entries"), "{out}");
    assert!(dir_path.join("blackbox.db").exists());
    assert!(!dir_path.join("store.postgres").exists());
    let mut want = vec![(t1.clone(), true), (t2.clone(), true), (t3.clone(), false)];
    want.sort();
    assert_eq!(tokens(None), want);
    let (code, out, err) = bb(None, &["verify", "--data-dir", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        exported(None, dir, &tmp.path().join("back.jsonl")),
        on_pg,
        "the log moved back is not the same bytes"
    );
    // A directory that already has its embedded store is not written over.
    let (code, _, err) = bb(None, &["migrate", "--from", &db.url, "--to", dir]);
    assert_eq!(code, 2, "{err}");
    // And the embedded store goes on.
    ok(
        None,
        &[
            "append",
            "--data-dir",
            dir,
            "--file",
            session.to_str().unwrap(),
        ],
    );
    let (code, out, err) = bb(None, &["verify", "--data-dir", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK — 12,024 entries verified"), "{out}");
}

/// Pauses or resumes `agent` through instance `addr` (an admin `token`), which must succeed.
fn agent_action(addr: std::net::SocketAddr, token: &str, agent: &str, action: &str) {
    let r = http(
        addr,
        "POST",
        &format!("/v1/agents/{agent}/{action}"),
        Some(token),
        Some("{}"),
    )
    .unwrap();
    assert_eq!(r.0, 200, "{action} {agent}: {r:?}");
}

/// Asks instance `addr` to decide a call of `agent`; its decision.
fn decision(addr: std::net::SocketAddr, token: &str, agent: &str) -> String {
    let body = json!({"agent_id": agent, "session_id": "s", "tool_name": "search_kb",
        "args": {"q": "weather"}})
    .to_string();
    match http(addr, "POST", "/v1/decide", Some(token), Some(&body)) {
        Ok((200, b)) => serde_json::from_str::<Value>(&b).unwrap()["decision"]
            .as_str()
            .unwrap()
            .to_owned(),
        // A batch that met another instance's entries is refused (the writer re-reads them).
        Ok((503, _)) => "unavailable".to_owned(),
        other => panic!("decide: {other:?}"),
    }
}

#[test]
fn an_agent_paused_through_one_instance_is_refused_by_the_others_for_every_call_after() {
    let db = Scratch::new("pause");
    let tmp = tempfile::tempdir().unwrap();
    let dirs = instance_dirs(&db, tmp.path(), 2, |_| {});
    let mut servers = start_instances(&db, &dirs);
    let ingest = tokens_of(&db, &dirs, "ingest");
    let admin = tokens_of(&db, &dirs, "admin");
    let (a, b) = (servers[0].addr, servers[1].addr);
    // Both instances have written to the tenant's chain.
    assert_eq!(decision(a, &ingest[0], "bot-1"), "allow");
    let mut d = decision(b, &ingest[1], "bot-1");
    if d == "unavailable" {
        d = decision(b, &ingest[1], "bot-1");
    }
    assert_eq!(d, "allow");
    // Paused through A, while B is idle.
    agent_action(a, &admin[0], "bot-1", "pause");
    // The pause is acknowledged once committed: B's next group reads it first, so B's very
    // next decision refuses the call (no waiting).
    assert_eq!(decision(b, &ingest[1], "bot-1"), "paused");
    // Other agents go on through B.
    assert_eq!(decision(b, &ingest[1], "bot-2"), "allow");
    // Resumed through B: A allows the agent again.
    agent_action(b, &admin[1], "bot-1", "resume");
    assert_eq!(decision(a, &ingest[0], "bot-1"), "allow");
    // And the other way round, after a while idle (each instance also looks every 250 ms).
    agent_action(b, &admin[1], "bot-1", "pause");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(decision(a, &ingest[0], "bot-1"), "paused");
    for s in &mut servers {
        s.stop();
    }
    let (code, out, err) = bb(Some(&db.url), &["verify", "--data-dir", &dirs[0]]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn tokens_live_in_the_database_and_hold_for_every_instance() {
    let db = Scratch::new("tokens");
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("a");
    let first = first.to_str().unwrap();
    ok(Some(&db.url), &["init", "--data-dir", first]);
    // A token made before tokens moved into the database (a tokens.db in the directory) is
    // copied in when the directory's tokens are first opened on the database.
    let (old, old_revoked) = {
        let t =
            blackbox_server::tokens::Tokens::open(&std::path::Path::new(first).join("tokens.db"))
                .unwrap();
        let tenant = blackbox_core::ids::TenantId::parse("acme").unwrap();
        let scopes = blackbox_server::tokens::Scopes::parse("ingest").unwrap();
        let kept = t.create(Some(&tenant), scopes, "made before").unwrap().1;
        let (info, revoked) = t.create(Some(&tenant), scopes, "made before").unwrap();
        t.revoke(&info.id).unwrap();
        (kept, revoked)
    };
    let second = tmp.path().join("b");
    // Keys and settings only (copy_dir leaves tokens.db out).
    copy_dir(std::path::Path::new(first), &second);
    assert!(!second.join("tokens.db").exists());
    let second = second.to_str().unwrap();
    // Without --store the directory says where its tokens are.
    let (code, _, err) = bb(None, &["tokens", "list", "--data-dir", first]);
    assert_eq!(code, 2);
    assert!(
        err.contains("PostgreSQL") && err.contains("--store"),
        "{err}"
    );
    // Made through one directory, listed through the other.
    let ingest = pg_token(&db.url, first, "acme", "ingest");
    let out = ok(
        Some(&db.url),
        &["tokens", "list", "--data-dir", second, "--format", "json"],
    );
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 3, "{out}");
    assert!(
        !out.contains(&ingest) && !out.contains(&old),
        "a secret was listed"
    );
    let url = db.url.clone();
    let mut servers: Vec<Server> = [first, second]
        .iter()
        .map(|d| {
            Server::start_with(d, |mut c| {
                c.env("BLACKBOX_STORE", &url);
                c
            })
        })
        .collect();
    let body = json!([{"agent_id": "a", "session_id": "s", "event_type": "tool_call",
        "tool_name": "t", "payload": {}}])
    .to_string();
    for s in &servers {
        for t in [&ingest, &old] {
            let r = http(s.addr, "POST", "/v1/events", Some(t), Some(&body)).unwrap();
            assert_eq!(r.0, 200, "{r:?}");
        }
        // Revoked before the copy, revoked after it.
        let r = http(
            s.addr,
            "POST",
            "/v1/events",
            Some(&old_revoked),
            Some(&body),
        )
        .unwrap();
        assert_eq!(r.0, 401, "{r:?}");
    }
    // Revoked through the first directory: refused by both instances within a second.
    let id = listed.iter().find(|t| t["label"] != "made before").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        Some(&db.url),
        &["tokens", "revoke", "--data-dir", first, &id],
    );
    std::thread::sleep(Duration::from_millis(1_300));
    for s in &servers {
        let r = http(s.addr, "POST", "/v1/events", Some(&ingest), Some(&body)).unwrap();
        assert_eq!(r.0, 401, "{r:?}");
        let r = http(s.addr, "POST", "/v1/events", Some(&old), Some(&body)).unwrap();
        assert_eq!(r.0, 200, "{r:?}");
    }
    for s in &mut servers {
        s.stop();
    }
}

#[test]
fn the_webhook_outbox_in_the_database_is_shared_and_never_claims_a_delivery_twice() {
    use blackbox_webhooks::{
        AttemptFailure, Backoff, DeliveryStatus, NewDelivery, NextStep, Outbox, PayloadFormat,
        PgOutbox,
    };
    let db = Scratch::new("outbox");
    // Two instances' outboxes on one database.
    let a = Arc::new(PgOutbox::open(&db.url).unwrap());
    let b = Arc::new(PgOutbox::open(&db.url).unwrap());
    let row = |i: u64| NewDelivery {
        webhook_id: format!("msg_{i:04}"),
        url: "https://siem.example/hook?token=s3cret".into(),
        secret_ref: "env:HOOK_SECRET".into(),
        format: PayloadFormat::Json,
        event_type: "anomaly_detected".into(),
        tenant: "acme".into(),
        seq: i,
        entry_id: format!("entry-{i}"),
        body: format!("{{\"i\":{i}}}").into_bytes(),
        max_attempts: 3,
        timeout: Duration::from_secs(5),
    };
    let rows: Vec<NewDelivery> = (1..=40).map(row).collect();
    assert_eq!(a.insert(&rows, &[("acme", 40)], 1_000).unwrap(), 40);
    // Enqueued again (another instance's catch-up): nothing doubles, the mark only rises.
    assert_eq!(b.insert(&rows[..5], &[("acme", 7)], 1_000).unwrap(), 0);
    assert_eq!(b.high_water_mark("acme").unwrap(), Some(40));
    // Both claim at once, from threads and from inside an async runtime: each delivery once.
    let claims: Vec<_> = [Arc::clone(&a), Arc::clone(&b)]
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for _ in 0..10 {
                    let got = if i == 0 {
                        o.claim_due(2_000, 3, &Backoff::default(), &HashSet::new())
                    } else {
                        tokio::runtime::Builder::new_current_thread()
                            .build()
                            .unwrap()
                            .block_on(async {
                                o.claim_due(2_000, 3, &Backoff::default(), &HashSet::new())
                            })
                    };
                    mine.extend(got.unwrap().into_iter().map(|d| (d.id, d.attempt)));
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in claims {
        all.extend(c.join().unwrap());
    }
    let ids: BTreeSet<i64> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), all.len(), "a delivery was claimed twice");
    assert_eq!(ids.len(), 40);
    assert!(all.iter().all(|(_, attempt)| *attempt == 1));
    // Leased: nothing is due again until the lease ends.
    assert!(a.due(2_000, 100).unwrap().is_empty());
    let first = *ids.iter().next().unwrap();
    assert!(b.mark_delivered(first, 200, 2_100).unwrap());
    let second = *ids.iter().nth(1).unwrap();
    let failure = AttemptFailure {
        status: Some(503),
        error: "503 Service Unavailable".into(),
        retry_after: None,
    };
    // An outcome for an attempt that is no longer current is ignored.
    assert!(
        !a.mark_failed(second, 2, &failure, NextStep::Dead, 2_100)
            .unwrap()
    );
    assert!(
        a.mark_failed(second, 1, &failure, NextStep::Dead, 2_100)
            .unwrap()
    );
    let counts = b.counts().unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead), (38, 1, 1));
    let dead = b.list(Some(DeliveryStatus::Dead), 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_status, Some(503));
    assert!(!dead[0].url.contains("s3cret"), "{}", dead[0].url);
    assert_eq!(a.retry_dead(3_000).unwrap(), 1);
    assert_eq!(
        b.get(second).unwrap().unwrap().status,
        DeliveryStatus::Pending
    );
    assert_eq!(a.prune_delivered(5_000).unwrap(), 1);
}

/// A webhook receiver on a loopback port: the `webhook-id` of every request, answered 204.
fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut id, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("webhook-id:") {
                    id = v.trim().to_owned();
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            g.lock().unwrap().push(id);
            let _ = conn.write_all(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (addr, got)
}

#[test]
fn alerts_through_any_instance_are_delivered_once_from_the_shared_outbox() {
    let db = Scratch::new("hooks");
    let tmp = tempfile::tempdir().unwrap();
    let dirs = instance_dirs(&db, tmp.path(), 2, |_| {});
    let (addr, got) = receiver();
    // Instance 0 has no webhooks configured (it never enqueues); instance 1 has.
    let plain = tmp.path().join("plain.yaml");
    std::fs::write(&plain, "anomaly_detection:\n  rules: []\n").unwrap();
    let hooked = tmp.path().join("hooked.yaml");
    std::fs::write(
        &hooked,
        format!(
            "anomaly_detection:\n  rules: []\nwebhooks:\n  - url: http://{addr}/siem\n    events: [agent_paused]\n    hmac_secret_ref: env:HOOK_SECRET\n"
        ),
    )
    .unwrap();
    let url = db.url.clone();
    let mut servers: Vec<Server> = dirs
        .iter()
        .zip([&plain, &hooked])
        .map(|(d, rules)| {
            Server::start_with(d, |mut c| {
                c.env("BLACKBOX_STORE", &url)
                    .env("HOOK_SECRET", "whsec_c2VjcmV0LWZvci10ZXN0cw==")
                    .args(["--rules", rules.to_str().unwrap()]);
                c
            })
        })
        .collect();
    let admin = pg_token(&db.url, &dirs[0], "acme", "admin");
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "{n} alert(s) not delivered: {:?}",
                got.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Through the instance with the webhook: it enqueues its own alert.
    agent_action(servers[1].addr, &admin, "bot-1", "pause");
    wait_for(1);
    // Through the other: the first reads the alert when it follows the chain and enqueues it
    // (as it would the alerts of an instance killed before its enqueue).
    agent_action(servers[0].addr, &admin, "bot-2", "pause");
    wait_for(2);
    // Time for a second delivery of either, were one to come.
    std::thread::sleep(Duration::from_millis(2_000));
    let ids = got.lock().unwrap().clone();
    assert_eq!(ids.len(), 2, "an alert was delivered twice: {ids:?}");
    assert_ne!(ids[0], ids[1]);
    let out = ok(
        Some(&db.url),
        &[
            "webhooks",
            "list",
            "--data-dir",
            &dirs[0],
            "--format",
            "json",
        ],
    );
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 2, "{out}");
    assert!(listed.iter().all(|d| d["status"] == "delivered"), "{out}");
    for s in &mut servers {
        s.stop();
    }
}

/// Long enough to be unique in any file's bytes.
const GONE: &str = "ds_pg_4f1c9a7e2b5d8c3a1f6e9b0d2c4a7e5f0b";
const KEPT: &str = "ds_pg_77aa0c3e9d1b2f4a6c8e0b2d4f6a8c0e2b";

/// Appends an event of `agent` naming `subject` through instance `addr`, retried while the
/// instance answers 503 (its batch met another instance's entries).
fn append_naming(addr: std::net::SocketAddr, token: &str, agent: &str, subject: &str) {
    let body = json!({"agent_id": agent, "session_id": "s", "event_type": "tool_call",
        "data_subjects": [{"id": subject, "category": "customer"}],
        "payload": {"tool_name": "crm.lookup", "args_hash": format!("sha256:{}", "0".repeat(64))}})
    .to_string();
    for _ in 0..20 {
        match http(addr, "POST", "/v1/events", Some(token), Some(&body)) {
            Ok((s, _)) if (200..300).contains(&s) => return,
            Ok((503, _)) => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("append: {other:?}"),
        }
    }
    panic!("the instance at {addr} kept answering 503");
}

#[test]
fn an_erasure_through_one_instance_shreds_what_every_instance_reads() {
    // Sidecars are sealed in the database (crates/store-pg/src/seal.rs); an erasure through
    // instance A deletes them, re-keys the chain and moves the sealing key forward; instance B
    // (a copy of the data directory, with the old key file) follows: it reads the kept
    // sidecars, its key file moves forward, and `verify` reports the redactions as marked.
    let db = Scratch::new("erase");
    let tmp = tempfile::tempdir().unwrap();
    let dirs = instance_dirs(&db, tmp.path(), 2, |_| {});
    let mut servers = start_instances(&db, &dirs);
    let ingest = tokens_of(&db, &dirs, "ingest");
    let admin = pg_token(&db.url, &dirs[0], "acme", "admin");
    let admin_b = pg_token(&db.url, &dirs[1], "acme", "admin");
    let (a, b) = (servers[0].addr, servers[1].addr);
    for i in 0..6 {
        let (addr, token) = if i % 2 == 0 {
            (a, &ingest[0])
        } else {
            (b, &ingest[1])
        };
        append_naming(addr, token, "bot-1", if i % 3 == 0 { KEPT } else { GONE });
    }
    let key = |d: &str| std::fs::read(format!("{d}/keys/personal-seal.key")).unwrap();
    let before = key(&dirs[1]);
    assert_eq!(key(&dirs[0]), before, "the copies start equal");
    let body =
        json!({"data_subject": GONE, "reason": "GDPR Art. 17", "ticket": "DSR-9"}).to_string();
    let (status, reply) = http(a, "POST", "/v1/erasures", Some(&admin), Some(&body)).unwrap();
    assert_eq!(status, 200, "{reply}");
    let v: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["redacted"], 4, "{reply}");
    assert_eq!(v["purge"]["complete"], true, "{reply}");
    assert_ne!(
        key(&dirs[0]),
        before,
        "instance A's key file did not move forward"
    );
    // B verifies through its API: it opens the kept sidecars (moving its key file forward)
    // and finds every redaction under a marker.
    let (status, reply) = http(b, "GET", "/v1/verify", Some(&admin_b), None).unwrap();
    assert_eq!(status, 200, "{reply}");
    let v: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(
        (&v["status"], &v["redacted"]),
        (&json!("ok"), &json!(4)),
        "{reply}"
    );
    assert_eq!(
        key(&dirs[1]),
        key(&dirs[0]),
        "instance B's key file did not follow"
    );
    for s in &mut servers {
        s.stop();
    }
    let out = ok(Some(&db.url), &["verify", "--data-dir", &dirs[1]]);
    assert!(
        out.contains("4 entries redacted under 1 erasure marker"),
        "{out}"
    );
    // The exported log keeps the kept subject's sidecars and none of the erased one's.
    let log = tmp.path().join("after.jsonl");
    let bytes = exported(Some(&db.url), &dirs[1], &log);
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains(GONE) && text.contains(KEPT));
}

/// An event of `tenant` naming data subject `subject`, as `append` reads it.
fn event_line(tenant: &str, agent: &str, subject: &str) -> String {
    json!({"tenant_id": tenant, "agent_id": agent, "session_id": "s", "event_type": "tool_call",
        "data_subjects": [subject],
        "payload": {"tool_name": "crm.lookup", "args_hash": format!("sha256:{}", "0".repeat(64))}})
    .to_string()
}

#[test]
fn a_tenant_map_keeps_each_tenant_in_its_database_and_reads_them_as_one_log() {
    // Issue 19's sharding: two databases, acme in `eu` and globex in `us`. The CLI reads and
    // writes them as one store; a service instance serves one database (`--database`) and
    // refuses tenants kept in the other with 421.
    let (eu, us) = (Scratch::new("map_eu"), Scratch::new("map_us"));
    let tmp = tempfile::tempdir().unwrap();
    let map = tmp.path().join("tenants.toml");
    std::fs::write(
        &map,
        format!(
            "version = 1\n\n[databases]\neu = \"{}\"\nus = \"{}\"\n\n[tenants]\nacme = \"eu\"\nglobex = \"us\"\n",
            eu.url, us.url
        ),
    )
    .unwrap();
    let map = map.to_str().unwrap();
    let dir = tmp.path().join("data");
    let dir = dir.to_str().unwrap();
    ok(Some(map), &["init", "--data-dir", dir]);
    for db in ["eu", "us"] {
        assert!(
            std::path::Path::new(dir)
                .join(format!("keys/personal-seal-{db}.key"))
                .exists(),
            "no sealing key for {db}"
        );
    }
    // Written through the map: each tenant's chain lands in its database.
    let mut lines = String::new();
    for i in 0..6 {
        let (t, s) = if i % 2 == 0 {
            ("acme", GONE)
        } else {
            ("globex", KEPT)
        };
        lines.push_str(&event_line(t, "bot", s));
        lines.push('\n');
        lines.push_str(&event_line(t, "bot", GONE));
        lines.push('\n');
    }
    let file = tmp.path().join("events.jsonl");
    std::fs::write(&file, &lines).unwrap();
    ok(
        Some(map),
        &[
            "append",
            "--data-dir",
            dir,
            "--file",
            file.to_str().unwrap(),
        ],
    );
    let tenants_in = |db: &Scratch| -> Vec<String> {
        let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
        c.query("SELECT tenant_id FROM chains ORDER BY tenant_id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert_eq!(tenants_in(&eu), vec!["acme"]);
    assert_eq!(tenants_in(&us), vec!["globex"]);
    // Read as one log: verify covers both, a query merges them in time order.
    let out = ok(Some(map), &["verify", "--data-dir", dir]);
    assert!(out.starts_with("OK — 12 entries verified"), "{out}");
    let out = ok(Some(map), &["query", "--data-dir", dir, "--format", "json"]);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let tenants: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["tenant_id"].as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 12);
    assert_eq!(tenants, ["acme", "globex"].into_iter().collect());
    let times: Vec<&str> = rows
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // One service instance per database.
    let (code, _, err) = bb(Some(map), &["serve", "--data-dir", dir]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--database") && err.contains("eu, us"),
        "{err}"
    );
    let (code, _, err) = bb(Some(map), &["tokens", "list", "--data-dir", dir]);
    assert_eq!(code, 2);
    assert!(err.contains("--database"), "{err}");
    let acme = pg_token(map, dir, "acme", "ingest");
    let globex = pg_token(map, dir, "globex", "ingest");
    let (code, out, err) = bb(
        Some(map),
        &[
            "tokens",
            "create",
            "--data-dir",
            dir,
            "--database",
            "eu",
            "--scope",
            "admin",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let eu_admin = out.lines().last().unwrap().to_owned();
    // Each instance has its own copy of the data directory (keys and settings).
    let map_owned = map.to_owned();
    let start = |db: &'static str| {
        let m = map_owned.clone();
        let copy = tmp.path().join(format!("instance-{db}"));
        copy_dir(std::path::Path::new(dir), &copy);
        Server::start_with(copy.to_str().unwrap(), move |mut c| {
            c.env("BLACKBOX_STORE", &m).env("BLACKBOX_DATABASE", db);
            c
        })
    };
    let (mut s_eu, mut s_us) = (start("eu"), start("us"));
    let body = json!([{"agent_id": "bot", "session_id": "s", "event_type": "tool_call",
        "tool_name": "t", "payload": {}}])
    .to_string();
    let post =
        |addr, token: &str| http(addr, "POST", "/v1/events", Some(token), Some(&body)).unwrap();
    assert_eq!(post(s_eu.addr, &acme).0, 200);
    assert_eq!(post(s_us.addr, &globex).0, 200);
    // A token is its database's: the other instance does not know it.
    assert_eq!(post(s_eu.addr, &globex).0, 401);
    // An admin of `eu` asking about a tenant of `us` is sent there.
    let (status, reply) = http(
        s_eu.addr,
        "GET",
        "/v1/entries?tenant_id=globex",
        Some(&eu_admin),
        None,
    )
    .unwrap();
    assert_eq!(status, 421, "{reply}");
    assert!(
        reply.contains("misdirected_tenant") && reply.contains("`us`"),
        "{reply}"
    );
    s_eu.stop();
    s_us.stop();
    // Each instance's own records (the refusals above) are in its database's service chain.
    assert_eq!(tenants_in(&eu), vec!["_blackbox.eu", "acme"]);
    let in_us = tenants_in(&us);
    assert!(
        in_us.contains(&"globex".to_owned())
            && in_us.iter().all(|t| t == "globex" || t == "_blackbox.us"),
        "{in_us:?}"
    );
    // An erasure through the map reaches both databases, each moving its own key forward.
    let keys_before: Vec<Vec<u8>> = ["eu", "us"]
        .iter()
        .map(|d| std::fs::read(format!("{dir}/keys/personal-seal-{d}.key")).unwrap())
        .collect();
    let out = ok(
        Some(map),
        &[
            "erase",
            "--data-dir",
            dir,
            "--data-subject",
            GONE,
            "--reason",
            "GDPR Art. 17",
            "--ticket",
            "DSR-3",
            "--format",
            "json",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["redacted"], 9, "{out}");
    for (d, before) in ["eu", "us"].iter().zip(keys_before) {
        assert_ne!(
            std::fs::read(format!("{dir}/keys/personal-seal-{d}.key")).unwrap(),
            before,
            "the key of {d} did not move forward"
        );
    }
    let out = ok(Some(map), &["verify", "--data-dir", dir]);
    assert!(
        out.contains("9 entries redacted under 2 erasure markers"),
        "{out}"
    );
    // The export of the whole log verifies on its own.
    let log = tmp.path().join("all.jsonl");
    let text = String::from_utf8(exported(Some(map), dir, &log)).unwrap();
    assert!(!text.contains(GONE) && text.contains(KEPT));
    verify_export(&log, dir);
}

#[test]
fn a_chain_whose_first_entries_were_archived_moves_with_its_anchor_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir_path = tmp.path().join("data");
    let dir = dir_path.to_str().unwrap();
    ok(None, &["init", "--data-dir", dir]);
    // 700 entries written in January 2025 (archived by the default policy) and 50 today.
    for (n, now) in [(700, Some("2025-01-10T00:00:00Z")), (50, None)] {
        let file = tmp.path().join(format!("events-{n}.ndjson"));
        std::fs::write(&file, common::events(n, "acme")).unwrap();
        let mut c = bin();
        if let Some(now) = now {
            c.env("BLACKBOX_TEST_NOW", now);
        }
        let out = c
            .args([
                "append",
                "--data-dir",
                dir,
                "--file",
                file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = ok(None, &["retention", "run", "--data-dir", dir]);
    assert!(out.contains("read back and verified"), "{out}");
    let all = |url: Option<&str>| -> usize {
        ok(
            url,
            &[
                "query",
                "--data-dir",
                dir,
                "--tenant-id",
                "acme",
                "--include-archive",
                "--format",
                "jsonl",
            ],
        )
        .lines()
        .count()
    };
    let hot = |url: Option<&str>| -> usize {
        ok(
            url,
            &[
                "query",
                "--data-dir",
                dir,
                "--tenant-id",
                "acme",
                "--format",
                "jsonl",
            ],
        )
        .lines()
        .count()
    };
    let (all_before, hot_before) = (all(None), hot(None));
    assert!(
        all_before >= 750 && hot_before < 200,
        "{all_before} {hot_before}"
    );
    let before = exported(None, dir, &tmp.path().join("before.jsonl"));
    // A proof of an entry after the anchor (the last entry, the retention marker, is after
    // the last checkpoint).
    let rows: Vec<Value> = serde_json::from_str(&ok(
        None,
        &[
            "query",
            "--data-dir",
            dir,
            "--tenant-id",
            "acme",
            "--format",
            "json",
        ],
    ))
    .unwrap();
    let id = rows
        .iter()
        .rev()
        .find(|r| r["seq"].as_u64().unwrap() <= 750)
        .unwrap()["entry_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let proof_before = ok(None, &["prove", "--data-dir", dir, "--entry-id", &id]);
    let db = Scratch::new("anchored");
    let out = ok(None, &["migrate", "--from", dir, "--to", &db.url]);
    assert!(out.contains("verified"), "{out}");
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let (anchors, segments): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM anchors), (SELECT count(*) FROM archive_segments)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(anchors == 1 && segments >= 1, "{anchors} {segments}");
    let url = Some(db.url.as_str());
    let out = ok(url, &["verify", "--data-dir", dir]);
    assert!(out.starts_with("OK"), "{out}");
    assert_eq!((all(url), hot(url)), (all_before, hot_before));
    assert_eq!(exported(url, dir, &tmp.path().join("pg.jsonl")), before);
    // The same proof from the database (it needs the archived part's subtree hashes).
    assert_eq!(
        ok(url, &["prove", "--data-dir", dir, "--entry-id", &id]),
        proof_before
    );
    // And back.
    ok(url, &["migrate", "--from", &db.url, "--to", dir]);
    let out = ok(None, &["verify", "--data-dir", dir]);
    assert!(out.starts_with("OK"), "{out}");
    assert_eq!((all(None), hot(None)), (all_before, hot_before));
    assert_eq!(exported(None, dir, &tmp.path().join("after.jsonl")), before);
}
