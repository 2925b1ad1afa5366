//! # blackbox-store
//!
//! The storage contract for Blackbox ledgers, the suite that checks a backend keeps it
//! ([`conformance`]), and the embedded default backend ([`sqlite`]).
//!
//! A store keeps, per tenant chain, the exact bytes of each entry with a few index columns, the
//! chain head, signed checkpoints, erasable personal-data sidecars and a sparse table of Merkle
//! subtree hashes. It never interprets entry bytes and never signs anything: sequencing and
//! signing happen in `blackbox-ledger`, verification in `blackbox-core`.
//!
//! ## The traits
//!
//! - [`Store`] and [`WriteBatch`]: the core contract, what every backend MUST do: append a batch
//!   durably, the chain head, checkpoints, Merkle nodes, scans in seq order, indexed queries,
//!   sidecars and metadata.
//! - [`RetentionBatch`] and [`RetentionStore`]: moving a chain's oldest entries out to an
//!   archive (reached through [`WriteBatch::retention`], [`Store::retention`]).
//! - [`ErasureBatch`] and [`ErasureStore`]: deleting personal sidecars for good (reached through
//!   [`WriteBatch::erasure`], [`Store::erasure`]).
//!
//! A backend implements the core traits and, optionally, the extensions; the others answer
//! [`StoreError::Unsupported`]. Verification, export and proofs need only the core contract.
//! [`conformance`] checks every rule below that a test can observe; the SQLite backend passes
//! it (`crates/store/tests/conformance.rs`), and a new backend runs it unchanged.
//!
//! ## Contract
//!
//! Implementations of [`Store`]:
//!
//! - MUST make a [`WriteBatch`] all-or-nothing: after [`WriteBatch::commit`] returns `Ok`, every
//!   entry, checkpoint, head and node written through it is durable (survives power loss / kill -9);
//!   if the process dies before `commit` returns, none of it is visible after restart.
//! - MUST NOT report `Ok` from `commit` unless/until the data is durably committed (fsync or the
//!   engine's equivalent), and MUST NOT make a batch's writes visible to readers before commit.
//! - MUST serialise writers: at most one [`WriteBatch`] is open per store at a time; a second
//!   `begin` waits (or fails with [`StoreError::Busy`] after the backend's timeout).
//! - MUST store `line` byte-for-byte as given and return exactly those bytes. (The SQLite
//!   backend keeps lines in segment files next to the database, made durable before the rows
//!   that point at them; a backup copies the database, its `-wal` file and the `.lines`
//!   directory together.)
//! - MUST NOT reorder, renumber, merge or drop entries, and MUST refuse an entry whose `seq` is
//!   not `head.size + 1` for its chain ([`StoreError::SeqConflict`]).
//! - MUST return scans in ascending `seq` order, and query results in ascending
//!   (`ts_ms`, `tenant_id`, `seq`) order. [`Store::scan_lines`] and [`Store::scan_line_blocks`]
//!   (default implementations over [`Store::scan`]; a backend MAY override them to read lines in
//!   bulk) MUST hand out the same lines and sidecars as `scan`.
//! - MUST answer filtered queries (agent, session, tool, event type, time range) through indexes,
//!   not by scanning every entry, with exactly the rows a filtered full scan would give.
//! - MUST keep tenants apart: no read of one tenant's chain returns another's entries,
//!   checkpoints or nodes.
//!
//! Implementations of the extensions:
//!
//! - MUST make [`RetentionBatch::archive_prefix`] remove the entries it covers (lines, index
//!   rows, sidecars, checkpoints older than the anchor) in the same all-or-nothing batch that
//!   records the anchor, and MUST NOT remove anything else: entries after the anchor, Merkle
//!   subtree hashes and the chain head stay. Scans, queries and proofs then start after the
//!   anchor.
//! - MUST keep [`ArchiveSegment`] records exactly as given (they are how the archive's objects
//!   are found again).
//! - MAY keep personal sidecars in separate storage. [`ErasureBatch::erase_personal`] MUST
//!   remove them *physically*: once the batch has committed and [`ErasureStore::purge_erased`]
//!   has returned `Ok`, the sidecar's bytes MUST NOT remain anywhere in the store's files (free
//!   pages, journal or write-ahead log included). Erasure and the erasure marker entry that
//!   records it are in the same batch, so neither is ever visible without the other.
//! - MAY instead keep personal sidecars *sealed* (encrypted) at rest, never in clear, where
//!   its storage cannot remove bytes physically (a database server's write-ahead log, its
//!   standbys and backups). Then, once the erasing batch has committed and
//!   [`ErasureStore::purge_erased`] has returned `Ok`, no key that opens the erased sidecars'
//!   sealed bytes MAY remain anywhere: not in the store, not in the key files the backend
//!   keeps (crypto-shredding; the PostgreSQL backend's `seal` module).
//! - MUST NOT keep data-subject ids in clear: the subject index holds only the keyed hashes the
//!   caller gives ([`PersonalRecord::subject_keys`]), keyed by (chain, seq) so that index rows
//!   stay meaningful if entries later leave the hot store (archives).
#![forbid(unsafe_code)]

