//! The PostgreSQL backend against the storage contract's conformance suite, on a scratch
//! database of the PostgreSQL server this machine runs (`BLACKBOX_TEST_PG`, by default
//! `postgres://postgres@127.0.0.1:5432/postgres`): one database per backend the suite asks for,
//! dropped afterwards. The server must be there: these tests fail without it (`.ci/run` starts
//! it when it is not running).

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use blackbox_store::conformance::{self, Backend};
use blackbox_store::{Store, StoreError};
use blackbox_store_pg::{PgOptions, PgStore};

/// The server's administrative URL.
fn admin_url() -> String {
    std::env::var("BLACKBOX_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `admin` with its database replaced by `db`.
fn with_db(admin: &str, db: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin, String::new()),
    };
    let cut = base
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..cut])
}

fn admin() -> postgres::Client {
    let url = admin_url();
    postgres::Client::connect(&url, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "the PostgreSQL tests need a server at {} ({e}); start one (`.ci/run` does: \
             pg_ctlcluster or service postgresql start), or set BLACKBOX_TEST_PG to another",
            blackbox_store_pg::redact(&url)
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
            "bb_test_{what}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = with_db(&admin_url(), &name);
        Self { name, url }
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

struct Pg {
    url: String,
    /// The database, dropped with the backend (`None` in the crash test's child).
    _db: Option<Scratch>,
    /// Where the sealing key file is (a data directory's `keys/` stands in).
    keys: Option<tempfile::TempDir>,
    /// The server's write-ahead log file being written when the backend was made: the erasure
    /// check reads that one and the later ones (what earlier tests wrote is not this store's).
    wal_from: String,
}

fn fresh(what: &str) -> Pg {
    let db = Scratch::new(what);
    let wal_from: String = postgres::Client::connect(&db.url, postgres::NoTls)
        .unwrap()
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .unwrap()
        .get(0);
    Pg {
        url: db.url.clone(),
        _db: Some(db),
        keys: Some(tempfile::tempdir().unwrap()),
        wal_from,
    }
}

impl Pg {
    fn options(&self) -> PgOptions {
        PgOptions {
            seal_key: self
                .keys
                .as_ref()
                .map(|d| d.path().join("personal-seal.key")),
            ..PgOptions::default()
        }
    }
}

/// The files of `url`'s database on the server (its heap and index files) and the server's
/// write-ahead log: where a PostgreSQL store's bytes are.
fn server_files(url: &str, wal_from: &str) -> Vec<PathBuf> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let dir: String = c.query_one("SHOW data_directory", &[]).unwrap().get(0);
    let oid: u32 = c
        .query_one(
            "SELECT oid FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .unwrap()
        .get(0);
    // Written out now: the heap pages too, not only the log.
    c.batch_execute("CHECKPOINT").unwrap();
    // Segments named after the current one are preallocated (recycled old ones): not written
    // since this store was made.
    let wal_to: String = c
        .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
        .unwrap()
        .get(0);
    let mut out = Vec::new();
    for sub in [format!("base/{oid}"), "pg_wal".to_owned()] {
        let d = PathBuf::from(&dir).join(&sub);
        let rd = std::fs::read_dir(&d).unwrap_or_else(|e| {
            panic!(
                "the erasure check reads the server's files in {} ({e}): run the tests as a \
                 user who may read them (CI runs as root)",
                d.display()
            )
        });
        for f in rd {
            let f = f.unwrap();
            let name = f.file_name().to_string_lossy().into_owned();
            // WAL segments (24 hex digits) written since the store was made.
            let earlier_wal =
                sub == "pg_wal" && (name.len() != 24 || name.as_str() < wal_from || name > wal_to);
            if f.file_type().unwrap().is_file() && !earlier_wal {
                out.push(f.path());
            }
        }
    }
    out
}

impl Backend for Pg {
    fn open(&mut self) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(PgStore::open(&self.url, &self.options())?))
    }

    fn files(&self) -> Vec<PathBuf> {
        server_files(&self.url, &self.wal_from)
    }

    fn seals_personal(&self) -> bool {
        true
    }
}

#[test]
fn postgres_passes_the_conformance_suite() {
    conformance::run_all(&mut || fresh("conformance")).unwrap();
}

#[test]
fn postgres_queries_match_full_scans_for_other_seeds() {
    for seed in [1, 0xdead_beef] {
        conformance::query_equivalence(&mut fresh("queries"), seed).unwrap();
    }
}

