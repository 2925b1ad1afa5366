//! The witness's durable state: per origin, the latest checkpoint it cosigned
//! (`STATE_DIR/witness.db`, SQLite, `synchronous = FULL`), and the requests it refused from logs
//! it follows (kept as evidence: a refusal can be the trace of a split view).
//!
//! One thread owns the database. Requests queue to it; it takes every request waiting (up to
//! [`GROUP`]), checks them in arrival order against the records as each earlier one left them,
//! commits them in one transaction, and only then answers: checking the old size and recording
//! the new checkpoint are one atomic step, as C2SP tlog-witness requires, and a cosignature is
//! only ever returned for a state already on disk. The thread holds `STATE_DIR/witness.lock` (an
//! exclusive `flock`): a second witness process on the same state directory is refused at start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use blackbox_core::Hash;
use blackbox_core::note::NoteVerifier;
use blackbox_core::witness::{AddCheckpoint, Refusal, WitnessRecord, check_add_checkpoint};
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use crate::WitnessError;

/// Requests checked and committed together, at most.
pub const GROUP: usize = 512;
/// Refused requests kept as evidence, at most (the oldest go first).
pub const MAX_REFUSALS_KEPT: i64 = 100_000;
/// The state file's schema version (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS logs(
    origin      TEXT PRIMARY KEY NOT NULL,
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    checkpoint  TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refusals(
    id          INTEGER PRIMARY KEY,
    at_ms       INTEGER NOT NULL,
    origin      TEXT NOT NULL,
    status      INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    request     TEXT NOT NULL
);
";

struct Job {
    req: AddCheckpoint,
    trusted: Vec<NoteVerifier>,
    now_ms: i64,
    reply: oneshot::Sender<Result<(), Refusal>>,
}

/// The witness state: a handle on the thread that owns `witness.db`.
#[derive(Debug, Clone)]
pub struct WitnessState {
    tx: mpsc::SyncSender<Job>,
    path: PathBuf,
}

/// One origin's record, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The checkpoint origin.
    pub origin: String,
    /// The latest size cosigned.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// When it was recorded (ms since the epoch).
    pub updated_ms: i64,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> WitnessError + '_ {
    move |e| WitnessError::State {
        path: path.to_owned(),
        problem: e.to_string(),
    }
}

fn open(path: &Path) -> Result<Connection, WitnessError> {
    let err = db_err(path);
    let conn = Connection::open(path).map_err(&err)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
    )
    .map_err(&err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(&err)?;
    if version > SCHEMA_VERSION {
        return Err(WitnessError::State {
            path: path.to_owned(),
            problem: format!(
                "schema version {version} is newer than this build reads ({SCHEMA_VERSION}); run a newer blackbox"
            ),
        });
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .map_err(&err)?;
    Ok(conn)
}

/// Every origin's record in the state file, checked (a root of 32 bytes, a size that fits).
fn read_records(conn: &Connection, path: &Path) -> Result<Vec<LogRecord>, WitnessError> {
    let err = db_err(path);
    let mut stmt = conn
        .prepare("SELECT origin, size, root, updated_ms FROM logs ORDER BY origin")
        .map_err(&err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(&err)?;
    let mut out = Vec::new();
    for row in rows {
        let (origin, size, root, updated_ms) = row.map_err(&err)?;
        let corrupt = |what: &str| WitnessError::State {
            path: path.to_owned(),
            problem: format!("the {what} recorded for {origin:?} is invalid"),
        };
        let root: [u8; 32] = root.try_into().map_err(|_| corrupt("root hash"))?;
        let size = u64::try_from(size).map_err(|_| corrupt("size"))?;
        out.push(LogRecord {
            origin,
            size,
            root: Hash(root),
            updated_ms,
        });
    }
    Ok(out)
}

fn load(conn: &Connection, path: &Path) -> Result<HashMap<String, WitnessRecord>, WitnessError> {
    Ok(read_records(conn, path)?
        .into_iter()
        .map(|r| {
            (
                r.origin,
                WitnessRecord {
                    size: r.size,
                    root: r.root,
                },
            )
        })
        .collect())
}

impl WitnessState {
    /// Opens (or creates) the state in `dir` and starts its thread.
    ///
    /// # Errors
    /// [`WitnessError::State`] when the directory or database cannot be used.
    pub fn open(dir: &Path) -> Result<Self, WitnessError> {
        std::fs::create_dir_all(dir).map_err(|e| WitnessError::State {
            path: dir.to_owned(),
            problem: e.to_string(),
        })?;
        let lock_path = dir.join("witness.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| WitnessError::State {
                path: lock_path.clone(),
                problem: e.to_string(),
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(WitnessError::State {
                    path: dir.to_owned(),
                    problem: "another witness is running on this state directory".into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(WitnessError::State {
                    path: lock_path,
                    problem: e.to_string(),
                });
            }
        }
        let path = dir.join("witness.db");
        let conn = open(&path)?;
        let records = load(&conn, &path)?;
        let (tx, rx) = mpsc::sync_channel::<Job>(4 * GROUP);
        let p = path.clone();
        std::thread::Builder::new()
            .name("blackbox-witness-state".into())
            .spawn(move || {
                // The lock lives as long as the thread that writes the state.
                let _lock = lock;
                run(conn, records, &rx, &p);
            })
            .map_err(|e| WitnessError::State {
                path: path.clone(),
                problem: format!("cannot start the state thread: {e}"),
            })?;
        Ok(Self { tx, path })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `req` against the record of its origin (with the log keys `trusted` for it) and,
    /// when it may be cosigned, records it durably. `Ok` means: cosign now.
    ///
    /// # Errors
    /// `Err(Ok(refusal))` for the specification's refusals, `Err(Err(_))` when the state could not
    /// be written (nothing was recorded; answer 503).
    pub async fn submit(
        &self,
        req: AddCheckpoint,
        trusted: Vec<NoteVerifier>,
        now_ms: i64,
    ) -> Result<(), Result<Refusal, WitnessError>> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            req,
            trusted,
            now_ms,
            reply,
        };
        let stopped = || {
            Err(WitnessError::State {
                path: self.path.clone(),
                problem: "the state thread stopped (a write failed); restart the witness".into(),
            })
        };
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(job)) => {
                // Wait for room without blocking the async runtime's thread.
                let tx = self.tx.clone();
                let sent = tokio::task::spawn_blocking(move || tx.send(job).is_ok()).await;
                if !matches!(sent, Ok(true)) {
                    return Err(stopped());
                }
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(r)) => Err(Ok(r)),
            Err(_) => Err(stopped()),
        }
    }

    /// Every origin's record (read from the file, so it shows what is durable).
    ///
    /// # Errors
    /// [`WitnessError::State`].
    pub fn records(dir: &Path) -> Result<Vec<LogRecord>, WitnessError> {
        let path = dir.join("witness.db");
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(db_err(&path))?;
        read_records(&conn, &path)
    }
}

