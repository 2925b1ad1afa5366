//! The SQLite backend against the storage contract's conformance suite.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blackbox_store::conformance::{self, Backend};
use blackbox_store::segments::lines_dir;
use blackbox_store::sqlite::SqliteStore;
use blackbox_store::{Store, StoreError};

/// A SQLite store in a directory of its own.
struct Sqlite {
    _dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

/// A backend in a new temporary directory.
fn fresh() -> Sqlite {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    Sqlite {
        _dir: Some(dir),
        path,
    }
}

impl Backend for Sqlite {
    fn open(&mut self) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(if self.path.exists() {
            SqliteStore::open(&self.path)?
        } else {
            SqliteStore::create(&self.path)?
        }))
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = ["", "-wal", "-shm", "-journal"]
            .iter()
            .map(|s| {
                let mut p = self.path.as_os_str().to_owned();
                p.push(s);
                PathBuf::from(p)
            })
            .collect();
        if let Ok(d) = std::fs::read_dir(lines_dir(&self.path)) {
            out.extend(d.filter_map(Result::ok).map(|e| e.path()));
        }
        out
    }
}

#[test]
fn sqlite_passes_the_conformance_suite() {
    conformance::run_all(&mut fresh).unwrap();
}

#[test]
fn sqlite_queries_match_full_scans_for_other_seeds() {
    for seed in [1, 0xdead_beef, 0x1234_5678_9abc] {
        conformance::query_equivalence(&mut fresh(), seed).unwrap();
    }
}

/// Set in the child process of [`sqlite_batches_survive_a_kill_whole_or_not_at_all`]: the
/// store path the child writes to.
const CHILD_ENV: &str = "BLACKBOX_CONFORMANCE_CRASH_STORE";

/// The child side of the crash check (does nothing unless started by it).
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut b = Sqlite {
        _dir: None,
        path: PathBuf::from(path),
    };
    conformance::crash_writer(&mut b, u64::MAX, &mut |n| println!("committed {n}")).unwrap();
}

#[test]
fn sqlite_batches_survive_a_kill_whole_or_not_at_all() {
    let mut b = fresh();
    // Created before the child starts, so the child only opens it.
    drop(b.open().unwrap());
    let exe = std::env::current_exe().unwrap();
    for round in 0..3u64 {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &b.path)
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
        // Kill it at a different point each round, once it has committed some batches.
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
        // The next round starts from an empty store: the writer numbers its batches from 1.
        b = fresh();
        drop(b.open().unwrap());
    }
}
