//! The commit journal (docs/FORMAT.md §19): a batch's entries written to one small file and
//! fsynced there, so that a caller waiting for them (a tool call an agent asked permission for)
//! can be answered as soon as they are durable, while the store's own commit (a transaction and
//! its fsync) finishes beside it.
//!
//! A record is written for a batch at most once, before or while the store commits it; the
//! store's commit of the same batch sets the meta key [`JOURNAL_META`] to the record's batch
//! number in the same transaction. When the writer next opens the store (after a crash, or after
//! a commit that failed) every record with a larger number than the store's holds entries that
//! were answered as durable but never committed: [`crate::writer::Writer::recover_journal`]
//! appends them, exactly as signed, before anything else is written. Nothing else is kept in the
//! journal: records are written over from the start of the file once every earlier record is
//! known committed, so the file stays the size of the largest batch it held.
//!
//! Only what the store's contract cannot lose goes through it: entry lines and their index
//! columns (no personal sidecar, which must be erasable from every file; a batch holding one
//! is not journalled).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use blackbox_core::hash::Hash;
use blackbox_store::NewEntry;
use serde::{Deserialize, Serialize};

use crate::LedgerError;

/// The store meta key holding the number of the last journalled batch the store committed.
pub const JOURNAL_META: &str = "journal_batch";

/// The journal file's name in the data directory.
pub const JOURNAL_FILE: &str = "commit.journal";

/// A record's first four bytes.
pub const MAGIC: &[u8; 4] = b"BBJ1";

/// Magic, batch number (u64 LE), payload length (u32 LE).
const HEADER: usize = 16;

/// The SHA-256 that ends every record.
const TRAILER: usize = 32;

/// The largest record written: a larger batch is committed without the journal (answered
/// after the store's commit).
pub const MAX_RECORD: usize = 1 << 20;

/// The largest the file grows (should the store's commits keep failing to start it over).
const MAX_FILE: u64 = 8 << 20;

/// The size the file is given (in zeros, fsynced) when it is made, so that writing a record
/// does not change the file's size: its fsync then writes data only, no file-system metadata.
const PREALLOCATE: u64 = 256 * 1024;

/// One chain's entries in a record.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChainRecord {
    /// The chain.
    pub tenant_id: String,
    /// Its entries of the batch, in `seq` order.
    pub entries: Vec<EntryRecord>,
}

/// One entry in a record: the signed line and the store's index columns (FORMAT.md §19).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EntryRecord {
    /// Chain sequence number.
    pub seq: u64,
    /// The entry id (UUIDv7, hyphenated).
    pub entry_id: String,
    /// The entry's timestamp, Unix ms (index column).
    pub ts_ms: i64,
    /// Index column.
    pub agent_id: String,
    /// Index column.
    pub session_id: String,
    /// Index column.
    pub event_type: String,
    /// Index column (tool calls).
    pub tool: Option<String>,
    /// `sha256:<hex>` of `line`.
    pub entry_hash: String,
    /// The signed entry line, exactly.
    pub line: String,
}

/// A record's payload.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// The batch's chains, each with its entries.
    pub chains: Vec<ChainRecord>,
}

/// A record read back: its batch number and payload bytes (checked against its digest, not yet
/// parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The batch number.
    pub batch: u64,
    /// Where the record starts in the file.
    pub offset: usize,
    /// The payload (JSON).
    pub payload: &'a [u8],
}

/// The records of a journal file's bytes, in order: read from the start while each record is
/// whole (its digest matches) and numbered above the one before. What follows the last (older
/// records partly written over, zeros, a record cut by a crash) is not a record.
#[must_use]
pub fn records(bytes: &[u8]) -> Vec<Record<'_>> {
    let mut out: Vec<Record<'_>> = Vec::new();
    let mut at = 0usize;
    while let Some(head) = bytes.get(at..at + HEADER) {
        if &head[..4] != MAGIC {
            break;
        }
        let batch = u64::from_le_bytes(head[4..12].try_into().unwrap_or([0; 8]));
        let len = u32::from_le_bytes(head[12..16].try_into().unwrap_or([0; 4])) as usize;
        if len > MAX_RECORD || out.last().is_some_and(|r| batch <= r.batch) || batch == 0 {
            break;
        }
        let end = at + HEADER + len;
        let (Some(body), Some(digest)) = (bytes.get(at..end), bytes.get(end..end + TRAILER)) else {
            break;
        };
        if Hash::digest(body).0 != digest {
            break;
        }
        out.push(Record {
            batch,
            offset: at,
            payload: &bytes[at + HEADER..end],
        });
        at = end + TRAILER;
    }
    out
}

