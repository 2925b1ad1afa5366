//! The embedded SQLite store.
//!
//! One file holds every tenant chain. The database runs in WAL mode with `synchronous=FULL`, so a
//! committed [`WriteBatch`] has been fsynced to the write-ahead log before `commit` returns, and
//! readers (other connections, `blackbox verify`) keep reading the last committed state while a
//! writer works. Writers take the database's write lock with `BEGIN IMMEDIATE` and so serialise;
//! a writer that cannot get the lock within [`BUSY_TIMEOUT`] fails with [`StoreError::Busy`].
//!
//! ## Schema (version [`SCHEMA_VERSION`])
//!
//! - `chains`: one row per tenant chain and its head. `chain_id` is a small integer that the other
//!   tables use instead of the tenant string.
//! - `entries`: one row per entry. The integer primary key packs the chain and the sequence
//!   number, `chain_id << 40 | seq`, so the row id itself is the `(chain, seq)` key: appends go to
//!   the end of the table's B-tree, a chain scan is a row-id range scan, and no separate
//!   `(chain, seq)` index has to be maintained. Every secondary index ends, implicitly, with that
//!   row id, i.e. with `seq`, so `ORDER BY ts_ms, id` is answered straight from an index. The
//!   layout limits a chain to 2^40 - 1 entries and a store to 2^23 - 1 chains.
//! - `names`: a dictionary of the agent, session, event type and tool strings. `entries` stores
//!   their small integer ids, which keeps the four filter indexes compact (measured: about 20 %
//!   faster bulk appends and an 18 % smaller file than storing the strings in every row and index).
//! - `personal` and `personal_subjects`: erasable personal-data sidecars and the data-subject ids
//!   they reference, kept apart from the entries so that erasure deletes whole rows.
//! - `checkpoints`, `merkle_nodes` and `meta`.
//!
//! `entries_view` shows entries with their tenant, seq and strings, for ad-hoc inspection with
//! the `sqlite3` shell.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use blackbox_core::Hash;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{
    CachedStatement, Connection, OpenFlags, OptionalExtension as _, Row, Transaction,
    TransactionBehavior, params, params_from_iter,
};

use crate::{
    ChainHead, NewEntry, Query, Store, StoreError, StoredCheckpoint, StoredEntry, TenantRef,
    WriteBatch,
};

/// Schema version written to `PRAGMA user_version`. Stores with another version are refused.
pub const SCHEMA_VERSION: u32 = 1;

/// `PRAGMA application_id` of a Blackbox store ("BLBX"), so that other SQLite files are
/// recognised as not being stores.
pub const APPLICATION_ID: i32 = 0x424C_4258;

/// How long a writer waits for another writer's lock before failing with [`StoreError::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Page cache per connection, in KiB (SQLite's negative `cache_size`).
const CACHE_SIZE_KIB: i64 = 64 * 1024;

/// The WAL file is truncated to this size after a checkpoint (big batches would otherwise leave
/// a WAL file as large as the biggest batch).
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Bits of the entry key that hold the seq; the chain id is in the bits above.
const SEQ_BITS: u32 = 40;
/// Largest seq a chain can hold.
const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;
/// Largest chain id (the entry key must stay a positive i64).
const MAX_CHAIN_ID: i64 = (1 << (63 - SEQ_BITS)) - 1;

/// Most dictionary names remembered between batches (the cache is cleared when it grows past).
const NAME_CACHE_LIMIT: usize = 100_000;

