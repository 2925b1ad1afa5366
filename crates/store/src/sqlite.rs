//! The embedded SQLite store.
//!
//! One database file indexes every tenant chain; the entry lines themselves are in append-only
//! segment files beside it (see [`crate::segments`]: written once, fsynced before the rows that
//! point at them commit). The database runs in WAL mode with `synchronous=FULL`, so a
//! committed [`WriteBatch`] has been fsynced to the write-ahead log before `commit` returns, and
//! readers (other connections, `blackbox verify`) keep reading the last committed state while a
//! writer works. Writers take the database's write lock with `BEGIN IMMEDIATE` and so serialise;
//! a writer that cannot get the lock within [`BUSY_TIMEOUT`] fails with [`StoreError::Busy`].
//!
//! ## Schema (version [`SCHEMA_VERSION`])
//!
//! The layout is shaped by bulk appends: every B-tree that grows by one record per entry grows at
//! its right edge, and the filter indexes are posting lists written once per `append` call and
//! value instead of B-tree indexes updated once per entry and index. (`examples/append_bench.rs`
//! measures appends; on a 2-core VM this layout needs about half the CPU time per entry of one
//! with an index per filter column.)
//!
//! - `chains`: one row per tenant chain and its head. `chain_id` is a small integer that the other
//!   tables use instead of the tenant string.
//! - `entries`: one row per entry, keyed by a row id in insertion order over all chains, so
//!   appends only ever add to the right edge of the table's B-tree. Each row also holds its
//!   `chain_id` and `seq`. The entry id (UUIDv7) is stored as two integers, `id_hi` (bytes 0..8)
//!   and `id_lo` (bytes 8..16, big-endian, as signed 64-bit values); the unique index on
//!   `(id_lo, id_hi)` makes entry ids unique across chains and finds an entry by id (integer keys
//!   compare several times faster than a 16-byte blob, and the low half is almost never equal).
//!   `seg`, `off`, `len` say where the entry's line is in the segment files.
//! - `runs`: maps `(chain_id, seq)` to the entry row id. Each `append` call stores its entries
//!   under consecutive row ids, so one row `(chain_id, first_seq, first_id, count)` describes a
//!   whole call, and is extended when the next call of the same chain continues it (a
//!   single-tenant store has a single run). A chain scan is a row-id range scan per run.
//! - `postings`: the filter indexes. For every `append` call, and every distinct agent, session,
//!   event type, tool (and "any entry", kind 0) among its entries, one row per time bucket
//!   (2^[`BUCKET_BITS`] ms, about 17.5 minutes) lists those entries' `(ts_ms, row id)` pairs,
//!   sorted, as varints (about 3 bytes a pair).
//! - `names`: a dictionary of the agent, session, event type and tool strings; `entries` and
//!   `postings` store their small integer ids.
//! - `personal`: erasable personal-data sidecars, keyed by the entry row id and kept apart from
//!   the entries so that erasure deletes whole rows.
//! - `subject_index`: which entries reference a data subject, as `(subject_key, chain_id, seq,
//!   entry_id)`. `subject_key` is a keyed hash of the subject id (computed by the caller; the
//!   store never sees the id): B-tree interior pages keep copies of keys even after the rows are
//!   deleted, and a keyed hash is not the id. Keyed by (chain, seq) rather than row id so that
//!   the rows stay meaningful when entries leave the hot store.
//!
//! Erasure runs with `secure_delete` on (every writing connection has it), so deleted cells and
//! freed pages are overwritten with zeros, and [`Store::purge_erased`] then checkpoints and
//! truncates the write-ahead log, whose older frames still hold the erased pages.
//!
//! Schema version 2 (a `personal_subjects` table of clear-text subject ids) is migrated by
//! [`SqliteStore::migrate`].
//! - `checkpoints`, `merkle_nodes` and `meta`.
//!
//! A query runs per chain, merging the chains by (`ts_ms`, tenant, seq). In a chain it reads the
//! postings of its most selective filter (kind 0 without filters) bucket by bucket, keeps the
//! pairs within the time range that the other filters' postings of the same bucket also list,
//! sorts them (one bucket's matches at a time) and reads those entries by row id, so it reads
//! posting lists and matching entries only, never the entries of a whole time range. Every
//! statement is an index search (`read_statements_search_indexes` checks the plans).
//!
//! A [`WriteBatch`] is one `BEGIN IMMEDIATE` transaction. An `append` call is checked before it
//! writes anything and a call failing on a duplicate entry id is undone, so after those errors
//! the batch is still usable; after any other failure half-way through a call (I/O error, disk
//! full) the batch refuses further writes and `commit`, and must be dropped (rolled back).
//!
//! `entries_view` shows entries with their tenant, seq, entry id and strings, for ad-hoc
//! inspection with the `sqlite3` shell.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use blackbox_core::Hash;
use rusqlite::config::DbConfig;
use rusqlite::types::ValueRef;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension as _, Row, Transaction, TransactionBehavior, params,
};

use crate::segments::{LineRef, LinesEnd, SEGMENT_BYTES, SegmentReader, SegmentWriter, lines_dir};
use crate::{
    After, ArchiveSegment, ChainHead, Erasure, NewEntry, Purge, Query, SegmentState, Store,
    StoreError, StoredAnchor, StoredCheckpoint, StoredEntry, SubjectEntry, TenantRef, WriteBatch,
};

/// Schema version written to `PRAGMA user_version`. Stores with another version are refused.
pub const SCHEMA_VERSION: u32 = 3;

/// `PRAGMA application_id` of a Blackbox store ("BLBX"), so that other SQLite files are
/// recognised as not being stores.
pub const APPLICATION_ID: i32 = 0x424C_4258;

/// How long a writer waits for another writer's lock before failing with [`StoreError::Busy`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Postings cover time buckets of `2^BUCKET_BITS` milliseconds (about 17.5 minutes): a bucket is
/// `ts_ms >> BUCKET_BITS`. Larger buckets mean fewer posting rows per `append` call; smaller
/// ones mean less to read and sort before a query's first row.
pub const BUCKET_BITS: u32 = 20;

/// Page size of new stores. Entry lines live in segment files, so rows are small and bulk appends
/// barely depend on the page size; small commits (the service's group commits of a few dozen
/// entries) rewrite a handful of pages each, and their cost grows with it: 8 KiB pages served
/// 11.4k single-event requests/s where 32 KiB pages served 7.8–9.5k (docs/PERFORMANCE.md).
const PAGE_SIZE: i64 = 8 * 1024;

/// Page cache per connection, in KiB (SQLite's negative `cache_size`).
const CACHE_SIZE_KIB: i64 = 64 * 1024;

/// The WAL file is truncated to this size after a checkpoint (big batches would otherwise leave
/// a WAL file as large as the biggest batch).
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Most dictionary names remembered between batches (the cache is cleared when it grows past).
const NAME_CACHE_LIMIT: usize = 100_000;

/// Posting kinds: which column a posting list indexes.
const KIND_ALL: i64 = 0;
const KIND_AGENT: i64 = 1;
const KIND_SESSION: i64 = 2;
const KIND_EVENT: i64 = 3;
const KIND_TOOL: i64 = 4;

/// Entries a scan reads from the database before reading their lines together.
const SCAN_BLOCK: usize = 1024;

/// Most entries a query reads ahead in one range scan (see `ChainStream::entry`).
const READ_AHEAD: u64 = 256;

/// Posting rows summed per filter when choosing which filter drives a query.
const DRIVER_PROBE_ROWS: i64 = 64;

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

-- Agent, session, event type and tool strings, referenced by id from entries and postings.
CREATE TABLE names(
    name_id INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE
);

-- id: insertion order over all chains. id_hi/id_lo: the entry id's bytes 0..8 and 8..16 as
-- big-endian signed integers. agent..tool: name ids. No foreign keys here: checking them would
-- cost look-ups per appended entry, and only this module writes the table.
CREATE TABLE entries(
    id         INTEGER PRIMARY KEY,
    chain_id   INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    ts_ms      INTEGER NOT NULL,
    id_hi      INTEGER NOT NULL,
    id_lo      INTEGER NOT NULL,
    entry_hash BLOB NOT NULL,
    agent      INTEGER NOT NULL,
    session    INTEGER NOT NULL,
    event_type INTEGER NOT NULL,
    tool       INTEGER,
    seg        INTEGER NOT NULL,
    off        INTEGER NOT NULL,
    len        INTEGER NOT NULL
);
CREATE UNIQUE INDEX entries_entry_id ON entries(id_lo, id_hi);

-- Entries first_seq .. first_seq + count - 1 of a chain have ids first_id .. first_id + count - 1.
CREATE TABLE runs(
    chain_id  INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    first_id  INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY(chain_id, first_seq)
) WITHOUT ROWID;

-- kind: 0 any entry (name_id 0), 1 agent, 2 session, 3 event type, 4 tool. bucket: ts_ms >> 20.
-- data: n pairs (ts_ms, id) sorted by (ts_ms, id), as varints: the first ts_ms relative to the
-- bucket's start, then differences to the previous ts_ms; each id relative to first_id.
CREATE TABLE postings(
    chain_id INTEGER NOT NULL,
    kind     INTEGER NOT NULL,
    name_id  INTEGER NOT NULL,
    bucket   INTEGER NOT NULL,
    first_id INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    data     BLOB NOT NULL,
    PRIMARY KEY(chain_id, kind, name_id, bucket, first_id)
) WITHOUT ROWID;

CREATE TABLE personal(
    id      INTEGER PRIMARY KEY REFERENCES entries(id),
    sidecar BLOB NOT NULL
);
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
SELECT c.tenant_id, e.seq, e.ts_ms, printf('%016x%016x', e.id_hi, e.id_lo) AS entry_id,
       lower(hex(e.entry_hash)) AS entry_hash, a.name AS agent_id, s.name AS session_id,
       v.name AS event_type, t.name AS tool, e.seg, e.off, e.len
FROM entries e
JOIN chains c ON c.chain_id = e.chain_id
JOIN names a ON a.name_id = e.agent
JOIN names s ON s.name_id = e.session
JOIN names v ON v.name_id = e.event_type
LEFT JOIN names t ON t.name_id = e.tool;
";

/// Tables of archiving (created on open when missing, so stores made before archiving existed
/// gain them without a schema version change).
const ARCHIVE_SCHEMA: &str = r"
-- Where a chain's stored entries begin after its first `size` entries were archived.
-- record: the anchor record line (FORMAT.md §8). tail_hashes: 32-byte entry hashes of the seqs
-- after the last multiple of 256 up to `size` (proofs need them).
CREATE TABLE IF NOT EXISTS anchors(
    chain_id    INTEGER PRIMARY KEY,
    size        INTEGER NOT NULL,
    record      BLOB NOT NULL,
    tail_hashes BLOB NOT NULL
);
-- Archive objects. state: 0 live, 1 deleting (recorded in the chain, object may remain), 2 deleted.
CREATE TABLE IF NOT EXISTS archive_segments(
    chain_id  INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    object    TEXT NOT NULL,
    sha256    BLOB NOT NULL,
    bytes     INTEGER NOT NULL,
    first_ts  INTEGER NOT NULL,
    last_ts   INTEGER NOT NULL,
    sealed_ms INTEGER NOT NULL,
    state     INTEGER NOT NULL,
    state_ms  INTEGER NOT NULL,
    PRIMARY KEY(chain_id, first_seq)
) WITHOUT ROWID;
";

// ---- read statements (also checked by the query-plan test) -----------------------------------