pub mod conformance;
pub mod error;
pub mod segments;
pub mod sharded;
pub mod sqlite;

pub use error::StoreError;

use blackbox_core::Hash;

/// What [`Store::scan_lines`] calls per entry: (seq, line, personal sidecar) → go on?
pub type LineVisitor<'a> = dyn FnMut(u64, &[u8], Option<&[u8]>) -> Result<bool, StoreError> + 'a;

/// One entry of a [`LineBlock`]: its seq and where its line and personal sidecar are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockLine {
    /// The entry's seq.
    pub seq: u64,
    /// The line's bytes in [`LineBlock::buf`].
    pub line: std::ops::Range<usize>,
    /// The personal sidecar's bytes in [`LineBlock::side`], when the entry has one.
    pub personal: Option<std::ops::Range<usize>>,
}

/// Entries read together by [`Store::scan_line_blocks`]. The store writes each block's lines
/// into `buf` from `end` on (growing it when needed) and moves `end` past them, appends the
/// sidecars to `side` and replaces `lines`. Between blocks the visitor may take `buf` and
/// `side` or start them again (`end = 0`, `side.clear()`), so lines can be read straight into a
/// buffer the caller then keeps; bytes of `buf` past `end` mean nothing (a reused buffer is
/// written over, not cleared first).
#[derive(Debug, Default)]
pub struct LineBlock {
    /// Entry lines (without their newlines) up to `end`.
    pub buf: Vec<u8>,
    /// Where the next line goes in `buf`.
    pub end: usize,
    /// Personal sidecars, back to back.
    pub side: Vec<u8>,
    /// The entries of the block just read, in seq order.
    pub lines: Vec<BlockLine>,
}

/// What [`Store::scan_line_blocks`] calls per block → go on?
pub type BlockVisitor<'a> = dyn FnMut(&mut LineBlock) -> Result<bool, StoreError> + 'a;

/// Identifies a tenant's chain. The store treats it as an opaque, already-validated string.
pub type TenantRef<'a> = &'a str;

/// The head of one tenant's chain, as last committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Tenant whose chain this is.
    pub tenant_id: String,
    /// Number of entries in the chain (= seq of the last entry; 0 for an empty chain).
    pub size: u64,
    /// Entry hash of the last entry (the genesis hash for an empty chain).
    pub head_hash: Hash,
    /// UUIDv7 bytes of the last entry id (all zero for an empty chain).
    pub last_entry_id: [u8; 16],
    /// Opaque compact Merkle state (serialised by `blackbox-core::merkle::CompactRange`).
    pub merkle_state: Vec<u8>,
    /// Tree size of the most recent checkpoint (0 when none).
    pub last_checkpoint_size: u64,
    /// Unix milliseconds of the most recent checkpoint (0 when none).
    pub last_checkpoint_ms: i64,
}

/// Personal fields removed from an entry's signed bytes and kept beside it (see FORMAT.md,
/// "Personal data sidecar"). Erasure deletes this record; the entry keeps only a salted digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalRecord {
    /// The sidecar JSON exactly as it is verified (`{"salt":…,"fields":{…}}`).
    pub sidecar: Vec<u8>,
    /// Keyed hashes of the data-subject ids the entry references (for erasure look-ups):
    /// HMAC-SHA256 under the data directory's subject-index key, never the ids themselves.
    pub subject_keys: Vec<[u8; 32]>,
}

/// An entry that references a data subject, as the subject index records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectEntry {
    /// Tenant of the chain.
    pub tenant_id: String,
    /// Sequence number in the chain.
    pub seq: u64,
    /// UUIDv7 bytes of the entry.
    pub entry_id: [u8; 16],
}

/// What [`ErasureBatch::erase_personal`] did for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    /// The sidecar was deleted (and the entry's subject-index rows with it).
    Removed,
    /// The entry is in the store but has no sidecar (erased before); its index rows are gone.
    AlreadyAbsent,
    /// The entry is not in this store (moved to an archive, or never stored): nothing was
    /// deleted, and its subject-index rows are kept for whoever rewrites the archive.
    NotStored,
}