fn run(
    mut conn: Connection,
    mut records: HashMap<String, WitnessRecord>,
    rx: &mpsc::Receiver<Job>,
    path: &Path,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut outcomes = Vec::with_capacity(jobs.len());
        // The records as this group leaves them; applied to `records` only after the commit.
        let mut pending: HashMap<String, WitnessRecord> = HashMap::new();
        let committed = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for job in &jobs {
                let origin = &job.req.checkpoint.checkpoint.origin;
                let current = pending.get(origin).or_else(|| records.get(origin));
                let outcome = check_add_checkpoint(&job.req, &job.trusted, current);
                match &outcome {
                    Ok(rec) => {
                        tx.prepare_cached(
                            "INSERT INTO logs(origin, size, root, checkpoint, updated_ms) \
                             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(origin) DO UPDATE SET \
                             size = excluded.size, root = excluded.root, \
                             checkpoint = excluded.checkpoint, updated_ms = excluded.updated_ms",
                        )?
                        .execute(params![
                            origin,
                            i64::try_from(rec.size).unwrap_or(i64::MAX),
                            rec.root.0.as_slice(),
                            job.req.checkpoint.note_text(),
                            job.now_ms
                        ])?;
                        pending.insert(origin.clone(), rec.clone());
                    }
                    // Requests from logs it follows, refused: kept as evidence.
                    Err(r) if r.status() != 404 && r.status() != 403 => {
                        tx.prepare_cached(
                            "INSERT INTO refusals(at_ms, origin, status, reason, request) \
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )?
                        .execute(params![
                            job.now_ms,
                            origin,
                            r.status(),
                            r.to_string(),
                            job.req.to_text()
                        ])?;
                    }
                    Err(_) => {}
                }
                outcomes.push(outcome);
            }
            tx.execute(
                "DELETE FROM refusals WHERE id <= (SELECT MAX(id) FROM refusals) - ?1",
                params![MAX_REFUSALS_KEPT],
            )?;
            tx.commit()
        })();
        match committed {
            Ok(()) => {
                records.extend(pending);
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome.map(|_| ()));
                }
            }
            Err(e) => {
                // Nothing of the group is recorded: its callers get an error (503), and the
                // thread stops so that no later request is checked against a state that may
                // not be what the disk holds.
                tracing::error!(path = %path.display(), error = %e, "the witness state could not be written; stopping");
                return;
            }
        }
    }
}

/// The latest record of `origin` in the state file, if any (read-only; for tests and `status`).
///
/// # Errors
/// [`WitnessError::State`].
pub fn record_of(dir: &Path, origin: &str) -> Result<Option<(u64, Hash)>, WitnessError> {
    Ok(WitnessState::records(dir)?
        .into_iter()
        .find(|r| r.origin == origin)
        .map(|r| (r.size, r.root)))
}