/// How many entries the journal at `path` holds that `store` has not committed (what the next
/// writing open of the data directory appends; `verify` says so, since it reads only the store).
///
/// # Errors
/// The journal or the store's meta cannot be read.
pub fn unapplied_entries(
    path: &Path,
    store: &dyn blackbox_store::Store,
) -> Result<u64, LedgerError> {
    let bytes = CommitJournal::new(path.to_owned()).read()?;
    if bytes.is_empty() {
        return Ok(0);
    }
    let committed: u64 = store
        .meta(JOURNAL_META)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut n = 0u64;
    for r in records(&bytes).into_iter().filter(|r| r.batch > committed) {
        let p: Payload = serde_json::from_slice(r.payload).map_err(|e| {
            LedgerError::Inconsistent(format!("a commit journal record is not readable: {e}"))
        })?;
        n += p.chains.iter().map(|c| c.entries.len() as u64).sum::<u64>();
    }
    Ok(n)
}

/// Encodes one record.
#[must_use]
pub fn encode(batch: u64, payload: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    rec.extend_from_slice(MAGIC);
    rec.extend_from_slice(&batch.to_le_bytes());
    rec.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    rec.extend_from_slice(payload);
    let digest = Hash::digest(&rec);
    rec.extend_from_slice(&digest.0);
    rec
}

/// A payload's entries as the store takes them, checked: each line hashes to its
/// `entry_hash`, and names the chain, seq and entry id it is filed under.
///
/// # Errors
/// [`LedgerError::Inconsistent`] saying what does not hold.
pub fn decode(payload: &[u8]) -> Result<Vec<(String, Vec<NewEntry>)>, LedgerError> {
    let bad = |what: String| LedgerError::Inconsistent(format!("a commit journal record {what}"));
    let p: Payload =
        serde_json::from_slice(payload).map_err(|e| bad(format!("is not readable: {e}")))?;
    let mut out = Vec::with_capacity(p.chains.len());
    for c in p.chains {
        let mut entries = Vec::with_capacity(c.entries.len());
        for e in c.entries {
            let line = e.line.into_bytes();
            let hash = Hash::digest(&line);
            if Hash::from_prefixed(&e.entry_hash).ok() != Some(hash) {
                return Err(bad(format!(
                    "holds an entry (chain {:?}, seq {}) whose line does not hash to its entry_hash",
                    c.tenant_id, e.seq
                )));
            }
            let view = blackbox_core::entry::EntryView::parse(&line)
                .map_err(|err| bad(format!("holds an unreadable entry line: {err}")))?;
            let id = uuid::Uuid::parse_str(&e.entry_id)
                .map_err(|err| bad(format!("holds an unreadable entry id: {err}")))?;
            if view.seq != e.seq || view.tenant_id != c.tenant_id || view.entry_id != id {
                return Err(bad(format!(
                    "files an entry line under another chain, seq or id than its own (chain {:?}, seq {})",
                    c.tenant_id, e.seq
                )));
            }
            entries.push(NewEntry {
                seq: e.seq,
                entry_id: *id.as_bytes(),
                ts_ms: e.ts_ms,
                agent_id: e.agent_id,
                session_id: e.session_id,
                event_type: e.event_type,
                tool: e.tool,
                line,
                entry_hash: hash,
                personal: None,
            });
        }
        out.push((c.tenant_id, entries));
    }
    Ok(out)
}