/// Set in the child process of [`postgres_batches_survive_a_kill_whole_or_not_at_all`]: the
/// database URL the child writes to.
const CHILD_ENV: &str = "BLACKBOX_CONFORMANCE_CRASH_PG";

/// The child side of the crash check (does nothing unless started by it).
#[test]
fn crash_child() {
    let Some(url) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut b = Pg {
        url: url.into_string().unwrap(),
        _db: None,
        keys: None,
        wal_from: String::new(),
    };
    conformance::crash_writer(&mut b, u64::MAX, &mut |n| println!("committed {n}")).unwrap();
}

#[test]
fn postgres_batches_survive_a_kill_whole_or_not_at_all() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let exe = std::env::current_exe().unwrap();
    for round in 0..3u64 {
        let mut b = fresh("crash");
        // Created before the child starts, so the child only opens it.
        drop(b.open().unwrap());
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &b.url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("committed ") {
                    let _ = tx.send(n.parse::<u64>().unwrap());
                }
            }
        });
        // Killed at a different point each round, once it has committed some batches: the
        // server sees the connection drop mid-transaction (or mid-commit).
        let wait_for = 5 + round * 17;
        let started = Instant::now();
        let mut committed = 0;
        while committed < wait_for && started.elapsed() < Duration::from_secs(60) {
            if let Ok(n) = rx.recv_timeout(Duration::from_millis(100)) {
                committed = n;
            }
        }
        std::thread::sleep(Duration::from_millis(round * 3));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        while let Ok(n) = rx.try_recv() {
            committed = committed.max(n);
        }
        assert!(
            committed >= wait_for,
            "the child committed only {committed} batches"
        );
        let survived = conformance::check_crash_cut_off(&mut b, committed).unwrap();
        assert!(survived >= committed);
    }
}

#[test]
fn a_second_writer_waits_for_the_first_and_then_times_out_as_busy() {
    let db = Scratch::new("busy");
    let opts = PgOptions {
        lock_timeout: std::time::Duration::from_millis(300),
        ..PgOptions::default()
    };
    let mut a = PgStore::open(&db.url, &opts).unwrap();
    let mut b = PgStore::open(&db.url, &opts).unwrap();
    let batch = a.begin().unwrap();
    let t = std::time::Instant::now();
    let second = b.begin().map(|_| ());
    assert!(
        matches!(second, Err(StoreError::Busy)),
        "a second writer got {second:?}"
    );
    assert!(t.elapsed() >= std::time::Duration::from_millis(250));
    drop(batch);
    // The lock went with the first batch's transaction.
    b.begin().unwrap();
}

#[test]
fn an_unreachable_server_and_a_bad_url_say_what_is_wrong_without_the_password() {
    let opts = PgOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        ..PgOptions::default()
    };
    // Port 1 on loopback: nothing listens there.
    let e = PgStore::open("postgres://bb:s3cret@127.0.0.1:1/ledger", &opts).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Unreachable { .. }), "{msg}");
    assert!(
        msg.contains("127.0.0.1:1") && !msg.contains("s3cret"),
        "{msg}"
    );
    let e = PgStore::open(
        "postgres://bb:s3cret@127.0.0.1:5432/ledger?sslmode=bogus",
        &opts,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("not a PostgreSQL connection URL") && !msg.contains("s3cret"),
        "{msg}"
    );
}

#[test]
fn a_read_only_store_refuses_writes_and_a_database_without_a_store_is_named() {
    let db = Scratch::new("readonly");
    let e = PgStore::open_read_only(&db.url, &PgOptions::default()).unwrap_err();
    assert!(matches!(e, StoreError::NotAStore { .. }), "{e}");
    drop(PgStore::open(&db.url, &PgOptions::default()).unwrap());
    let mut ro = PgStore::open_read_only(&db.url, &PgOptions::default()).unwrap();
    assert!(matches!(ro.begin().map(|_| ()), Err(StoreError::ReadOnly)));
    assert!(ro.chains().unwrap().is_empty());
}

