//! `blackbox serve` as a real process: crashes, a full disk, the Python client.

// Helpers here panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::serve::{Server, http};
use common::{bin, init_store, run};
use serde_json::{Value, json};

/// A token of `scope` for `tenant`.
fn token(dir: &str, tenant: &str, scope: &str) -> String {
    common::serve::token(dir, Some(tenant), scope)
}

fn event(writer: usize, i: usize) -> Value {
    json!({"agent_id": format!("agent-{writer}"), "session_id": format!("s-{writer}"),
        "client_seq": i, "event_type": "tool_call", "tool_name": "query_database",
        "args": {"query": format!("SELECT {i}")}})
}

#[test]
fn kill_9_while_eight_clients_write_loses_nothing_acknowledged() {
    let (_tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let mut server = Server::start(&dir);
    let addr = server.addr;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (acked, stop, t) = (Arc::clone(&acked), Arc::clone(&stop), t.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                // Bounded: at most 5,000 requests per writer, or until the server dies.
                while !stop.load(Ordering::Relaxed) && i < 5000 {
                    let batch: Vec<Value> = (0..1 + i % 5).map(|k| event(w, i * 10 + k)).collect();
                    i += 1;
                    match http(
                        addr,
                        "POST",
                        "/v1/events",
                        Some(&t),
                        Some(&Value::Array(batch).to_string()),
                    ) {
                        Ok((200, body)) => {
                            let v: Value = serde_json::from_str(&body).unwrap();
                            let mut a = acked.lock().unwrap();
                            for e in v["entries"].as_array().unwrap() {
                                a.push(e["entry_id"].as_str().unwrap().to_owned());
                            }
                        }
                        Ok((status, body)) => panic!("unexpected {status}: {body}"),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "only {} entries acknowledged before the kill",
        acked.len()
    );
    // Every acknowledged entry survived, and the chain verifies.
    let v = run(&["verify", "--data-dir", &dir]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let server = Server::start(&dir);
    for id in &acked {
        let (status, body) = http(
            server.addr,
            "GET",
            &format!("/v1/entries/{id}"),
            Some(&t),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "acknowledged entry {id} is missing: {body}");
    }
    let (status, body) = http(server.addr, "GET", "/v1/verify", Some(&t), None).unwrap();
    assert_eq!(status, 200);
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "ok", "{report}");
    assert!(report["entries"].as_u64().unwrap() >= acked.len() as u64);
}

fn has_prlimit() -> bool {
    std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether a test that needs prlimit must skip (it says why; in CI it fails instead).
fn prlimit_missing() -> bool {
    if has_prlimit() {
        return false;
    }
    eprintln!("SKIPPED: prlimit (util-linux) is not installed; .ci/run installs it");
    assert!(std::env::var_os("CI").is_none(), "prlimit is missing in CI");
    true
}

#[test]
fn a_full_disk_answers_503_loses_nothing_and_recovers() {
    if prlimit_missing() {
        return;
    }
    let (_tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let server = start_fsize_limitable(&dir, &[]);
    let post = |i: usize| {
        let batch: Vec<Value> = (0..20).map(|k| event(0, i * 100 + k)).collect();
        http(
            server.addr,
            "POST",
            "/v1/events",
            Some(&t),
            Some(&Value::Array(batch).to_string()),
        )
        .unwrap()
    };
    let mut acked = 0u64;
    for i in 0..5 {
        let (s, b) = post(i);
        assert_eq!(s, 200, "{b}");
        acked += 20;
    }
    // The disk is full: no file of the service may grow past its current largest size.
    set_fsize_limit(&server, &dir, true);
    let mut saw_503 = false;
    for i in 5..400 {
        let (s, b) = post(i);
        match s {
            200 => acked += 20,
            503 => {
                let v: Value = serde_json::from_str(&b).unwrap();
                assert_eq!(v["error"]["code"], "unavailable", "{b}");
                saw_503 = true;
                break;
            }
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert!(saw_503, "writes never failed under the file-size limit");
    let (s, _) = http(server.addr, "GET", "/readyz", None, None).unwrap();
    assert_eq!(s, 503);
    // Space returns: the next request succeeds and nothing acknowledged was lost.
    set_fsize_limit(&server, &dir, false);
    let (s, b) = post(1000);
    assert_eq!(s, 200, "{b}");
    acked += 20;
    let (s, body) = http(server.addr, "GET", "/v1/verify", Some(&t), None).unwrap();
    assert_eq!(s, 200);
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["entries"].as_u64().unwrap(), acked);
    let (s, _) = http(server.addr, "GET", "/readyz", None, None).unwrap();
    assert_eq!(s, 200);
}

/// A service whose file-size limit a test can lower with prlimit: SIGXFSZ is ignored, so writes
/// past the limit fail with EFBIG instead of killing the process (a disk that is full for this
/// process's files).
fn start_fsize_limitable(dir: &str, env: &[(&str, &str)]) -> Server {
    Server::start_with(dir, |mut c| {
        let prog = c.get_program().to_owned();
        let args: Vec<_> = c.get_args().map(ToOwned::to_owned).collect();
        let mut sh = std::process::Command::new("bash");
        sh.arg("-c")
            .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
            .arg(prog)
            .args(args);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        for (k, v) in env {
            sh.env(k, v);
        }
        c = sh;
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    })
}

/// Lowers (`Some`: a little above the largest file of `dir`) or lifts the service's file-size
/// limit.
fn set_fsize_limit(server: &Server, dir: &str, full: bool) {
    let limit = if full {
        let biggest = walk(std::path::Path::new(dir)).into_iter().max().unwrap();
        format!("--fsize={}:unlimited", biggest + 4096)
    } else {
        "--fsize=unlimited:unlimited".to_owned()
    };
    let r = std::process::Command::new("prlimit")
        .args(["--pid", &server.child.id().to_string(), &limit])
        .status()
        .unwrap();
    assert!(r.success());
}

#[test]
fn decisions_answered_before_a_commit_that_failed_are_named_in_the_chain() {
    if prlimit_missing() {
        return;
    }
    let (_tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let server = start_fsize_limitable(&dir, &[("BLACKBOX_DECIDE_ANSWER", "sequenced")]);
    let decide = |i: usize| decide_question(server.addr, &t, i);
    let mut answered = Vec::new();
    let (s, v) = decide(0);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["durable"], false, "answered once sequenced: {v}");
    answered.push(v["entry_id"].as_str().unwrap().to_owned());

    set_fsize_limit(&server, &dir, true);
    let mut failed = false;
    'fill: for round in 0..300 {
        for k in 0..10 {
            let (s, v) = decide(1 + round * 10 + k);
            match s {
                200 => answered.push(v["entry_id"].as_str().unwrap().to_owned()),
                // While the writer restarts after the failure.
                503 => {}
                other => panic!("unexpected {other}: {v}"),
            }
        }
        if http(server.addr, "GET", "/readyz", None, None).unwrap().0 == 503 {
            failed = true;
            break 'fill;
        }
    }
    assert!(failed, "commits never failed under the file-size limit");
    set_fsize_limit(&server, &dir, false);
    // The writer restarts; the next group writes the record of what was lost.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, _) = decide(100_000);
        if s == 200 && http(server.addr, "GET", "/readyz", None, None).unwrap().0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (unrecorded, body) = unrecorded_decisions(server.addr, &t);
    let mut lost = std::collections::BTreeSet::new();
    for e in unrecorded {
        assert_eq!(e["agent_id"], "agent-1", "{e}");
        let ids = e["payload"]["entry_ids"].as_array().unwrap();
        assert_eq!(
            e["payload"]["count"].as_u64().unwrap(),
            ids.len() as u64,
            "{e}"
        );
        assert_eq!(
            e["payload"]["decisions"]["allow"].as_u64().unwrap(),
            ids.len() as u64
        );
        lost.extend(ids.iter().map(|i| i.as_str().unwrap().to_owned()));
    }
    assert!(
        !lost.is_empty(),
        "the failed commit's decisions must be named: {body}"
    );
    account_for_answers(server.addr, &t, &answered, &lost);
}

/// A decision answered as durable (the default) is durable in the commit journal when its
/// answer leaves, even if the store's commit of it then fails (a full disk): the writer appends
/// the journal's entries before anything else once it can, refusing requests meanwhile, and
/// every decision answered is in the chain, none named as lost.
#[test]
fn durable_decisions_survive_a_failed_commit_through_the_commit_journal() {
    if prlimit_missing() {
        return;
    }
    let (_tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let server = start_fsize_limitable(&dir, &[]);
    let decide = |i: usize| decide_question(server.addr, &t, i);
    let mut answered = Vec::new();
    let (s, v) = decide(0);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["durable"], true, "{v}");
    answered.push(v["entry_id"].as_str().unwrap().to_owned());

    set_fsize_limit(&server, &dir, true);
    let mut failed = false;
    for i in 1..3000 {
        let (s, v) = decide(i);
        match s {
            200 => {
                assert_eq!(v["durable"], true, "{v}");
                answered.push(v["entry_id"].as_str().unwrap().to_owned());
            }
            503 => {}
            other => panic!("unexpected {other}: {v}"),
        }
        if http(server.addr, "GET", "/readyz", None, None).unwrap().0 == 503 {
            failed = true;
            break;
        }
    }
    assert!(failed, "commits never failed under the file-size limit");
    // While the disk is full, requests are answered (refused) at once, not left waiting.
    for i in 0..3 {
        let asked = Instant::now();
        let (s, v) = decide(50_000 + i);
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "a request waited {:?} for the disk",
            asked.elapsed()
        );
        match s {
            200 => answered.push(v["entry_id"].as_str().unwrap().to_owned()),
            503 => {}
            other => panic!("unexpected {other}: {v}"),
        }
    }
    set_fsize_limit(&server, &dir, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, v) = decide(100_000);
        if s == 200 {
            answered.push(v["entry_id"].as_str().unwrap().to_owned());
            break;
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The failed group's decision was answered from the journal and appended from it.
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains("durable in the commit journal were appended"),
        "the journal's entries were not appended: {log}"
    );
    let (unrecorded, body) = unrecorded_decisions(server.addr, &t);
    assert!(
        unrecorded.is_empty(),
        "durable decisions named as lost: {body}"
    );
    account_for_answers(
        server.addr,
        &t,
        &answered,
        &std::collections::BTreeSet::new(),
    );
}

/// A durable decision is answered once its record is in the commit journal, and the store
/// commits the journalled groups of a few milliseconds together (docs/PERFORMANCE.md, "Merged
/// store commits"). A service killed (SIGKILL) while such groups wait for their store commit
/// loses none of them: `verify` says the journal holds entries the store lacks, the next start
/// appends them, and every decision answered is in the chain, which verifies.
#[test]
fn durable_decisions_waiting_for_a_merged_store_commit_survive_a_kill_9() {
    let (_tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let mut answered = Vec::new();
    let mut pending_seen = None;
    // The kill must land inside a merge window (5 ms after a group): decisions are asked back
    // to back, and a round whose kill came just after a store commit is tried again.
    for round in 0..10 {
        let mut server = Server::start(&dir);
        for i in 0..40 {
            let (s, v) = decide_question(server.addr, &t, round * 1000 + i);
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["durable"], true, "{v}");
            answered.push(v["entry_id"].as_str().unwrap().to_owned());
        }
        server.kill9();
        let v = run(&["verify", "--data-dir", &dir]);
        assert!(v.code == 0 || v.code == 1, "{} {}", v.stdout, v.stderr);
        if v.stderr
            .contains("answered as durable that the store has not committed yet")
        {
            pending_seen = Some(v.stderr);
            break;
        }
    }
    let note =
        pending_seen.expect("no kill landed while journalled groups waited for their store commit");
    assert!(note.contains("commit.journal"), "{note}");
    let mut server = Server::start(&dir);
    wait_ready(&server);
    account_for_answers(
        server.addr,
        &t,
        &answered,
        &std::collections::BTreeSet::new(),
    );
    let (unrecorded, body) = unrecorded_decisions(server.addr, &t);
    assert!(
        unrecorded.is_empty(),
        "durable decisions named as lost: {body}"
    );
    server.stop();
    let v = run(&["verify", "--data-dir", &dir]);
    assert_eq!(v.code, 0, "{} {}", v.stdout, v.stderr);
    assert!(
        !v.stderr.contains("has not committed yet"),
        "the journal's entries were not appended: {}",
        v.stderr
    );
}

/// A decision answered once sequenced whose commit never happened because the service was
/// killed is named in the chain by the next start (from the journal of answered decisions),
/// so that every answer given is accounted for.
#[test]
fn decisions_answered_before_a_crash_are_named_in_the_chain_after_restart() {
    if prlimit_missing() {
        return;
    }
    let (_tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let decide = |addr: SocketAddr, i: usize| {
        let body = json!({"agent_id": "agent-7", "session_id": "s-7", "tool_name": "search_docs",
            "args": {"q": format!("question {i}")}});
        let (s, b) = http(
            addr,
            "POST",
            "/v1/decide",
            Some(&t),
            Some(&body.to_string()),
        )
        .unwrap();
        (s, serde_json::from_str::<Value>(&b).unwrap_or(Value::Null))
    };
    let mut server = start_fsize_limitable(&dir, &[("BLACKBOX_DECIDE_ANSWER", "sequenced")]);
    let mut answered = Vec::new();
    let (s, v) = decide(server.addr, 0);
    assert_eq!((s, &v["durable"]), (200, &json!(false)), "{v}");
    answered.push(v["entry_id"].as_str().unwrap().to_owned());
    // Commits fail from here on; decisions are still answered, and noted.
    set_fsize_limit(&server, &dir, true);
    let mut failed = false;
    for i in 1..3000 {
        let (s, v) = decide(server.addr, i);
        match s {
            200 => answered.push(v["entry_id"].as_str().unwrap().to_owned()),
            503 => {}
            other => panic!("unexpected {other}: {v}"),
        }
        if i % 10 == 0 && http(server.addr, "GET", "/readyz", None, None).unwrap().0 == 503 {
            failed = true;
            // A few more answered while the writer restarts and fails again.
            for k in 0..5 {
                if let (200, v) = decide(server.addr, 10_000 + k) {
                    answered.push(v["entry_id"].as_str().unwrap().to_owned());
                }
            }
            break;
        }
    }
    assert!(failed, "commits never failed under the file-size limit");
    server.kill9();
    let journal = std::path::Path::new(&dir).join("decisions-answered.jsonl");
    let noted = std::fs::read_to_string(&journal).unwrap();
    assert!(noted.lines().count() > 0, "nothing noted before the crash");

    // The next start (in the default mode) writes down what is missing.
    let server = Server::start(&dir);
    let deadline = wait_ready(&server);
    // The writer thread writes the journal's decisions down in its first commit, which may come
    // just after /readyz answers 200 (the service is ready to take requests at once; they queue
    // behind that commit): wait for it rather than race it.
    let stopped_entry = |e: &Value| {
        e["payload"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("the service stopped before the commit"))
    };
    let (unrecorded, body) = loop {
        let (u, b) = unrecorded_decisions(server.addr, &t);
        if u.iter().any(stopped_entry) || Instant::now() >= deadline {
            break (u, b);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut lost = std::collections::BTreeSet::new();
    let mut stopped = 0;
    for e in unrecorded {
        assert_eq!(e["agent_id"], "agent-7", "{e}");
        if e["payload"]["reason"]
            .as_str()
            .unwrap()
            .contains("the service stopped before the commit")
        {
            stopped += 1;
        }
        let ids = e["payload"]["entry_ids"].as_array().unwrap();
        lost.extend(ids.iter().map(|i| i.as_str().unwrap().to_owned()));
    }
    assert!(
        stopped > 0,
        "no entry names decisions lost to the crash: {body}"
    );
    account_for_answers(server.addr, &t, &answered, &lost);
    // Once written down, the journal is emptied.
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), "");
}

/// Waits (at most 30 s) until the service answers `/readyz` with 200; returns that deadline.
fn wait_ready(server: &Server) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(server.addr, "GET", "/readyz", None, None).unwrap().0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the service did not become ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    deadline
}

/// Asks for a decision on `agent-1` calling `search_docs` with question `i`: the status and the
/// answer.
fn decide_question(addr: SocketAddr, t: &str, i: usize) -> (u16, Value) {
    let body = json!({"agent_id": "agent-1", "session_id": "s-1", "tool_name": "search_docs",
        "args": {"q": format!("question {i}")}});
    let (s, b) = http(addr, "POST", "/v1/decide", Some(t), Some(&body.to_string())).unwrap();
    (s, serde_json::from_str::<Value>(&b).unwrap())
}

/// The `decisions_unrecorded` entries of the chain (and the body they came in).
fn unrecorded_decisions(addr: SocketAddr, t: &str) -> (Vec<Value>, String) {
    let (s, body) = http(
        addr,
        "GET",
        "/v1/entries?event_type=decisions_unrecorded",
        Some(t),
        None,
    )
    .unwrap();
    assert_eq!(s, 200, "{body}");
    // The body comes chunked: entry lines between chunk-size lines.
    let entries = body
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (entries, body)
}

/// Every answer is accounted for: its entry is in the chain, or it is named as lost; and the
/// chain verifies.
fn account_for_answers(
    addr: SocketAddr,
    t: &str,
    answered: &[String],
    lost: &std::collections::BTreeSet<String>,
) {
    for id in answered {
        let (s, b) = http(addr, "GET", &format!("/v1/entries/{id}"), Some(t), None).unwrap();
        if lost.contains(id) {
            assert_eq!(s, 404, "a lost decision {id} is in the chain: {b}");
        } else {
            assert_eq!(
                s, 200,
                "decision {id} is neither recorded nor named as lost: {b}"
            );
        }
    }
    let (s, body) = http(addr, "GET", "/v1/verify", Some(t), None).unwrap();
    assert_eq!(s, 200);
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "ok", "{report}");
}

fn walk(dir: &std::path::Path) -> Vec<u64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(m.len());
        }
    }
    out
}