/// What [`ErasureStore::purge_erased`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purge {
    /// Attempts it took (a reader holding an old snapshot makes the checkpoint wait).
    pub attempts: u32,
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Chain sequence number (1-based).
    pub seq: u64,
    /// UUIDv7 of the entry, as 16 bytes.
    pub entry_id: [u8; 16],
    /// Entry timestamp, Unix milliseconds (index column).
    pub ts_ms: i64,
    /// Index column.
    pub agent_id: String,
    /// Index column.
    pub session_id: String,
    /// Index column.
    pub event_type: String,
    /// Tool name for tool calls (index column).
    pub tool: Option<String>,
    /// The exact signed entry line (no trailing newline).
    pub line: Vec<u8>,
    /// SHA-256 of `line`.
    pub entry_hash: Hash,
    /// Erasable personal sidecar, if the entry has one.
    pub personal: Option<PersonalRecord>,
}

/// One entry as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Tenant of the chain.
    pub tenant_id: String,
    /// Chain sequence number.
    pub seq: u64,
    /// The timestamp it is indexed under ([`NewEntry::ts_ms`] as appended): the first key of
    /// query order.
    pub ts_ms: i64,
    /// The exact stored bytes of the entry line.
    pub line: Vec<u8>,
    /// The stored SHA-256 of the line (as written; verification recomputes it).
    pub entry_hash: Hash,
    /// The personal sidecar bytes, if still present.
    pub personal: Option<Vec<u8>>,
}

/// Where a chain's stored entries begin once the entries before them have been archived: the
/// anchor record of docs/FORMAT.md §8 at tree size `size` (entries `1 ..= size` are no longer
/// in the store), and the entry hashes of the last, incomplete block of
/// `2^8` leaves before it, which proofs of the entries after the anchor still need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnchor {
    /// Tenant of the chain.
    pub tenant_id: String,
    /// Entries before the first stored one.
    pub size: u64,
    /// The anchor record line (JSON, no newline), exactly as FORMAT.md §8 defines it.
    pub record: Vec<u8>,
    /// Entry hashes of seqs `size - size % 256 + 1 ..= size`, ascending (empty when `size` is a
    /// multiple of 256).
    pub tail_hashes: Vec<Hash>,
}

/// Where an archive segment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// Written, read back and verified; its entries are no longer in the store.
    Live,
    /// Past its retention: its deletion is recorded in the chain, the object may still exist.
    Deleting,
    /// The object is deleted.
    Deleted,
}

impl SegmentState {
    /// The name used in reports and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
        }
    }
}

/// One archived chain segment: entries `first_seq ..= last_seq` of a chain, sealed into one
/// object of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSegment {
    /// Tenant of the chain.
    pub tenant_id: String,
    /// First entry in the object.
    pub first_seq: u64,
    /// Last entry in the object (a signed checkpoint commits to exactly this size).
    pub last_seq: u64,
    /// Object path in the archive.
    pub object: String,
    /// SHA-256 of the object's bytes (compressed) as written and read back.
    pub sha256: Hash,
    /// Size of the object.
    pub bytes: u64,
    /// Smallest and largest entry timestamp in it (Unix ms).
    pub first_ts_ms: i64,
    /// See `first_ts_ms`.
    pub last_ts_ms: i64,
    /// When it was sealed (Unix ms).
    pub sealed_ms: i64,
    /// Live, being deleted, or deleted.
    pub state: SegmentState,
    /// When the state last changed (Unix ms).
    pub state_ms: i64,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tenant of the chain.
    pub tenant_id: String,
    /// Tree size the checkpoint commits to.
    pub size: u64,
    /// Unix milliseconds when it was made.
    pub ts_ms: i64,
    /// The full signed note text (body, blank line, signature lines).
    pub note: String,
}

/// Filters for [`Store::query`]. `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this tenant's chain.
    pub tenant_id: Option<String>,
    /// Exact agent id.
    pub agent_id: Option<String>,
    /// Exact session id.
    pub session_id: Option<String>,
    /// Exact tool name.
    pub tool: Option<String>,
    /// Exact event type.
    pub event_type: Option<String>,
    /// Inclusive lower bound on the entry timestamp, Unix ms.
    pub start_ms: Option<i64>,
    /// Inclusive upper bound on the entry timestamp, Unix ms.
    pub end_ms: Option<i64>,
    /// At most this many rows.
    pub limit: Option<u64>,
    /// Only rows after this one in query order (`ts_ms`, `tenant_id`, `seq`): a page cursor.
    /// Rows skipped for it are not read and do not count toward `limit`.
    pub after: Option<After>,
}

/// A position in query order, to continue a query after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    /// The entry timestamp of the last row seen.
    pub ts_ms: i64,
    /// Its tenant.
    pub tenant_id: String,
    /// Its seq.
    pub seq: u64,
}