const SCHEMA: &str = r"
CREATE TABLE meta(
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE chains(
    chain_id             INTEGER PRIMARY KEY,
    tenant_id            TEXT NOT NULL UNIQUE,
    size                 INTEGER NOT NULL,
    head_hash            BLOB NOT NULL,
    last_entry_id        BLOB NOT NULL,
    merkle_state         BLOB NOT NULL,
    last_checkpoint_size INTEGER NOT NULL,
    last_checkpoint_ms   INTEGER NOT NULL
);

-- Agent, session, event type and tool strings, referenced by id from entries.
CREATE TABLE names(
    name_id INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE
);

-- id = chain_id << 40 | seq. No foreign keys here: checking them would cost five look-ups per
-- appended entry, and only this module writes the table.
CREATE TABLE entries(
    id         INTEGER PRIMARY KEY,
    chain_id   INTEGER NOT NULL,
    seq        INTEGER,
    ts_ms      INTEGER NOT NULL,
    entry_id   BLOB NOT NULL,
    entry_hash BLOB NOT NULL,
    agent      INTEGER NOT NULL,
    session    INTEGER NOT NULL,
    event_type INTEGER NOT NULL,
    tool       INTEGER,
    line       BLOB NOT NULL
);
CREATE UNIQUE INDEX entries_entry_id ON entries(entry_id);
CREATE INDEX entries_ts      ON entries(chain_id, ts_ms);
CREATE INDEX entries_agent   ON entries(chain_id, agent, ts_ms);
CREATE INDEX entries_session ON entries(chain_id, session, ts_ms);
CREATE INDEX entries_event   ON entries(chain_id, event_type, ts_ms);
CREATE INDEX entries_tool    ON entries(chain_id, tool, ts_ms) WHERE tool IS NOT NULL;

CREATE TABLE personal(
    id      INTEGER PRIMARY KEY REFERENCES entries(id),
    sidecar BLOB NOT NULL
);
CREATE TABLE personal_subjects(
    id         INTEGER NOT NULL REFERENCES personal(id),
    subject_id TEXT NOT NULL,
    PRIMARY KEY(id, subject_id)
) WITHOUT ROWID;
CREATE INDEX personal_subjects_subject ON personal_subjects(subject_id);

CREATE TABLE checkpoints(
    checkpoint_id INTEGER PRIMARY KEY,
    chain_id      INTEGER NOT NULL REFERENCES chains(chain_id),
    size          INTEGER NOT NULL,
    ts_ms         INTEGER NOT NULL,
    note          TEXT NOT NULL
);
CREATE INDEX checkpoints_size ON checkpoints(chain_id, size, ts_ms);
CREATE INDEX checkpoints_ts   ON checkpoints(chain_id, ts_ms, size);

CREATE TABLE merkle_nodes(
    chain_id INTEGER NOT NULL,
    level    INTEGER NOT NULL,
    idx      INTEGER NOT NULL,
    hash     BLOB NOT NULL,
    PRIMARY KEY(chain_id, level, idx)
) WITHOUT ROWID;

CREATE VIEW entries_view AS
SELECT c.tenant_id, e.id & 1099511627775 AS seq, e.ts_ms, lower(hex(e.entry_id)) AS entry_id,
       lower(hex(e.entry_hash)) AS entry_hash, a.name AS agent_id, s.name AS session_id,
       v.name AS event_type, t.name AS tool, CAST(e.line AS TEXT) AS line
FROM entries e
JOIN chains c ON c.chain_id = e.chain_id
JOIN names a ON a.name_id = e.agent
JOIN names s ON s.name_id = e.session
JOIN names v ON v.name_id = e.event_type
LEFT JOIN names t ON t.name_id = e.tool;
";

/// A Blackbox store in one SQLite file. See the [module docs](self) for the layout.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    /// Committed dictionary names and their ids (names are never deleted, so this cannot go
    /// stale; names added by a batch join it only when the batch commits).
    names: HashMap<String, i64>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .field("cached_names", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Creates a new, empty store at `path`.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if a file exists at `path`; I/O and SQLite failures (the
    /// partly created file is then removed).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        // create_new makes creation exclusive even if two processes race.
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists {
                    path: path.display().to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        match Self::init_new(path) {
            Ok(store) => Ok(store),
            Err(e) => {
                // Best effort: the file is ours and useless; leaving it would make the next
                // `create` fail with AlreadyExists.
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
                Err(e)
            }
        }
    }

    fn init_new(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn, false)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        if let Ok(extra) = std::env::var("BB_SCHEMA") {
            tx.execute_batch(&extra)?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(Self::from_conn(conn, path, false))
    }

    /// Opens an existing store for reading and writing.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if there is no file at `path`; [`StoreError::NotAStore`] if the
    /// file is not a Blackbox store; [`StoreError::Schema`] if it was written by an incompatible
    /// version; SQLite failures.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(
            path.as_ref(),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            false,
        )
    }

    /// Opens an existing store read-only (for verification and queries). [`Store::begin`] and
    /// [`Store::delete_personal`] then fail with [`StoreError::ReadOnly`].
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(
            path.as_ref(),
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            true,
        )
    }

    fn open_with(path: &Path, flags: OpenFlags, read_only: bool) -> Result<Self, StoreError> {
        let not_found = || StoreError::NotFound {
            path: path.display().to_string(),
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(not_found()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(e.into()),
        }
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Check what the file is before changing any of its settings (journal mode is persistent).
        let not_a_store = || StoreError::NotAStore {
            path: path.display().to_string(),
        };
        let app_id: i32 = match conn.pragma_query_value(None, "application_id", |r| r.get(0)) {
            Ok(id) => id,
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
                return Err(not_a_store());
            }
            Err(e) => return Err(e.into()),
        };
        if app_id != APPLICATION_ID {
            return Err(not_a_store());
        }
        let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Schema {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        configure(&conn, read_only)?;
        Ok(Self::from_conn(conn, path, read_only))
    }

    fn from_conn(conn: Connection, path: &Path, read_only: bool) -> Self {
        conn.set_prepared_statement_cache_capacity(64);
        Self {
            conn,
            path: path.to_path_buf(),
            read_only,
            names: HashMap::new(),
        }
    }

    /// The path the store was opened from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes how long [`Store::begin`] waits for another writer before failing with
    /// [`StoreError::Busy`] (default [`BUSY_TIMEOUT`]).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn set_busy_timeout(&mut self, timeout: Duration) -> Result<(), StoreError> {
        self.conn.busy_timeout(timeout)?;
        Ok(())
    }

    /// Whether the store was opened with [`SqliteStore::open_read_only`].
    #[must_use]
    pub const fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The chain id and tenant of `tenant`, if the chain exists.
    fn chain_id(&self, tenant: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT chain_id FROM chains WHERE tenant_id = ?1")?
            .query_row([tenant], |r| r.get(0))
            .optional()?)
    }

    /// The id of a dictionary name, if stored.
    fn lookup_name(&self, name: &str) -> Result<Option<i64>, StoreError> {
        if let Some(&id) = self.names.get(name) {
            return Ok(Some(id));
        }
        Ok(self
            .conn
            .prepare_cached("SELECT name_id FROM names WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    /// The chains a query runs over, ordered by tenant id.
    fn query_chains(&self, q: &Query) -> Result<Vec<(i64, String)>, StoreError> {
        if let Some(tenant) = &q.tenant_id {
            return Ok(self
                .chain_id(tenant)?
                .map(|id| vec![(id, tenant.clone())])
                .unwrap_or_default());
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT chain_id, tenant_id FROM chains ORDER BY tenant_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Resolves the filters of `q`. `None` when a filter names a string that is not stored at
    /// all (so nothing can match).
    fn query_plan(&self, q: &Query) -> Result<Option<QueryPlan>, StoreError> {
        let mut filters = Vec::new();
        for (filter, column, index) in [
            (&q.session_id, "session", "entries_session"),
            (&q.agent_id, "agent", "entries_agent"),
            (&q.tool, "tool", "entries_tool"),
            (&q.event_type, "event_type", "entries_event"),
        ] {
            if let Some(name) = filter {
                let Some(name_id) = self.lookup_name(name)? else {
                    return Ok(None);
                };
                filters.push(Filter {
                    column,
                    index,
                    name_id,
                });
            }
        }
        Ok(Some(QueryPlan {
            filters,
            start_ms: q.start_ms,
            end_ms: q.end_ms,
            limit: q.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
        }))
    }

    /// The index to read a chain through when several filters are set: the one whose matching
    /// range is smallest (counted up to [`INDEX_PROBE_CAP`] entries each, in index-only scans).
    /// SQLite's planner cannot tell which of two equality filters is more selective without
    /// statistics, and would otherwise pick one arbitrarily.
    fn choose_index(
        &self,
        plan: &QueryPlan,
        chain: i64,
    ) -> Result<Option<&'static str>, StoreError> {
        if plan.filters.len() < 2 {
            return Ok(None);
        }
        let mut best: Option<(i64, &'static str)> = None;
        for f in &plan.filters {
            let mut sql = format!(
                "SELECT count(*) FROM (SELECT 1 FROM entries INDEXED BY {} \
                 WHERE chain_id = ?1 AND {} = ?2",
                f.index, f.column
            );
            let mut values = vec![Value::Integer(chain), Value::Integer(f.name_id)];
            plan.push_time_bounds(&mut sql, &mut values, "");
            values.push(Value::Integer(INDEX_PROBE_CAP));
            sql.push_str(&format!(" LIMIT ?{})", values.len()));
            let n: i64 = self
                .conn
                .prepare_cached(&sql)?
                .query_row(params_from_iter(values.iter()), |r| r.get(0))?;
            // Ties go to the earlier filter (session, agent, tool, event type).
            if best.is_none_or(|(m, _)| n < m) {
                best = Some((n, f.index));
            }
        }
        Ok(best.map(|(_, index)| index))
    }

    /// The SQL and parameters reading `plan`'s entries of one chain in (ts_ms, seq) order.
    fn chain_sql(&self, plan: &QueryPlan, chain: i64) -> Result<(String, Vec<Value>), StoreError> {
        let indexed_by = match self.choose_index(plan, chain)? {
            Some(index) => format!(" INDEXED BY {index}"),
            None => String::new(),
        };
        let mut sql = format!(
            "SELECT e.id, e.entry_hash, e.line, p.sidecar, e.ts_ms \
             FROM entries e{indexed_by} LEFT JOIN personal p ON p.id = e.id \
             WHERE e.chain_id = ?1"
        );
        let mut values = vec![Value::Integer(chain)];
        for f in &plan.filters {
            values.push(Value::Integer(f.name_id));
            sql.push_str(&format!(" AND e.{} = ?{}", f.column, values.len()));
        }
        plan.push_time_bounds(&mut sql, &mut values, "e.");
        // Every index used above ends with the row id, whose low bits are the seq, so this
        // order comes straight from the index (no sort).
        sql.push_str(" ORDER BY e.ts_ms, e.id");
        if let Some(limit) = plan.limit {
            values.push(Value::Integer(limit));
            sql.push_str(&format!(" LIMIT ?{}", values.len()));
        }
        Ok((sql, values))
    }
}

static GLOBAL: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);

/// Entries counted per candidate index when choosing between filters (see
/// [`SqliteStore::choose_index`]).
const INDEX_PROBE_CAP: i64 = 10_000;

/// An equality filter on a dictionary column.
#[derive(Debug)]
struct Filter {
    column: &'static str,
    index: &'static str,
    name_id: i64,
}

/// A query with its strings resolved to dictionary ids.
#[derive(Debug)]
struct QueryPlan {
    filters: Vec<Filter>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    limit: Option<i64>,
}

impl QueryPlan {
    fn push_time_bounds(&self, sql: &mut String, values: &mut Vec<Value>, prefix: &str) {
        if let Some(start) = self.start_ms {
            values.push(Value::Integer(start));
            sql.push_str(&format!(" AND {prefix}ts_ms >= ?{}", values.len()));
        }
        if let Some(end) = self.end_ms {
            values.push(Value::Integer(end));
            sql.push_str(&format!(" AND {prefix}ts_ms <= ?{}", values.len()));
        }
    }
}

/// Applies the per-connection settings.
fn configure(conn: &Connection, read_only: bool) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB)?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
    } else {
        // Returns the resulting mode; a file system without shared memory keeps the rollback
        // journal, which is just as durable with synchronous=FULL.
        // Larger pages hold more ~1 KiB entry rows each: fewer splits and WAL frames per entry
        // (bench/run.sh: append ~20% faster than 4 KiB). Only takes effect on a new, empty file.
        conn.pragma_update(None, "page_size", 16384)?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        // Deleted personal data is overwritten in the database file rather than left in free
        // pages. Deletes are rare, so this costs nothing on the append path.
        conn.pragma_update(None, "secure_delete", "ON")?;
        if let Ok(extra) = std::env::var("BB_PRAGMAS") {
            conn.execute_batch(&extra)?;
        }
    }
    Ok(())
}