#[test]
fn the_python_example_client_hashes_and_posts_a_batch() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: python3 is not installed");
        assert!(std::env::var_os("CI").is_none(), "python3 is missing in CI");
        return;
    }
    let (_tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let server = Server::start(&dir);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python_client.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .env("BLACKBOX_URL", format!("http://{}", server.addr))
        .env("BLACKBOX_TOKEN", &t)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, body) = http(server.addr, "GET", "/v1/verify", Some(&t), None).unwrap();
    assert_eq!(s, 200);
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "ok");
    assert!(report["entries"].as_u64().unwrap() >= 2, "{report}");
}

#[test]
fn serve_refuses_bad_settings_with_a_clear_message() {
    let (_tmp, dir) = init_store();
    let r = run(&["serve", "--data-dir", &dir, "--listen", "not-an-address"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--listen"), "{}", r.stderr);
    let r = run(&["serve", "--print-config"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("[server]"));
    let r = run(&["tokens", "create", "--data-dir", &dir, "--scope", "read"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("needs a tenant"), "{}", r.stderr);
    let created = run(&[
        "tokens",
        "create",
        "--data-dir",
        &dir,
        "--tenant",
        "acme",
        "--scope",
        "ingest",
    ]);
    let tok = created.stdout.lines().last().unwrap();
    let id = tok.split('_').nth(1).unwrap();
    let list = run(&["tokens", "list", "--data-dir", &dir]);
    assert!(
        list.stdout.contains(id) && !list.stdout.contains(tok),
        "{}",
        list.stdout
    );
    assert_eq!(run(&["tokens", "revoke", "--data-dir", &dir, id]).code, 0);
    assert_eq!(run(&["tokens", "revoke", "--data-dir", &dir, id]).code, 2);
}

#[test]
fn query_verify_checkpoint_and_prove_work_against_a_running_service() {
    let (tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let server = Server::start(&dir);
    let url = format!("http://{}", server.addr);
    let batch: Vec<Value> = (0..6).map(|i| event(1, i)).collect();
    let (s, body) = http(
        server.addr,
        "POST",
        "/v1/events",
        Some(&t),
        Some(&Value::Array(batch).to_string()),
    )
    .unwrap();
    assert_eq!(s, 200, "{body}");
    let written: Value = serde_json::from_str(&body).unwrap();
    let remote = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", &url, "--token", &t]);
        run(&all)
    };
    let q = remote(&["query", "--tool", "query_database", "--format", "jsonl"]);
    assert_eq!(q.code, 0, "{}", q.stderr);
    assert_eq!(q.stdout.lines().count(), 6);
    let table = remote(&["query", "--agent-id", "agent-1"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.starts_with("WRITTEN"), "{}", table.stdout);
    let v = remote(&["verify"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(
        v.stdout.starts_with("OK — 6 entries verified"),
        "{}",
        v.stdout
    );
    let cp = remote(&["checkpoint"]);
    assert_eq!(cp.code, 0, "{}", cp.stderr);
    let anchor = tmp.path().join("anchor.cp");
    std::fs::write(&anchor, &cp.stdout).unwrap();
    let id = written["entries"][2]["entry_id"].as_str().unwrap();
    let proof = tmp.path().join("proof.json");
    let p = remote(&[
        "prove",
        "--entry-id",
        id,
        "--output",
        proof.to_str().unwrap(),
    ]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let pubkey = format!("{dir}/checkpoint.pub");
    let vp = run(&[
        "verify-proof",
        "--public-key",
        &pubkey,
        proof.to_str().unwrap(),
    ]);
    assert_eq!(vp.code, 0, "{}{}", vp.stdout, vp.stderr);
    // A token without read scope is refused with the service's message.
    let ingest_only = token(&dir, "acme", "ingest");
    let r = run(&["verify", "--server", &url, "--token", &ingest_only]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("forbidden") || r.stderr.contains("scopes"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_jsonl_mirror_rotates_and_every_file_and_the_set_verify() {
    let (tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let mirror = tmp.path().join("audit.jsonl");
    let cfg = tmp.path().join("serve.toml");
    std::fs::write(&cfg, "[mirror]\nrotate_bytes = 65536\n").unwrap();
    let (m, c) = (
        mirror.to_str().unwrap().to_owned(),
        cfg.to_str().unwrap().to_owned(),
    );
    let server = Server::start_with(&dir, move |mut cmd| {
        cmd.args(["--log-file", &m, "--config", &c]);
        cmd
    });
    // Two tenants, ~180 KB of entries: at least two rotations.
    let t2 = token(&dir, "globex", "ingest");
    for i in 0..30 {
        let batch: Vec<Value> = (0..20).map(|k| event(i % 3, i * 100 + k)).collect();
        let tok = if i % 2 == 0 { &t } else { &t2 };
        let (s, b) = http(
            server.addr,
            "POST",
            "/v1/events",
            Some(tok),
            Some(&Value::Array(batch).to_string()),
        )
        .unwrap();
        assert_eq!(s, 200, "{b}");
    }
    // A graceful stop writes the closing checkpoints to the mirror too.
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("audit.jsonl.")
        })
        .collect();
    files.sort_by_key(|p| {
        p.extension()
            .unwrap()
            .to_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    });
    assert!(files.len() >= 2, "expected rotations, found {files:?}");
    files.push(mirror.clone());
    let keys = format!("{dir}/keys/hmac.keys");
    let pubkey = format!("{dir}/checkpoint.pub");
    for f in &files {
        let v = run(&[
            "verify",
            "--log-file",
            f.to_str().unwrap(),
            "--key-file",
            &keys,
            "--public-key",
            &pubkey,
        ]);
        assert_eq!(v.code, 0, "{}: {}{}", f.display(), v.stdout, v.stderr);
    }
    let mut args = vec!["verify".to_owned()];
    for f in &files {
        args.push("--log-file".into());
        args.push(f.to_str().unwrap().into());
    }
    args.extend([
        "--key-file".into(),
        keys.clone(),
        "--public-key".into(),
        pubkey.clone(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v = run(&args);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(
        v.stdout.starts_with("OK — 600 entries verified"),
        "{}",
        v.stdout
    );
    // Leaving out a middle file is a deletion.
    let mut gap: Vec<&str> = args.clone();
    let drop_at = gap
        .iter()
        .position(|a| *a == files[1].to_str().unwrap())
        .unwrap();
    gap.drain(drop_at - 1..=drop_at);
    let v = run(&gap);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stdout.contains("deletion"), "{}", v.stdout);
}

#[test]
fn logs_carry_no_secrets_or_content_and_sigterm_signs_a_closing_checkpoint() {
    let (_tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    // Start with info logging and keep what the server writes to stderr.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = bin()
        .args([
            "serve",
            "--data-dir",
            &dir,
            "--listen",
            &addr.to_string(),
            "--log-format",
            "json",
        ])
        .env("BLACKBOX_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let log: Arc<Mutex<String>> = Arc::default();
    let sink = Arc::clone(&log);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(addr, "GET", "/healthz", None, None)
        .map(|r| r.0)
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let secret_prompt = "my card number is 4111 1111 1111 1111";
    let ev = json!({"agent_id": "a", "session_id": "s", "event_type": "llm_request",
        "model": "gpt-4o", "prompt": secret_prompt});
    let (s, _) = http(addr, "POST", "/v1/events", Some(&t), Some(&ev.to_string())).unwrap();
    assert_eq!(s, 200);
    let (s, _) = http(
        addr,
        "POST",
        "/v1/events",
        Some("bbx_0123456789abcdef_wrong"),
        Some("{}"),
    )
    .unwrap();
    assert_eq!(s, 401);
    let (s, _) = http(addr, "POST", "/v1/events", Some(&t), Some("{\"prompt\": 1")).unwrap();
    assert_eq!(s, 400);
    // SIGTERM: drain, closing checkpoint, exit 0.
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("\"route\":\"/v1/events\""),
        "no request lines in:\n{log}"
    );
    for secret in [
        t.as_str(),
        &t[21..],
        "bbx_0123456789abcdef_wrong",
        secret_prompt,
        // Any part of the card number (not "4111" alone: a log timestamp such as
        // "…40.314111Z" may hold it).
        "4111 1111",
        "1111 1111",
    ] {
        assert!(
            !log.contains(secret),
            "{secret:?} appears in the log:\n{log}"
        );
    }
    let keys = std::fs::read_to_string(format!("{dir}/keys/hmac.keys")).unwrap();
    let key_hex = keys.lines().last().unwrap().split(' ').nth(1).unwrap();
    assert!(!log.contains(key_hex));
    // The last entry is covered by a signed checkpoint.
    let v = run(&["verify", "--data-dir", &dir, "--format", "json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    let report: Value = serde_json::from_str(&v.stdout).unwrap();
    let acme = report["chains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["tenant_id"] == "acme")
        .unwrap()
        .clone();
    assert_eq!(acme["largest_checkpoint"], acme["entries"], "{report}");
}

#[test]
fn rules_reload_on_sighup_and_agents_from_the_command_line() {
    let (tmp, dir) = init_store();
    let rules = tmp.path().join("rules.yaml");
    let v1 = "anomaly_detection:\n  rules:\n    - name: no_jailbreaks\n      condition: {match_patterns: [jailbreak]}\n      action: block_and_alert\n";
    std::fs::write(&rules, v1).unwrap();
    let rules_arg = rules.to_string_lossy().into_owned();
    let srv = Server::start_with(&dir, |mut c| {
        c.args(["--rules", &rules_arg]);
        c
    });
    let ingest = token(&dir, "acme", "ingest");
    let read = token(&dir, "acme", "read");
    let admin = run(&["tokens", "create", "--data-dir", &dir, "--scope", "admin"]);
    let admin = admin.stdout.lines().last().unwrap().to_owned();
    let decide = |text: &str| -> Value {
        let body =
            json!({"agent_id": "a1", "session_id": "s", "tool_name": "t", "args": {"q": text}})
                .to_string();
        let (s, b) = http(srv.addr, "POST", "/v1/decide", Some(&ingest), Some(&body)).unwrap();
        assert_eq!(s, 200, "{b}");
        serde_json::from_str(&b).unwrap()
    };
    assert_eq!(decide("try a JAILBREAK")["decision"], "block");
    assert_eq!(decide("dump the database")["decision"], "allow");

    let pid = srv.child.id().to_string();
    let hup = || {
        let s = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(s.success());
    };
    // An invalid file is refused; the rules in force stay.
    std::fs::write(
        &rules,
        "anomaly_detection:\n  rules:\n    - name: x\n      action: alert\n",
    )
    .unwrap();
    hup();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        decide("jailbreak again")["decision"],
        "block",
        "the old rules stay in force"
    );
    // A valid one replaces them.
    std::fs::write(&rules, v1.replace("jailbreak", "dump the database")).unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(20);
    while decide("dump the database")["decision"] != "block" {
        assert!(Instant::now() < deadline, "the new rules were not loaded");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(decide("jailbreak")["decision"], "allow");

    // Agents from the command line, against the running service.
    let url = format!("http://{}", srv.addr);
    let r = run(&[
        "agents",
        "pause",
        "a1",
        "--tenant-id",
        "acme",
        "--reason",
        "incident 7",
        "--server",
        &url,
        "--token",
        &admin,
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("Paused a1 (tenant acme)"),
        "{}",
        r.stdout
    );
    assert_eq!(decide("hello")["decision"], "paused");
    let r = run(&["agents", "list", "--server", &url, "--token", &read]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let row = r.stdout.lines().nth(1).unwrap();
    assert!(
        row.starts_with("acme") && row.contains("a1") && row.contains("paused"),
        "{}",
        r.stdout
    );
    let r = run(&["agents", "resume", "a1", "--server", &url, "--token", &read]);
    assert_eq!(r.code, 2, "a read token cannot resume: {}", r.stderr);
    let r = run(&[
        "agents",
        "resume",
        "a1",
        "--tenant-id",
        "acme",
        "--server",
        &url,
        "--token",
        &admin,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(decide("hello")["decision"], "allow");
    let r = run(&["agents", "list"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--server"), "{}", r.stderr);
}

#[test]
fn export_through_the_service_verifies_with_the_public_key() {
    let (tmp, dir) = init_store();
    let srv = Server::start(&dir);
    let ingest = token(&dir, "acme", "ingest");
    let read = token(&dir, "acme", "read");
    let events: Vec<Value> = (1..=20).map(|i| event(0, i)).collect();
    let (s, b) = http(
        srv.addr,
        "POST",
        "/v1/events",
        Some(&ingest),
        Some(&Value::Array(events).to_string()),
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let cfg = run(&["export", "--print-config"]);
    std::fs::write(format!("{dir}/export.toml"), cfg.stdout).unwrap();
    let url = format!("http://{}", srv.addr);
    let out = tmp.path().join("evidence.pdf");
    let r = run(&[
        "export",
        "--server",
        &url,
        "--token",
        &read,
        "--standard",
        "soc2",
        "--control",
        "CC7.2",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("log completeness: 100% of expected entries present (20 of 20)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("made by the service at"), "{}", r.stdout);
    assert!(std::fs::read(&out).unwrap().starts_with(b"%PDF-"));
    let r = run(&[
        "export",
        "verify",
        &format!("{}.manifest", out.display()),
        "--public-key",
        &format!("{dir}/checkpoint.pub"),
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    // Another tenant's token cannot export this one.
    let other = token(&dir, "globex", "read");
    let r = run(&[
        "export",
        "--server",
        &url,
        "--token",
        &other,
        "--standard",
        "soc2",
        "--control",
        "CC7.2",
        "--tenant-id",
        "acme",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("403")
            || r.stderr.contains("forbidden")
            || r.stderr.contains("not `acme`"),
        "{}",
        r.stderr
    );
    // A bundle made by the running service: an admin token (a read token is refused), then
    // re-performed offline.
    let bundle = tmp.path().join("bundle");
    let args = |t: &str| {
        vec![
            "export".to_owned(),
            "--server".to_owned(),
            url.clone(),
            "--token".to_owned(),
            t.to_owned(),
            "--standard".to_owned(),
            "soc2".to_owned(),
            "--control".to_owned(),
            "CC7.2".to_owned(),
            "--tenant-id".to_owned(),
            "acme".to_owned(),
            "--bundle".to_owned(),
            bundle.to_str().unwrap().to_owned(),
        ]
    };
    let refused = args(&read);
    let r = run(&refused.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("admin token"), "{}", r.stderr);
    let admin = common::serve::token(&dir, None, "admin");
    let ok = args(&admin);
    let r = run(&ok.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("made by the service"), "{}", r.stdout);
    let r = run(&[
        "export",
        "reperform",
        bundle.to_str().unwrap(),
        "--public-key",
        &format!("{dir}/checkpoint.pub"),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// Every reserved event type (FORMAT.md §3, generated from the one list in the core) is refused
/// from an ingest token on both body routes, with a message naming the rule; nothing is written.
#[test]
fn every_reserved_event_type_is_refused_from_an_ingest_token() {
    let (_tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let srv = Server::start(&dir);
    let types = blackbox_core::origin::RESERVED_EVENT_TYPES
        .iter()
        .map(|s| (*s).to_owned())
        .chain(["blackbox.future".to_owned()]);
    for et in types {
        let ev = json!({"agent_id": "a1", "session_id": "s1", "event_type": et,
            "payload": {"by": "operator:0000000000000000", "reason": "forged"}});
        let (s, body) = http(
            srv.addr,
            "POST",
            "/v1/events",
            Some(&t),
            Some(&ev.to_string()),
        )
        .unwrap();
        assert_eq!(s, 422, "{et}: {body}");
        assert!(
            body.contains("reserved") && body.contains(&et),
            "{et}: {body}"
        );
        // In a batch, too: the whole request is refused.
        let ok = json!({"agent_id": "a1", "session_id": "s1", "event_type": "note"});
        let batch = format!("[{ok},{ev}]");
        let (s, body) = http(srv.addr, "POST", "/v1/events", Some(&t), Some(&batch)).unwrap();
        assert_eq!(s, 422, "{et}: {body}");
    }
    let (s, body) = http(srv.addr, "GET", "/v1/entries?format=json", Some(&t), None).unwrap();
    assert_eq!(s, 200, "{body}");
    assert!(!body.contains("\"seq\""), "nothing was written: {body}");
}

/// A paused agent stays paused across a restart, whatever an agent posts: the forged
/// `agent_resumed` is refused, and the state rebuilt at start reads the service's entries only.
#[test]
fn a_paused_agent_stays_paused_across_a_restart_whatever_an_agent_posts() {
    let (_tmp, dir) = init_store();
    let t = token(&dir, "acme", "ingest,read");
    let admin = token(&dir, "acme", "admin");
    let decide = |addr| {
        let body = json!({"agent_id": "a1", "session_id": "s1", "tool_name": "search",
            "args": {"q": "weather"}});
        let (s, b) = http(
            addr,
            "POST",
            "/v1/decide",
            Some(&t),
            Some(&body.to_string()),
        )
        .unwrap();
        assert_eq!(s, 200, "{b}");
        serde_json::from_str::<Value>(&b).unwrap()["decision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut srv = Server::start(&dir);
    let (s, b) = http(
        srv.addr,
        "POST",
        "/v1/agents/a1/pause",
        Some(&admin),
        Some(r#"{"reason":"incident 7"}"#),
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    assert_eq!(decide(srv.addr), "paused");
    // The agent tries every way to write a resume of its own.
    for forged in [
        json!({"agent_id": "a1", "session_id": "s1", "event_type": "agent_resumed",
            "payload": {"by": format!("operator:{}", "0".repeat(16)), "reason": "ok"}}),
        json!({"agent_id": "a1", "session_id": "operator", "event_type": "agent_resumed",
            "by": "operator:x"}),
    ] {
        let (s, _) = http(
            srv.addr,
            "POST",
            "/v1/events",
            Some(&t),
            Some(&forged.to_string()),
        )
        .unwrap();
        assert_eq!(s, 422);
    }
    // Its own events are accepted, and recorded as the token's.
    let ev = json!({"agent_id": "a1", "session_id": "s1", "event_type": "agent_note",
        "payload": {"text": "resumed by operator"}});
    let (s, b) = http(
        srv.addr,
        "POST",
        "/v1/events",
        Some(&t),
        Some(&ev.to_string()),
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    srv.kill9();
    let srv = Server::start(&dir);
    assert_eq!(decide(srv.addr), "paused", "the pause survives the restart");
    drop(srv);
    // The log tells the service's entries from the token's.
    let q = |origin: &str| {
        let r = run(&[
            "query",
            "--data-dir",
            &dir,
            "--origin",
            origin,
            "--format",
            "jsonl",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let service = q("service");
    let paused: Vec<_> = service
        .iter()
        .filter(|e| e["event_type"] == "agent_paused")
        .collect();
    assert_eq!(paused.len(), 1, "{service:?}");
    assert_eq!(paused[0]["origin"], json!({"kind": "service"}));
    let by_token = q("token");
    assert!(by_token.iter().all(|e| e["origin"]["kind"] == "token"));
    assert!(
        by_token
            .iter()
            .any(|e| e["event_type"] == "agent_note" && e["origin"]["via"] == "events")
    );
    assert!(
        by_token
            .iter()
            .any(|e| e["event_type"] == "tool_call" && e["origin"]["via"] == "decide"),
        "decisions are the token's calls, decided by the service: {by_token:?}"
    );
    assert!(
        by_token
            .iter()
            .all(|e| e["origin"]["scope"] == "ingest,read")
    );
    // `verify` counts the entries of each origin.
    let r = run(&["verify", "--data-dir", &dir, "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let by = &v["entries_by_origin"];
    assert_eq!(by["token"].as_u64(), Some(by_token.len() as u64), "{by}");
    assert!(by["service"].as_u64().unwrap() >= 1, "{by}");
    // The export verifies in the independent verifier, which counts both origins.
    let out = format!("{dir}/../audit.jsonl");
    let r = run(&["export-log", "--data-dir", &dir, "--output", &out]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let py = std::process::Command::new("python3")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../tools/verify_jsonl.py"),
            &out,
            "--key-file",
            &format!("{dir}/keys/hmac.keys"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&py.stdout);
    assert!(py.status.success(), "{text}");
    assert!(
        text.contains("origin: service ") && text.contains(", token "),
        "{text}"
    );
}

/// One request with a chosen `Content-Type`: (status, body).
fn http_typed(
    addr: SocketAddr,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// Every route that takes a JSON body refuses a duplicate key, at the top or nested, with 400
/// `invalid_json` naming the key and where it is (`{"tenant_id":"tenant_b","tenant_id":…}` was
/// accepted on /v1/events, last one winning, while a proxy reading the first saw another
/// tenant); nothing is written, and the same bodies without the duplicate are accepted.
#[test]
fn every_body_route_refuses_a_duplicate_key() {
    let (_tmp, dir) = init_store();
    let ingest = token(&dir, "tenant_a", "ingest");
    let admin = run(&["tokens", "create", "--data-dir", &dir, "--scope", "admin"]);
    assert_eq!(admin.code, 0, "{}", admin.stderr);
    let admin = admin.stdout.lines().last().unwrap().to_owned();
    let server = Server::start(&dir);
    let custom_entries = || {
        let (status, entries) = http(
            server.addr,
            "GET",
            "/v1/entries?tenant_id=tenant_a&event_type=custom&format=jsonl",
            Some(&admin),
            None,
        )
        .unwrap();
        assert_eq!(status, 200, "{entries}");
        entries.matches("\"seq\":").count()
    };
    let ev = r#"{"agent_id":"a1","session_id":"s1","event_type":"custom","payload":{"n":1}}"#;
    let dup_top = r#"{"tenant_id":"tenant_b","tenant_id":"tenant_a","agent_id":"a1","session_id":"s1","event_type":"custom"}"#;
    let dup_deep = r#"{"agent_id":"a1","session_id":"s1","event_type":"custom","payload":{"x":{"k":1,"k":2}}}"#;
    const JSON: &str = "application/json";
    const NDJSON: &str = "application/x-ndjson";
    // (route, token, content type, body with a duplicate, what the error names, the body fixed)
    let cases: Vec<(&str, &str, &str, String, &str, String)> = vec![
        ("/v1/events", &ingest, JSON, dup_top.into(), "event 0: not valid JSON: duplicate key \"tenant_id\" in the object at $:", ev.into()),
        ("/v1/events", &ingest, JSON, dup_deep.into(), "event 0: not valid JSON: duplicate key \"k\" in the object at $.payload.x:", ev.into()),
        ("/v1/events", &ingest, JSON, format!("[{ev},{dup_deep}]"), "event 1: not valid JSON: duplicate key \"k\" in the object at $.payload.x:", format!("[{ev},{ev}]")),
        ("/v1/events", &ingest, NDJSON, format!("{ev}\n{ev}\n{dup_top}\n"), "event 2: not valid JSON: duplicate key \"tenant_id\"", format!("{ev}\n{ev}\n")),
        ("/v1/decide", &ingest,  JSON,
            r#"{"agent_id":"a1","session_id":"s1","tool_name":"t","args":{"q":"x","q":"DROP TABLE"}}"#.into(),
            "not valid JSON: duplicate key \"q\" in the object at $.args:",
            r#"{"agent_id":"a1","session_id":"s1","tool_name":"t","args":{"q":"x"}}"#.into()),
        ("/v1/decide", &ingest, JSON,
            r#"{"agent_id":"a1","agent_id":"a2","session_id":"s1","tool_name":"t"}"#.into(),
            "not valid JSON: duplicate key \"agent_id\" in the object at $:",
            r#"{"agent_id":"a1","session_id":"s1","tool_name":"t"}"#.into()),
        ("/v1/agents/a1/pause", &admin, JSON,
            r#"{"tenant_id":"tenant_b","tenant_id":"tenant_a","reason":"x"}"#.into(),
            "not valid JSON: duplicate key \"tenant_id\" in the object at $:",
            r#"{"tenant_id":"tenant_a","reason":"x"}"#.into()),
        ("/v1/agents/a1/resume", &admin, JSON,
            r#"{"tenant_id":"tenant_a","reason":"x","reason":"y"}"#.into(),
            "not valid JSON: duplicate key \"reason\" in the object at $:",
            r#"{"tenant_id":"tenant_a","reason":"y"}"#.into()),
        ("/v1/erasures", &admin, JSON,
            r#"{"data_subject":"u-1","data_subject":"u-2","reason":"r","ticket":"T-1"}"#.into(),
            "not valid JSON: duplicate key \"data_subject\" in the object at $:",
            r#"{"data_subject":"u-1","reason":"r","ticket":"T-1"}"#.into()),
        ("/v1/retention/run", &admin, JSON, r#"{"a":{"b":1,"b":2}}"#.into(),
            "not valid JSON: duplicate key \"b\" in the object at $.a:", "{}".into()),
        ("/v1/tokens", &admin, JSON,
            r#"{"tenant_id":"tenant_a","scopes":["read"],"scopes":["admin"]}"#.into(),
            "not valid JSON: duplicate key \"scopes\" in the object at $:",
            r#"{"tenant_id":"tenant_a","scopes":["read"]}"#.into()),
    ];
    for (route, tok, ct, bad, names, good) in &cases {
        let (status, body) = http_typed(server.addr, route, tok, ct, bad);
        assert_eq!(status, 400, "{route} {bad}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "invalid_json", "{route}: {body}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(names), "{route}: {msg}");
        assert!(msg.contains("remove the repeated member"), "{route}: {msg}");
        // Nothing of a refused request was written.
        assert_eq!(custom_entries(), 0, "{route}");
        if *route != "/v1/events" {
            let (status, body) = http_typed(server.addr, route, tok, ct, good);
            assert!(
                (200..300).contains(&status),
                "{route} {good}: {status} {body}"
            );
        }
    }
    // The fixed event bodies are accepted too (after the loop: an accepted event is written).
    for (route, tok, ct, _, _, good) in cases.iter().filter(|c| c.0 == "/v1/events") {
        let (status, body) = http_typed(server.addr, route, tok, ct, good);
        assert_eq!(status, 200, "{route} {good}: {body}");
    }
    assert_eq!(custom_entries(), 1 + 1 + 2 + 2);
}

/// A claimed time outside `[clock]` is accepted, marked in the entry and raised once per agent
/// as the built-in `clock_skew` alert (the second within 5 minutes is suppressed).
#[test]
fn a_skewed_claimed_time_is_marked_and_raises_one_clock_skew_alert() {
    let (_tmp, dir) = init_store();
    std::fs::write(format!("{dir}/blackbox.toml"), "[clock]\nalert = true\n").unwrap();
    let t = token(&dir, "acme", "ingest,read");
    let srv = Server::start(&dir);
    for day in ["2025-01-01", "2025-01-02"] {
        let ev = json!({"agent_id": "a1", "session_id": "s1", "event_type": "note",
            "timestamp": format!("{day}T00:00:00Z")});
        let (s, b) = http(
            srv.addr,
            "POST",
            "/v1/events",
            Some(&t),
            Some(&ev.to_string()),
        )
        .unwrap();
        assert_eq!(s, 200, "{b}");
    }
    drop(srv);
    let r = run(&["query", "--data-dir", &dir, "--format", "jsonl"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let entries: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let notes: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event_type"] == "note")
        .collect();
    assert_eq!(notes.len(), 2);
    assert!(
        notes
            .iter()
            .all(|e| e["clock_skew_ms"].as_i64().unwrap() < -86_400_000)
    );
    let alerts: Vec<&Value> = entries
        .iter()
        .filter(|e| e["event_type"] == "anomaly_detected")
        .collect();
    assert_eq!(alerts.len(), 1, "{entries:?}");
    assert_eq!(alerts[0]["payload"]["rule"], "clock_skew");
    assert_eq!(alerts[0]["origin"], json!({"kind": "service"}));
    assert_eq!(
        alerts[0]["payload"]["triggered_by"][0],
        notes[0]["entry_id"]
    );
}
