//! Verification drivers: a store or a JSONL file, every core busy.
//!
//! A reader thread produces chunks of lines; each chunk's entries are checked in parallel
//! ([`blackbox_core::verify::check_entry`]: parse, SHA-256, HMAC, sidecar) and then fed in order
//! to the sequential [`LogVerifier`]. Memory is bounded by a few chunks plus the verifier's window.
//!
//! Checkpoint and anchor records travel inside the chunks, in their place among the entries, so
//! the verifier meets them in log order. Several JSONL files are read as one stream
//! ([`verify_log_files`]): a file that continues a chain starts with an anchor record.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use blackbox_core::keys::Keyring;
use blackbox_core::note::NoteVerifier;
use blackbox_core::verify::{EntryCheck, LogVerifier, Report, SourceLine, check_entry};
use blackbox_store::{LineBlock, Store};
use rayon::prelude::*;

use crate::error::LedgerError;
use crate::jsonl::{RecordKind, parse_checkpoint_record, parse_personal_record, record_kind};

/// Lines per chunk handed to the parallel stage.
const CHUNK: usize = 4096;

/// Called with the number of entries verified so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// A block of lines read together: one buffer, entries as ranges into it.
struct Chunk {
    /// Entry lines (for files: the raw block read, split into lines in place).
    buf: Vec<u8>,
    /// Sidecar bytes.
    side: Vec<u8>,
    items: Vec<Item>,
    /// What the parallel stage found, item by item (kept with the chunk so that its allocation
    /// is recycled too).
    checks: Vec<Checked>,
}

/// A record other than an entry, met in the stream.
enum Record {
    /// The note text of a checkpoint record (or why it is unreadable).
    Checkpoint(String),
    /// An anchor record line, read by the verifier.
    Anchor(Vec<u8>),
}

/// One entry of a chunk and its sidecar, or a checkpoint or anchor record met in the stream.
struct Item {
    record: Option<Record>,
    position: u64,
    line: std::ops::Range<usize>,
    sidecar: Option<std::ops::Range<usize>>,
    sidecar_error: Option<String>,
}

impl Chunk {
    /// An entry whose line is already in `buf` at `line`.
    fn push_range(
        &mut self,
        position: u64,
        line: std::ops::Range<usize>,
        sidecar: Option<&[u8]>,
        sidecar_error: Option<String>,
    ) {
        let sidecar = sidecar.map(|sc| {
            let a = self.side.len();
            self.side.extend_from_slice(sc);
            a..self.side.len()
        });
        self.items.push(Item {
            record: None,
            position,
            line,
            sidecar,
            sidecar_error,
        });
    }

    fn push_record(&mut self, position: u64, record: Record) {
        self.items.push(Item {
            record: Some(record),
            position,
            line: 0..0,
            sidecar: None,
            sidecar_error: None,
        });
    }
}

/// The reader's end of the pipeline: full chunks go out, used ones come back for reuse.
struct ChunkSink {
    tx: mpsc::SyncSender<Chunk>,
    free: mpsc::Receiver<Chunk>,
}

impl ChunkSink {
    /// An empty chunk, recycled when one is available.
    fn fresh(&self) -> Chunk {
        match self.free.try_recv() {
            Ok(mut c) => {
                // `buf` keeps its bytes: items say where their lines are, and a store reads
                // lines over the old bytes (see `LineBlock`) instead of zeroing them first.
                c.side.clear();
                c.items.clear();
                c.checks.clear();
                c
            }
            Err(_) => Chunk {
                // Room for a chunk's bytes plus the block of lines (a store reads ~1,000 at a
                // time) that takes it past `CHUNK_BYTES`, so the buffer is not reallocated.
                buf: Vec::with_capacity(CHUNK_BYTES + (1 << 20)),
                side: Vec::new(),
                items: Vec::with_capacity(CHUNK),
                checks: Vec::with_capacity(CHUNK),
            },
        }
    }

    /// Sends `chunk` with the lines read into `block` (when it holds any items) and goes on
    /// with a fresh chunk whose recycled buffers `block` fills next; `None` when the consumer
    /// has gone.
    fn send_block(&self, chunk: &mut Chunk, block: &mut LineBlock) -> Option<()> {
        if chunk.items.is_empty() {
            return Some(());
        }
        chunk.buf = std::mem::take(&mut block.buf);
        chunk.side = std::mem::take(&mut block.side);
        self.send(chunk)?;
        std::mem::swap(&mut block.buf, &mut chunk.buf);
        std::mem::swap(&mut block.side, &mut chunk.side);
        block.end = 0;
        Some(())
    }