/// The run of a chain holding seq `?2` (or the last run before it).
const RUN_AT_SQL: &str = "SELECT first_seq, first_id, count FROM runs \
                          WHERE chain_id = ?1 AND first_seq <= ?2 ORDER BY first_seq DESC LIMIT 1";
/// The runs of a chain starting in `?2 ..= ?3`, in order.
const RUNS_FROM_SQL: &str = "SELECT first_seq, first_id, count FROM runs \
                             WHERE chain_id = ?1 AND first_seq BETWEEN ?2 AND ?3 ORDER BY first_seq";
/// The last run of a chain.
const LAST_RUN_SQL: &str = "SELECT first_seq, first_id, count FROM runs \
                            WHERE chain_id = ?1 ORDER BY first_seq DESC LIMIT 1";
/// Entries by row-id range (one run), with their sidecars.
const ENTRY_RANGE_SQL: &str = "SELECT e.chain_id, e.seq, e.entry_hash, p.sidecar, e.seg, e.off, e.len \
                               FROM entries e LEFT JOIN personal p ON p.id = e.id \
                               WHERE e.id BETWEEN ?1 AND ?2 ORDER BY e.id";
/// Where the lines of a row-id range (one run) are, for reading them in bulk.
const LINE_RANGE_SQL: &str = "SELECT id, chain_id, seq, seg, off, len FROM entries \
                              WHERE id BETWEEN ?1 AND ?2 ORDER BY id";
/// The personal sidecars of a row-id range, merged with [`LINE_RANGE_SQL`]'s rows (cheaper
/// than a join that looks each entry up in `personal`).
const PERSONAL_RANGE_SQL: &str = "SELECT id, sidecar FROM personal \
                                  WHERE id BETWEEN ?1 AND ?2 ORDER BY id";
/// Entry hashes by row-id range (one run).
const HASH_RANGE_SQL: &str = "SELECT chain_id, seq, entry_hash FROM entries \
                              WHERE id BETWEEN ?1 AND ?2 ORDER BY id";
/// One entry by row id, with its sidecar.
const ENTRY_AT_SQL: &str = "SELECT e.chain_id, e.seq, e.entry_hash, p.sidecar, e.seg, e.off, e.len \
                            FROM entries e LEFT JOIN personal p ON p.id = e.id WHERE e.id = ?1";
/// One entry by entry id, with its tenant and sidecar.
const ENTRY_BY_ID_SQL: &str = "SELECT c.tenant_id, e.chain_id, e.seq, e.entry_hash, \
                               p.sidecar, e.seg, e.off, e.len \
                               FROM entries e JOIN chains c ON c.chain_id = e.chain_id \
                               LEFT JOIN personal p ON p.id = e.id \
                               WHERE e.id_lo = ?1 AND e.id_hi = ?2";
/// The first bucket in `?4 ..= ?5` holding postings of `(chain, kind, name)`.
const NEXT_BUCKET_SQL: &str = "SELECT bucket FROM postings \
                               WHERE chain_id = ?1 AND kind = ?2 AND name_id = ?3 \
                               AND bucket BETWEEN ?4 AND ?5 ORDER BY bucket LIMIT 1";
/// The postings of `(chain, kind, name)` in one bucket.
const BUCKET_POSTINGS_SQL: &str = "SELECT bucket, first_id, n, data FROM postings \
                                   WHERE chain_id = ?1 AND kind = ?2 AND name_id = ?3 \
                                   AND bucket = ?4";
/// How many entries the first posting rows of a filter in a bucket range cover.
const PROBE_SQL: &str = "SELECT coalesce(sum(n), 0) FROM (SELECT n FROM postings \
                         WHERE chain_id = ?1 AND kind = ?2 AND name_id = ?3 \
                         AND bucket BETWEEN ?4 AND ?5 LIMIT ?6)";
/// `(tenant, seq, entry id)` of the entries whose sidecar references a data subject.
const SUBJECT_SQL: &str = "SELECT c.tenant_id, s.seq, s.entry_id FROM subject_index s \
                           JOIN chains c ON c.chain_id = s.chain_id \
                           WHERE s.subject_key = ?1 ORDER BY c.tenant_id, s.seq";

/// The subject index (schema version 3; also created by the migration from version 2).
const SUBJECT_INDEX_DDL: &str = r"
-- subject_key: HMAC-SHA256 of the subject id under the data directory's subject-index key.
CREATE TABLE subject_index(
    subject_key BLOB NOT NULL,
    chain_id    INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    entry_id    BLOB NOT NULL,
    PRIMARY KEY(subject_key, chain_id, seq)
) WITHOUT ROWID;
CREATE INDEX subject_index_entry ON subject_index(chain_id, seq);
";

/// How long [`SqliteStore::purge_erased`] sleeps between checkpoint attempts.
const PURGE_RETRY: Duration = Duration::from_millis(50);