/// A write transaction: the core contract's writes. Dropping it without [`WriteBatch::commit`]
/// rolls everything back.
///
/// Implementations MUST keep every write of the batch invisible to readers (other connections
/// and [`Store`] reads) until `commit` returns `Ok`, and MUST make all of it visible at once.
/// A batch whose write failed half-way MAY refuse further writes and `commit`
/// ([`StoreError::Invalid`]); the caller then drops it, which rolls back all of it.
pub trait WriteBatch {
    /// The committed-or-pending head of `tenant`'s chain inside this batch (`None` if the chain
    /// does not exist yet). It MUST reflect this batch's own `set_head` calls.
    ///
    /// # Errors
    /// Backend failures.
    fn chain_head(&mut self, tenant: TenantRef<'_>) -> Result<Option<ChainHead>, StoreError>;

    /// Appends entries to `tenant`'s chain, creating the chain if needed. `entries` MUST continue
    /// the chain (`seq` = current size + 1, + 2, …); the head is updated with [`Self::set_head`].
    ///
    /// MUST refuse, before writing anything of the call, a seq that does not continue the chain
    /// (a gap or a repeat) with [`StoreError::SeqConflict`], and an entry id already stored (in
    /// any chain). MUST store each `line` byte-for-byte.
    ///
    /// # Errors
    /// [`StoreError::SeqConflict`] when a seq does not continue the chain; backend failures.
    fn append(&mut self, tenant: TenantRef<'_>, entries: &[NewEntry]) -> Result<(), StoreError>;

    /// Records the new head of a chain (size MUST equal the last appended seq). A batch that
    /// appended to a chain MUST NOT commit without recording its head.
    ///
    /// # Errors
    /// [`StoreError::SeqConflict`] if `head.size` does not match the entries stored; backend failures.
    fn set_head(&mut self, head: &ChainHead) -> Result<(), StoreError>;

    /// Stores a signed checkpoint (the note text exactly as given).
    ///
    /// # Errors
    /// Backend failures.
    fn put_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), StoreError>;

    /// Adds signature lines (witness cosignatures, docs/FORMAT.md §7) to a stored checkpoint:
    /// `note` is a checkpoint note of `tenant` at `size` whose text (everything up to and
    /// including its blank line) is that of a stored checkpoint; each of its signature lines not
    /// already stored is appended to that checkpoint's stored note (see
    /// [`merge_note_signatures`]). Returns how many lines were added.
    ///
    /// MUST keep the stored note's text and every signature line already stored, in order, and
    /// MUST NOT change anything else (entries, heads, other checkpoints). MUST refuse a note whose
    /// text no stored checkpoint of `tenant` at `size` has, with [`StoreError::Invalid`].
    ///
    /// # Errors
    /// [`StoreError::Invalid`] as above; backend failures.
    fn add_signatures(
        &mut self,
        tenant: TenantRef<'_>,
        size: u64,
        note: &str,
    ) -> Result<usize, StoreError>;

    /// Stores hashes of complete Merkle subtrees of height `level` (covering leaves
    /// `index * 2^level .. (index + 1) * 2^level`), used to build proofs without reading every leaf.
    ///
    /// # Errors
    /// Backend failures.
    fn put_nodes(
        &mut self,
        tenant: TenantRef<'_>,
        level: u8,
        nodes: &[(u64, Hash)],
    ) -> Result<(), StoreError>;

    /// Sets a metadata value (store-wide settings such as the log name).
    ///
    /// # Errors
    /// Backend failures.
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Makes everything in the batch durable, all or nothing.
    ///
    /// MUST NOT return `Ok` before every write of the batch is durable (fsync or the engine's
    /// equivalent). If the process dies before `commit` returns, a reopened store MUST show
    /// either all of the batch or none of it.
    ///
    /// # Errors
    /// Backend failures; on error nothing of the batch is visible.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// This batch's retention writes, when the backend implements [`RetentionBatch`] (it then
    /// MUST also implement [`RetentionStore`] and answer [`Store::retention`]).
    ///
    /// # Errors
    /// [`StoreError::Unsupported`] when the backend keeps no archive.
    fn retention(&mut self) -> Result<&mut dyn RetentionBatch, StoreError> {
        Err(StoreError::Unsupported {
            operation: "retention",
        })
    }

    /// This batch's erasure writes, when the backend implements [`ErasureBatch`] (it then MUST
    /// also implement [`ErasureStore`] and answer [`Store::erasure`]).
    ///
    /// # Errors
    /// [`StoreError::Unsupported`] when the backend cannot erase personal data.
    fn erasure(&mut self) -> Result<&mut dyn ErasureBatch, StoreError> {
        Err(StoreError::Unsupported {
            operation: "erasure",
        })
    }
}

/// Retention writes of a batch: moving a chain's oldest entries out to an archive. Reached
/// through [`WriteBatch::retention`], so they commit with the batch's other writes.
pub trait RetentionBatch {
    /// Removes entries `1 ..= anchor.size` of the chain (they have been archived and verified)
    /// and records `anchor` as where the chain's stored entries now begin. `anchor.size` MUST be
    /// larger than the current anchor's and at most the chain's size.
    ///
    /// MUST remove the entries' lines, index rows, sidecars and the checkpoints older than the
    /// anchor in the same all-or-nothing batch, and MUST NOT remove anything else: entries after
    /// the anchor, Merkle subtree hashes and the chain head stay.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a size out of range; backend failures.
    fn archive_prefix(&mut self, anchor: &StoredAnchor) -> Result<(), StoreError>;