    /// Sends `chunk` on and returns a fresh one; `None` when the consumer has gone.
    fn send(&self, chunk: &mut Chunk) -> Option<()> {
        let fresh = self.fresh();
        let full = std::mem::replace(chunk, fresh);
        self.tx.send(full).ok()
    }
}

/// Bytes per chunk before it is handed on.
const CHUNK_BYTES: usize = 2 << 20;

/// A checked item, in log order.
// Entries are almost every item; boxing them would allocate once per entry.
#[allow(clippy::large_enum_variant)]
enum Checked {
    Entry(EntryCheck),
    Checkpoint(u64, String),
    Anchor(u64, Vec<u8>),
}

fn check_chunk(chunk: &mut Chunk, keys: Option<&Keyring>) {
    let Chunk {
        buf,
        side,
        items,
        checks,
    } = chunk;
    let (buf, side) = (&*buf, &*side);
    items
        .par_iter_mut()
        .with_max_len(64)
        .map(|it| {
            match it.record.take() {
                Some(Record::Checkpoint(text)) => return Checked::Checkpoint(it.position, text),
                Some(Record::Anchor(line)) => return Checked::Anchor(it.position, line),
                None => {}
            }
            let sidecar = it.sidecar.as_ref().map(|r| &side[r.clone()]);
            let mut c = check_entry(it.position, &buf[it.line.clone()], sidecar, keys);
            if let (Some(why), Ok(_)) = (&it.sidecar_error, &c.meta) {
                c.meta = Err(why.clone());
            }
            Checked::Entry(c)
        })
        .collect_into_vec(checks);
}

/// Runs the three stages: `read` (own thread) fills chunks, this thread checks them in parallel,
/// a feeder thread runs the sequential part and hands each chunk back to the reader for reuse
/// (fresh buffers cost more in page faults and zeroing than the hashing itself). Returns the
/// verifier with everything fed.
fn pipeline<R>(
    mut v: LogVerifier,
    keys: Option<&Keyring>,
    progress: Progress<'_>,
    read: R,
) -> Result<LogVerifier, LedgerError>
where
    R: FnOnce(&ChunkSink) -> Result<(), LedgerError> + Send,
{
    // Twice as many checking threads as cores: the reader and the sequential verifier share
    // the cores with them, and a checker they interrupt holds up the end of its chunk less when
    // the chunk is split among more threads (measured: ~5% faster than one per core). An
    // explicit RAYON_NUM_THREADS is honoured.
    let checkers = if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        None
    } else {
        let n = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        rayon::ThreadPoolBuilder::new()
            .num_threads(2 * n)
            .thread_name(|i| format!("verify-check-{i}"))
            .build()
            .ok()
    };
    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(2);
        let (free_tx, free_rx) = mpsc::channel::<Chunk>();
        let (check_tx, check_rx) = mpsc::sync_channel::<Chunk>(2);
        let reader = scope.spawn(move || {
            read(&ChunkSink {
                tx: chunk_tx,
                free: free_rx,
            })
        });
        let feeder = scope.spawn(move || {
            let mut done = 0u64;
            for chunk in check_rx {
                for c in &chunk.checks {
                    match c {
                        Checked::Entry(c) => {
                            done += 1;
                            v.feed_ref(c);
                        }
                        Checked::Checkpoint(pos, text) => v.add_checkpoint(*pos, text, false),
                        Checked::Anchor(pos, line) => v.add_anchor_line(*pos, line),
                    }
                }
                progress(done);
                // The reader may have finished: a chunk nobody takes back is simply dropped.
                let _ = free_tx.send(chunk);
            }
            v
        });
        let check = |chunk: &mut Chunk| match &checkers {
            Some(pool) => pool.install(|| check_chunk(chunk, keys)),
            None => check_chunk(chunk, keys),
        };
        for mut chunk in chunk_rx {
            check(&mut chunk);
            if check_tx.send(chunk).is_err() {
                break;
            }
        }
        drop(check_tx);
        let read_result = reader.join().unwrap_or_else(|_| {
            Err(LedgerError::Inconsistent(
                "the reader thread panicked".to_owned(),
            ))
        });
        let v = feeder
            .join()
            .map_err(|_| LedgerError::Inconsistent("the verifier thread panicked".to_owned()))?;
        read_result.map(|()| v)
    })
}