/// A Blackbox store in one SQLite file. See the [module docs](self) for the layout.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    read_only: bool,
    /// The entry lines (see [`crate::segments`]).
    lines: SegmentReader,
    /// Size at which a new segment file is started.
    segment_limit: u64,
    /// Committed dictionary names and their ids (names are never deleted, so this cannot go
    /// stale; names added by a batch join it only when the batch commits).
    names: HashMap<String, i64>,
    /// Whether the archive tables exist (a store opened read-only that predates them lacks them).
    archive_tables: bool,
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
        let lines = lines_dir(path);
        match std::fs::create_dir(&lines) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists {
                    path: lines.display().to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        }
        // create_new makes creation exclusive even if two processes race.
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_dir(&lines);
                return Err(StoreError::AlreadyExists {
                    path: path.display().to_string(),
                });
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&lines);
                return Err(e.into());
            }
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
                let _ = std::fs::remove_dir_all(lines_dir(path));
                Err(e)
            }
        }
    }

    fn init_new(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Only takes effect on a new, empty file (before WAL mode is set in `configure`).
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        configure(&conn, false)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(ARCHIVE_SCHEMA)?;
        tx.execute_batch(SUBJECT_INDEX_DDL)?;
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
    /// [`Store::purge_erased`] then fail with [`StoreError::ReadOnly`].
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
        let archive_tables = if read_only {
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'anchors'",
                [],
                |r| r.get::<_, i64>(0),
            )? > 0
        } else {
            conn.execute_batch(ARCHIVE_SCHEMA)?;
            true
        };
        let mut store = Self::from_conn(conn, path, read_only);
        store.archive_tables = archive_tables;
        Ok(store)
    }

    /// Migrates a store of schema version 2 to the current version, in place: the clear-text
    /// subject ids of its `personal_subjects` table become subject-index rows keyed by
    /// `subject_key(id)`, the old table is dropped, and the file is vacuumed (with
    /// `secure_delete`) and its write-ahead log truncated, so that no clear-text id remains in
    /// free pages. Returns whether anything was migrated (`false`: already current).
    ///
    /// # Errors
    /// As [`SqliteStore::open`]; [`StoreError::Schema`] for versions other than 2 and 3;
    /// SQLite failures (the migration is one transaction: on error the store is unchanged).
    pub fn migrate(
        path: impl AsRef<Path>,
        subject_key: &dyn Fn(&str) -> [u8; 32],
    ) -> Result<bool, StoreError> {
        let path = path.as_ref();
        match Self::open(path) {
            Ok(_) => return Ok(false),
            Err(StoreError::Schema { found: 2, .. }) => {}
            Err(e) => return Err(e),
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn, false)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version == 2 {
            tx.execute_batch(SUBJECT_INDEX_DDL)?;
            {
                let mut read = tx.prepare(
                    "SELECT s.subject_id, e.chain_id, e.seq, e.id_hi, e.id_lo \
                     FROM personal_subjects s JOIN entries e ON e.id = s.id",
                )?;
                let mut insert = tx.prepare(
                    "INSERT OR IGNORE INTO subject_index(subject_key, chain_id, seq, entry_id) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                let mut rows = read.query([])?;
                while let Some(row) = rows.next()? {
                    let id = col_text(row, 0, "a subject id")?;
                    let chain = col_i64(row, 1, "a chain id")?;
                    let seq = col_i64(row, 2, "an entry seq")?;
                    let hi = col_i64(row, 3, "an entry id")?;
                    let lo = col_i64(row, 4, "an entry id")?;
                    let mut entry_id = [0u8; 16];
                    entry_id[..8].copy_from_slice(&hi.to_be_bytes());
                    entry_id[8..].copy_from_slice(&lo.to_be_bytes());
                    insert.execute(params![&subject_key(&id)[..], chain, seq, &entry_id[..]])?;
                }
            }
            tx.execute_batch("DROP TABLE personal_subjects;")?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()?;
        // The dropped table's pages were zeroed (secure_delete); VACUUM rebuilds the file
        // without them, and the checkpoint leaves no older copy in the log.
        conn.execute_batch("VACUUM;")?;
        let mut store = Self::from_conn(conn, path, false);
        store.purge_erased(Duration::from_secs(30))?;
        Ok(true)
    }

    fn from_conn(conn: Connection, path: &Path, read_only: bool) -> Self {
        conn.set_prepared_statement_cache_capacity(64);
        Self {
            conn,
            path: path.to_path_buf(),
            read_only,
            lines: SegmentReader::new(lines_dir(path)),
            segment_limit: SEGMENT_BYTES,
            names: HashMap::new(),
            archive_tables: true,
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

    /// Starts new segment files of entry lines at `bytes` instead of [`SEGMENT_BYTES`] (for
    /// tests of segment boundaries; the size affects nothing but the number of files).
    pub fn set_segment_limit(&mut self, bytes: u64) {
        self.segment_limit = bytes.max(1);
    }

    /// Whether the store was opened with [`SqliteStore::open_read_only`].
    #[must_use]
    pub const fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the row `id` of `tenant` at `ts` comes at or before the cursor `a` (query order
    /// (ts, tenant, seq)). Reads the row's seq only when timestamp and tenant tie, never its line.
    fn not_after(&self, a: &After, ts: i64, tenant: &str, id: i64) -> Result<bool, StoreError> {
        match (ts.cmp(&a.ts_ms), tenant.cmp(a.tenant_id.as_str())) {
            (std::cmp::Ordering::Less, _) => Ok(true),
            (std::cmp::Ordering::Greater, _) => Ok(false),
            (_, std::cmp::Ordering::Less) => Ok(true),
            (_, std::cmp::Ordering::Greater) => Ok(false),
            (_, std::cmp::Ordering::Equal) => {
                let seq: i64 = self
                    .conn
                    .prepare_cached("SELECT seq FROM entries WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))?;
                Ok(u64::try_from(seq).unwrap_or(0) <= a.seq)
            }
        }
    }

    /// The chain id of `tenant`, if the chain exists.
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

    /// The `(kind, name id)` filters of `q`, in tie-break order (session, agent, tool, event
    /// type). `None` when a filter names a string that is not stored at all (nothing matches).
    fn query_filters(&self, q: &Query) -> Result<Option<Vec<(i64, i64)>>, StoreError> {
        let mut filters = Vec::new();
        for (filter, kind) in [
            (&q.session_id, KIND_SESSION),
            (&q.agent_id, KIND_AGENT),
            (&q.tool, KIND_TOOL),
            (&q.event_type, KIND_EVENT),
        ] {
            if let Some(name) = filter {
                let Some(name_id) = self.lookup_name(name)? else {
                    return Ok(None);
                };
                filters.push((kind, name_id));
            }
        }
        Ok(Some(filters))
    }

    /// The stream of `chain`'s entries matching `filters` within `[start, end]`, in (ts_ms, id)
    /// order. It reads the postings of the filter covering the fewest entries (counted over its
    /// first [`DRIVER_PROBE_ROWS`] posting rows): SQLite's planner cannot tell which of two
    /// equality filters is more selective.
    fn chain_stream(
        &self,
        chain: i64,
        filters: &[(i64, i64)],
        start: i64,
        end: i64,
    ) -> Result<ChainStream, StoreError> {
        let first_bucket = start >> BUCKET_BITS;
        let last_bucket = end >> BUCKET_BITS;
        let mut others: Vec<(i64, i64)> = filters.to_vec();
        let driver = if others.is_empty() {
            (KIND_ALL, 0)
        } else if others.len() == 1 {
            others.remove(0)
        } else {
            let mut best: Option<(i64, usize)> = None;
            for (i, &(kind, name)) in others.iter().enumerate() {
                let n: i64 = self.conn.prepare_cached(PROBE_SQL)?.query_row(
                    params![
                        chain,
                        kind,
                        name,
                        first_bucket,
                        last_bucket,
                        DRIVER_PROBE_ROWS
                    ],
                    |r| r.get(0),
                )?;
                // Ties go to the earlier filter.
                if best.is_none_or(|(m, _)| n < m) {
                    best = Some((n, i));
                }
            }
            others.remove(best.map_or(0, |(_, i)| i))
        };
        // Entries before an archive anchor are gone; posting rows may still list some of them.
        let min_id: i64 = self
            .conn
            .prepare_cached(
                "SELECT first_id FROM runs WHERE chain_id = ?1 ORDER BY first_seq LIMIT 1",
            )?
            .query_row([chain], |r| r.get(0))
            .optional()?
            .unwrap_or(i64::MAX);
        Ok(ChainStream {
            chain,
            min_id,
            driver,
            others,
            start,
            end,
            next_bucket: Some(first_bucket),
            last_bucket,
            pending: Vec::new(),
            fetched: VecDeque::new(),
        })
    }

    /// The `(ts_ms, id)` pairs of the postings of `(chain, kind, name)` in `bucket`, unsorted.
    fn bucket_postings(
        &self,
        chain: i64,
        (kind, name): (i64, i64),
        bucket: i64,
        out: &mut Vec<(i64, i64)>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(BUCKET_POSTINGS_SQL)?;
        let mut rows = stmt.query(params![chain, kind, name, bucket])?;
        while let Some(row) = rows.next()? {
            let first_id = col_i64(row, 1, "a posting's first id")?;
            let n = col_u64(row, 2, "a posting's length")?;
            let data = col_blob(row, 3, "a posting's data")?;
            decode_posting(bucket, first_id, n, data, out).ok_or_else(|| {
                corrupt(format!(
                    "the posting list of chain {chain}, kind {kind}, name {name}, bucket \
                     {bucket}, first id {first_id} cannot be decoded"
                ))
            })?;
        }
        Ok(())
    }

    /// The entry at row id `id`, which must belong to chain `chain`.
    fn entry_at(&self, id: i64, chain: i64, tenant: &str) -> Result<StoredEntry, StoreError> {
        let mut stmt = self.conn.prepare_cached(ENTRY_AT_SQL)?;
        let mut rows = stmt.query([id])?;
        let Some(row) = rows.next()? else {
            return Err(corrupt(format!(
                "a posting list of tenant {tenant:?} refers to entry row {id}, which does not exist"
            )));
        };
        let stored_chain = col_i64(row, 0, "an entry's chain id")?;
        if stored_chain != chain {
            return Err(corrupt(format!(
                "a posting list of tenant {tenant:?} refers to entry row {id} of another chain"
            )));
        }
        let (mut e, at) = read_entry(row, tenant, 1)?;
        e.line = self.lines.read(at)?;
        Ok(e)
    }

    /// Calls `f` on the row-id ranges holding seqs `from ..= to` of `chain`, in seq order, as
    /// `(first seq, first id, last id)`; stops when `f` returns `false`.
    fn for_each_run_range(
        &self,
        chain: i64,
        from: u64,
        to: u64,
        f: &mut dyn FnMut(u64, i64, i64) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let Ok(from) = i64::try_from(from) else {
            return Ok(());
        };
        let to = i64::try_from(to).unwrap_or(i64::MAX);
        // The run holding `from` starts at or before it.
        let start: i64 = self
            .conn
            .prepare_cached(RUN_AT_SQL)?
            .query_row(params![chain, from], |r| r.get(0))
            .optional()?
            .unwrap_or(from);
        let mut stmt = self.conn.prepare_cached(RUNS_FROM_SQL)?;
        let mut rows = stmt.query(params![chain, start, to])?;
        while let Some(row) = rows.next()? {
            let run = read_run(row)?;
            let lo = from.max(run.first_seq);
            let hi = to.min(run.last_seq());
            if lo > hi {
                continue;
            }
            let first_id = run.first_id + (lo - run.first_seq);
            let last_id = run.first_id + (hi - run.first_seq);
            if !f(lo.unsigned_abs(), first_id, last_id)? {
                break;
            }
        }
        Ok(())
    }
}

/// One chain's matching entries in (ts_ms, id) order, read bucket by bucket.
#[derive(Debug)]
struct ChainStream {
    chain: i64,
    /// Row id of the chain's first stored entry: lower ids were archived.
    min_id: i64,
    /// The `(kind, name id)` whose postings are read.
    driver: (i64, i64),
    /// Further filters, checked against their postings of the same bucket.
    others: Vec<(i64, i64)>,
    start: i64,
    end: i64,
    /// The lowest bucket not read yet (`None` when done).
    next_bucket: Option<i64>,
    last_bucket: i64,
    /// The rest of the current bucket, in descending order (the next entry is last).
    pending: Vec<(i64, i64)>,
    /// Entries read ahead (with their row ids): the next ones [`Self::next`] returns.
    fetched: VecDeque<(i64, StoredEntry)>,
}

impl ChainStream {
    /// The entry at row id `id`, which [`Self::next`] just returned. The matches after it
    /// with consecutive row ids (typically a whole `append` call when a query has no filters
    /// but time) are read with it, in one range scan; at most `most` entries.
    fn entry(
        &mut self,
        store: &SqliteStore,
        id: i64,
        tenant: &str,
        most: u64,
    ) -> Result<StoredEntry, StoreError> {
        match self.fetched.pop_front() {
            Some((fetched_id, entry)) if fetched_id == id => return Ok(entry),
            Some(_) => self.fetched.clear(),
            None => {}
        }
        let most = usize::try_from(most.min(READ_AHEAD)).unwrap_or(1);
        let mut last = id;
        for &(_, next) in self.pending.iter().rev().take(most.saturating_sub(1)) {
            if Some(next) != last.checked_add(1) {
                break;
            }
            last = next;
        }
        if last == id {
            return store.entry_at(id, self.chain, tenant);
        }
        let mut stmt = store.conn.prepare_cached(ENTRY_RANGE_SQL)?;
        let mut rows = stmt.query(params![id, last])?;
        let mut at = id;
        let mut batch = Vec::new();
        while let Some(row) = rows.next()? {
            if col_i64(row, 0, "an entry's chain id")? != self.chain {
                return Err(corrupt(format!(
                    "a posting list of tenant {tenant:?} refers to entry row {at} of another \
                     chain"
                )));
            }
            batch.push(read_entry(row, tenant, 1)?);
            at += 1;
        }
        fill_lines(&store.lines, &mut batch)?;
        self.fetched
            .extend((id..).zip(batch.into_iter().map(|(e, _)| e)));
        match self.fetched.pop_front() {
            Some((first, entry)) if first == id && at == last + 1 => Ok(entry),
            _ => Err(corrupt(format!(
                "a posting list of tenant {tenant:?} refers to entry rows {id}..={last}, which \
                 are not all stored"
            ))),
        }
    }

    /// The next `(ts_ms, id)`.
    fn next(&mut self, store: &SqliteStore) -> Result<Option<(i64, i64)>, StoreError> {
        loop {
            if let Some(next) = self.pending.pop() {
                return Ok(Some(next));
            }
            let Some(from) = self.next_bucket else {
                return Ok(None);
            };
            let (kind, name) = self.driver;
            let bucket: Option<i64> = store
                .conn
                .prepare_cached(NEXT_BUCKET_SQL)?
                .query_row(
                    params![self.chain, kind, name, from, self.last_bucket],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(bucket) = bucket else {
                self.next_bucket = None;
                return Ok(None);
            };
            self.next_bucket = bucket.checked_add(1).filter(|&b| b <= self.last_bucket);
            let mut rows = std::mem::take(&mut self.pending);
            store.bucket_postings(self.chain, self.driver, bucket, &mut rows)?;
            let (start, end, min_id) = (self.start, self.end, self.min_id);
            rows.retain(|&(ts, id)| start <= ts && ts <= end && id >= min_id);
            let mut other = Vec::new();
            for &filter in &self.others {
                if rows.is_empty() {
                    break;
                }
                other.clear();
                store.bucket_postings(self.chain, filter, bucket, &mut other)?;
                let ids: HashSet<i64> = other.iter().map(|&(_, id)| id).collect();
                rows.retain(|(_, id)| ids.contains(id));
            }
            rows.sort_unstable_by(|a, b| b.cmp(a));
            self.pending = rows;
        }
    }
}

/// Applies the per-connection settings.
fn configure(conn: &Connection, read_only: bool) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Plans must not depend on bound values: otherwise SQLite marks statements whose parameters
    // may be 0 or 1 (chain ids, posting kinds) for re-preparation whenever they are rebound, and
    // the statement cache (which clears bindings) re-prepares them on every use.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -CACHE_SIZE_KIB)?;
    // Statement journals (and sorts) in memory, not in files under /var/tmp: a bulk append
    // otherwise wrote tens of thousands of pages to a temporary file that is never read back.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
    } else {
        // Returns the resulting mode; a file system without shared memory keeps the rollback
        // journal, which is just as durable with synchronous=FULL.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        // Deleted personal data is overwritten in the database file rather than left in free
        // pages. Deletes are rare, so this costs nothing on the append path.
        conn.pragma_update(None, "secure_delete", "ON")?;
    }
    Ok(())
}

// ---- encoding helpers ------------------------------------------------------------------------

/// The two halves of an entry id as stored (`id_hi`, `id_lo`).
fn id_halves(id: &[u8; 16]) -> (i64, i64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&id[..8]);
    lo.copy_from_slice(&id[8..]);
    (i64::from_be_bytes(hi), i64::from_be_bytes(lo))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Encodes `(ts_ms, offset)` pairs, sorted by (ts_ms, offset) and all in `bucket`, as a posting
/// list whose ids are `first_id + offset`.
fn encode_posting(bucket: i64, pairs: &[(i64, u32)], out: &mut Vec<u8>) {
    let mut prev = bucket << BUCKET_BITS;
    for &(ts, off) in pairs {
        put_varint(out, (ts - prev).unsigned_abs());
        put_varint(out, u64::from(off));
        prev = ts;
    }
}

/// Decodes a posting list of `n` pairs into `out` as `(ts_ms, id)`. `None` if it is malformed.
fn decode_posting(
    bucket: i64,
    first_id: i64,
    n: u64,
    data: &[u8],
    out: &mut Vec<(i64, i64)>,
) -> Option<()> {
    if !(i64::MIN >> BUCKET_BITS..=i64::MAX >> BUCKET_BITS).contains(&bucket) {
        return None;
    }
    let start = bucket << BUCKET_BITS;
    let end = start | ((1 << BUCKET_BITS) - 1);
    let mut ts = start;
    let mut pos = 0;
    out.reserve(usize::try_from(n).ok()?.min(data.len()));
    for _ in 0..n {
        ts = ts.checked_add(i64::try_from(get_varint(data, &mut pos)?).ok()?)?;
        let id = first_id.checked_add(i64::try_from(get_varint(data, &mut pos)?).ok()?)?;
        if ts > end {
            return None;
        }
        out.push((ts, id));
    }
    (pos == data.len()).then_some(())
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

/// What a column holds, for error messages: a fixed text, or a closure that formats one only
/// when reading the column fails (rows are read by the million; their messages almost never).
trait Describe {
    fn describe(self) -> String;
}

impl Describe for &str {
    fn describe(self) -> String {
        self.to_owned()
    }
}

impl<F: FnOnce() -> String> Describe for F {
    fn describe(self) -> String {
        self()
    }
}

fn col_i64(row: &Row<'_>, idx: usize, what: impl Describe) -> Result<i64, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Integer(v) => Ok(v),
        _ => Err(corrupt(format!("{} is not an integer", what.describe()))),
    }
}

fn col_u64(row: &Row<'_>, idx: usize, what: impl Describe) -> Result<u64, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Integer(v) => {
            u64::try_from(v).map_err(|_| corrupt(format!("{} is negative ({v})", what.describe())))
        }
        _ => Err(corrupt(format!("{} is not an integer", what.describe()))),
    }
}

fn col_blob<'r>(row: &'r Row<'_>, idx: usize, what: impl Describe) -> Result<&'r [u8], StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Blob(b) => Ok(b),
        _ => Err(corrupt(format!("{} is not a blob", what.describe()))),
    }
}

