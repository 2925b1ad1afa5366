//! The schema: tables, archive tables, the subject index, and per-connection settings.

use super::*;

pub(super) const SCHEMA: &str = r"
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
CREATE UNIQUE INDEX entries_entry_id ON entries(id_hi, id_lo);

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

/// Copies of entry lines committed without an fsync of their segment file (small batches):
/// the segment, the offset and the bytes, kept until a later batch fsyncs the segment. A store
/// opened after the machine stopped writes them back where the file lacks them
/// (`segments::restore_unsynced`). Created on open when missing, like the archive tables.
pub(super) const UNSYNCED_SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS unsynced_lines(
    seg  INTEGER NOT NULL,
    off  INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY(seg, off)
) WITHOUT ROWID;
";

/// Tables of archiving (created on open when missing, so stores made before archiving existed
/// gain them without a schema version change).
pub(super) const ARCHIVE_SCHEMA: &str = r"
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

/// The subject index (schema version 3; also created by the migration from version 2).
pub(super) const SUBJECT_INDEX_DDL: &str = r"
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

/// Applies the per-connection settings.
/// The entry-id index of stores created before 2026-12-05: low half first. Entry ids are
/// UUIDv7, so their high half (the writer's millisecond) grows with every append while the low
/// half is random at each new millisecond: that index took inserts all over its B-tree, and once
/// it outgrew the page cache (a few million entries) every append paid for page reads and
/// rewrote scattered pages (docs/PERFORMANCE.md, "Append cost and store size").
const ENTRY_ID_INDEX_LOW_FIRST: &str =
    "CREATE UNIQUE INDEX entries_entry_id ON entries(id_lo, id_hi)";

/// Rebuilds an entry-id index of the old layout ([`ENTRY_ID_INDEX_LOW_FIRST`]) as
/// `(id_hi, id_lo)`, whose inserts go to the right edge. Same uniqueness, same look-ups (both
/// halves are always given), no change to any stored value; older binaries open the rebuilt
/// store unchanged. One transaction: on error the old index stays. Returns whether it rebuilt.
pub(super) fn upgrade_entry_id_index(conn: &mut Connection) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let sql: Option<String> = tx
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'entries_entry_id'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if sql.as_deref() != Some(ENTRY_ID_INDEX_LOW_FIRST) {
        return Ok(false);
    }
    tx.execute_batch(
        "DROP INDEX entries_entry_id;
         CREATE UNIQUE INDEX entries_entry_id ON entries(id_hi, id_lo);",
    )?;
    tx.commit()?;
    Ok(true)
}

pub(super) fn configure(conn: &Connection, read_only: bool) -> Result<(), StoreError> {
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
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        // Deleted personal data is overwritten in the database file rather than left in free
        // pages. Deletes are rare, so this costs nothing on the append path.
        conn.pragma_update(None, "secure_delete", "ON")?;
    }
    Ok(())
}