/// What to check a store against.
#[derive(Debug, Default)]
pub struct StoreVerifyOptions {
    /// Only this tenant's chain.
    pub tenant: Option<String>,
    /// Trusted checkpoints (signed note texts) from the auditor.
    pub trusted_checkpoints: Vec<String>,
    /// Require checkpoints cosigned by a quorum of these witnesses (docs/WITNESS.md).
    pub witness_policy: Option<blackbox_core::cosignature::WitnessPolicy>,
}

/// Verifies every chain (or one) of the store at `db_path`.
///
/// # Errors
/// Store failures. Problems with the log itself are findings in the [`Report`], not errors.
pub fn verify_store(
    db_path: &Path,
    keys: Option<&Keyring>,
    verifier: Option<NoteVerifier>,
    opts: &StoreVerifyOptions,
    progress: Progress<'_>,
) -> Result<Report, LedgerError> {
    verify_store_and_archive(
        &crate::datadir::StoreLocation::Sqlite(db_path.to_owned()),
        None,
        keys,
        verifier,
        opts,
        progress,
    )
}

/// [`verify_chains_and_archive`] of the store at `location`, opened read-only.
///
/// # Errors
/// Store and archive failures (problems in the log itself are findings in the report).
pub fn verify_store_and_archive(
    location: &crate::datadir::StoreLocation,
    archive: Option<&dyn ArchiveSource>,
    keys: Option<&Keyring>,
    verifier: Option<NoteVerifier>,
    opts: &StoreVerifyOptions,
    progress: Progress<'_>,
) -> Result<Report, LedgerError> {
    let mut store = crate::open::open_location(location, true)?;
    verify_chains_and_archive(store.as_mut(), archive, keys, verifier, opts, progress)
}

/// Archived segments of the chains, read before the store's entries (`verify --include-archive`).
pub trait ArchiveSource: Sync {
    /// The segments of `tenant`'s chain in chain order, by name.
    ///
    /// # Errors
    /// The archive cannot be listed.
    fn segments(&self, tenant: &str) -> Result<Vec<String>, LedgerError>;

    /// The decompressed JSONL of one segment (docs/FORMAT.md §8: an anchor record unless it
    /// starts at the genesis hash, then entries, personal records and checkpoints).
    ///
    /// # Errors
    /// The segment cannot be read.
    fn open(&self, tenant: &str, name: &str) -> Result<Box<dyn std::io::Read + Send>, LedgerError>;
}

/// [`verify_store`], with each chain's archived segments (when `archive` is given) read first as
/// one stream with the stored entries: the store's anchor must then continue exactly where the
/// archive ends. Without `archive`, a chain whose first entries were archived is verified from
/// its anchor on.
///
/// # Errors
/// Store and archive failures (problems in the log itself are findings in the report).
pub fn verify_chains_and_archive(
    store: &mut dyn Store,
    archive: Option<&dyn ArchiveSource>,
    keys: Option<&Keyring>,
    verifier: Option<NoteVerifier>,
    opts: &StoreVerifyOptions,
    progress: Progress<'_>,
) -> Result<Report, LedgerError> {
    let mut v = LogVerifier::new(keys.is_some(), verifier);
    if let Some(p) = &opts.witness_policy {
        v = v.with_witness_policy(p.clone());
    }
    for (i, cp) in opts.trusted_checkpoints.iter().enumerate() {
        v.add_checkpoint(u64::try_from(i).unwrap_or(0) + 1, cp, true);
    }
    // Every chain's stored checkpoints and head are known up front, so one pipeline reads the
    // chains one after the other (no start-up and drain per chain).
    let mut chains = Vec::new();
    for head in store.chains()? {
        if opts.tenant.as_ref().is_some_and(|t| *t != head.tenant_id) {
            continue;
        }
        for cp in store.checkpoints(&head.tenant_id)? {
            v.add_checkpoint(0, &cp.note, false);
        }
        v.expect_head(&head.tenant_id, head.size, head.head_hash);
        let anchor = store.anchor(&head.tenant_id)?;
        let segments = match archive {
            Some(a) => a.segments(&head.tenant_id)?,
            None => Vec::new(),
        };
        chains.push((head.tenant_id, anchor, segments));
    }
    // The reader thread takes the store (`&mut`: a store is `Send`, not `Sync`).
    let rstore = store;
    v = pipeline(v, keys, progress, move |tx| {
        let mut chunk = tx.fresh();
        // Lines are read straight into the buffers of the chunk being filled (`block`'s),
        // which go with the chunk when it is sent.
        let mut block = LineBlock {
            buf: std::mem::take(&mut chunk.buf),
            side: std::mem::take(&mut chunk.side),
            ..LineBlock::default()
        };
        for (tenant, anchor, segments) in chains {
            let mut pos = 0u64;
            let mut pending: PendingSidecar = None;
            if !segments.is_empty() && tx.send_block(&mut chunk, &mut block).is_none() {
                return Ok(());
            }
            for name in &segments {
                let Some(a) = archive else { break };
                let reader = a.open(&tenant, name)?;
                if !read_log_stream(tx, reader, Path::new(name), &mut pos, &mut pending)? {
                    return Ok(());
                }
            }
            if let Some(anchor) = anchor {
                pos += 1;
                chunk.push_record(pos, Record::Anchor(anchor.record));
            }
            let mut gone = false;
            rstore.scan_line_blocks(&tenant, 1, u64::MAX, &mut block, &mut |b| {
                for l in &b.lines {
                    pos += 1;
                    chunk.items.push(Item {
                        record: None,
                        position: pos,
                        line: l.line.clone(),
                        sidecar: l.personal.clone(),
                        sidecar_error: None,
                    });
                }
                if (chunk.items.len() >= CHUNK || b.end >= CHUNK_BYTES)
                    && tx.send_block(&mut chunk, b).is_none()
                {
                    gone = true;
                }
                Ok(!gone)
            })?;
            if gone {
                return Ok(());
            }
        }
        let _ = tx.send_block(&mut chunk, &mut block);
        Ok(())
    })?;
    Ok(v.finish())
}

