//! Entry lines in append-only segment files beside the SQLite database.
//!
//! The SQLite file holds each entry's index columns and where its line is; the lines themselves
//! are appended to numbered segment files in a directory next to it (`blackbox.db` →
//! `blackbox.lines/00000001.lines`, …), one line per entry followed by `\n`. A line is thereby
//! written to disk once, instead of once into SQLite's write-ahead log and again into the
//! database file when the log is checkpointed: for bulk appends that halves the bytes written
//! and keeps SQLite's B-trees small. The files are plain JSONL: `grep` works on them.
//!
//! ## Crash safety
//!
//! The database's `meta` table records how far the segments are committed (`lines_end`: the last
//! segment and its committed length), inside the same transaction as the rows that point into
//! them. A batch writes its lines past that end, and at commit makes them durable before or
//! with the rows, in one of two ways:
//!
//! - a large batch (or one that starts a segment file) first fsyncs the segment files (and the
//!   directory when it created one), then commits the SQLite transaction;
//! - a small batch (at most 64 KiB of lines, while at most 1 MiB is kept so) writes its lines
//!   to the segment file without an fsync and puts a copy of their bytes into the transaction
//!   (`unsynced_lines`: segment, offset, bytes), whose commit is then the batch's one fsync.
//!   `lines_synced` in `meta` records how far the segment file is durable on its own; the
//!   next large batch's fsync covers every earlier byte of the file, and it deletes the copies.
//!   Every open of the store compares the copies with the file and writes back what the file
//!   lacks (after the machine stopped before the kernel wrote them), then fsyncs it.
//!
//! So:
//!
//! - every committed row points at bytes that were durable before the row was, or whose copy
//!   was committed with it;
//! - bytes past the committed end belong to a batch that never committed (the process died or
//!   rolled back). Nothing points at them; the next writer truncates them when it begins, and a
//!   batch that is dropped truncates them itself.
//!
//! Only a writer holding SQLite's write lock (`BEGIN IMMEDIATE`) touches the segments, so
//! writers never race; readers only read ranges that committed rows point at.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::StoreError;

/// A new segment is started once the current one reaches this size (checked per `append` call).
pub const SEGMENT_BYTES: u64 = 256 << 20;

/// Bytes buffered before they are written to the segment file.
const WRITE_BUFFER: usize = 1 << 20;

/// Most bytes read in one system call when lines are read together.
const READ_SPAN: u64 = 4 << 20;

/// The segment directory of the database at `db`: the same name with the extension `lines`.
#[must_use]
pub fn lines_dir(db: &Path) -> PathBuf {
    db.with_extension("lines")
}

fn segment_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join(format!("{seg:08}.lines"))
}

/// Where an entry's line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineRef {
    pub seg: u32,
    pub off: u64,
    pub len: u32,
}

impl LineRef {
    /// Reads a reference from its three stored integers.
    pub fn from_columns(seg: i64, off: i64, len: i64) -> Option<Self> {
        Some(Self {
            seg: u32::try_from(seg).ok()?,
            off: u64::try_from(off).ok()?,
            len: u32::try_from(len).ok()?,
        })
    }

    fn end(self) -> u64 {
        self.off + u64::from(self.len)
    }
}

/// The committed end of the segments, as recorded in `meta` (`"<segment> <length>"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinesEnd {
    pub seg: u32,
    pub len: u64,
}

impl LinesEnd {
    /// The end of an empty store.
    pub const START: Self = Self { seg: 1, len: 0 };

    pub fn parse(s: &str) -> Option<Self> {
        let (seg, len) = s.split_once(' ')?;
        Some(Self {
            seg: seg.parse().ok().filter(|&n| n >= 1)?,
            len: len.parse().ok()?,
        })
    }

    pub fn to_meta(self) -> String {
        format!("{} {}", self.seg, self.len)
    }
}

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt { what }
}

/// Reads lines; shared by every read of one store (file handles are kept open).
#[derive(Debug)]
pub(crate) struct SegmentReader {
    dir: PathBuf,
    files: Mutex<HashMap<u32, Arc<File>>>,
}

