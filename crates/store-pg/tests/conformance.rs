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
}

fn fresh(what: &str) -> Pg {
    let db = Scratch::new(what);
    Pg {
        url: db.url.clone(),
        _db: Some(db),
    }
}

impl Backend for Pg {
    fn open(&mut self) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(PgStore::open(&self.url, &PgOptions::default())?))
    }

    fn files(&self) -> Vec<PathBuf> {
        Vec::new()
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