/// Reads JSONL lines (without the newline) and hands each with its 1-based line number to `f`.
fn for_each_line(path: &Path, mut f: impl FnMut(u64, &[u8]) -> bool) -> Result<(), LedgerError> {
    let file = File::open(path).map_err(LedgerError::io(path))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut buf = Vec::with_capacity(4096);
    let mut n = 0u64;
    loop {
        buf.clear();
        let got = r
            .read_until(b'\n', &mut buf)
            .map_err(LedgerError::io(path))?;
        if got == 0 {
            return Ok(());
        }
        n += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if !f(n, &buf) {
            return Ok(());
        }
    }
}

/// Whether a line is one a Blackbox log holds, intact or not: an entry line (a JSON object, as
/// far as its first byte says, naming the member `hmac_sha256`, which every entry of every
/// version has) or a record of docs/FORMAT.md §8 (checkpoint, anchor, personal). An entry
/// altered in any other way still is one.
fn log_shaped(line: &[u8]) -> bool {
    !matches!(record_kind(line), RecordKind::Entry)
        || (line.trim_ascii_start().starts_with(b"{")
            && memchr::memmem::find(line, b"\"hmac_sha256\"").is_some())
}

/// Checks that `path` is a Blackbox log at all (docs/FORMAT.md §9, "Files that are not a log"):
/// at least one of its lines is an entry line or a record of §8. Reading stops at the first such
/// line, so a log costs one line. A file without any (a README, a file of raw agent events, an
/// empty file) is [`LedgerError::NotALog`] with a hint, rather than a log whose every line is
/// malformed. `empty_ok`: an empty file is verified as an empty log (a trusted checkpoint then
/// reports what is missing).
///
/// # Errors
/// [`LedgerError::NotALog`], or I/O errors.
pub fn check_is_log(path: &Path, empty_ok: bool) -> Result<(), LedgerError> {
    let mut found = false;
    let mut lines = 0u64;
    let mut events = 0u64;
    let mut json = 0u64;
    for_each_line(path, |_, line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        if log_shaped(line) {
            found = true;
            return false;
        }
        lines += 1;
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice(line) {
            json += 1;
            if m.contains_key("event_type") || m.contains_key("agent_id") {
                events += 1;
            }
        }
        true
    })?;
    if found || (lines == 0 && empty_ok) {
        return Ok(());
    }
    let export = "a Blackbox log is the JSONL that `blackbox export-log` or the service's mirror (`serve --log-file`) writes";
    let (why, hint) = if lines == 0 {
        (
            "the file is empty".to_owned(),
            format!(
                "{export}; to check that a log emptied of its entries is missing them, verify it with a trusted --checkpoint"
            ),
        )
    } else if events > 0 && events == json {
        (
            "its lines are agent events (JSON objects with `agent_id`/`event_type`), not signed entries".to_owned(),
            "this looks like agent events: use `blackbox append --file FILE` to log them, then `blackbox verify` (the store) or `blackbox export-log` and verify the export".to_owned(),
        )
    } else if json > 0 {
        (
            format!(
                "none of its {lines} lines is an entry (no `hmac_sha256` member) or a checkpoint, anchor or personal record"
            ),
            export.to_owned(),
        )
    } else {
        (
            format!("none of its {lines} lines is JSON"),
            export.to_owned(),
        )
    };
    Err(LedgerError::NotALog {
        path: path.to_owned(),
        why,
        hint,
    })
}