fn col_opt_blob(
    row: &Row<'_>,
    idx: usize,
    what: impl Describe,
) -> Result<Option<Vec<u8>>, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(b) => Ok(Some(b.to_vec())),
        _ => Err(corrupt(format!("{} is not a blob", what.describe()))),
    }
}

fn col_text(row: &Row<'_>, idx: usize, what: impl Describe) -> Result<String, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Text(t) => String::from_utf8(t.to_vec())
            .map_err(|_| corrupt(format!("{} is not valid UTF-8", what.describe()))),
        _ => Err(corrupt(format!("{} is not text", what.describe()))),
    }
}

fn col_fixed<const N: usize>(
    row: &Row<'_>,
    idx: usize,
    what: impl Describe,
) -> Result<[u8; N], StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Blob(b) => <[u8; N]>::try_from(b).map_err(|_| {
            corrupt(format!(
                "{} is {} bytes long, not {N}",
                what.describe(),
                b.len()
            ))
        }),
        _ => Err(corrupt(format!("{} is not a blob", what.describe()))),
    }
}

fn col_hash(row: &Row<'_>, idx: usize, what: impl Describe) -> Result<Hash, StoreError> {
    col_fixed(row, idx, what).map(Hash)
}

fn col_id16(row: &Row<'_>, idx: usize, what: impl Describe) -> Result<[u8; 16], StoreError> {
    col_fixed(row, idx, what)
}

const HEAD_COLUMNS: &str = "tenant_id, size, head_hash, last_entry_id, merkle_state, \
                            last_checkpoint_size, last_checkpoint_ms";

fn read_head(row: &Row<'_>) -> Result<ChainHead, StoreError> {
    let tenant_id = col_text(row, 0, "a chain's tenant id")?;
    let what = |c: &str| format!("column {c} of the chain of tenant {tenant_id:?}");
    Ok(ChainHead {
        size: col_u64(row, 1, || what("size"))?,
        head_hash: col_hash(row, 2, || what("head_hash"))?,
        last_entry_id: col_id16(row, 3, || what("last_entry_id"))?,
        merkle_state: col_blob(row, 4, || what("merkle_state"))?.to_vec(),
        last_checkpoint_size: col_u64(row, 5, || what("last_checkpoint_size"))?,
        last_checkpoint_ms: col_i64(row, 6, || what("last_checkpoint_ms"))?,
        tenant_id,
    })
}

/// Reads `(seq, entry_hash, sidecar, seg, off, len)` starting at column `first`: the entry
/// without its line, and where the line is.
fn read_entry(
    row: &Row<'_>,
    tenant: &str,
    first: usize,
) -> Result<(StoredEntry, LineRef), StoreError> {
    let seq = col_u64(row, first, || {
        format!("the seq of an entry of tenant {tenant:?}")
    })?;
    let what = |c: &str| format!("{c} of entry {seq} of tenant {tenant:?}");
    let at = read_line_ref(row, first + 3, seq, tenant)?;
    Ok((
        StoredEntry {
            tenant_id: tenant.to_owned(),
            seq,
            entry_hash: col_hash(row, first + 1, || what("the entry hash"))?,
            line: Vec::new(),
            personal: col_opt_blob(row, first + 2, || what("the personal sidecar"))?,
        },
        at,
    ))
}

/// Where entry `seq`'s line is: the segment, offset and length columns from `first` on.
fn read_line_ref(
    row: &Row<'_>,
    first: usize,
    seq: u64,
    tenant: &str,
) -> Result<LineRef, StoreError> {
    let what = |c: &str| format!("{c} of entry {seq} of tenant {tenant:?}");
    LineRef::from_columns(
        col_i64(row, first, || what("the line's segment"))?,
        col_i64(row, first + 1, || what("the line's offset"))?,
        col_i64(row, first + 2, || what("the line's length"))?,
    )
    .ok_or_else(|| corrupt(format!("{} is out of range", what("the line's place"))))
}

/// Fills in the lines of entries read with [`read_entry`].
fn fill_lines(
    lines: &SegmentReader,
    batch: &mut [(StoredEntry, LineRef)],
) -> Result<(), StoreError> {
    let refs: Vec<LineRef> = batch.iter().map(|(_, r)| *r).collect();
    for ((e, _), line) in batch.iter_mut().zip(lines.read_many(&refs)?) {
        e.line = line;
    }
    Ok(())
}

/// The personal rows of a row-id range, read alongside its entries in id order.
struct PersonalMerge<'s> {
    rows: rusqlite::Rows<'s>,
    /// The next personal row not yet matched: its id and sidecar.
    next: Option<(i64, Vec<u8>)>,
    done: bool,
    tenant: &'s str,
}

impl<'s> PersonalMerge<'s> {
    fn new(rows: rusqlite::Rows<'s>, tenant: &'s str) -> Self {
        Self {
            rows,
            next: None,
            done: false,
            tenant,
        }
    }

    /// The sidecar of entry row `id` (seq `seq`), appended to `side`; rows are asked for in
    /// ascending id order. A personal row whose id has no entry row is passed over, as the
    /// join it replaces would.
    fn take(
        &mut self,
        id: i64,
        seq: u64,
        side: &mut Vec<u8>,
    ) -> Result<Option<std::ops::Range<usize>>, StoreError> {
        loop {
            if self.next.is_none() && !self.done {
                match self.rows.next()? {
                    Some(row) => {
                        let pid = col_i64(row, 0, "a personal row's id")?;
                        let sidecar = col_blob(row, 1, || {
                            format!(
                                "the personal sidecar of entry {seq} of tenant {:?}",
                                self.tenant
                            )
                        })?;
                        self.next = Some((pid, sidecar.to_vec()));
                    }
                    None => self.done = true,
                }
            }
            match &self.next {
                Some((pid, _)) if *pid < id => self.next = None,
                Some((pid, sidecar)) if *pid == id => {
                    let a = side.len();
                    side.extend_from_slice(sidecar);
                    self.next = None;
                    return Ok(Some(a..side.len()));
                }
                _ => return Ok(None),
            }
        }
    }
}

fn misplaced(expected_seq: u64, tenant: &str, stored_chain: i64, seq: u64) -> StoreError {
    corrupt(format!(
        "entry {expected_seq} of tenant {tenant:?} is not stored where the chain's runs say \
         (found chain {stored_chain}, seq {seq})"
    ))
}

/// Checks that the entry read from a run's row-id range is the one the run maps there.
fn check_run_entry(
    row: &Row<'_>,
    chain: i64,
    expected_seq: u64,
    tenant: &str,
) -> Result<(), StoreError> {
    let stored_chain = col_i64(row, 0, "an entry's chain id")?;
    let seq = col_u64(row, 1, "an entry's seq")?;
    if stored_chain != chain || seq != expected_seq {
        return Err(misplaced(expected_seq, tenant, stored_chain, seq));
    }
    Ok(())
}

fn read_checkpoint(row: &Row<'_>, tenant: &str) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        tenant_id: tenant.to_owned(),
        size: col_u64(row, 0, "a checkpoint size")?,
        ts_ms: col_i64(row, 1, "a checkpoint time")?,
        note: col_text(row, 2, "a checkpoint note")?,
    })
}

/// Consecutive entries of one chain stored under consecutive row ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first_seq: i64,
    first_id: i64,
    count: i64,
}

impl Run {
    const fn last_seq(&self) -> i64 {
        self.first_seq + self.count - 1
    }

    const fn last_id(&self) -> i64 {
        self.first_id + self.count - 1
    }

    /// The row id of `seq`, if the run holds it.
    fn id_of(&self, seq: i64) -> Option<i64> {
        (self.first_seq..=self.last_seq())
            .contains(&seq)
            .then(|| self.first_id + (seq - self.first_seq))
    }
}

fn read_run(row: &Row<'_>) -> Result<Run, StoreError> {
    let run = Run {
        first_seq: col_i64(row, 0, "a run's first seq")?,
        first_id: col_i64(row, 1, "a run's first id")?,
        count: col_i64(row, 2, "a run's length")?,
    };
    if run.first_seq < 1
        || run.count < 1
        || run.first_seq.checked_add(run.count).is_none()
        || run.first_id.checked_add(run.count).is_none()
    {
        return Err(corrupt(format!("a run is out of range ({run:?})")));
    }
    Ok(run)
}

/// Merge order of query rows: `(ts_ms, rank of the tenant, row id)`. Within a chain the row id
/// grows with the seq, so this is the contract's (`ts_ms`, `tenant_id`, `seq`) order.
type MergeKey = (i64, usize, i64);

