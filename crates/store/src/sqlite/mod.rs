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
//!   `(id_hi, id_lo)` makes entry ids unique across chains and finds an entry by id (integer keys
//!   compare several times faster than a 16-byte blob). High half first: UUIDv7 ids grow with
//!   the writer's clock, so inserts go to the index's right edge whatever the store's size
//!   (stores made before 2026-12-05 had the low half first; opening one for writing rebuilds
//!   the index, see `schema::upgrade_entry_id_index`).
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
//! freed pages are overwritten with zeros, and [`ErasureStore::purge_erased`] then checkpoints and
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
use crate::{ErasureBatch, ErasureStore, RetentionBatch, RetentionStore};

mod batch;
mod erasure;
mod query;
mod read;
mod retention;
mod rows;
mod schema;
mod statements;

use batch::*;
use rows::*;
use schema::*;
use statements::*;

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

/// A batch whose new lines take at most this many bytes commits them with one fsync, the
/// transaction's, which holds their copy (`unsynced_lines`); larger ones fsync their segment
/// file first. A lone decision's record (about 1 KiB) pays one fsync instead of two.
const UNSYNCED_BATCH_BYTES: usize = 64 * 1024;

/// Most bytes of lines kept durable only through their copies; the batch that would go past
/// it fsyncs the segment file and drops the copies.
const UNSYNCED_MAX_BYTES: u64 = 1 << 20;

/// WAL pages after which a commit checkpoints (SQLite's default is 1,000 pages, 8 MiB here).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 4000;

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

/// Whether the store has the table `name` (tables added after a store was made are created by
/// its first writable open; a read-only open may find them missing).
fn table_exists(conn: &Connection, name: &str) -> Result<bool, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Writes back the lines committed through their copies (`unsynced_lines`) that the segment
/// files lack: after the machine stopped, the kernel may not have written them. Every open
/// does it, a read-only one too (it writes the bytes the committed rows point at, nothing
/// else), so that reads after a crash find every committed line; a process that may not write
/// the files leaves them to the next one that can.
fn restore_unsynced_lines(
    conn: &Connection,
    path: &Path,
    read_only: bool,
) -> Result<(), StoreError> {
    if read_only && !table_exists(conn, "unsynced_lines")? {
        return Ok(());
    }
    let mut stmt = conn.prepare("SELECT seg, off, data FROM unsynced_lines ORDER BY seg, off")?;
    let mut rows = stmt.query([])?;
    let mut copies = Vec::new();
    while let Some(row) = rows.next()? {
        let seg = u32::try_from(col_i64(row, 0, "an unsynced line's segment")?)
            .map_err(|_| corrupt("an unsynced line's segment number is out of range"))?;
        let off = col_u64(row, 1, "an unsynced line's offset")?;
        let data: Vec<u8> = row.get(2)?;
        copies.push((seg, off, data));
    }
    if copies.is_empty() {
        return Ok(());
    }
    match crate::segments::restore_unsynced(&lines_dir(path), &copies) {
        Ok(_) => Ok(()),
        Err(StoreError::Io(e)) if read_only && e.kind() == std::io::ErrorKind::PermissionDenied => {
            Ok(())
        }
        Err(e) => Err(e),
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
        tx.execute_batch(UNSYNCED_SCHEMA)?;
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
    /// [`ErasureStore::purge_erased`] then fail with [`StoreError::ReadOnly`].
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
        let mut conn = Connection::open_with_flags(path, flags)?;
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
        if !read_only {
            upgrade_entry_id_index(&mut conn)?;
        }
        let archive_tables = if read_only {
            table_exists(&conn, "anchors")?
        } else {
            conn.execute_batch(ARCHIVE_SCHEMA)?;
            conn.execute_batch(UNSYNCED_SCHEMA)?;
            true
        };
        restore_unsynced_lines(&conn, path, read_only)?;
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