/// Checkpoint records found by [`prescan_log`]: (line, note text or why it is unreadable).
pub type FoundCheckpoints = Vec<(u64, Result<String, String>)>;

/// A personal record waiting for its entry: (line, (tenant, seq, sidecar) or why unreadable).
type PendingSidecar = Option<(u64, Result<(String, u64, Vec<u8>), String>)>;

/// Counts the entry lines of a JSONL file and collects its checkpoints (a fast first pass).
///
/// # Errors
/// I/O errors.
pub fn prescan_log(path: &Path) -> Result<(u64, FoundCheckpoints), LedgerError> {
    let mut entries = 0u64;
    let mut cps = Vec::new();
    for_each_line(path, |n, line| {
        match record_kind(line) {
            RecordKind::Entry => entries += 1,
            RecordKind::Checkpoint => cps.push((n, parse_checkpoint_record(line))),
            RecordKind::Personal | RecordKind::Anchor => {}
        }
        true
    })?;
    Ok((entries, cps))
}

/// Verifies an exported JSONL log.
///
/// # Errors
/// I/O errors. Problems with the log are findings in the [`Report`].
pub fn verify_log_file(
    path: &Path,
    keys: Option<&Keyring>,
    verifier: Option<NoteVerifier>,
    trusted_checkpoints: &[String],
    progress: Progress<'_>,
) -> Result<Report, LedgerError> {
    verify_log_files(
        &[path.to_owned()],
        keys,
        verifier,
        trusted_checkpoints,
        progress,
    )
}

/// Verifies several JSONL files, in the order given, as one log: the lines of each file follow
/// those of the one before, so a chain continues across files (a later file starts with an
/// anchor record, or simply goes on with the next entry).
///
/// Finding positions count lines across all the files; with more than one file each finding
/// also names the file and line ([`Finding::source`](blackbox_core::verify::Finding::source)).
/// Trusted checkpoints have position 0.
///
/// # Errors
/// I/O errors. Problems with the log are findings in the [`Report`].
pub fn verify_log_files(
    paths: &[PathBuf],
    keys: Option<&Keyring>,
    verifier: Option<NoteVerifier>,
    trusted_checkpoints: &[String],
    progress: Progress<'_>,
) -> Result<Report, LedgerError> {
    verify_log_files_with(paths, keys, verifier, trusted_checkpoints, None, progress)
}

/// [`verify_log_files`] with a witness policy (docs/WITNESS.md).
///
/// # Errors
/// As [`verify_log_files`].
pub fn verify_log_files_with(
    paths: &[PathBuf],
    keys: Option<&Keyring>,
    verifier: Option<NoteVerifier>,
    trusted_checkpoints: &[String],
    witness_policy: Option<blackbox_core::cosignature::WitnessPolicy>,
    progress: Progress<'_>,
) -> Result<Report, LedgerError> {
    for path in paths {
        check_is_log(path, !trusted_checkpoints.is_empty())?;
    }
    let mut v = LogVerifier::new(keys.is_some(), verifier);
    if let Some(p) = witness_policy {
        v = v.with_witness_policy(p);
    }
    for cp in trusted_checkpoints {
        v.add_checkpoint(0, cp, true);
    }
    // Lines before each file, counted across the files.
    let mut offsets: Vec<u64> = Vec::with_capacity(paths.len());
    let offsets_out = &mut offsets;
    let v = pipeline(v, keys, progress, move |tx| {
        let mut line_no = 0u64;
        let mut pending: PendingSidecar = None;
        for path in paths {
            offsets_out.push(line_no);
            if !read_log_file(tx, path, &mut line_no, &mut pending)? {
                break;
            }
        }
        Ok(())
    })?;
    let mut report = v.finish();
    if paths.len() > 1 {
        for f in &mut report.findings {
            let Some(i) = offsets.iter().rposition(|&o| o < f.position) else {
                continue; // position 0: not a line of any file
            };
            if let (Some(path), Some(&o)) = (paths.get(i), offsets.get(i)) {
                f.source = Some(SourceLine {
                    file: path.display().to_string(),
                    line: f.position - o,
                });
            }
        }
    }
    Ok(report)
}