// ---- encoding helpers ------------------------------------------------------------------------

/// The entry key of `seq` in chain `chain_id` (`seq <= MAX_SEQ`, `chain_id <= MAX_CHAIN_ID`).
const fn entry_key(chain_id: i64, seq: u64) -> i64 {
    (chain_id << SEQ_BITS) | (seq & MAX_SEQ) as i64
}

/// The seq of an entry key.
const fn key_seq(key: i64) -> u64 {
    (key as u64) & MAX_SEQ
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt { what: what.into() }
}

fn invalid(what: impl Into<String>) -> StoreError {
    StoreError::Invalid { what: what.into() }
}

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| invalid(format!("{what} {v} is larger than the store can hold")))
}

fn col_i64(row: &Row<'_>, idx: usize, what: &str) -> Result<i64, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Integer(v) => Ok(v),
        _ => Err(corrupt(format!("{what} is not an integer"))),
    }
}

fn col_u64(row: &Row<'_>, idx: usize, what: &str) -> Result<u64, StoreError> {
    let v = col_i64(row, idx, what)?;
    u64::try_from(v).map_err(|_| corrupt(format!("{what} is negative ({v})")))
}

fn col_blob<'r>(row: &'r Row<'_>, idx: usize, what: &str) -> Result<&'r [u8], StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Blob(b) => Ok(b),
        _ => Err(corrupt(format!("{what} is not a blob"))),
    }
}