    /// Starts `anchor.tenant_id`'s chain, which this store MUST NOT hold yet, at `anchor`: the
    /// chain of another store whose first `anchor.size` entries were archived there, being
    /// moved here (`blackbox migrate`). Afterwards the store is as if those entries had been
    /// appended and then archived with [`Self::archive_prefix`]: [`Store::anchor`] returns
    /// `anchor`, and the chain's next append is seq `anchor.size + 1`. The batch MUST set the
    /// chain's head before it commits (at `anchor.size` or after this batch's appends).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the chain exists, `anchor.size` is 0 or the tail hashes do
    /// not match it; backend failures.
    fn start_at_anchor(&mut self, anchor: &StoredAnchor) -> Result<(), StoreError>;

    /// Records (inserts or replaces) an archive segment, keyed by tenant and `first_seq`, exactly
    /// as given.
    ///
    /// # Errors
    /// Backend failures.
    fn put_archive_segment(&mut self, segment: &ArchiveSegment) -> Result<(), StoreError>;
}

/// Erasure writes of a batch: deleting personal sidecars. Reached through
/// [`WriteBatch::erasure`], so an erasure and the marker entry that records it commit together.
pub trait ErasureBatch {
    /// The entries whose sidecars reference the data subject with this keyed hash, read under
    /// the batch's write lock, ordered by (tenant, seq).
    ///
    /// # Errors
    /// Backend failures.
    fn subject_entries(&mut self, subject_key: &[u8; 32]) -> Result<Vec<SubjectEntry>, StoreError>;

    /// Deletes the personal sidecars of `tenant`'s entries `seqs` (erasure; see the crate docs
    /// for what "deleted" must mean) and their subject-index rows, in this batch. Returns one
    /// outcome per seq, in the order given.
    ///
    /// # Errors
    /// Backend failures.
    fn erase_personal(
        &mut self,
        tenant: TenantRef<'_>,
        seqs: &[u64],
    ) -> Result<Vec<Erasure>, StoreError>;

    /// Deletes the subject-index rows of `tenant`'s entries `seqs` (their personal data was
    /// erased where they are now: an archive segment rewritten, or one already deleted).
    ///
    /// # Errors
    /// Backend failures.
    fn forget_subjects(&mut self, tenant: TenantRef<'_>, seqs: &[u64]) -> Result<(), StoreError>;
}

impl StoredAnchor {
    /// The hashes this anchor keeps of archived entries `first_seq ..= min(last_seq, size)`
    /// (its tail: the entries after the last multiple of 256), or `None` when the range starts
    /// at an archived entry it does not keep. What [`Store::entry_hashes`] gives for the
    /// archived part of a range.
    #[must_use]
    pub fn kept_hashes(&self, first_seq: u64, last_seq: u64) -> Option<Vec<Hash>> {
        let tail_start = self.size - self.size % 256 + 1;
        if first_seq < tail_start {
            return None;
        }
        (first_seq..=last_seq.min(self.size))
            .map(|seq| {
                let i = usize::try_from(seq - tail_start).ok()?;
                self.tail_hashes.get(i).copied()
            })
            .collect()
    }