impl SegmentReader {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            files: Mutex::new(HashMap::new()),
        }
    }

    /// Closes the handle of a segment file that was deleted.
    pub fn forget(&self, seg: u32) {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&seg);
    }

    fn file(&self, seg: u32) -> Result<Arc<File>, StoreError> {
        // A poisoned lock only means another reader panicked; the map is still valid.
        let mut files = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(f) = files.get(&seg) {
            return Ok(Arc::clone(f));
        }
        let path = segment_path(&self.dir, seg);
        let f = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                corrupt(format!(
                    "the segment file {} holding stored entry lines is missing",
                    path.display()
                ))
            } else {
                StoreError::Io(e)
            }
        })?;
        let f = Arc::new(f);
        files.insert(seg, Arc::clone(&f));
        Ok(f)
    }

    fn read_at(&self, seg: u32, off: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let f = self.file(seg)?;
        f.read_exact_at(buf, off).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                corrupt(format!(
                    "segment file {} ends before the entry lines stored in it (at byte {off})",
                    segment_path(&self.dir, seg).display()
                ))
            } else {
                StoreError::Io(e)
            }
        })
    }

    /// One line.
    pub fn read(&self, r: LineRef) -> Result<Vec<u8>, StoreError> {
        let mut line = vec![0u8; r.len as usize];
        self.read_at(r.seg, r.off, &mut line)?;
        Ok(line)
    }

    /// The lines of `refs`, in order: neighbouring lines (the usual case: entries appended
    /// together) are read with one system call.
    pub fn read_many(&self, refs: &[LineRef]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut buf = Vec::new();
        let ranges = self.read_into(refs, &mut buf, &mut 0)?;
        Ok(ranges.into_iter().map(|r| buf[r].to_vec()).collect())
    }

    /// Reads the lines of `refs` into `buf` from `*at` on and returns where each is; `*at` ends
    /// just past the last. Neighbouring lines are read with one system call, nothing
    /// is allocated per line, and `buf` only grows (bytes already in it are written over, so a
    /// reused buffer is not zeroed again).
    pub fn read_into(
        &self,
        refs: &[LineRef],
        buf: &mut Vec<u8>,
        at: &mut usize,
    ) -> Result<Vec<std::ops::Range<usize>>, StoreError> {
        let mut out = Vec::with_capacity(refs.len());
        let mut base = *at;
        let mut i = 0;
        while let Some(&first) = refs.get(i) {
            let mut j = i + 1;
            let mut end = first.end();
            while let Some(&next) = refs.get(j) {
                // Each line is followed by its newline.
                if next.seg != first.seg
                    || next.off != end + 1
                    || next.end() - first.off > READ_SPAN
                {
                    break;
                }
                end = next.end();
                j += 1;
            }
            let span = usize::try_from(end - first.off).map_err(|_| {
                corrupt(format!(
                    "a stored line range at byte {} is too long",
                    first.off
                ))
            })?;
            if buf.len() < base + span {
                buf.resize(base + span, 0);
            }
            self.read_at(first.seg, first.off, &mut buf[base..base + span])?;
            for r in &refs[i..j] {
                let a = base + (r.off - first.off) as usize;
                out.push(a..a + r.len as usize);
            }
            base += span;
            i = j;
        }
        *at = base;
        Ok(out)
    }
}