fn col_opt_blob(row: &Row<'_>, idx: usize, what: &str) -> Result<Option<Vec<u8>>, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(b) => Ok(Some(b.to_vec())),
        _ => Err(corrupt(format!("{what} is not a blob"))),
    }
}

fn col_text(row: &Row<'_>, idx: usize, what: &str) -> Result<String, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Text(t) => {
            String::from_utf8(t.to_vec()).map_err(|_| corrupt(format!("{what} is not valid UTF-8")))
        }
        _ => Err(corrupt(format!("{what} is not text"))),
    }
}

fn col_hash(row: &Row<'_>, idx: usize, what: &str) -> Result<Hash, StoreError> {
    let b = col_blob(row, idx, what)?;
    <[u8; 32]>::try_from(b)
        .map(Hash)
        .map_err(|_| corrupt(format!("{what} is {} bytes long, not 32", b.len())))
}

fn col_id16(row: &Row<'_>, idx: usize, what: &str) -> Result<[u8; 16], StoreError> {
    let b = col_blob(row, idx, what)?;
    <[u8; 16]>::try_from(b)
        .map_err(|_| corrupt(format!("{what} is {} bytes long, not 16", b.len())))
}

const HEAD_COLUMNS: &str = "tenant_id, size, head_hash, last_entry_id, merkle_state, \
                            last_checkpoint_size, last_checkpoint_ms";

fn read_head(row: &Row<'_>) -> Result<ChainHead, StoreError> {
    let tenant_id = col_text(row, 0, "a chain's tenant id")?;
    let what = |c: &str| format!("column {c} of the chain of tenant {tenant_id:?}");
    Ok(ChainHead {
        size: col_u64(row, 1, &what("size"))?,
        head_hash: col_hash(row, 2, &what("head_hash"))?,
        last_entry_id: col_id16(row, 3, &what("last_entry_id"))?,
        merkle_state: col_blob(row, 4, &what("merkle_state"))?.to_vec(),
        last_checkpoint_size: col_u64(row, 5, &what("last_checkpoint_size"))?,
        last_checkpoint_ms: col_i64(row, 6, &what("last_checkpoint_ms"))?,
        tenant_id,
    })
}

/// Reads `(key, entry_hash, line, sidecar)` starting at column `first`.
fn read_entry(row: &Row<'_>, tenant: &str, first: usize) -> Result<StoredEntry, StoreError> {
    let key = col_i64(row, first, "an entry key")?;
    let seq = key_seq(key);
    let what = |c: &str| format!("{c} of entry {seq} of tenant {tenant:?}");
    Ok(StoredEntry {
        tenant_id: tenant.to_owned(),
        seq,
        entry_hash: col_hash(row, first + 1, &what("the entry hash"))?,
        line: col_blob(row, first + 2, &what("the line"))?.to_vec(),
        personal: col_opt_blob(row, first + 3, &what("the personal sidecar"))?,
    })
}

fn read_checkpoint(row: &Row<'_>, tenant: &str) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        tenant_id: tenant.to_owned(),
        size: col_u64(row, 0, "a checkpoint size")?,
        ts_ms: col_i64(row, 1, "a checkpoint time")?,
        note: col_text(row, 2, "a checkpoint note")?,
    })
}

/// Merge order of query rows: `(ts_ms, rank of the tenant, seq)`.
type MergeKey = (i64, usize, u64);

/// One chain's stream in a merged query.
struct Cursor<'s> {
    rows: rusqlite::Rows<'s>,
    /// Position of the chain in tenant order (the tie-breaker after `ts_ms`).
    rank: usize,
    tenant: String,
}

impl Cursor<'_> {
    /// The next row as `((ts_ms, rank, seq), entry)`.
    fn next(&mut self) -> Result<Option<(MergeKey, StoredEntry)>, StoreError> {
        let Some(row) = self.rows.next()? else {
            return Ok(None);
        };
        let ts = col_i64(row, 4, "an entry time")?;
        let entry = read_entry(row, &self.tenant, 0)?;
        Ok(Some(((ts, self.rank, entry.seq), entry)))
    }
}