    /// The tail hashes back to back (how the backends keep them: 32 bytes each).
    #[must_use]
    pub fn tail_bytes(&self) -> Vec<u8> {
        self.tail_hashes
            .iter()
            .flat_map(|h| h.as_bytes().to_vec())
            .collect()
    }
}

/// The checks every backend's [`RetentionBatch::start_at_anchor`] makes of an anchor before
/// touching anything: a size of 1 or more, and one tail hash per entry after the last multiple
/// of 256.
///
/// # Errors
/// [`StoreError::Invalid`] naming what is wrong.
pub fn check_new_anchor(anchor: &StoredAnchor) -> Result<(), StoreError> {
    let invalid = |what: String| StoreError::Invalid { what };
    if anchor.size == 0 {
        return Err(invalid(format!(
            "tenant {:?}: an anchor is at size 1 or more",
            anchor.tenant_id
        )));
    }
    check_anchor_tail(anchor)
}

/// Whether `anchor` carries one tail hash per entry after the last multiple of 256 (what both
/// [`RetentionBatch::archive_prefix`] and [`RetentionBatch::start_at_anchor`] require).
///
/// # Errors
/// [`StoreError::Invalid`] naming the counts.
pub fn check_anchor_tail(anchor: &StoredAnchor) -> Result<(), StoreError> {
    if anchor.tail_hashes.len() as u64 != anchor.size % 256 {
        return Err(StoreError::Invalid {
            what: format!(
                "the anchor at size {} must carry {} tail hashes, not {}",
                anchor.size,
                anchor.size % 256,
                anchor.tail_hashes.len()
            ),
        });
    }
    Ok(())
}

/// What a backend's [`RetentionBatch::start_at_anchor`] answers for a chain it holds already.
#[must_use]
pub fn anchor_on_existing_chain(tenant: &str) -> StoreError {
    StoreError::Invalid {
        what: format!(
            "tenant {tenant:?} already has a chain here; only a chain this store does not hold \
             yet can start at an anchor"
        ),
    }
}

/// The signature lines of a signed note and the part before them (its text and the blank line),
/// read as text: the note is split at its last blank line (`"\n\n"`), as C2SP signed-note does.
fn note_parts(note: &str) -> Option<(&str, impl Iterator<Item = &str>)> {
    let at = note.rfind("\n\n")?;
    let (body, sigs) = note.split_at(at + 2);
    let sigs = sigs.strip_suffix('\n')?;
    Some((body, sigs.split('\n').filter(|l| !l.is_empty())))
}

/// `stored` with the signature lines of `with` it does not have appended, when both notes have
/// the same text; `None` when their texts differ or either is not a note. Returns the merged
/// note and how many lines were added. Lines are compared as text; nothing is verified here
/// (callers verify cosignatures before storing them).
#[must_use]
pub fn merge_note_signatures(stored: &str, with: &str) -> Option<(String, usize)> {
    let (body, _) = note_parts(stored)?;
    let (other, new) = note_parts(with)?;
    if body != other {
        return None;
    }
    let mut out = stored.to_owned();
    let mut added = 0;
    for line in new {
        if !out[body.len()..].split('\n').any(|l| l == line) {
            out.push_str(line);
            out.push('\n');
            added += 1;
        }
    }
    Some((out, added))
}

/// A ledger store: the core contract every backend implements. See the crate docs for the
/// MUST / MUST NOT rules and [`conformance`] for the suite that checks them.
pub trait Store: Send + std::fmt::Debug {
    /// Opens a write batch (waiting for any other writer).
    ///
    /// MUST serialise writers: while one batch is open, a second `begin` (from this or another
    /// process) waits, or fails with [`StoreError::Busy`] after the backend's lock timeout.
    ///
    /// # Errors
    /// [`StoreError::Busy`] after the backend's lock timeout; [`StoreError::ReadOnly`] for a
    /// store opened read-only; backend failures.
    fn begin(&mut self) -> Result<Box<dyn WriteBatch + '_>, StoreError>;

    /// Every chain's committed head, ordered by tenant id.
    ///
    /// # Errors
    /// Backend failures.
    fn chains(&self) -> Result<Vec<ChainHead>, StoreError>;