impl Store for SqliteStore {
    fn begin(&mut self) -> Result<Box<dyn WriteBatch + '_>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read under the write lock: no other writer can move the end now.
        let end: Option<String> = tx
            .prepare_cached("SELECT value FROM meta WHERE key = 'lines_end'")?
            .query_row([], |r| r.get(0))
            .optional()?;
        let end = match end {
            None => LinesEnd::START,
            Some(v) => LinesEnd::parse(&v).ok_or_else(|| {
                corrupt(format!(
                    "the committed end of the entry lines ({v:?}) is unreadable"
                ))
            })?,
        };
        let lines = SegmentWriter::begin(&lines_dir(&self.path), end, self.segment_limit)?;
        Ok(Box::new(SqliteBatch {
            tx,
            lines,
            failed: false,
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
        if from > to_seq {
            return Ok(());
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(());
        };
        self.for_each_run_range(chain, from, to_seq, &mut |first_seq, lo, hi| {
            let mut stmt = self.conn.prepare_cached(ENTRY_RANGE_SQL)?;
            let mut rows = stmt.query(params![lo, hi])?;
            let mut seq = first_seq;
            // Rows are read a block at a time, so that neighbouring lines are read together.
            let mut batch = Vec::with_capacity(SCAN_BLOCK);
            let mut more = true;
            while more {
                batch.clear();
                while batch.len() < SCAN_BLOCK {
                    let Some(row) = rows.next()? else {
                        more = false;
                        break;
                    };
                    check_run_entry(row, chain, seq, tenant)?;
                    batch.push(read_entry(row, tenant, 1)?);
                    seq += 1;
                }
                fill_lines(&self.lines, &mut batch)?;
                for (e, _) in batch.drain(..) {
                    if !f(e)? {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })
    }

    fn scan_line_blocks(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        block: &mut crate::LineBlock,
        f: &mut crate::BlockVisitor<'_>,
    ) -> Result<(), StoreError> {
        let from = from_seq.max(1);
        if from > to_seq {
            return Ok(());
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(());
        };
        let mut refs: Vec<LineRef> = Vec::with_capacity(SCAN_BLOCK);
        self.for_each_run_range(chain, from, to_seq, &mut |first_seq, lo, hi| {
            let mut stmt = self.conn.prepare_cached(LINE_RANGE_SQL)?;
            let mut rows = stmt.query(params![lo, hi])?;
            let mut pstmt = self.conn.prepare_cached(PERSONAL_RANGE_SQL)?;
            let mut personal = PersonalMerge::new(pstmt.query(params![lo, hi])?, tenant);
            let mut seq = first_seq;
            let mut more = true;
            while more {
                block.lines.clear();
                refs.clear();
                while refs.len() < SCAN_BLOCK {
                    let Some(row) = rows.next()? else {
                        more = false;
                        break;
                    };
                    let id = col_i64(row, 0, "an entry's row id")?;
                    let stored_chain = col_i64(row, 1, "an entry's chain id")?;
                    let stored_seq = col_u64(row, 2, "an entry's seq")?;
                    if stored_chain != chain || stored_seq != seq {
                        return Err(misplaced(seq, tenant, stored_chain, stored_seq));
                    }
                    refs.push(read_line_ref(row, 3, seq, tenant)?);
                    block.lines.push(crate::BlockLine {
                        seq,
                        line: 0..0,
                        personal: personal.take(id, seq, &mut block.side)?,
                    });
                    seq += 1;
                }
                if refs.is_empty() {
                    break;
                }
                let ranges = self
                    .lines
                    .read_into(&refs, &mut block.buf, &mut block.end)?;
                for (l, r) in block.lines.iter_mut().zip(ranges) {
                    l.line = r;
                }
                if !f(block)? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    fn query(
        &self,
        q: &Query,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if q.limit == Some(0) {
            return Ok(());
        }
        let mut start = q.start_ms.unwrap_or(i64::MIN);
        if let Some(a) = &q.after {
            start = start.max(a.ts_ms);
        }
        let end = q.end_ms.unwrap_or(i64::MAX);
        if start > end {
            return Ok(());
        }
        // One read transaction makes all the statements below read the same snapshot (unless
        // the caller is already inside one, e.g. querying from a callback). Declared first, it
        // ends after them.
        let _snapshot = if self.conn.is_autocommit() {
            Some(self.conn.unchecked_transaction()?)
        } else {
            None
        };
        let chains = self.query_chains(q)?;
        if chains.is_empty() {
            return Ok(());
        }
        let Some(filters) = self.query_filters(q)? else {
            return Ok(());
        };
        let mut remaining = q.limit.unwrap_or(u64::MAX);

        // Each chain's matches come in (ts_ms, id) order; merge them by (ts_ms, tenant, id),
        // holding one pending match per chain.
        let mut streams = Vec::with_capacity(chains.len());
        let mut heap = BinaryHeap::with_capacity(chains.len());
        for (rank, (chain, _)) in chains.iter().enumerate() {
            let mut stream = self.chain_stream(*chain, &filters, start, end)?;
            if let Some((ts, id)) = stream.next(self)? {
                heap.push(Reverse::<MergeKey>((ts, rank, id)));
            }
            streams.push(stream);
        }
        while let Some(Reverse((ts, rank, id))) = heap.pop() {
            let (Some(stream), Some((chain, tenant))) = (streams.get_mut(rank), chains.get(rank))
            else {
                return Err(invalid("query merge lost its place (internal error)"));
            };
            debug_assert_eq!(stream.chain, *chain);
            if let Some(a) = &q.after
                && self.not_after(a, ts, tenant, id)?
            {
                if let Some(next) = stream.next(self)? {
                    heap.push(Reverse((next.0, rank, next.1)));
                }
                continue;
            }
            let entry = stream.entry(self, id, tenant, remaining)?;
            remaining -= 1;
            if !f(entry)? || remaining == 0 {
                break;
            }
            if let Some((ts, id)) = stream.next(self)? {
                heap.push(Reverse((ts, rank, id)));
            }
        }
        Ok(())
    }

    fn entry_by_id(&self, entry_id: &[u8; 16]) -> Result<Option<StoredEntry>, StoreError> {
        let (hi, lo) = id_halves(entry_id);
        let mut stmt = self.conn.prepare_cached(ENTRY_BY_ID_SQL)?;
        let mut rows = stmt.query(params![lo, hi])?;
        match rows.next()? {
            Some(row) => {
                let tenant = col_text(row, 0, "a chain's tenant id")?;
                let (mut e, at) = read_entry(row, &tenant, 2)?;
                e.line = self.lines.read(at)?;
                Ok(Some(e))
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
        if from > last_seq {
            return Ok(Vec::new());
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(
            usize::try_from(last_seq - from + 1)
                .unwrap_or(0)
                .min(1 << 20),
        );
        let mut from = from;
        if let Some(anchor) = self.anchor(tenant)?
            && from <= anchor.size
        {
            // Archived entries: only the last incomplete block's hashes are kept.
            let tail_start = anchor.size - anchor.size % 256 + 1;
            if from < tail_start {
                return Ok(Vec::new());
            }
            for seq in from..=last_seq.min(anchor.size) {
                let i = usize::try_from(seq - tail_start).unwrap_or(usize::MAX);
                match anchor.tail_hashes.get(i) {
                    Some(h) => out.push(*h),
                    None => return Ok(Vec::new()),
                }
            }
            from = anchor.size + 1;
            if from > last_seq {
                return Ok(out);
            }
        }
        self.for_each_run_range(chain, from, last_seq, &mut |first_seq, lo, hi| {
            let mut stmt = self.conn.prepare_cached(HASH_RANGE_SQL)?;
            let mut rows = stmt.query(params![lo, hi])?;
            let mut seq = first_seq;
            while let Some(row) = rows.next()? {
                check_run_entry(row, chain, seq, tenant)?;
                out.push(col_hash(row, 2, || {
                    format!("the entry hash of entry {seq} of tenant {tenant:?}")
                })?);
                seq += 1;
            }
            Ok(true)
        })?;
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
            let hash = col_hash(row, 1, || {
                format!("Merkle node {level}/{idx} of tenant {tenant:?}")
            })?;
            out.push((idx, hash));
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

    fn checkpoints_since(
        &self,
        tenant: TenantRef<'_>,
        min_size: u64,
        after_ms: i64,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let min = i64::try_from(min_size).unwrap_or(i64::MAX);
        // Two index searches (by size, by time), merged: a follower asks after every commit.
        let mut stmt = self.conn.prepare_cached(
            "SELECT size, ts_ms, note, checkpoint_id FROM checkpoints \
             WHERE chain_id = ?1 AND size >= ?2 \
             UNION SELECT size, ts_ms, note, checkpoint_id FROM checkpoints \
             WHERE chain_id = ?1 AND ts_ms > ?3 \
             ORDER BY 1, 2, 4",
        )?;
        let mut rows = stmt.query(params![chain, min, after_ms])?;
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
            Some(row) => Ok(Some(col_text(row, 0, || format!("meta value {key:?}"))?)),
            None => Ok(None),
        }
    }

    fn anchor(&self, tenant: TenantRef<'_>) -> Result<Option<StoredAnchor>, StoreError> {
        if !self.archive_tables {
            return Ok(None);
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT size, record, tail_hashes FROM anchors WHERE chain_id = ?1")?;
        let mut rows = stmt.query([chain])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let size = col_u64(row, 0, "an anchor's size")?;
        let record = col_blob(row, 1, "an anchor record")?.to_vec();
        let tail = col_blob(row, 2, "an anchor's tail hashes")?;
        if tail.len() % 32 != 0 || (tail.len() / 32) as u64 != size % 256 {
            return Err(corrupt(format!(
                "the anchor of tenant {tenant:?} at size {size} holds {} bytes of tail hashes",
                tail.len()
            )));
        }
        let tail_hashes = tail
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                Hash(h)
            })
            .collect();
        Ok(Some(StoredAnchor {
            tenant_id: tenant.to_owned(),
            size,
            record,
            tail_hashes,
        }))
    }

    fn archive_segments(&self, tenant: TenantRef<'_>) -> Result<Vec<ArchiveSegment>, StoreError> {
        if !self.archive_tables {
            return Ok(Vec::new());
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT first_seq, last_seq, object, sha256, bytes, first_ts, last_ts, sealed_ms, \
             state, state_ms FROM archive_segments WHERE chain_id = ?1 ORDER BY first_seq",
        )?;
        let mut rows = stmt.query([chain])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let state = match col_i64(row, 8, "an archive segment's state")? {
                0 => SegmentState::Live,
                1 => SegmentState::Deleting,
                2 => SegmentState::Deleted,
                n => return Err(corrupt(format!("archive segment state {n} is unknown"))),
            };
            out.push(ArchiveSegment {
                tenant_id: tenant.to_owned(),
                first_seq: col_u64(row, 0, "an archive segment's first seq")?,
                last_seq: col_u64(row, 1, "an archive segment's last seq")?,
                object: col_text(row, 2, "an archive segment's object")?,
                sha256: col_hash(row, 3, "an archive segment's digest")?,
                bytes: col_u64(row, 4, "an archive segment's size")?,
                first_ts_ms: col_i64(row, 5, "an archive segment's first timestamp")?,
                last_ts_ms: col_i64(row, 6, "an archive segment's last timestamp")?,
                sealed_ms: col_i64(row, 7, "an archive segment's seal time")?,
                state,
                state_ms: col_i64(row, 9, "an archive segment's state time")?,
            });
        }
        Ok(out)
    }

    fn reclaim_space(&mut self) -> Result<u64, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        // Under the write lock: no batch is writing lines meanwhile.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let end: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'lines_end'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let end = match end {
            None => return Ok(0),
            Some(v) => LinesEnd::parse(&v).ok_or_else(|| {
                corrupt(format!(
                    "the committed end of the entry lines ({v:?}) is unreadable"
                ))
            })?,
        };
        // Segments are filled in order, and every chain's entries after its first stored one
        // are in the same or later segments: nothing below the smallest segment of any chain's
        // first stored entry is referenced.
        let lowest: Option<i64> = tx.query_row(
            "SELECT min(e.seg) FROM (SELECT chain_id, min(first_seq) AS s FROM runs GROUP BY chain_id) f \
             JOIN runs r ON r.chain_id = f.chain_id AND r.first_seq = f.s \
             JOIN entries e ON e.id = r.first_id",
            [],
            |r| r.get(0),
        )?;
        let keep_from = lowest.map_or(i64::from(end.seg), |l| l.min(i64::from(end.seg)));
        drop(tx);
        let dir = lines_dir(&self.path);
        let mut freed = 0u64;
        for item in std::fs::read_dir(&dir)? {
            let item = item?;
            let name = item.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".lines"))
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if n < keep_from {
                freed += item.metadata()?.len();
                std::fs::remove_file(item.path())?;
                self.lines.forget(u32::try_from(n).unwrap_or(0));
            }
        }
        if freed > 0 {
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(freed)
    }

    fn entries_for_subject(&self, subject_key: &[u8; 32]) -> Result<Vec<SubjectEntry>, StoreError> {
        subject_rows(&self.conn, subject_key)
    }

    fn purge_erased(&mut self, wait: Duration) -> Result<Purge, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let started = std::time::Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            // (busy, frames in the log, frames checkpointed): busy = 1 when a reader's snapshot
            // or another connection kept the log from being reset.
            let r: Result<(i64, i64, i64), rusqlite::Error> =
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    });
            let done = match r {
                Ok((0, _, _)) => true,
                Ok(_) => false,
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        )
                    ) =>
                {
                    false
                }
                Err(e) => return Err(e.into()),
            };
            if done {
                return Ok(Purge { attempts });
            }
            if started.elapsed() >= wait {
                return Err(StoreError::PurgeIncomplete {
                    waited_s: started.elapsed().as_secs(),
                });
            }
            std::thread::sleep(PURGE_RETRY);
        }
    }
}

/// The subject index rows of one keyed subject hash.
fn subject_rows(conn: &Connection, key: &[u8; 32]) -> Result<Vec<SubjectEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(SUBJECT_SQL)?;
    let mut rows = stmt.query([&key[..]])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(SubjectEntry {
            tenant_id: col_text(row, 0, "a chain's tenant id")?,
            seq: col_u64(row, 1, "a subject-index seq")?,
            entry_id: col_id16(row, 2, "a subject-index entry id")?,
        });
    }
    Ok(out)
}