/// Adds `entries` of `tenant` to a payload being built (`None` when they cannot be journalled:
/// a personal sidecar, a line that is not UTF-8).
pub(crate) fn add_chain(p: &mut Payload, tenant: &str, entries: &[NewEntry]) -> Option<()> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        if e.personal.is_some() {
            return None;
        }
        out.push(EntryRecord {
            seq: e.seq,
            entry_id: uuid::Uuid::from_bytes(e.entry_id).to_string(),
            ts_ms: e.ts_ms,
            agent_id: e.agent_id.clone(),
            session_id: e.session_id.clone(),
            event_type: e.event_type.clone(),
            tool: e.tool.clone(),
            entry_hash: e.entry_hash.to_prefixed(),
            line: String::from_utf8(e.line.clone()).ok()?,
        });
    }
    if !out.is_empty() {
        p.chains.push(ChainRecord {
            tenant_id: tenant.to_owned(),
            entries: out,
        });
    }
    Some(())
}

/// The journal file a writer keeps (see the module documentation).
#[derive(Debug)]
pub struct CommitJournal {
    path: PathBuf,
    file: Option<File>,
    /// The number of the last record written (or, before any, of the last batch the store
    /// committed).
    last: u64,
    /// Where the next record goes if earlier ones are still needed.
    end: u64,
    /// The number of the last journalled batch known committed (set by the store thread).
    committed: Arc<AtomicU64>,
    /// Raised when a journalled batch's store commit failed: its record must be applied before
    /// anything else is written.
    unapplied: Arc<AtomicBool>,
    /// Whether [`crate::writer::Writer::recover_journal`] has run (records are written only
    /// then: the numbering continues the store's).
    pub(crate) ready: bool,
}