/// Reads one JSONL file into chunks, numbering its lines on from `line_no`. Returns `false` when
/// the consumer has gone.
/// Verifies JSONL logs given as readers (decompressed archive segments), in order, as one log,
/// like [`verify_log_files`]; problems name each stream by its name.
///
/// # Errors
/// Read failures.
pub fn verify_readers(
    streams: Vec<(String, Box<dyn std::io::Read + Send>)>,
    keys: Option<&Keyring>,
    verifier: Option<NoteVerifier>,
    trusted_checkpoints: &[String],
    progress: Progress<'_>,
) -> Result<Report, LedgerError> {
    let mut v = LogVerifier::new(keys.is_some(), verifier);
    for cp in trusted_checkpoints {
        v.add_checkpoint(0, cp, true);
    }
    let names: Vec<String> = streams.iter().map(|(n, _)| n.clone()).collect();
    let mut offsets: Vec<u64> = Vec::with_capacity(streams.len());
    let offsets_out = &mut offsets;
    let v = pipeline(v, keys, progress, move |tx| {
        let mut line_no = 0u64;
        let mut pending: PendingSidecar = None;
        for (name, reader) in streams {
            offsets_out.push(line_no);
            if !read_log_stream(tx, reader, Path::new(&name), &mut line_no, &mut pending)? {
                break;
            }
        }
        Ok(())
    })?;
    let mut report = v.finish();
    for f in &mut report.findings {
        let Some(i) = offsets.iter().rposition(|&o| o < f.position) else {
            continue;
        };
        if let (Some(name), Some(&o)) = (names.get(i), offsets.get(i)) {
            f.source = Some(SourceLine {
                file: name.clone(),
                line: f.position - o,
            });
        }
    }
    Ok(report)
}

fn read_log_file(
    tx: &ChunkSink,
    path: &Path,
    line_no: &mut u64,
    pending: &mut PendingSidecar,
) -> Result<bool, LedgerError> {
    let file = File::open(path).map_err(LedgerError::io(path))?;
    read_log_stream(tx, file, path, line_no, pending)
}

fn read_log_stream(
    tx: &ChunkSink,
    mut file: impl std::io::Read,
    path: &Path,
    line_no: &mut u64,
    pending: &mut PendingSidecar,
) -> Result<bool, LedgerError> {
    // Blocks are read straight into the chunk buffer and split into lines in place; a partial
    // last line is carried into the next chunk.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut chunk = tx.fresh();
        chunk.buf.clear();
        chunk.buf.extend_from_slice(&carry);
        carry.clear();
        let want = CHUNK_BYTES.saturating_sub(chunk.buf.len()).max(1 << 16);
        let got = (&mut file)
            .take(want as u64)
            .read_to_end(&mut chunk.buf)
            .map_err(LedgerError::io(path))?;
        let eof = got == 0;
        let mut start = 0usize;
        while start < chunk.buf.len() {
            let end = match memchr::memchr(b'\n', &chunk.buf[start..]) {
                Some(off) => start + off,
                None if eof => chunk.buf.len(),
                None => break,
            };
            *line_no += 1;
            let n = *line_no;
            let line = &chunk.buf[start..end];
            match record_kind(line) {
                RecordKind::Checkpoint => {
                    let text = parse_checkpoint_record(line).unwrap_or_else(|why| why);
                    chunk.push_record(n, Record::Checkpoint(text));
                }
                RecordKind::Anchor => {
                    let line = line.to_vec();
                    chunk.push_record(n, Record::Anchor(line));
                }
                RecordKind::Personal => *pending = Some((n, parse_personal_record(line))),
                RecordKind::Entry => match pending.take() {
                    None => chunk.push_range(n, start..end, None, None),
                    Some((_, Ok((_, _, bytes)))) => {
                        chunk.push_range(n, start..end, Some(&bytes), None);
                    }
                    Some((pn, Err(why))) => chunk.push_range(
                        n,
                        start..end,
                        None,
                        Some(format!(
                            "the personal record on line {pn} is malformed: {why}"
                        )),
                    ),
                },
            }
            start = end + 1;
        }
        let start = start.min(chunk.buf.len());
        carry.extend_from_slice(&chunk.buf[start..]);
        chunk.buf.truncate(start);
        if !chunk.items.is_empty() && tx.tx.send(chunk).is_err() {
            return Ok(false);
        }
        if eof {
            return Ok(true);
        }
    }
}