/// The segment side of one write batch: lines go past the committed end, and are either made
/// durable by [`SegmentWriter::sync`] before the transaction commits, or cut off again.
#[derive(Debug)]
pub(crate) struct SegmentWriter {
    dir: PathBuf,
    /// The committed end when the batch began.
    start: LinesEnd,
    /// A new segment starts once the current one has this many bytes.
    limit: u64,
    /// Current segment and the length it will have once `buf` is written.
    seg: u32,
    len: u64,
    file: Option<File>,
    buf: Vec<u8>,
    /// Earlier segments of this batch, written and waiting for their fsync.
    full: Vec<File>,
    /// Segments this batch created (removed again on rollback).
    created: Vec<u32>,
    committed: bool,
    /// Bytes written to the current file since the last early flush began.
    unflushed: u64,
    /// An early flush in progress (see [`EARLY_FLUSH_BYTES`]).
    flushing: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// A large batch starts flushing its segment to disk in the background every this many bytes,
/// so that the disk works while the batch is still being written and its final fsync (which
/// makes it durable, as before) finds little left to write. Small batches never reach it.
const EARLY_FLUSH_BYTES: u64 = 32 << 20;

impl SegmentWriter {
    /// Starts a batch at the committed end `start`, cutting off whatever an earlier writer left
    /// past it.
    pub fn begin(dir: &Path, start: LinesEnd, limit: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)?;
        // Segments after the committed one were started by a batch that never committed.
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let later = name
                .to_str()
                .and_then(|n| n.strip_suffix(".lines"))
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n > start.seg);
            if later {
                std::fs::remove_file(dir.join(name))?;
            }
        }
        let path = segment_path(dir, start.seg);
        let file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && start.len == 0 => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(corrupt(format!(
                    "the segment file {} holding stored entry lines is missing",
                    path.display()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(f) = &file {
            let on_disk = f.metadata()?.len();
            if on_disk < start.len {
                return Err(corrupt(format!(
                    "segment file {} has {on_disk} bytes but {} are committed",
                    path.display(),
                    start.len
                )));
            }
            if on_disk > start.len {
                // An earlier batch died before committing: nothing points at these bytes.
                f.set_len(start.len)?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            start,
            limit,
            seg: start.seg,
            len: start.len,
            file,
            buf: Vec::with_capacity(WRITE_BUFFER),
            full: Vec::new(),
            created: Vec::new(),
            committed: false,
            unflushed: 0,
            flushing: None,
        })
    }

    /// Starts flushing `file` in the background unless a flush is still running. An error of a
    /// finished flush is returned here, or by [`Self::sync`]: it fails the batch.
    fn flush_early(&mut self, file: &File) -> Result<(), StoreError> {
        if self.flushing.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        self.join_flush()?;
        let f = file.try_clone()?;
        self.flushing = Some(std::thread::spawn(move || f.sync_data()));
        self.unflushed = 0;
        Ok(())
    }

    /// Waits for the background flush, if any, and returns its error.
    fn join_flush(&mut self) -> Result<(), StoreError> {
        match self.flushing.take().map(std::thread::JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e.into()),
            Some(Err(_)) => Err(StoreError::Io(std::io::Error::other(
                "the thread flushing a segment file panicked",
            ))),
        }
    }

    fn flush_buf(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(segment_path(&self.dir, self.seg))?;
                self.created.push(self.seg);
                self.file.insert(f)
            }
        };
        let at = self.len - self.buf.len() as u64;
        file.write_all_at(&self.buf, at)?;
        self.unflushed += self.buf.len() as u64;
        self.buf.clear();
        if self.unflushed >= EARLY_FLUSH_BYTES
            && let Some(f) = self.file.take()
        {
            let started = self.flush_early(&f);
            self.file = Some(f);
            started?;
        }
        Ok(())
    }

    /// Where the next lines of `lens` would go, starting a new segment first if the current one
    /// is full. Nothing is written.
    pub fn plan(&mut self, lens: impl Iterator<Item = usize>) -> Result<Vec<LineRef>, StoreError> {
        if self.len >= self.limit {
            self.flush_buf()?;
            if let Some(f) = self.file.take() {
                self.flush_early(&f)?;
                self.full.push(f);
            }
            self.unflushed = 0;
            self.seg = self.seg.checked_add(1).ok_or_else(|| StoreError::Invalid {
                what: "the store has used up its segment numbers".to_owned(),
            })?;
            self.len = 0;
        }
        let mut off = self.len;
        lens.map(|n| {
            let len = u32::try_from(n).map_err(|_| StoreError::Invalid {
                what: format!("an entry line of {n} bytes is too long to store"),
            })?;
            let r = LineRef {
                seg: self.seg,
                off,
                len,
            };
            off += u64::from(len) + 1;
            Ok(r)
        })
        .collect()
    }

    /// Writes lines at the places [`Self::plan`] gave them (in that order).
    pub fn write<'l>(&mut self, lines: impl Iterator<Item = &'l [u8]>) -> Result<(), StoreError> {
        for line in lines {
            self.buf.extend_from_slice(line);
            self.buf.push(b'\n');
            self.len += line.len() as u64 + 1;
            if self.buf.len() >= WRITE_BUFFER {
                self.flush_buf()?;
            }
        }
        Ok(())
    }

    /// Makes every line of the batch durable; returns the end to record in the transaction.
    pub fn sync(&mut self) -> Result<LinesEnd, StoreError> {
        self.flush_buf()?;
        self.join_flush()?;
        for f in &self.full {
            f.sync_data()?;
        }
        if let Some(f) = &self.file
            && (self.len != self.start.len || self.seg != self.start.seg)
        {
            f.sync_data()?;
        }
        if !self.created.is_empty() {
            // A new file's directory entry must be durable too.
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(LinesEnd {
            seg: self.seg,
            len: self.len,
        })
    }

    /// The batch's lines when they can be committed without an fsync of their own, their copy
    /// kept in the transaction instead (see the module's "Crash safety"): where they start and
    /// their bytes. Only while they are all still in the write buffer and go into the segment
    /// the batch started in, which existed before it (a new file's directory entry needs an
    /// fsync anyway).
    pub fn unsynced_tail(&self) -> Option<(u32, u64, &[u8])> {
        let in_buffer = self.len.checked_sub(self.start.len) == Some(self.buf.len() as u64);
        (self.seg == self.start.seg
            && self.full.is_empty()
            && self.created.is_empty()
            && self.file.is_some()
            && self.flushing.is_none()
            && in_buffer)
            .then_some((self.seg, self.start.len, self.buf.as_slice()))
    }

    /// Writes the batch's lines to the segment file without making them durable (their copy
    /// in the committing transaction does: [`Self::unsynced_tail`]); returns the end to record.
    pub fn write_unsynced(&mut self) -> Result<LinesEnd, StoreError> {
        self.flush_buf()?;
        self.join_flush()?;
        Ok(LinesEnd {
            seg: self.seg,
            len: self.len,
        })
    }

    /// Whether the batch wrote any line.
    pub fn is_dirty(&self) -> bool {
        self.len != self.start.len || self.seg != self.start.seg
    }

    /// The transaction committed: the lines stay.
    pub fn committed(&mut self) {
        self.committed = true;
    }
}