impl CommitJournal {
    /// The journal at `path` (the file is made when the first record is written).
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            last: 0,
            end: 0,
            committed: Arc::new(AtomicU64::new(0)),
            unapplied: Arc::new(AtomicBool::new(false)),
            ready: false,
        }
    }

    /// The journal's file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> LedgerError {
        LedgerError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The file's bytes (empty when there is none).
    ///
    /// # Errors
    /// The file exists and cannot be read.
    pub fn read(&self) -> Result<Vec<u8>, LedgerError> {
        match std::fs::read(&self.path) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Recovery starts: nothing is journalled until it has succeeded.
    pub(crate) fn begin_recovery(&mut self) {
        self.ready = false;
        self.unapplied.store(false, Ordering::Release);
    }

    /// After recovery: the store has committed every batch up to `last`.
    pub(crate) fn recovered(&mut self, last: u64) {
        self.last = last;
        self.end = 0;
        self.committed.store(last, Ordering::Release);
        self.unapplied.store(false, Ordering::Release);
        self.ready = true;
    }

    /// Whether records may be waiting for the store: recovery has not run, or a journalled
    /// batch's store commit failed since.
    pub(crate) fn needs_recovery(&self) -> bool {
        !self.ready || self.unapplied()
    }

    /// Whether a journalled batch's store commit failed since recovery (its record must be
    /// applied first).
    pub(crate) fn unapplied(&self) -> bool {
        self.unapplied.load(Ordering::Acquire)
    }

    /// The next record's number, and the flag a failed store commit of it raises.
    pub(crate) fn next(&self) -> (u64, Arc<AtomicBool>) {
        (self.last + 1, Arc::clone(&self.unapplied))
    }

    /// Where the store thread records the last journalled batch durable in the store.
    pub(crate) fn committed(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.committed)
    }

    /// Whether a record of `len` payload bytes can be written: at the start, or after the last
    /// while the file stays within [`MAX_FILE`].
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.starts_over() || self.end + (HEADER + len + TRAILER) as u64 <= MAX_FILE
    }

    /// Whether a record of `len` payload bytes would end within the first half of the
    /// preallocated file: its batch's store commit may then wait for the batches that follow
    /// (the records between stay in the part of the file whose `fdatasync` writes no metadata).
    pub(crate) fn has_room(&self, len: usize) -> bool {
        self.next_at() + (HEADER + len + TRAILER) as u64 <= PREALLOCATE / 2
    }

    /// Where the next record goes: the start of the file when every earlier record's batch is
    /// known committed, else right after the last.
    fn next_at(&self) -> u64 {
        if self.starts_over() { 0 } else { self.end }
    }

    /// Whether the next record goes to the start of the file (every earlier one's batch is
    /// durable in the store).
    fn starts_over(&self) -> bool {
        self.committed.load(Ordering::Acquire) >= self.last
    }

    fn open(&mut self) -> std::io::Result<&File> {
        if self.file.is_none() {
            let mut o = std::fs::OpenOptions::new();
            o.read(true).write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let f = o.open(&self.path)?;
            let size = f.metadata()?.len();
            if size < PREALLOCATE {
                // Zeros, not a hole: writing into a hole or an unwritten extent changes the
                // file system's metadata, and its fsync then costs a journal commit.
                use std::os::unix::fs::FileExt as _;
                f.write_all_at(
                    &vec![0u8; usize::try_from(PREALLOCATE - size).unwrap_or(0)],
                    size,
                )?;
                f.sync_all()?;
                if let Some(dir) = self.path.parent() {
                    File::open(dir)?.sync_all()?;
                }
            }
            self.file = Some(f);
        }
        self.file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the commit journal is not open"))
    }

    /// Writes batch `batch`'s record and makes it durable (`fdatasync`). Written at the start
    /// of the file when every earlier record is known committed, else after the last.
    ///
    /// # Errors
    /// I/O failures (the batch is then not durable through the journal).
    pub(crate) fn write(&mut self, batch: u64, payload: &[u8]) -> Result<(), LedgerError> {
        use std::os::unix::fs::FileExt as _;
        let rec = encode(batch, payload);
        let at = self.next_at();
        let r = self
            .open()
            .and_then(|f| f.write_all_at(&rec, at).and_then(|()| f.sync_data()));
        // Numbered whether or not it reached the disk: a number is never used twice.
        self.last = batch;
        self.end = at + rec.len() as u64;
        r.map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The record layout of docs/FORMAT.md §19, pinned (computed independently with Python's
    /// hashlib).
    #[test]
    fn the_record_layout_is_pinned() {
        let rec = encode(7, b"{\"chains\":[]}");
        assert_eq!(&rec[..16], b"BBJ1\x07\0\0\0\0\0\0\0\x0d\0\0\0");
        assert_eq!(&rec[16..29], b"{\"chains\":[]}");
        assert_eq!(
            hex::encode(&rec[29..]),
            "6079fdfb68c6f06b59de307bac87d2f92e122a43763de5b2f16173e5363d529d"
        );
        assert_eq!(records(&rec)[0].batch, 7);
    }

    #[test]
    fn records_are_read_while_whole_and_increasing() {
        let a = encode(3, b"{\"chains\":[]}");
        let b = encode(4, b"{\"chains\":[1]}");
        let mut file = [a.clone(), b.clone()].concat();
        assert_eq!(
            records(&file).iter().map(|r| r.batch).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(records(&file)[1].payload, b"{\"chains\":[1]}");
        // A record written over the start (every earlier one committed): the older ones after
        // it are not read (lower numbers), nor is a cut one.
        let c = encode(5, b"{\"chains\":[]}");
        file[..c.len()].copy_from_slice(&c);
        assert_eq!(
            records(&file).iter().map(|r| r.batch).collect::<Vec<_>>(),
            [5]
        );
        let cut = &b[..b.len() - 1];
        assert_eq!(records(&[a.clone(), cut.to_vec()].concat()).len(), 1);
        // A flipped byte, zeros, nothing.
        let mut flipped = a.clone();
        flipped[HEADER] ^= 1;
        assert!(records(&flipped).is_empty());
        assert!(records(&[0u8; 4096]).is_empty());
        assert!(records(&[]).is_empty());
        // Batch 0 is never written.
        assert!(records(&encode(0, b"{}")).is_empty());
    }
}