    /// Entries of `tenant` with `from_seq <= seq <= to_seq`, ascending, streamed to `f`
    /// (return `false` from `f` to stop early). MUST hand out only committed entries, each once,
    /// in ascending `seq` order, with the exact bytes appended.
    ///
    /// # Errors
    /// Backend failures, or the first error returned by `f`.
    fn scan(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;

    /// Like [`Self::scan`], without an allocation per entry: `f` gets each entry's seq, line and
    /// personal sidecar as borrowed bytes (verification reads every entry this way).
    ///
    /// # Errors
    /// Backend failures, or the first error returned by `f`.
    fn scan_lines(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        f: &mut LineVisitor<'_>,
    ) -> Result<(), StoreError> {
        let mut block = LineBlock::default();
        self.scan_line_blocks(tenant, from_seq, to_seq, &mut block, &mut |b| {
            for l in &b.lines {
                let personal = l.personal.clone().map(|r| &b.side[r]);
                if !f(l.seq, &b.buf[l.line.clone()], personal)? {
                    return Ok(false);
                }
            }
            b.end = 0;
            b.side.clear();
            Ok(true)
        })
    }

    /// Like [`Self::scan_lines`], a block of entries at a time, read into `block` (see
    /// [`LineBlock`]) and handed to `f` (return `false` to stop). Verification reads every entry
    /// this way, straight into the buffers it checks them in.
    ///
    /// # Errors
    /// Backend failures, or the first error returned by `f`.
    fn scan_line_blocks(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        block: &mut LineBlock,
        f: &mut BlockVisitor<'_>,
    ) -> Result<(), StoreError> {
        self.scan(tenant, from_seq, to_seq, &mut |e| {
            block.lines.clear();
            let a = block.end;
            block.buf.truncate(a);
            block.buf.extend_from_slice(&e.line);
            block.end = block.buf.len();
            let personal = e.personal.as_ref().map(|p| {
                let s = block.side.len();
                block.side.extend_from_slice(p);
                s..block.side.len()
            });
            block.lines.push(BlockLine {
                seq: e.seq,
                line: a..block.buf.len(),
                personal,
            });
            f(block)
        })
    }

    /// Entries matching `q`, in (`ts_ms`, `tenant_id`, `seq`) order, streamed to `f`
    /// (return `false` to stop). MUST return exactly the entries a full scan filtered by `q`
    /// would, in that order, and MUST find them through indexes, not by reading every entry.
    ///
    /// # Errors
    /// Backend failures, or the first error returned by `f`.
    fn query(
        &self,
        q: &Query,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>;

    /// The entry with this UUIDv7, in any chain.
    ///
    /// # Errors
    /// Backend failures.
    fn entry_by_id(&self, entry_id: &[u8; 16]) -> Result<Option<StoredEntry>, StoreError>;

    /// Stored entry hashes (the Merkle leaves' inputs) for `first_seq ..= last_seq`, ascending.
    /// After an anchor, MUST also give the archived entries whose hashes the anchor keeps (its
    /// tail hashes: proofs of the entries after it need them), and nothing for a range that
    /// starts at an archived entry it does not keep.
    ///
    /// # Errors
    /// Backend failures.
    fn entry_hashes(
        &self,
        tenant: TenantRef<'_>,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Vec<Hash>, StoreError>;

    /// Stored subtree hashes at `level` for node indexes `first ..= last` (missing ones omitted),
    /// exactly as put.
    ///
    /// # Errors
    /// Backend failures.
    fn nodes(
        &self,
        tenant: TenantRef<'_>,
        level: u8,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Hash)>, StoreError>;

    /// All checkpoints of `tenant`, ascending by (size, ts_ms).
    ///
    /// # Errors
    /// Backend failures.
    fn checkpoints(&self, tenant: TenantRef<'_>) -> Result<Vec<StoredCheckpoint>, StoreError>;

    /// Checkpoints of `tenant` with `size >= min_size` or `ts_ms > after_ms`, ascending by
    /// (size, ts_ms): what a follower (the JSONL mirror) has not seen yet.
    ///
    /// # Errors
    /// Backend failures.
    fn checkpoints_since(
        &self,
        tenant: TenantRef<'_>,
        min_size: u64,
        after_ms: i64,
    ) -> Result<Vec<StoredCheckpoint>, StoreError>;

    /// The most recent checkpoint of `tenant` (largest ts_ms, then size).
    ///
    /// # Errors
    /// Backend failures.
    fn latest_checkpoint(
        &self,
        tenant: TenantRef<'_>,
    ) -> Result<Option<StoredCheckpoint>, StoreError>;

    /// A metadata value.
    ///
    /// # Errors
    /// Backend failures.
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Where `tenant`'s stored entries begin, when entries before them were archived. Part of
    /// the core contract because every reader (verification, proofs, export) needs to know where
    /// a chain begins; a backend without [`RetentionBatch`] never has an anchor and returns
    /// `None`.
    ///
    /// # Errors
    /// Backend failures.
    fn anchor(&self, tenant: TenantRef<'_>) -> Result<Option<StoredAnchor>, StoreError>;

    /// The store's retention reads, when the backend implements [`RetentionStore`].
    ///
    /// # Errors
    /// [`StoreError::Unsupported`] when the backend keeps no archive.
    fn retention(&self) -> Result<&dyn RetentionStore, StoreError> {
        Err(StoreError::Unsupported {
            operation: "retention",
        })
    }

    /// Like [`Self::retention`], for [`RetentionStore::reclaim_space`].
    ///
    /// # Errors
    /// [`StoreError::Unsupported`] when the backend keeps no archive.
    fn retention_mut(&mut self) -> Result<&mut dyn RetentionStore, StoreError> {
        Err(StoreError::Unsupported {
            operation: "retention",
        })
    }

    /// The store's erasure reads, when the backend implements [`ErasureStore`].
    ///
    /// # Errors
    /// [`StoreError::Unsupported`] when the backend cannot erase personal data.
    fn erasure(&self) -> Result<&dyn ErasureStore, StoreError> {
        Err(StoreError::Unsupported {
            operation: "erasure",
        })
    }

    /// Like [`Self::erasure`], for [`ErasureStore::purge_erased`].
    ///
    /// # Errors
    /// [`StoreError::Unsupported`] when the backend cannot erase personal data.
    fn erasure_mut(&mut self) -> Result<&mut dyn ErasureStore, StoreError> {
        Err(StoreError::Unsupported {
            operation: "erasure",
        })
    }
}

/// A boxed store is a store (what `blackbox_ledger::open` hands out when the backend is chosen
/// at run time): every method, the provided ones included, is the boxed store's own.
impl<S: Store + ?Sized> Store for Box<S> {
    fn begin(&mut self) -> Result<Box<dyn WriteBatch + '_>, StoreError> {
        (**self).begin()
    }
    fn chains(&self) -> Result<Vec<ChainHead>, StoreError> {
        (**self).chains()
    }
    fn scan(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        (**self).scan(tenant, from_seq, to_seq, f)
    }
    fn scan_lines(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        f: &mut LineVisitor<'_>,
    ) -> Result<(), StoreError> {
        (**self).scan_lines(tenant, from_seq, to_seq, f)
    }
    fn scan_line_blocks(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        block: &mut LineBlock,
        f: &mut BlockVisitor<'_>,
    ) -> Result<(), StoreError> {
        (**self).scan_line_blocks(tenant, from_seq, to_seq, block, f)
    }
    fn query(
        &self,
        q: &Query,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        (**self).query(q, f)
    }
    fn entry_by_id(&self, entry_id: &[u8; 16]) -> Result<Option<StoredEntry>, StoreError> {
        (**self).entry_by_id(entry_id)
    }
    fn entry_hashes(
        &self,
        tenant: TenantRef<'_>,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        (**self).entry_hashes(tenant, first_seq, last_seq)
    }
    fn nodes(
        &self,
        tenant: TenantRef<'_>,
        level: u8,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Hash)>, StoreError> {
        (**self).nodes(tenant, level, first, last)
    }
    fn checkpoints(&self, tenant: TenantRef<'_>) -> Result<Vec<StoredCheckpoint>, StoreError> {
        (**self).checkpoints(tenant)
    }
    fn checkpoints_since(
        &self,
        tenant: TenantRef<'_>,
        min_size: u64,
        after_ms: i64,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        (**self).checkpoints_since(tenant, min_size, after_ms)
    }
    fn latest_checkpoint(
        &self,
        tenant: TenantRef<'_>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        (**self).latest_checkpoint(tenant)
    }
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        (**self).meta(key)
    }
    fn anchor(&self, tenant: TenantRef<'_>) -> Result<Option<StoredAnchor>, StoreError> {
        (**self).anchor(tenant)
    }
    fn retention(&self) -> Result<&dyn RetentionStore, StoreError> {
        (**self).retention()
    }
    fn retention_mut(&mut self) -> Result<&mut dyn RetentionStore, StoreError> {
        (**self).retention_mut()
    }
    fn erasure(&self) -> Result<&dyn ErasureStore, StoreError> {
        (**self).erasure()
    }
    fn erasure_mut(&mut self) -> Result<&mut dyn ErasureStore, StoreError> {
        (**self).erasure_mut()
    }
}

/// Retention outside a batch: the archive segments recorded, and freeing space. Reached through
/// [`Store::retention`] / [`Store::retention_mut`].
pub trait RetentionStore {
    /// The archive segments recorded for `tenant`, ascending by `first_seq`, exactly as put.
    ///
    /// # Errors
    /// Backend failures.
    fn archive_segments(&self, tenant: TenantRef<'_>) -> Result<Vec<ArchiveSegment>, StoreError>;

    /// Frees the space of entries removed by [`RetentionBatch::archive_prefix`] that the backend
    /// could not free at once (the SQLite backend deletes segment files no entry refers to any
    /// more). Returns the bytes freed. MUST NOT free anything a stored entry still refers to.
    ///
    /// # Errors
    /// Backend failures.
    fn reclaim_space(&mut self) -> Result<u64, StoreError>;
}

/// Erasure outside a batch: the subject index, and purging erased bytes. Reached through
/// [`Store::erasure`] / [`Store::erasure_mut`].
pub trait ErasureStore {
    /// Every entry the subject index lists for the data subject with this keyed hash (see
    /// [`PersonalRecord::subject_keys`]), ordered by (tenant, seq). Entries no longer in the
    /// store (archived) are listed too.
    ///
    /// # Errors
    /// Backend failures.
    fn entries_for_subject(&self, subject_key: &[u8; 32]) -> Result<Vec<SubjectEntry>, StoreError>;

    /// After an erasure has committed: makes sure no copy of the erased bytes remains in the
    /// store's files (for SQLite: a `wal_checkpoint(TRUNCATE)`, retried for up to `wait` while
    /// readers hold older snapshots). After `Ok`, the erased sidecars' bytes MUST NOT be found
    /// anywhere in the store's files.
    ///
    /// # Errors
    /// [`StoreError::PurgeIncomplete`] when readers still hold old snapshots after `wait`;
    /// backend failures.
    fn purge_erased(&mut self, wait: std::time::Duration) -> Result<Purge, StoreError>;
}