/// Puts back lines whose copy a committed transaction holds (rows of `unsynced_lines`: the
/// segment, the offset and the bytes) wherever the segment file lacks them (the machine stopped
/// before the kernel wrote them: the file is shorter, or holds zeros there), then makes the
/// file durable. Bytes that differ otherwise were changed after they were written: they are
/// left for verification to report, never "repaired" out of sight. Returns how
/// many bytes were written back. A segment file that does not exist is left for the reads to
/// report (its committed prefix is gone too; nothing here can restore it).
pub(crate) fn restore_unsynced(
    dir: &Path,
    rows: &[(u32, u64, Vec<u8>)],
) -> Result<u64, StoreError> {
    let mut restored = 0u64;
    let mut segs: Vec<u32> = rows.iter().map(|r| r.0).collect();
    segs.dedup();
    for seg in segs {
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .open(segment_path(dir, seg))
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let mut written = false;
        for (_, off, data) in rows.iter().filter(|r| r.0 == seg) {
            let mut have = vec![0u8; data.len()];
            let mut got = 0;
            while got < have.len() {
                match file.read_at(&mut have[got..], off + got as u64)? {
                    0 => break,
                    n => got += n,
                }
            }
            // Lost bytes are missing (the file is short) or zeros (a block allocated but never
            // written); lines hold no NUL byte. Other bytes than the copy's are no loss but a
            // change, which stays for verification to report: never written over.
            let lost = have[..got]
                .iter()
                .zip(data.iter())
                .all(|(h, d)| h == d || *h == 0);
            if lost && (got < data.len() || have != *data) {
                file.write_all_at(data, *off)?;
                restored += data.len() as u64;
                written = true;
            }
        }
        if written {
            file.sync_data()?;
        }
    }
    Ok(restored)
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if self.committed || !self.is_dirty() {
            return;
        }
        // Roll back: cut the starting segment back and remove the ones this batch created. If
        // this fails, the next writer's `begin` cuts them off anyway.
        let start = segment_path(&self.dir, self.start.seg);
        if let Ok(f) = OpenOptions::new().write(true).open(start) {
            let _ = f.set_len(self.start.len);
        }
        for seg in &self.created {
            if *seg != self.start.seg {
                let _ = std::fs::remove_file(segment_path(&self.dir, *seg));
            }
        }
    }
}