// ---- write batches ---------------------------------------------------------------------------

/// What a batch knows about one chain it has touched.
#[derive(Debug)]
struct ChainState {
    chain_id: i64,
    /// Entries stored, including this batch's appends (= seq of the last entry).
    len: u64,
    /// The chain's last run (`None` while the chain is empty).
    last_run: Option<Run>,
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
///
/// [`WriteBatch::append`] checks a call (seq continuity, limits) before writing anything, and a
/// call that fails because an entry id is already stored is undone (its rows are deleted), so in
/// both cases the batch stays usable and is as it was before the call. A call that fails
/// half-way for any other reason (I/O error, disk full, …) is not undone: the batch is then
/// *poisoned*: every later method, including [`WriteBatch::commit`], fails with
/// [`StoreError::Invalid`], and the caller must drop the batch, which rolls all of it back. The
/// same happens when SQLite has rolled the transaction back by itself after an error. (Appends
/// run without a savepoint per call: its journal of every page the call changes cost ~10% of
/// append time.)
#[derive(Debug)]
struct SqliteBatch<'a> {
    tx: Transaction<'a>,
    /// The batch's entry lines (written past the committed end; durable before `tx` commits).
    lines: SegmentWriter,
    /// An `append` failed half-way; nothing more may be written or committed.
    failed: bool,
    /// The store's committed-name cache.
    names: &'a mut HashMap<String, i64>,
    /// Names looked up or added by this batch (moved into `names` on commit).
    new_names: HashMap<String, i64>,
    chains: HashMap<String, ChainState>,
}

/// Dictionary ids of one entry's strings.
#[derive(Debug, Clone, Copy)]
struct NameIds {
    agent: i64,
    session: i64,
    event_type: i64,
    tool: Option<i64>,
}

/// One posting row of an `append` call, before its entries have row ids.
struct NewPosting {
    kind: i64,
    name_id: i64,
    bucket: i64,
    /// Index in the call of the posting's first (lowest) entry.
    first: u32,
    n: usize,
    data: Vec<u8>,
}

/// `(kind, name id, bucket)` of a posting row.
type PostingKey = (i64, i64, i64);

/// Groups one `append` call's entries into posting rows.
fn build_postings(entries: &[NewEntry], ids: &[NameIds]) -> Vec<NewPosting> {
    // Group key -> index in `groups`. Consecutive entries often share a key (the same bucket,
    // session, event type), so each kind remembers its last key before asking the map.
    let mut index: HashMap<PostingKey, usize> = HashMap::new();
    let mut groups: Vec<(PostingKey, Vec<(i64, u32)>)> = Vec::new();
    let mut last: [Option<(PostingKey, usize)>; 5] = [None; 5];
    for (i, (e, n)) in (0u32..).zip(entries.iter().zip(ids)) {
        let bucket = e.ts_ms >> BUCKET_BITS;
        let keys = [
            Some((KIND_ALL, 0)),
            Some((KIND_AGENT, n.agent)),
            Some((KIND_SESSION, n.session)),
            Some((KIND_EVENT, n.event_type)),
            n.tool.map(|t| (KIND_TOOL, t)),
        ];
        for (slot, (kind, name)) in last.iter_mut().zip(keys).filter_map(|(s, k)| Some((s, k?))) {
            let key = (kind, name, bucket);
            let g = match *slot {
                Some((k, g)) if k == key => g,
                _ => {
                    let g = *index.entry(key).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    *slot = Some((key, g));
                    g
                }
            };
            if let Some((_, pairs)) = groups.get_mut(g) {
                pairs.push((e.ts_ms, i));
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for ((kind, name_id, bucket), mut pairs) in groups {
        // Usually sorted already (entries come in time order), which the sort detects.
        pairs.sort_unstable();
        let first = pairs.iter().map(|&(_, i)| i).min().unwrap_or(0);
        for p in &mut pairs {
            p.1 -= first;
        }
        let mut data = Vec::with_capacity(pairs.len() * 4);
        encode_posting(bucket, &pairs, &mut data);
        out.push(NewPosting {
            kind,
            name_id,
            bucket,
            first,
            n: pairs.len(),
            data,
        });
    }
    out
}

/// Why writing an `append` call's rows failed.
enum CallError {
    /// An entry id is already stored (or repeated within the call). The rows the call wrote
    /// before it, from the given row id on (`None`: no rows), must be removed.
    Duplicate(StoreError, Option<i64>),
    /// Anything else: the call may be half-written.
    Other(StoreError),
}

impl From<rusqlite::Error> for CallError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Other(e.into())
    }
}

/// What one `append` call writes, checked and resolved.
struct CallRows<'e> {
    tenant: &'e str,
    chain_id: i64,
    first_seq: i64,
    entries: &'e [NewEntry],
    /// Where each entry's line goes.
    lines: &'e [LineRef],
    ids: &'e [NameIds],
    postings: &'e [NewPosting],
    /// The chain's last run before the call.
    last_run: Option<Run>,
}