#[test]
fn verify_full_refuses_a_certificate_nobody_vouches_for() {
    // The server here offers TLS with a self-signed certificate (Debian's snakeoil): `prefer`
    // (the other tests) encrypts without checking it, as libpq does; `verify-full` must refuse.
    let mut c = admin();
    let ssl: String = c.query_one("SHOW ssl", &[]).unwrap().get(0);
    assert_eq!(ssl, "on", "the test server must offer TLS for this test");
    let db = Scratch::new("tls");
    let url = format!("{}?sslmode=verify-full", db.url);
    let opts = PgOptions {
        connect_timeout: std::time::Duration::from_secs(3),
        ..PgOptions::default()
    };
    let e = PgStore::open(&url, &opts).unwrap_err();
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[test]
fn instances_opening_a_new_database_together_migrate_it_once() {
    let db = Scratch::new("migrate");
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || PgStore::open(&url, &PgOptions::default()).map(|_| ()))
        })
        .collect();
    for t in opened {
        t.join().unwrap().unwrap();
    }
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM blackbox_schema_history", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        n,
        i64::from(blackbox_store_pg::SCHEMA_VERSION),
        "a migration ran more than once"
    );
}

/// A sidecar entry of tenant `t` (line and ids from `seq`).
fn with_sidecar(t: &str, seq: u64, sidecar: &[u8], subject: &[u8]) -> blackbox_store::NewEntry {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&seq.to_be_bytes());
    id[8] = t.len() as u8;
    blackbox_store::NewEntry {
        seq,
        entry_id: id,
        ts_ms: i64::try_from(seq).unwrap(),
        agent_id: "a".into(),
        session_id: "s".into(),
        event_type: "tool_call".into(),
        tool: None,
        line: format!("{{\"tenant\":\"{t}\",\"seq\":{seq}}}").into_bytes(),
        entry_hash: blackbox_core::Hash::digest(&seq.to_be_bytes()),
        personal: Some(blackbox_store::PersonalRecord {
            sidecar: sidecar.to_vec(),
            subject_keys: vec![blackbox_core::Hash::digest(subject).0],
        }),
    }
}

fn append_sidecars(s: &mut dyn Store, t: &str, from: u64, rows: &[(&[u8], &[u8])]) {
    let es: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, (side, subj))| with_sidecar(t, from + i as u64, side, subj))
        .collect();
    let mut b = s.begin().unwrap();
    b.append(t, &es).unwrap();
    b.set_head(&head_after(t, es.last().unwrap())).unwrap();
    b.commit().unwrap();
}

/// The head of tenant `t`'s chain ending at `last` (no Merkle state or checkpoint).
fn head_after(t: &str, last: &blackbox_store::NewEntry) -> blackbox_store::ChainHead {
    blackbox_store::ChainHead {
        tenant_id: t.into(),
        size: last.seq,
        head_hash: last.entry_hash,
        last_entry_id: last.entry_id,
        merkle_state: Vec::new(),
        last_checkpoint_size: 0,
        last_checkpoint_ms: 0,
    }
}

/// A sealed sidecar as stored: (generation, bytes).
type Sealed = (i32, Vec<u8>);
/// A data key row as stored: (chain, generation, epoch, wrapped).
type WrappedKey = (i64, i32, i64, Vec<u8>);