impl Store for SqliteStore {
    fn begin(&mut self) -> Result<Box<dyn WriteBatch + '_>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Ok(Box::new(SqliteBatch {
            tx,
            names: &mut self.names,
            new_names: HashMap::new(),
            chains: HashMap::new(),
        }))
    }

    fn chains(&self) -> Result<Vec<ChainHead>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {HEAD_COLUMNS} FROM chains ORDER BY tenant_id"
        ))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read_head(row)?);
        }
        Ok(out)
    }

    fn scan(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let from = from_seq.max(1);
        let to = to_seq.min(MAX_SEQ);
        if from > to {
            return Ok(());
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, e.entry_hash, e.line, p.sidecar \
             FROM entries e LEFT JOIN personal p ON p.id = e.id \
             WHERE e.id BETWEEN ?1 AND ?2 ORDER BY e.id",
        )?;
        let mut rows = stmt.query(params![entry_key(chain, from), entry_key(chain, to)])?;
        while let Some(row) = rows.next()? {
            if !f(read_entry(row, tenant, 0)?)? {
                break;
            }
        }
        Ok(())
    }

    fn query(
        &self,
        q: &Query,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if q.limit == Some(0) {
            return Ok(());
        }
        if let (Some(start), Some(end)) = (q.start_ms, q.end_ms)
            && start > end
        {
            return Ok(());
        }
        let chains = self.query_chains(q)?;
        if chains.is_empty() {
            return Ok(());
        }
        let Some(plan) = self.query_plan(q)? else {
            return Ok(());
        };
        let mut remaining = q.limit.unwrap_or(u64::MAX);

        if let [(chain, tenant)] = chains.as_slice() {
            // One chain: stream the rows as they come.
            let (sql, values) = self.chain_sql(&plan, *chain)?;
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(params_from_iter(values.iter()))?;
            while let Some(row) = rows.next()? {
                remaining -= 1;
                if !f(read_entry(row, tenant, 0)?)? || remaining == 0 {
                    break;
                }
            }
            return Ok(());
        }

        // Several chains: each one's rows come from its indexes in (ts_ms, seq) order; merge
        // them by (ts_ms, tenant, seq), holding one pending row per chain. A read transaction
        // makes all the chains' statements read the same snapshot (unless the caller is already
        // inside one, e.g. querying from a callback). Declared first, it ends after them.
        let _snapshot = if self.conn.is_autocommit() {
            Some(self.conn.unchecked_transaction()?)
        } else {
            None
        };
        let sqls: Vec<(String, Vec<Value>)> = chains
            .iter()
            .map(|(chain, _)| self.chain_sql(&plan, *chain))
            .collect::<Result<_, _>>()?;
        let mut stmts: Vec<CachedStatement<'_>> = sqls
            .iter()
            .map(|(sql, _)| self.conn.prepare_cached(sql))
            .collect::<Result<_, _>>()?;
        let mut cursors = Vec::with_capacity(chains.len());
        for (rank, ((stmt, (_, values)), (_, tenant))) in
            stmts.iter_mut().zip(&sqls).zip(&chains).enumerate()
        {
            cursors.push(Cursor {
                rows: stmt.query(params_from_iter(values.iter()))?,
                rank,
                tenant: tenant.clone(),
            });
        }
        let mut pending: Vec<Option<StoredEntry>> = Vec::with_capacity(cursors.len());
        let mut heap = BinaryHeap::with_capacity(cursors.len());
        for cursor in &mut cursors {
            match cursor.next()? {
                Some((key, entry)) => {
                    heap.push(Reverse(key));
                    pending.push(Some(entry));
                }
                None => pending.push(None),
            }
        }
        while let Some(Reverse((_, rank, _))) = heap.pop() {
            let Some(entry) = pending.get_mut(rank).and_then(Option::take) else {
                return Err(invalid("query merge lost its place (internal error)"));
            };
            remaining -= 1;
            if !f(entry)? || remaining == 0 {
                break;
            }
            if let Some(cursor) = cursors.get_mut(rank)
                && let Some((key, entry)) = cursor.next()?
            {
                heap.push(Reverse(key));
                if let Some(slot) = pending.get_mut(rank) {
                    *slot = Some(entry);
                }
            }
        }
        Ok(())
    }

    fn entry_by_id(&self, entry_id: &[u8; 16]) -> Result<Option<StoredEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.tenant_id, e.id, e.entry_hash, e.line, p.sidecar \
             FROM entries e JOIN chains c ON c.chain_id = e.chain_id \
             LEFT JOIN personal p ON p.id = e.id \
             WHERE e.entry_id = ?1",
        )?;
        let mut rows = stmt.query([entry_id])?;
        match rows.next()? {
            Some(row) => {
                let tenant = col_text(row, 0, "a chain's tenant id")?;
                Ok(Some(read_entry(row, &tenant, 1)?))
            }
            None => Ok(None),
        }
    }

    fn entry_hashes(
        &self,
        tenant: TenantRef<'_>,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let from = first_seq.max(1);
        let to = last_seq.min(MAX_SEQ);
        if from > to {
            return Ok(Vec::new());
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, entry_hash FROM entries WHERE id BETWEEN ?1 AND ?2 ORDER BY id",
        )?;
        let mut rows = stmt.query(params![entry_key(chain, from), entry_key(chain, to)])?;
        let mut out = Vec::with_capacity(usize::try_from(to - from + 1).unwrap_or(0).min(1 << 20));
        while let Some(row) = rows.next()? {
            let seq = key_seq(col_i64(row, 0, "an entry key")?);
            out.push(col_hash(
                row,
                1,
                &format!("the entry hash of entry {seq} of tenant {tenant:?}"),
            )?);
        }
        Ok(out)
    }

    fn nodes(
        &self,
        tenant: TenantRef<'_>,
        level: u8,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Hash)>, StoreError> {
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let (Ok(first), last) = (
            i64::try_from(first),
            i64::try_from(last).unwrap_or(i64::MAX),
        ) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT idx, hash FROM merkle_nodes \
             WHERE chain_id = ?1 AND level = ?2 AND idx BETWEEN ?3 AND ?4 ORDER BY idx",
        )?;
        let mut rows = stmt.query(params![chain, level, first, last])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let idx = col_u64(row, 0, "a Merkle node index")?;
            let what = format!("Merkle node {level}/{idx} of tenant {tenant:?}");
            out.push((idx, col_hash(row, 1, &what)?));
        }
        Ok(out)
    }

    fn checkpoints(&self, tenant: TenantRef<'_>) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT size, ts_ms, note FROM checkpoints WHERE chain_id = ?1 \
             ORDER BY size, ts_ms, checkpoint_id",
        )?;
        let mut rows = stmt.query([chain])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read_checkpoint(row, tenant)?);
        }
        Ok(out)
    }

    fn latest_checkpoint(
        &self,
        tenant: TenantRef<'_>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT size, ts_ms, note FROM checkpoints WHERE chain_id = ?1 \
             ORDER BY ts_ms DESC, size DESC, checkpoint_id DESC LIMIT 1",
        )?;
        let mut rows = stmt.query([chain])?;
        match rows.next()? {
            Some(row) => Ok(Some(read_checkpoint(row, tenant)?)),
            None => Ok(None),
        }
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
        let mut rows = stmt.query([key])?;
        match rows.next()? {
            Some(row) => Ok(Some(col_text(row, 0, &format!("meta value {key:?}"))?)),
            None => Ok(None),
        }
    }

    fn delete_personal(&mut self, tenant: TenantRef<'_>, seqs: &[u64]) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(());
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut del_subjects =
                tx.prepare_cached("DELETE FROM personal_subjects WHERE id = ?1")?;
            let mut del_personal = tx.prepare_cached("DELETE FROM personal WHERE id = ?1")?;
            for &seq in seqs {
                if seq == 0 || seq > MAX_SEQ {
                    continue;
                }
                let key = entry_key(chain, seq);
                del_subjects.execute([key])?;
                del_personal.execute([key])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn entries_for_subject(&self, subject_id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.tenant_id, s.id FROM personal_subjects s \
             JOIN chains c ON c.chain_id = (s.id >> 40) \
             WHERE s.subject_id = ?1 ORDER BY c.tenant_id, s.id",
        )?;
        let mut rows = stmt.query([subject_id])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let tenant = col_text(row, 0, "a chain's tenant id")?;
            let seq = key_seq(col_i64(row, 1, "an entry key")?);
            out.push((tenant, seq));
        }
        Ok(out)
    }
}