/// Writes one `append` call: entries (with consecutive row ids), sidecars, postings and the run.
/// Returns the chain's new last run.
fn write_call(conn: &Connection, call: &CallRows<'_>) -> Result<Run, CallError> {
    let CallRows {
        tenant,
        chain_id,
        first_seq,
        entries,
        lines,
        ids,
        postings,
        last_run,
    } = *call;
    let mut insert = conn.prepare_cached(
        "INSERT INTO entries(chain_id, seq, ts_ms, id_hi, id_lo, entry_hash, agent, session, \
         event_type, tool, seg, off, len) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let mut insert_personal =
        conn.prepare_cached("INSERT INTO personal(id, sidecar) VALUES (?1, ?2)")?;
    let mut insert_subject = conn.prepare_cached(
        "INSERT OR IGNORE INTO subject_index(subject_key, chain_id, seq, entry_id) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut first_id: Option<i64> = None;
    for (((seq, e), n), at) in (first_seq..).zip(entries).zip(ids).zip(lines) {
        let (hi, lo) = id_halves(&e.entry_id);
        // The row id is left to SQLite: max + 1, an append at the right edge of the table.
        let res = insert.execute(params![
            chain_id,
            seq,
            e.ts_ms,
            hi,
            lo,
            e.entry_hash.0,
            n.agent,
            n.session,
            n.event_type,
            n.tool,
            at.seg,
            i64::try_from(at.off).unwrap_or(i64::MAX),
            at.len,
        ]);
        if let Err(err) = res {
            if err.sqlite_extended_error_code() == Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) {
                return Err(CallError::Duplicate(
                    invalid(format!(
                        "entry id {} (seq {} of tenant {tenant:?}) is already stored; entry ids \
                         must be unique",
                        hex16(&e.entry_id),
                        e.seq
                    )),
                    first_id,
                ));
            }
            return Err(err.into());
        }
        let id = conn.last_insert_rowid();
        // Runs and postings rely on one call's entries having consecutive row ids.
        let first = *first_id.get_or_insert(id);
        if id != first + (seq - first_seq) {
            return Err(CallError::Other(invalid(format!(
                "entry row ids are not consecutive ({id} after {}); the entries table is full",
                first + (seq - first_seq) - 1
            ))));
        }
        if let Some(p) = &e.personal {
            insert_personal.execute(params![id, p.sidecar])?;
            for key in &p.subject_keys {
                insert_subject.execute(params![&key[..], chain_id, seq, &e.entry_id[..]])?;
            }
        }
    }
    let first_id = first_id.unwrap_or_default();
    let mut insert_posting = conn.prepare_cached(
        "INSERT INTO postings(chain_id, kind, name_id, bucket, first_id, n, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for p in postings {
        insert_posting.execute(params![
            chain_id,
            p.kind,
            p.name_id,
            p.bucket,
            first_id + i64::from(p.first),
            i64::try_from(p.n).unwrap_or(i64::MAX),
            p.data,
        ])?;
    }
    let count = i64::try_from(entries.len()).unwrap_or(i64::MAX);
    match last_run {
        // The call continues the chain's last run: extend it.
        Some(r) if r.last_seq() + 1 == first_seq && r.last_id() + 1 == first_id => {
            let run = Run {
                count: r.count + count,
                ..r
            };
            conn.prepare_cached(
                "UPDATE runs SET count = ?3 WHERE chain_id = ?1 AND first_seq = ?2",
            )?
            .execute(params![chain_id, run.first_seq, run.count])?;
            Ok(run)
        }
        _ => {
            let run = Run {
                first_seq,
                first_id,
                count,
            };
            conn.prepare_cached(
                "INSERT INTO runs(chain_id, first_seq, first_id, count) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![chain_id, run.first_seq, run.first_id, run.count])?;
            Ok(run)
        }
    }
}

/// Removes the entries (and their sidecars) from row id `first_id` on: the rows a failed
/// `append` call wrote before it failed (they are the last rows of the table).
fn undo_entries(conn: &Connection, first_id: i64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "DELETE FROM subject_index WHERE (chain_id, seq) IN \
         (SELECT chain_id, seq FROM entries WHERE id >= ?1)",
    )?
    .execute([first_id])?;
    conn.prepare_cached("DELETE FROM personal WHERE id >= ?1")?
        .execute([first_id])?;
    conn.prepare_cached("DELETE FROM entries WHERE id >= ?1")?
        .execute([first_id])?;
    Ok(())
}

impl SqliteBatch<'_> {
    /// Fails if an earlier `append` of this batch failed half-way (see [`SqliteBatch`]) or the
    /// transaction is gone.
    fn usable(&self) -> Result<(), StoreError> {
        // SQLite rolls a transaction back by itself after some errors (disk full, I/O); later
        // statements would then each commit on their own.
        if self.failed || self.tx.is_autocommit() {
            return Err(invalid(
                "an earlier write of this batch failed half-way; drop the batch (nothing of it \
                 is committed) and start a new one",
            ));
        }
        Ok(())
    }

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
                // Count what is stored rather than trusting the head: the last run, checked
                // against the entry it ends with.
                let last_run = self
                    .tx
                    .prepare_cached(LAST_RUN_SQL)?
                    .query_row([chain_id], |r| Ok(read_run(r)))
                    .optional()?
                    .transpose()?;
                if let Some(run) = last_run {
                    let stored: Option<(i64, i64)> = self
                        .tx
                        .prepare_cached("SELECT chain_id, seq FROM entries WHERE id = ?1")?
                        .query_row([run.last_id()], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    if stored != Some((chain_id, run.last_seq())) {
                        return Err(corrupt(format!(
                            "the last entry of tenant {tenant:?} ({}) is not stored where the \
                             chain's runs say",
                            run.last_seq()
                        )));
                    }
                }
                // A chain whose every entry was archived has no runs: its length is its anchor's.
                let archived: u64 = if last_run.is_none() {
                    self.tx
                        .prepare_cached("SELECT size FROM anchors WHERE chain_id = ?1")?
                        .query_row([chain_id], |r| r.get::<_, i64>(0))
                        .optional()?
                        .map_or(0, i64::unsigned_abs)
                } else {
                    0
                };
                ChainState {
                    chain_id,
                    len: last_run.map_or(archived, |r| r.last_seq().unsigned_abs()),
                    last_run,
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
                ChainState {
                    chain_id,
                    len: 0,
                    last_run: None,
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
        self.usable()?;
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
        self.usable()?;
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
        }
        let first_seq = to_i64(len + 1, "seq")?;
        let fits = i64::try_from(entries.len())
            .ok()
            .filter(|&n| n <= i64::from(u32::MAX))
            .and_then(|n| first_seq.checked_add(n));
        if fits.is_none() {
            return Err(invalid(format!(
                "an append of {} entries from seq {first_seq} is beyond this store's limits",
                entries.len()
            )));
        }
        // Consecutive entries often repeat a string (the same session or event type): compare
        // with the previous entry's before hashing.
        let mut ids: Vec<NameIds> = Vec::with_capacity(entries.len());
        let mut prev: Option<(&NewEntry, NameIds)> = None;
        for e in entries {
            let agent = match prev {
                Some((p, n)) if p.agent_id == e.agent_id => n.agent,
                _ => self.name_id(&e.agent_id)?,
            };
            let session = match prev {
                Some((p, n)) if p.session_id == e.session_id => n.session,
                _ => self.name_id(&e.session_id)?,
            };
            let event_type = match prev {
                Some((p, n)) if p.event_type == e.event_type => n.event_type,
                _ => self.name_id(&e.event_type)?,
            };
            let tool = match (e.tool.as_deref(), prev) {
                (None, _) => None,
                (Some(t), Some((p, n))) if p.tool.as_deref() == Some(t) => n.tool,
                (Some(t), _) => Some(self.name_id(t)?),
            };
            let n = NameIds {
                agent,
                session,
                event_type,
                tool,
            };
            ids.push(n);
            prev = Some((e, n));
        }
        let postings = build_postings(entries, &ids);
        let (chain_id, last_run) = match self.chain(tenant, true)? {
            Some(state) => (state.chain_id, state.last_run),
            None => return Err(invalid("chain creation failed (internal error)")),
        };

        // No savepoint (its journal of every page the call changes cost ~10% of an append): a
        // duplicate entry id is undone by deleting the call's rows, and any other failure
        // half-way poisons the batch.
        let lines = self.lines.plan(entries.iter().map(|e| e.line.len()))?;
        let call = CallRows {
            tenant,
            chain_id,
            first_seq,
            entries,
            lines: &lines,
            ids: &ids,
            postings: &postings,
            last_run,
        };
        let run = match write_call(&self.tx, &call) {
            Ok(run) => run,
            Err(CallError::Duplicate(err, written)) => {
                if written.is_some_and(|first| undo_entries(&self.tx, first).is_err()) {
                    self.failed = true;
                }
                return Err(err);
            }
            Err(CallError::Other(err)) => {
                self.failed = true;
                return Err(err);
            }
        };
        // The rows are in; now the lines they point at (made durable at commit).
        if let Err(err) = self.lines.write(entries.iter().map(|e| e.line.as_slice())) {
            self.failed = true;
            return Err(err);
        }
        if let Some(state) = self.chains.get_mut(tenant) {
            state.len += entries.len() as u64;
            state.last_run = Some(run);
            state.dirty = true;
        }
        Ok(())
    }

    fn set_head(&mut self, head: &ChainHead) -> Result<(), StoreError> {
        self.usable()?;
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
        if let Some(run) = state.last_run {
            // The head must describe the last stored entry.
            let (hash, hi, lo): (Vec<u8>, i64, i64) = self
                .tx
                .prepare_cached("SELECT entry_hash, id_hi, id_lo FROM entries WHERE id = ?1")?
                .query_row([run.last_id()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            if hash != head.head_hash.0 || (hi, lo) != id_halves(&head.last_entry_id) {
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
        self.usable()?;
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
        self.usable()?;
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

    fn subject_entries(&mut self, subject_key: &[u8; 32]) -> Result<Vec<SubjectEntry>, StoreError> {
        self.usable()?;
        subject_rows(&self.tx, subject_key)
    }

    fn erase_personal(
        &mut self,
        tenant: TenantRef<'_>,
        seqs: &[u64],
    ) -> Result<Vec<Erasure>, StoreError> {
        self.usable()?;
        let Some(chain) = self.chain(tenant, false)?.map(|s| s.chain_id) else {
            return Ok(vec![Erasure::NotStored; seqs.len()]);
        };
        let mut out = Vec::with_capacity(seqs.len());
        let mut run_at = self.tx.prepare_cached(RUN_AT_SQL)?;
        let mut stored = self
            .tx
            .prepare_cached("SELECT 1 FROM entries WHERE id = ?1 AND chain_id = ?2 AND seq = ?3")?;
        let mut del_personal = self
            .tx
            .prepare_cached("DELETE FROM personal WHERE id = ?1")?;
        let mut del_index = self
            .tx
            .prepare_cached("DELETE FROM subject_index WHERE chain_id = ?1 AND seq = ?2")?;
        for &seq in seqs {
            let Ok(seq_i) = i64::try_from(seq) else {
                out.push(Erasure::NotStored);
                continue;
            };
            let run = run_at
                .query_row(params![chain, seq_i], |r| Ok(read_run(r)))
                .optional()?
                .transpose()?;
            let id = run.and_then(|r| r.id_of(seq_i));
            let present = match id {
                Some(id) => stored.exists(params![id, chain, seq_i])?,
                None => false,
            };
            let Some(id) = id.filter(|_| present) else {
                out.push(Erasure::NotStored);
                continue;
            };
            let removed = del_personal.execute([id])?;
            del_index.execute(params![chain, seq_i])?;
            out.push(if removed > 0 {
                Erasure::Removed
            } else {
                Erasure::AlreadyAbsent
            });
        }
        Ok(out)
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.usable()?;
        self.tx
            .prepare_cached(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
        Ok(())
    }

    fn archive_prefix(&mut self, anchor: &StoredAnchor) -> Result<(), StoreError> {
        self.usable()?;
        let tenant = anchor.tenant_id.as_str();
        let Some(state) = self.chain(tenant, false)? else {
            return Err(invalid(format!(
                "no chain for tenant {tenant:?} to archive"
            )));
        };
        let (chain, len) = (state.chain_id, state.len);
        let current: u64 = self
            .tx
            .prepare_cached("SELECT size FROM anchors WHERE chain_id = ?1")?
            .query_row([chain], |r| r.get::<_, i64>(0))
            .optional()?
            .map_or(0, i64::unsigned_abs);
        if anchor.size <= current || anchor.size > len {
            return Err(invalid(format!(
                "tenant {tenant:?}: cannot archive up to entry {} (entries {}..={len} are stored)",
                anchor.size,
                current + 1
            )));
        }
        if anchor.tail_hashes.len() as u64 != anchor.size % 256 {
            return Err(invalid(format!(
                "the anchor at size {} must carry {} tail hashes, not {}",
                anchor.size,
                anchor.size % 256,
                anchor.tail_hashes.len()
            )));
        }
        let size = to_i64(anchor.size, "an anchor size")?;
        // Runs wholly before the anchor go; the run holding it is cut.
        let runs: Vec<Run> = {
            let mut stmt = self.tx.prepare_cached(
                "SELECT first_seq, first_id, count FROM runs \
                 WHERE chain_id = ?1 AND first_seq <= ?2 ORDER BY first_seq",
            )?;
            let mut rows = stmt.query(params![chain, size])?;
            let mut v = Vec::new();
            while let Some(row) = rows.next()? {
                v.push(read_run(row)?);
            }
            v
        };
        let mut boundary_id: Option<i64> = None;
        for run in runs {
            let cut = run.last_seq().min(size);
            let last_id = run.first_id + (cut - run.first_seq);
            for sql in [
                "DELETE FROM personal WHERE id BETWEEN ?1 AND ?2",
                "DELETE FROM entries WHERE id BETWEEN ?1 AND ?2",
            ] {
                self.tx
                    .prepare_cached(sql)?
                    .execute(params![run.first_id, last_id])?;
            }
            self.tx
                .prepare_cached("DELETE FROM runs WHERE chain_id = ?1 AND first_seq = ?2")?
                .execute(params![chain, run.first_seq])?;
            if cut < run.last_seq() {
                let k = cut - run.first_seq + 1;
                self.tx
                    .prepare_cached(
                        "INSERT INTO runs(chain_id, first_seq, first_id, count) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![chain, size + 1, run.first_id + k, run.count - k])?;
            }
            boundary_id = Some(last_id + 1);
        }
        // Posting rows whose every entry is gone are deleted; a row that also lists kept
        // entries stays (queries skip ids below the chain's first stored one).
        if let Some(boundary) = boundary_id {
            let mut doomed = Vec::new();
            {
                let mut stmt = self.tx.prepare_cached(
                    "SELECT kind, name_id, bucket, first_id, n, data FROM postings \
                     WHERE chain_id = ?1 AND first_id < ?2",
                )?;
                let mut rows = stmt.query(params![chain, boundary])?;
                let mut pairs = Vec::new();
                while let Some(row) = rows.next()? {
                    let bucket = col_i64(row, 2, "a posting's bucket")?;
                    let first_id = col_i64(row, 3, "a posting's first id")?;
                    let n = col_u64(row, 4, "a posting's length")?;
                    pairs.clear();
                    decode_posting(
                        bucket,
                        first_id,
                        n,
                        col_blob(row, 5, "a posting's data")?,
                        &mut pairs,
                    )
                    .ok_or_else(|| corrupt("a posting list cannot be decoded"))?;
                    if pairs.iter().all(|&(_, id)| id < boundary) {
                        doomed.push((
                            col_i64(row, 0, "a posting's kind")?,
                            col_i64(row, 1, "a posting's name")?,
                            bucket,
                            first_id,
                        ));
                    }
                }
            }
            let mut del = self.tx.prepare_cached(
                "DELETE FROM postings WHERE chain_id = ?1 AND kind = ?2 AND name_id = ?3 \
                 AND bucket = ?4 AND first_id = ?5",
            )?;
            for (kind, name, bucket, first_id) in doomed {
                del.execute(params![chain, kind, name, bucket, first_id])?;
            }
        }
        self.tx
            .prepare_cached("DELETE FROM checkpoints WHERE chain_id = ?1 AND size < ?2")?
            .execute(params![chain, size])?;
        let tail: Vec<u8> = anchor
            .tail_hashes
            .iter()
            .flat_map(|h| h.as_bytes().to_vec())
            .collect();
        self.tx
            .prepare_cached(
                "INSERT INTO anchors(chain_id, size, record, tail_hashes) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(chain_id) DO UPDATE SET size = excluded.size, \
                 record = excluded.record, tail_hashes = excluded.tail_hashes",
            )?
            .execute(params![chain, size, anchor.record, tail])?;
        // The chain's last run may have been cut or removed: appends in this batch extend the
        // run as it now is.
        let last_run = self
            .tx
            .prepare_cached(LAST_RUN_SQL)?
            .query_row([chain], |r| Ok(read_run(r)))
            .optional()?
            .transpose()?;
        if let Some(st) = self.chains.get_mut(tenant) {
            st.last_run = last_run;
        }
        Ok(())
    }

    fn forget_subjects(&mut self, tenant: TenantRef<'_>, seqs: &[u64]) -> Result<(), StoreError> {
        self.usable()?;
        let Some(chain) = self.chain(tenant, false)?.map(|s| s.chain_id) else {
            return Ok(());
        };
        let mut del = self
            .tx
            .prepare_cached("DELETE FROM subject_index WHERE chain_id = ?1 AND seq = ?2")?;
        for &seq in seqs {
            del.execute(params![chain, to_i64(seq, "a seq")?])?;
        }
        Ok(())
    }

    fn put_archive_segment(&mut self, seg: &ArchiveSegment) -> Result<(), StoreError> {
        self.usable()?;
        let Some(state) = self.chain(&seg.tenant_id, false)? else {
            return Err(invalid(format!(
                "no chain for tenant {:?} to record an archive segment of",
                seg.tenant_id
            )));
        };
        let chain = state.chain_id;
        let st = match seg.state {
            SegmentState::Live => 0,
            SegmentState::Deleting => 1,
            SegmentState::Deleted => 2,
        };
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO archive_segments(chain_id, first_seq, last_seq, object, \
                 sha256, bytes, first_ts, last_ts, sealed_ms, state, state_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                chain,
                to_i64(seg.first_seq, "a segment's first seq")?,
                to_i64(seg.last_seq, "a segment's last seq")?,
                seg.object,
                seg.sha256.as_bytes().as_slice(),
                to_i64(seg.bytes, "a segment's size")?,
                seg.first_ts_ms,
                seg.last_ts_ms,
                seg.sealed_ms,
                st,
                seg.state_ms
            ])?;
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.usable()?;
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
            mut lines,
            names,
            new_names,
            ..
        } = this;
        // The lines are durable before the rows that point at them are committed.
        if lines.is_dirty() {
            let end = lines.sync()?;
            tx.prepare_cached(
                "INSERT INTO meta(key, value) VALUES ('lines_end', ?1) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([end.to_meta()])?;
        }
        tx.commit()?;
        lines.committed();
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
        entry_id[8..].copy_from_slice(&ts_ms.to_be_bytes());
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

    fn head(tenant: &str, last: &NewEntry) -> ChainHead {
        ChainHead {
            tenant_id: tenant.into(),
            size: last.seq,
            head_hash: last.entry_hash,
            last_entry_id: last.entry_id,
            merkle_state: Vec::new(),
            last_checkpoint_size: 0,
            last_checkpoint_ms: 0,
        }
    }

    /// 50 entries of tenant "t": agents a0..a2, sessions s0..s3, tool "bash" on even seqs and
    /// "rare" on seq 9, timestamps over several buckets.
    fn fixture(dir: &Path) -> SqliteStore {
        let mut store = SqliteStore::create(dir.join("s.db")).unwrap();
        let entries: Vec<_> = (1..=50)
            .map(|s| {
                let tool = if s == 9 {
                    Some("rare")
                } else {
                    (s % 2 == 0).then_some("bash")
                };
                let ts = i64::try_from(s).unwrap() << (BUCKET_BITS - 2);
                entry(s, ts, &format!("a{}", s % 3), &format!("s{}", s % 4), tool)
            })
            .collect();
        let mut b = store.begin().unwrap();
        b.append("t", &entries[..20]).unwrap();
        b.append("t", &entries[20..]).unwrap();
        b.set_head(&head("t", &entries[49])).unwrap();
        b.commit().unwrap();
        store
    }

    /// Every statement the read paths run.
    const READ_STATEMENTS: [&str; 13] = [
        RUN_AT_SQL,
        RUNS_FROM_SQL,
        LAST_RUN_SQL,
        ENTRY_RANGE_SQL,
        LINE_RANGE_SQL,
        PERSONAL_RANGE_SQL,
        HASH_RANGE_SQL,
        ENTRY_AT_SQL,
        ENTRY_BY_ID_SQL,
        NEXT_BUCKET_SQL,
        BUCKET_POSTINGS_SQL,
        PROBE_SQL,
        SUBJECT_SQL,
    ];

    #[test]
    fn read_statements_search_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = fixture(dir.path());
        for sql in READ_STATEMENTS {
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let n = stmt.parameter_count();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(vec![1i64; n]), |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let text = plan.join("\n");
            assert!(
                plan.iter().any(|l| l.starts_with("SEARCH")),
                "no index search:\n{sql}\n{text}"
            );
            // The probe sums the rows of its own LIMIT-ed subquery.
            assert!(
                !plan
                    .iter()
                    .any(|l| l.starts_with("SCAN") && l != "SCAN (subquery-1)"),
                "full scan:\n{sql}\n{text}"
            );
            // entries_for_subject sorts its (few) rows by tenant; nothing else sorts.
            assert!(
                sql == SUBJECT_SQL || !text.contains("TEMP B-TREE"),
                "sorts instead of reading in order:\n{sql}\n{text}"
            );
        }
    }

    #[test]
    fn statements_are_not_reprepared_when_rebound() {
        // With values 0 and 1 in the bindings, SQLite would otherwise re-prepare statements on
        // every use through the statement cache (see `configure`).
        let dir = tempfile::tempdir().unwrap();
        let store = fixture(dir.path());
        let _snapshot = store.conn.unchecked_transaction().unwrap();
        for sql in READ_STATEMENTS {
            for k in 0..5i64 {
                let mut stmt = store.conn.prepare_cached(sql).unwrap();
                let n = i64::try_from(stmt.parameter_count()).unwrap();
                let mut rows = stmt
                    .query(rusqlite::params_from_iter((0..n).map(|i| (k + i) % 3)))
                    .unwrap();
                while rows.next().unwrap().is_some() {}
            }
            let stmt = store.conn.prepare_cached(sql).unwrap();
            assert_eq!(
                stmt.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "{sql}"
            );
        }
    }

    #[test]
    fn postings_round_trip() {
        for ts0 in [0, 5, -1, i64::MIN, i64::MAX - 10, 1_776_124_800_000] {
            let bucket = ts0 >> BUCKET_BITS;
            let start = bucket << BUCKET_BITS;
            let end = start | ((1 << BUCKET_BITS) - 1);
            let mut pairs = vec![
                (start, 7u32),
                (ts0.clamp(start, end), 0),
                (ts0.clamp(start, end), 3),
                (end, 1),
            ];
            pairs.sort_unstable();
            let mut data = Vec::new();
            encode_posting(bucket, &pairs, &mut data);
            let mut out = Vec::new();
            decode_posting(bucket, 100, 4, &data, &mut out).unwrap();
            let want: Vec<(i64, i64)> = pairs
                .iter()
                .map(|&(ts, off)| (ts, 100 + i64::from(off)))
                .collect();
            assert_eq!(out, want, "ts0 {ts0}");
            // Malformed lists are refused: wrong length, truncation, trailing bytes, a time past
            // the bucket.
            assert!(decode_posting(bucket, 100, 5, &data, &mut Vec::new()).is_none());
            assert!(decode_posting(bucket, 100, 3, &data, &mut Vec::new()).is_none());
            let cut = &data[..data.len() - 1];
            assert!(decode_posting(bucket, 100, 4, cut, &mut Vec::new()).is_none());
            let mut past = Vec::new();
            put_varint(&mut past, 1 << BUCKET_BITS);
            put_varint(&mut past, 0);
            assert!(decode_posting(bucket, 100, 1, &past, &mut Vec::new()).is_none());
        }
        let mut long = Vec::new();
        put_varint(&mut long, u64::MAX);
        assert_eq!(long.len(), 10);
        assert_eq!(get_varint(&long, &mut 0), Some(u64::MAX));
        assert_eq!(get_varint(&[0xff; 11], &mut 0), None);
    }

    #[test]
    fn queries_read_the_most_selective_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store = fixture(dir.path());
        let id = |name: &str| store.lookup_name(name).unwrap().unwrap();
        let chain = store.chain_id("t").unwrap().unwrap();
        let driver = |filters: &[(i64, i64)]| {
            store
                .chain_stream(chain, filters, i64::MIN, i64::MAX)
                .unwrap()
                .driver
        };
        // a1 (17 entries) is more selective than bash (25); rare (1) more than a0 (16).
        let (a1, bash) = ((KIND_AGENT, id("a1")), (KIND_TOOL, id("bash")));
        assert_eq!(driver(&[a1, bash]), a1);
        assert_eq!(driver(&[bash, a1]), a1);
        let (a0, rare) = ((KIND_AGENT, id("a0")), (KIND_TOOL, id("rare")));
        assert_eq!(driver(&[a0, rare]), rare);
        assert_eq!(driver(&[]), (KIND_ALL, 0));
        // And the stream yields exactly the matches, in (ts_ms, id) order.
        let mut stream = store.chain_stream(chain, &[a0, bash], 0, i64::MAX).unwrap();
        let mut seqs = Vec::new();
        while let Some((_, id)) = stream.next(&store).unwrap() {
            seqs.push(store.entry_at(id, chain, "t").unwrap().seq);
        }
        assert_eq!(seqs, vec![6, 12, 18, 24, 30, 36, 42, 48]);
    }

    #[test]
    fn a_batch_whose_append_failed_half_way_is_poisoned() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = fixture(dir.path());
        // Make the postings insert fail after the call's entries are written.
        store
            .conn
            .execute_batch(
                "CREATE TEMP TRIGGER fail_postings BEFORE INSERT ON postings \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let e51 = entry(51, 1, "a", "s", None);
        {
            let mut b = store.begin().unwrap();
            assert!(matches!(
                b.append("t", std::slice::from_ref(&e51)),
                Err(StoreError::Sqlite(_))
            ));
            // Everything else is refused now, and so is the commit.
            for r in [
                b.append("t", std::slice::from_ref(&e51)),
                b.set_head(&head("t", &e51)),
                b.set_meta("k", "v"),
                b.put_nodes("t", 0, &[(0, Hash([0; 32]))]),
                b.chain_head("t").map(|_| ()),
            ] {
                assert!(matches!(r, Err(StoreError::Invalid { .. })), "{r:?}");
            }
            assert!(matches!(b.commit(), Err(StoreError::Invalid { .. })));
        }
        store
            .conn
            .execute_batch("DROP TRIGGER fail_postings")
            .unwrap();
        // Nothing of the failed batch is stored, and the chain continues normally.
        assert_eq!(store.chains().unwrap()[0].size, 50);
        assert!(store.entry_by_id(&e51.entry_id).unwrap().is_none());
        let mut b = store.begin().unwrap();
        b.append("t", std::slice::from_ref(&e51)).unwrap();
        b.set_head(&head("t", &e51)).unwrap();
        b.commit().unwrap();
        assert_eq!(store.entry_by_id(&e51.entry_id).unwrap().unwrap().seq, 51);
    }

    #[test]
    fn entries_view_shows_entry_ids_in_hex() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::create(dir.path().join("s.db")).unwrap();
        let mut e = entry(1, 5, "a", "s", Some("bash"));
        e.entry_id = [
            0x01, 0x9d, 0x8f, 0x00, 0x00, 0x00, 0x70, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0xff,
        ];
        let mut b = store.begin().unwrap();
        b.append("t", std::slice::from_ref(&e)).unwrap();
        b.set_head(&head("t", &e)).unwrap();
        b.commit().unwrap();
        let row: (String, i64, String, String, String) = store
            .conn
            .query_row(
                "SELECT tenant_id, seq, entry_id, agent_id, tool FROM entries_view",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                "t".into(),
                1,
                "019d8f000000700080000000000000ff".into(),
                "a".into(),
                "bash".into()
            )
        );
        assert_eq!(row.2, hex16(&e.entry_id));
    }
}