/// The sealed rows of `tenant`'s entry `seq` and every wrapped data key, as an attacker with
/// a copy of the database's files (its WAL, a backup) would keep them.
fn capture(url: &str, tenant: &str, seq: i64) -> (i64, Vec<Sealed>, Vec<WrappedKey>) {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let chain: i64 = c
        .query_one(
            "SELECT chain_id FROM chains WHERE tenant_id = $1",
            &[&tenant],
        )
        .unwrap()
        .get(0);
    let rows = c
        .query(
            "SELECT generation, sidecar FROM personal WHERE chain_id = $1 AND seq = $2",
            &[&chain, &seq],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let keys = c
        .query(
            "SELECT chain_id, generation, epoch, wrapped FROM personal_keys",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    (chain, rows, keys)
}

#[test]
fn an_erasure_leaves_no_key_that_opens_what_the_database_still_holds() {
    let b = fresh("shred");
    let key_file = b.keys.as_ref().unwrap().path().join("personal-seal.key");
    let mut s = PgStore::open(&b.url, &b.options()).unwrap();
    let secret: &[u8] = br#"{"salt":"00","fields":{"name":"Erika Mustermann"}}"#;
    let kept: &[u8] = br#"{"salt":"01","fields":{"name":"John Doe"}}"#;
    let other: &[u8] = br#"{"salt":"02","fields":{"name":"Jane Roe"}}"#;
    append_sidecars(&mut s, "acme", 1, &[(secret, b"erika"), (kept, b"john")]);
    append_sidecars(&mut s, "globex", 1, &[(other, b"jane")]);
    // A second instance on the same database, with its own copy of the key file.
    let copy = tempfile::tempdir().unwrap();
    let copy_key = copy.path().join("personal-seal.key");
    std::fs::copy(&key_file, &copy_key).unwrap();
    let before_copy = std::fs::read(&copy_key).unwrap();
    // What an attacker keeps: the sealed sidecar and every wrapped key, from before.
    let (chain, sealed, wrapped) = capture(&b.url, "acme", 1);
    assert_eq!(sealed.len(), 1);
    assert!(
        blackbox_store_pg::seal::can_open_with_current_keys(
            &key_file,
            &mut postgres::Client::connect(&b.url, postgres::NoTls).unwrap(),
            chain,
            1,
            &sealed,
            &[],
        )
        .unwrap(),
        "the capture must open with the keys of the time: the test proves nothing otherwise"
    );
    let subject = blackbox_core::Hash::digest(b"erika").0;
    {
        let mut batch = s.begin().unwrap();
        let rows = batch.erasure().unwrap().subject_entries(&subject).unwrap();
        assert_eq!(rows.len(), 1);
        let out = batch
            .erasure()
            .unwrap()
            .erase_personal("acme", &[1])
            .unwrap();
        assert_eq!(out, vec![blackbox_store::Erasure::Removed]);
        batch.commit().unwrap();
    }
    s.erasure_mut()
        .unwrap()
        .purge_erased(std::time::Duration::from_secs(1))
        .unwrap();
    assert_ne!(
        std::fs::read(&key_file).unwrap(),
        before_copy,
        "the key file moved on"
    );
    // Nothing the store or its key file holds now opens the captured bytes.
    assert!(
        !blackbox_store_pg::seal::can_open_with_current_keys(
            &key_file,
            &mut postgres::Client::connect(&b.url, postgres::NoTls).unwrap(),
            chain,
            1,
            &sealed,
            &wrapped,
        )
        .unwrap(),
        "a key that opens the erased sidecar survived the erasure"
    );
    // The rest reads back exactly, on this instance and on the other one, whose key file
    // moves forward as soon as it opens the store.
    let mut got = Vec::new();
    s.scan("acme", 1, 2, &mut |e| {
        got.push(e.personal);
        Ok(true)
    })
    .unwrap();
    assert_eq!(got, vec![None, Some(kept.to_vec())]);
    let other_instance = PgStore::open(
        &b.url,
        &PgOptions {
            seal_key: Some(copy_key.clone()),
            ..PgOptions::default()
        },
    )
    .unwrap();
    let mut got = Vec::new();
    other_instance
        .scan("globex", 1, 1, &mut |e| {
            got.push(e.personal);
            Ok(true)
        })
        .unwrap();
    assert_eq!(got, vec![Some(other.to_vec())]);
    assert_eq!(
        std::fs::read(&copy_key).unwrap(),
        std::fs::read(&key_file).unwrap(),
        "the other instance's key file did not move forward"
    );
    // A key file of another log is refused by name.
    let foreign = tempfile::tempdir().unwrap();
    let foreign_key = foreign.path().join("personal-seal.key");
    blackbox_store_pg::seal::create_key_file(&foreign_key).unwrap();
    let e = PgStore::open(
        &b.url,
        &PgOptions {
            seal_key: Some(foreign_key),
            ..PgOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not the one this database"), "{e}");
    // A data directory without the key file cannot read a sealed sidecar (and makes no key).
    let missing = foreign.path().join("missing.key");
    let lacking = PgStore::open(
        &b.url,
        &PgOptions {
            seal_key: Some(missing.clone()),
            ..PgOptions::default()
        },
    )
    .unwrap();
    let e = lacking
        .scan("globex", 1, 1, &mut |_| Ok(true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("lacks"), "{e}");
    assert!(!missing.exists());
}

#[test]
fn sidecars_a_schema_3_store_kept_in_clear_are_sealed_when_a_writer_opens_it() {
    let b = fresh("legacy");
    let mut s = PgStore::open(&b.url, &PgOptions::default()).unwrap();
    drop(s.begin().unwrap());
    drop(s);
    // A sidecar in clear, as schema 3 wrote it.
    let mut s = PgStore::open(&b.url, &b.options()).unwrap();
    append_sidecars(&mut s, "acme", 1, &[(b"{\"salt\":\"00\"}", b"x")]);
    drop(s);
    let mut c = postgres::Client::connect(&b.url, postgres::NoTls).unwrap();
    c.batch_execute(
        "UPDATE personal SET generation = NULL, sidecar = convert_to('{\"salt\":\"00\"}', 'UTF8')",
    )
    .unwrap();
    let s = PgStore::open(&b.url, &b.options()).unwrap();
    let clear: i64 = c
        .query_one(
            "SELECT count(*) FROM personal WHERE generation IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(clear, 0, "a sidecar stayed in clear");
    let mut got = Vec::new();
    s.scan("acme", 1, 1, &mut |e| {
        got.push(e.personal);
        Ok(true)
    })
    .unwrap();
    assert_eq!(got, vec![Some(b"{\"salt\":\"00\"}".to_vec())]);
}

/// The migrations as built into the store, to make a database of an older schema.
mod older {
    refinery::embed_migrations!("migrations");
}

/// A row of the schema-4 `entries` table: (tenant, seq, ts_ms, agent, session, event, tool).
type Row4 = (
    &'static str,
    i64,
    i64,
    String,
    String,
    &'static str,
    Option<String>,
);

#[test]
fn a_schema_4_store_gets_posting_lists_that_answer_queries_as_its_indexes_did() {
    use blackbox_store::{After, Query};
    let b = fresh("schema4");
    let mut c = postgres::Client::connect(&b.url, postgres::NoTls).unwrap();
    older::migrations::runner()
        .set_target(refinery::Target::Version(4))
        .set_migration_table_name("blackbox_schema_history")
        .run(&mut c)
        .unwrap();
    // Two chains over about five hours (seventeen time buckets), rows as schema 4 wrote them.
    let base: i64 = 1_765_000_000_000;
    let mut rows: Vec<Row4> = Vec::new();
    for (t, n) in [("acme", 300i64), ("globex", 200)] {
        for seq in 1..=n {
            rows.push((
                t,
                seq,
                base + seq * 60_000 - (seq % 7) * 1_000,
                format!("agent-{}", seq % 5),
                format!("sess-{}", seq / 40),
                ["tool_call", "tool_result", "llm_request"][(seq % 3) as usize],
                (seq % 3 != 2).then(|| format!("tool-{}", seq % 4)),
            ));
        }
        c.execute(
            "INSERT INTO chains(tenant_id, size, head_hash, last_entry_id, merkle_state, \
             last_checkpoint_size, last_checkpoint_ms) VALUES ($1, 0, $2, $3, '', 0, 0)",
            &[&t, &vec![0u8; 32], &vec![0u8; 16]],
        )
        .unwrap();
    }
    for (t, seq, ts, agent, session, event, tool) in &rows {
        let mut id = vec![0u8; 16];
        id[..8].copy_from_slice(&seq.to_be_bytes());
        id[8] = t.len() as u8;
        c.execute(
            "INSERT INTO entries(chain_id, seq, ts_ms, entry_id, entry_hash, agent_id, \
             session_id, event_type, tool, line) SELECT chain_id, $2, $3, $4, $5, $6, $7, $8, \
             $9, $10 FROM chains WHERE tenant_id = $1",
            &[
                t,
                seq,
                ts,
                &id,
                &vec![7u8; 32],
                agent,
                session,
                event,
                tool,
                &format!("{{\"{t}\":{seq}}}").into_bytes(),
            ],
        )
        .unwrap();
    }
    // Heads matching the last entries, so that appends can follow.
    c.batch_execute(
        "UPDATE chains SET size = m.seq, head_hash = e.entry_hash, last_entry_id = e.entry_id \
         FROM (SELECT chain_id, max(seq) AS seq FROM entries GROUP BY chain_id) m \
         JOIN entries e ON e.chain_id = m.chain_id AND e.seq = m.seq \
         WHERE chains.chain_id = m.chain_id",
    )
    .unwrap();

    // A writer opens it: the current schema, the postings made from what is there, the indexes gone.
    let s = PgStore::open(&b.url, &b.options()).unwrap();
    let version: i32 = c
        .query_one("SELECT max(version) FROM blackbox_schema_history", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        version,
        i32::try_from(blackbox_store_pg::SCHEMA_VERSION).unwrap()
    );
    let indexes: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'entries' \
             AND indexname IN ('entries_agent', 'entries_ts', 'entries_ts_all')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(indexes, 0, "the per-entry filter indexes were not dropped");

    let expect = |q: &Query, rows: &[Row4]| -> Vec<(String, u64)> {
        let mut m: Vec<(i64, &str, i64)> = rows
            .iter()
            .filter(|r| q.tenant_id.as_deref().is_none_or(|t| t == r.0))
            .filter(|r| q.agent_id.as_ref().is_none_or(|a| *a == r.3))
            .filter(|r| q.session_id.as_ref().is_none_or(|a| *a == r.4))
            .filter(|r| q.event_type.as_deref().is_none_or(|a| a == r.5))
            .filter(|r| q.tool.is_none() || q.tool == r.6)
            .filter(|r| q.start_ms.is_none_or(|t| r.2 >= t) && q.end_ms.is_none_or(|t| r.2 <= t))
            .filter(|r| {
                q.after
                    .as_ref()
                    .is_none_or(|a| (r.2, r.0, r.1) > (a.ts_ms, a.tenant_id.as_str(), a.seq as i64))
            })
            .map(|r| (r.2, r.0, r.1))
            .collect();
        m.sort();
        m.truncate(q.limit.map_or(usize::MAX, |l| l as usize));
        m.into_iter()
            .map(|(_, t, s)| (t.to_owned(), s as u64))
            .collect()
    };
    let got = |s: &PgStore, q: &Query| -> Vec<(String, u64)> {
        let mut out = Vec::new();
        s.query(q, &mut |e| {
            out.push((e.tenant_id, e.seq));
            Ok(true)
        })
        .unwrap();
        out
    };
    let queries = |rows: &[Row4]| -> Vec<Query> {
        let mid = rows[150].2;
        vec![
            Query::default(),
            Query {
                agent_id: Some("agent-3".into()),
                ..Query::default()
            },
            Query {
                tenant_id: Some("globex".into()),
                session_id: Some("sess-2".into()),
                ..Query::default()
            },
            Query {
                tool: Some("tool-1".into()),
                event_type: Some("tool_call".into()),
                start_ms: Some(mid - 3_600_000),
                end_ms: Some(mid),
                ..Query::default()
            },
            Query {
                agent_id: Some("agent-2".into()),
                limit: Some(7),
                after: Some(After {
                    ts_ms: mid,
                    tenant_id: "acme".into(),
                    seq: 150,
                }),
                ..Query::default()
            },
            Query {
                agent_id: Some("nobody".into()),
                ..Query::default()
            },
        ]
    };
    for q in queries(&rows) {
        let want = expect(&q, &rows);
        assert_eq!(got(&s, &q), want, "{q:?}");
    }
    assert!(!expect(&queries(&rows)[1], &rows).is_empty());

    // Appends after the migration are found together with what was migrated.
    let mut s = s;
    let mut more = Vec::new();
    for seq in 301..=340u64 {
        let mut e = with_sidecar("acme", seq, b"{}", b"x");
        e.personal = None;
        e.ts_ms = base + 150 * 60_000 + i64::try_from(seq).unwrap();
        e.agent_id = "agent-3".into();
        e.session_id = "sess-new".into();
        e.event_type = "tool_call".into();
        e.tool = Some("tool-1".into());
        rows.push((
            "acme",
            i64::try_from(seq).unwrap(),
            e.ts_ms,
            e.agent_id.clone(),
            e.session_id.clone(),
            "tool_call",
            e.tool.clone(),
        ));
        more.push(e);
    }
    let mut batch = s.begin().unwrap();
    batch.append("acme", &more[..20]).unwrap();
    batch.append("acme", &more[20..]).unwrap();
    batch
        .set_head(&head_after("acme", more.last().unwrap()))
        .unwrap();
    batch.commit().unwrap();
    for q in queries(&rows) {
        let want = expect(&q, &rows);
        assert_eq!(got(&s, &q), want, "{q:?}");
    }
    // One posting row per (kind, name, bucket) for the two appends of that batch.
    let new_rows: i64 = c
        .query_one("SELECT count(*) FROM postings WHERE first_seq = 301", &[])
        .unwrap()
        .get(0);
    assert_eq!(new_rows, 5, "kinds 0-4 of one bucket: one row each");
}