// ---- write batches ---------------------------------------------------------------------------

/// What a batch knows about one chain it has touched.
#[derive(Debug)]
struct ChainState {
    chain_id: i64,
    /// Entries stored, including this batch's appends (= seq of the last entry).
    len: u64,
    /// Size of the head as recorded (committed, or set in this batch).
    head_size: u64,
    /// Whether the chain has a recorded head (false for a chain this batch created and has not
    /// yet called `set_head` for).
    has_head: bool,
    /// Whether this batch appended to or created the chain (its head must then be set to `len`
    /// before commit).
    dirty: bool,
}

/// A [`WriteBatch`] over one SQLite `BEGIN IMMEDIATE` transaction.
#[derive(Debug)]
struct SqliteBatch<'a> {
    tx: Transaction<'a>,
    /// The store's committed-name cache.
    names: &'a mut HashMap<String, i64>,
    /// Names looked up or added by this batch (moved into `names` on commit).
    new_names: HashMap<String, i64>,
    chains: HashMap<String, ChainState>,
}

/// Dictionary ids of one entry's strings.
struct NameIds {
    agent: i64,
    session: i64,
    event_type: i64,
    tool: Option<i64>,
}

impl SqliteBatch<'_> {
    /// The state of `tenant`'s chain; with `create`, a missing chain is created (without a head).
    fn chain(&mut self, tenant: &str, create: bool) -> Result<Option<&mut ChainState>, StoreError> {
        if !self.chains.contains_key(tenant) {
            let row: Option<(i64, i64)> = self
                .tx
                .prepare_cached("SELECT chain_id, size FROM chains WHERE tenant_id = ?1")?
                .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let state = if let Some((chain_id, size)) = row {
                let head_size = u64::try_from(size).map_err(|_| {
                    corrupt(format!("the chain of tenant {tenant:?} has size {size}"))
                })?;
                // Count what is stored rather than trusting the head.
                let last: Option<i64> = self
                    .tx
                    .prepare_cached("SELECT max(id) FROM entries WHERE id BETWEEN ?1 AND ?2")?
                    .query_row(
                        params![entry_key(chain_id, 1), entry_key(chain_id, MAX_SEQ)],
                        |r| r.get(0),
                    )?;
                ChainState {
                    chain_id,
                    len: last.map_or(0, key_seq),
                    head_size,
                    has_head: true,
                    dirty: false,
                }
            } else if create {
                let chain_id: i64 = self
                    .tx
                    .prepare_cached(
                        "INSERT INTO chains(tenant_id, size, head_hash, last_entry_id, \
                         merkle_state, last_checkpoint_size, last_checkpoint_ms) \
                         VALUES (?1, 0, zeroblob(32), zeroblob(16), x'', 0, 0) \
                         RETURNING chain_id",
                    )?
                    .query_row([tenant], |r| r.get(0))?;
                if chain_id > MAX_CHAIN_ID {
                    return Err(invalid(format!(
                        "this store cannot hold more than {MAX_CHAIN_ID} chains"
                    )));
                }
                ChainState {
                    chain_id,
                    len: 0,
                    head_size: 0,
                    has_head: false,
                    dirty: true,
                }
            } else {
                return Ok(None);
            };
            self.chains.insert(tenant.to_owned(), state);
        }
        Ok(self.chains.get_mut(tenant))
    }

    /// The dictionary id of `name`, adding it if needed.
    fn name_id(&mut self, name: &str) -> Result<i64, StoreError> {
        if let Some(&id) = self.names.get(name).or_else(|| self.new_names.get(name)) {
            return Ok(id);
        }
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT name_id FROM names WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => self
                .tx
                .prepare_cached("INSERT INTO names(name) VALUES (?1) RETURNING name_id")?
                .query_row([name], |r| r.get(0))?,
        };
        self.new_names.insert(name.to_owned(), id);
        Ok(id)
    }
}

impl WriteBatch for SqliteBatch<'_> {
    fn chain_head(&mut self, tenant: TenantRef<'_>) -> Result<Option<ChainHead>, StoreError> {
        match self.chain(tenant, false)? {
            Some(state) if state.has_head => {}
            _ => return Ok(None),
        }
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {HEAD_COLUMNS} FROM chains WHERE tenant_id = ?1"
        ))?;
        let mut rows = stmt.query([tenant])?;
        match rows.next()? {
            Some(row) => Ok(Some(read_head(row)?)),
            None => Ok(None),
        }
    }

    fn append(&mut self, tenant: TenantRef<'_>, entries: &[NewEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        // Check the whole call before writing anything.
        let len = self.chain(tenant, false)?.map_or(0, |s| s.len);
        for (expected, e) in (len + 1..).zip(entries) {
            if e.seq != expected {
                return Err(StoreError::SeqConflict {
                    tenant: tenant.to_owned(),
                    expected,
                    got: e.seq,
                });
            }
            if e.seq > MAX_SEQ {
                return Err(invalid(format!(
                    "seq {} is beyond this store's limit of {MAX_SEQ} entries per chain",
                    e.seq
                )));
            }
        }
        let mut ids = Vec::with_capacity(entries.len());
        for e in entries {
            ids.push(NameIds {
                agent: self.name_id(&e.agent_id)?,
                session: self.name_id(&e.session_id)?,
                event_type: self.name_id(&e.event_type)?,
                tool: e.tool.as_deref().map(|t| self.name_id(t)).transpose()?,
            });
        }
        let chain_id = match self.chain(tenant, true)? {
            Some(state) => state.chain_id,
            None => return Err(invalid("chain creation failed (internal error)")),
        };

        // A savepoint makes the call all-or-nothing within the batch (a duplicate entry id
        // half-way leaves the batch as it was).
        let nosp = std::env::var_os("BB_NOSP").is_some();
        let global = std::env::var_os("BB_G").is_some();
        if !nosp {
            self.tx.execute_batch("SAVEPOINT sp")?;
        }
        let sp = &self.tx;
        {
            let mut insert = sp.prepare_cached(
                "INSERT INTO entries(id, chain_id, ts_ms, entry_id, entry_hash, agent, session, \
                 event_type, tool, line, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut insert_personal =
                sp.prepare_cached("INSERT INTO personal(id, sidecar) VALUES (?1, ?2)")?;
            let mut insert_subject = sp.prepare_cached(
                "INSERT OR IGNORE INTO personal_subjects(id, subject_id) VALUES (?1, ?2)",
            )?;
            for (e, n) in entries.iter().zip(&ids) {
                let key = if global {
                    GLOBAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                } else {
                    entry_key(chain_id, e.seq)
                };
                let res = insert.execute(params![
                    key,
                    chain_id,
                    e.ts_ms,
                    e.entry_id,
                    e.entry_hash.0,
                    n.agent,
                    n.session,
                    n.event_type,
                    n.tool,
                    e.line,
                    e.seq as i64,
                ]);
                if let Err(err) = res {
                    if err.sqlite_extended_error_code()
                        == Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
                    {
                        return Err(invalid(format!(
                            "entry id {} (seq {} of tenant {tenant:?}) is already stored; \
                             entry ids must be unique",
                            hex16(&e.entry_id),
                            e.seq
                        )));
                    }
                    return Err(err.into());
                }
                if let Some(p) = &e.personal {
                    insert_personal.execute(params![key, p.sidecar])?;
                    for subject in &p.subject_ids {
                        insert_subject.execute(params![key, subject])?;
                    }
                }
            }
        }
        if !nosp {
            self.tx.execute_batch("RELEASE sp")?;
        }

        if let Some(state) = self.chains.get_mut(tenant) {
            state.len += entries.len() as u64;
            state.dirty = true;
        }
        Ok(())
    }

    fn set_head(&mut self, head: &ChainHead) -> Result<(), StoreError> {
        let tenant = head.tenant_id.as_str();
        let len = self.chain(tenant, false)?.map_or(0, |s| s.len);
        if head.size != len {
            return Err(StoreError::SeqConflict {
                tenant: tenant.to_owned(),
                expected: len,
                got: head.size,
            });
        }
        let size = to_i64(head.size, "chain size")?;
        let cp_size = to_i64(head.last_checkpoint_size, "checkpoint size")?;
        let Some(state) = self.chain(tenant, true)? else {
            return Err(invalid("chain creation failed (internal error)"));
        };
        let chain_id = state.chain_id;
        if head.size > 0 && std::env::var_os("BB_G").is_none() {
            // The head must describe the last stored entry.
            let (hash, id): (Vec<u8>, Vec<u8>) = self
                .tx
                .prepare_cached("SELECT entry_hash, entry_id FROM entries WHERE id = ?1")?
                .query_row([entry_key(chain_id, head.size)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            if hash != head.head_hash.0 || id != head.last_entry_id {
                return Err(invalid(format!(
                    "the head of tenant {tenant:?} does not match its entry {}: head_hash and \
                     last_entry_id must be that entry's hash and id",
                    head.size
                )));
            }
        }
        self.tx
            .prepare_cached(
                "UPDATE chains SET size = ?2, head_hash = ?3, last_entry_id = ?4, \
                 merkle_state = ?5, last_checkpoint_size = ?6, last_checkpoint_ms = ?7 \
                 WHERE chain_id = ?1",
            )?
            .execute(params![
                chain_id,
                size,
                head.head_hash.0,
                head.last_entry_id,
                head.merkle_state,
                cp_size,
                head.last_checkpoint_ms,
            ])?;
        if let Some(state) = self.chains.get_mut(tenant) {
            state.head_size = head.size;
            state.has_head = true;
            state.dirty = true;
        }
        Ok(())
    }

    fn put_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        let size = to_i64(cp.size, "checkpoint size")?;
        let Some(state) = self.chain(&cp.tenant_id, true)? else {
            return Err(invalid("chain creation failed (internal error)"));
        };
        if cp.size > state.len {
            return Err(invalid(format!(
                "checkpoint of tenant {:?} at size {} is beyond the {} stored entries",
                cp.tenant_id, cp.size, state.len
            )));
        }
        let chain_id = state.chain_id;
        self.tx
            .prepare_cached(
                "INSERT INTO checkpoints(chain_id, size, ts_ms, note) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![chain_id, size, cp.ts_ms, cp.note])?;
        Ok(())
    }

    fn put_nodes(
        &mut self,
        tenant: TenantRef<'_>,
        level: u8,
        nodes: &[(u64, Hash)],
    ) -> Result<(), StoreError> {
        if nodes.is_empty() {
            return Ok(());
        }
        let Some(state) = self.chain(tenant, true)? else {
            return Err(invalid("chain creation failed (internal error)"));
        };
        let chain_id = state.chain_id;
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO merkle_nodes(chain_id, level, idx, hash) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT DO NOTHING",
        )?;
        let mut existing = self.tx.prepare_cached(
            "SELECT hash FROM merkle_nodes WHERE chain_id = ?1 AND level = ?2 AND idx = ?3",
        )?;
        for (idx, hash) in nodes {
            let i = to_i64(*idx, "Merkle node index")?;
            if insert.execute(params![chain_id, level, i, hash.0])? == 0 {
                // Already stored: it must be the same subtree hash.
                let stored: Vec<u8> =
                    existing.query_row(params![chain_id, level, i], |r| r.get(0))?;
                if stored != hash.0 {
                    return Err(invalid(format!(
                        "Merkle node {level}/{idx} of tenant {tenant:?} is already stored with \
                         a different hash"
                    )));
                }
            }
        }
        Ok(())
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let this = *self;
        for (tenant, state) in &this.chains {
            if !state.dirty {
                continue;
            }
            if !state.has_head {
                return Err(invalid(format!(
                    "the batch wrote to tenant {tenant:?} but never set its head; call set_head \
                     before commit"
                )));
            }
            if state.head_size != state.len {
                return Err(StoreError::SeqConflict {
                    tenant: tenant.clone(),
                    expected: state.len,
                    got: state.head_size,
                });
            }
        }
        let SqliteBatch {
            tx,
            names,
            new_names,
            ..
        } = this;
        tx.commit()?;
        if names.len() + new_names.len() > NAME_CACHE_LIMIT {
            names.clear();
        }
        names.extend(new_names);
        Ok(())
    }
}

fn hex16(b: &[u8; 16]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::with_capacity(32), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, ts_ms: i64, agent: &str, session: &str, tool: Option<&str>) -> NewEntry {
        let line = format!("{{\"seq\":{seq},\"agent\":\"{agent}\"}}").into_bytes();
        let mut entry_id = [0u8; 16];
        entry_id[..8].copy_from_slice(&seq.to_be_bytes());
        NewEntry {
            seq,
            entry_id,
            ts_ms,
            agent_id: agent.to_owned(),
            session_id: session.to_owned(),
            event_type: "tool_call".to_owned(),
            tool: tool.map(str::to_owned),
            entry_hash: Hash::digest(&line),
            line,
            personal: None,
        }
    }

    /// The `EXPLAIN QUERY PLAN` detail lines of the per-chain SQL for `q`.
    fn plan(store: &SqliteStore, q: &Query) -> Vec<String> {
        let plan = store.query_plan(q).unwrap().unwrap();
        let (sql, values) = store.chain_sql(&plan, 1).unwrap();
        let mut stmt = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = stmt
            .query_map(params_from_iter(values.iter()), |r| r.get::<_, String>(3))
            .unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    fn assert_indexed(plan: &[String], index: &str) {
        let text = plan.join("\n");
        assert!(
            plan.iter().any(|l| l.starts_with("SEARCH e USING INDEX")
                || l.starts_with("SEARCH e USING COVERING INDEX")),
            "no index search on entries:\n{text}"
        );
        assert!(text.contains(index), "expected {index}:\n{text}");
        assert!(
            !plan.iter().any(|l| l.starts_with("SCAN")),
            "full scan:\n{text}"
        );
        assert!(
            !text.contains("TEMP B-TREE"),
            "sorts instead of reading in order:\n{text}"
        );
    }

    #[test]
    fn filtered_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::create(dir.path().join("s.db")).unwrap();
        let entries: Vec<_> = (1..=50)
            .map(|s| {
                let tool = if s == 9 {
                    Some("rare")
                } else {
                    (s % 2 == 0).then_some("bash")
                };
                entry(
                    s,
                    i64::try_from(s).unwrap(),
                    &format!("a{}", s % 3),
                    &format!("s{}", s % 4),
                    tool,
                )
            })
            .collect();
        let mut b = store.begin().unwrap();
        b.append("t", &entries).unwrap();
        let last = entries.last().unwrap();
        b.set_head(&ChainHead {
            tenant_id: "t".into(),
            size: 50,
            head_hash: last.entry_hash,
            last_entry_id: last.entry_id,
            merkle_state: Vec::new(),
            last_checkpoint_size: 0,
            last_checkpoint_ms: 0,
        })
        .unwrap();
        b.commit().unwrap();

        let q = Query {
            tenant_id: Some("t".into()),
            agent_id: Some("a1".into()),
            tool: Some("bash".into()),
            start_ms: Some(10),
            end_ms: Some(40),
            limit: Some(100),
            ..Query::default()
        };
        // a1 matches fewer entries than bash in that time range.
        assert_indexed(&plan(&store, &q), "entries_agent");
        let q = Query {
            agent_id: Some("a0".into()),
            tool: Some("rare".into()),
            ..Query::default()
        };
        assert_indexed(&plan(&store, &q), "entries_tool");
        let q = Query {
            agent_id: Some("a0".into()),
            session_id: Some("s1".into()),
            event_type: Some("tool_call".into()),
            ..Query::default()
        };
        assert_indexed(&plan(&store, &q), "entries_session");

        let q = Query {
            session_id: Some("s2".into()),
            ..Query::default()
        };
        assert_indexed(&plan(&store, &q), "entries_session");
        let q = Query {
            tool: Some("bash".into()),
            ..Query::default()
        };
        assert_indexed(&plan(&store, &q), "entries_tool");
        let q = Query {
            event_type: Some("tool_call".into()),
            start_ms: Some(5),
            ..Query::default()
        };
        assert_indexed(&plan(&store, &q), "entries_event");
        let q = Query {
            start_ms: Some(5),
            end_ms: Some(6),
            ..Query::default()
        };
        assert_indexed(&plan(&store, &q), "entries_ts");
        // Even an unfiltered query walks a chain through the time index, in order.
        assert_indexed(&plan(&store, &Query::default()), "entries_ts");
    }

    #[test]
    fn entry_keys_round_trip() {
        for (chain, seq) in [(1, 1), (1, MAX_SEQ), (MAX_CHAIN_ID, MAX_SEQ), (7, 12_345)] {
            let key = entry_key(chain, seq);
            assert!(key > 0);
            assert_eq!(key_seq(key), seq);
            assert_eq!(key >> SEQ_BITS, chain);
        }
    }
}
