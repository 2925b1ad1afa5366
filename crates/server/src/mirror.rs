//! The optional JSONL mirror (`serve --log-file PATH`): every committed entry (with its personal
//! record) and checkpoint, appended to a file that log shippers can tail, in the format of
//! `blackbox export-log` (docs/FORMAT.md §8), so `blackbox verify --log-file PATH` checks it.
//!
//! The mirror follows the store: after each commit the writer asks it to catch up, and it reads
//! what the store committed since it last wrote (so it holds exactly the committed bytes, and a
//! crash between a commit and the mirror's write is caught up on the next start).
//!
//! Rotation: when the file reaches its size limit, the writer signs a checkpoint at every chain's
//! head, the mirror writes those checkpoints, renames the file to `PATH.N` (N = 1, 2, …) and
//! starts a new `PATH` with an anchor record per chain (FORMAT.md §8). Each file then verifies on
//! its own, and `verify --log-file PATH.1 --log-file PATH.2 … --log-file PATH` verifies the set as
//! one log.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use blackbox_core::checkpoint::SignedCheckpoint;
use blackbox_ledger::jsonl::{RecordKind, checkpoint_record, personal_record, record_kind};
use blackbox_store::Store;

use crate::error::ServerError;

/// What the mirror has written of one chain.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// Last seq written (or the size of the anchor the file starts from).
    seq: u64,
    /// Time of the last checkpoint written (Unix ms).
    cp_ms: i64,
}

/// The mirror file and what it holds.
#[derive(Debug)]
pub struct Mirror {
    path: PathBuf,
    rotate_bytes: u64,
    file: File,
    len: u64,
    seen: HashMap<String, Seen>,
    reader: Box<dyn Store>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ServerError + '_ {
    move |e| ServerError::Config(format!("mirror {}: {e}", path.display()))
}

fn checkpoint_ms(note: &str) -> i64 {
    SignedCheckpoint::parse(note)
        .ok()
        .and_then(|c| {
            c.checkpoint
                .extension("timestamp")
                .and_then(|t| blackbox_core::entry::parse_timestamp(t).ok())
        })
        .unwrap_or(0)
}

impl Mirror {
    /// Opens the mirror at `path`: reads what an existing file holds (cutting off a last line a
    /// crash left half-written), or starts a new one with an anchor for every existing chain (the
    /// store must then hold a checkpoint at each chain's head: sign them first).
    ///
    /// # Errors
    /// I/O and store failures.
    pub fn open(
        path: &Path,
        rotate_bytes: u64,
        db: &blackbox_ledger::datadir::StoreLocation,
    ) -> Result<Self, ServerError> {
        let reader = blackbox_ledger::open::open_location(db, true)?;
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut len = 0u64;
        if let Ok(f) = File::open(path) {
            let mut r = BufReader::new(f);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line).map_err(io(path))?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break; // end, or a half-written last line (cut off below)
                }
                len += n as u64;
                let rec = &line[..line.len() - 1];
                match record_kind(rec) {
                    RecordKind::Entry => {
                        if let Some(e) = blackbox_core::line_scan::scan(rec) {
                            let s = seen.entry(e.tenant_id.to_owned()).or_default();
                            s.seq = s.seq.max(e.seq);
                        }
                    }
                    RecordKind::Checkpoint => {
                        if let Ok(note) = blackbox_ledger::jsonl::parse_checkpoint_record(rec)
                            && let Ok(cp) = SignedCheckpoint::parse(&note)
                        {
                            let tenant =
                                blackbox_core::verify::origin_tenant(&cp.checkpoint.origin);
                            let s = seen.entry(tenant.to_owned()).or_default();
                            s.cp_ms = s.cp_ms.max(checkpoint_ms(&note));
                        }
                    }
                    RecordKind::Anchor => {
                        if let Ok(a) = blackbox_core::anchor::Anchor::parse(rec) {
                            let s = seen.entry(a.tenant_id().as_str().to_owned()).or_default();
                            s.seq = s.seq.max(a.size());
                        }
                    }
                    RecordKind::Personal => {}
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(io(path))?;
        file.set_len(len).map_err(io(path))?;
        let mut m = Self {
            path: path.to_owned(),
            rotate_bytes,
            file,
            len,
            seen,
            reader,
        };
        m.anchor_missing_chains()?;
        Ok(m)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ServerError> {
        use std::os::unix::fs::FileExt as _;
        self.file
            .write_all_at(bytes, self.len)
            .map_err(io(&self.path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Chains the file does not know yet (a new file, or chains created while no mirror ran)
    /// start with an anchor at their current head.
    fn anchor_missing_chains(&mut self) -> Result<(), ServerError> {
        for head in self.reader.chains()? {
            if self.seen.contains_key(&head.tenant_id) || head.size == 0 {
                continue;
            }
            let anchor =
                blackbox_ledger::anchor::anchor_now(self.reader.as_ref(), &head.tenant_id)?;
            let line = format!("{}\n", anchor.to_line());
            self.write(line.as_bytes())?;
            let cp_ms = checkpoint_ms(&anchor.checkpoint().note_text());
            self.seen.insert(
                head.tenant_id.clone(),
                Seen {
                    seq: head.size,
                    cp_ms,
                },
            );
        }
        Ok(())
    }

    /// Writes everything committed since the last call. Returns whether the file has reached
    /// its size limit (the writer then signs checkpoints and calls [`Self::rotate`]).
    ///
    /// # Errors
    /// I/O and store failures (the store keeps everything; the mirror catches up next time).
    pub fn catch_up(&mut self) -> Result<bool, ServerError> {
        for head in self.reader.chains()? {
            let seen = self.seen.get(&head.tenant_id).copied().unwrap_or_default();
            let cps = self
                .reader
                .checkpoints_since(&head.tenant_id, seen.seq + 1, seen.cp_ms)?;
            if head.size == seen.seq && cps.is_empty() {
                continue;
            }
            let mut out: Vec<u8> = Vec::new();
            let mut cps = cps.into_iter().peekable();
            let mut cp_ms = seen.cp_ms;
            // Checkpoints of entries already written (heartbeats) come first.
            while let Some(cp) = cps.next_if(|c| c.size <= seen.seq) {
                out.extend_from_slice(checkpoint_record(&cp.note).as_bytes());
                out.push(b'\n');
                cp_ms = cp_ms.max(cp.ts_ms);
            }
            let mut last = seen.seq;
            self.reader
                .scan(&head.tenant_id, seen.seq + 1, head.size, &mut |e| {
                    if let Some(sc) = &e.personal {
                        out.extend_from_slice(&personal_record(&e.tenant_id, e.seq, sc));
                        out.push(b'\n');
                    }
                    out.extend_from_slice(&e.line);
                    out.push(b'\n');
                    last = e.seq;
                    while let Some(cp) = cps.next_if(|c| c.size <= e.seq) {
                        out.extend_from_slice(checkpoint_record(&cp.note).as_bytes());
                        out.push(b'\n');
                        cp_ms = cp_ms.max(cp.ts_ms);
                    }
                    Ok(true)
                })?;
            self.write(&out)?;
            self.seen
                .insert(head.tenant_id.clone(), Seen { seq: last, cp_ms });
        }
        Ok(self.len >= self.rotate_bytes)
    }

    /// After an erasure: rewrites the mirror file and its rotated files `PATH.N` without the
    /// personal records whose sidecars the store no longer has (FORMAT.md §5), each through a
    /// temporary file, fsync and rename. Returns each file and the records removed from it.
    ///
    /// # Errors
    /// I/O and store failures.
    /// `archived` names erased entries that are no longer in the store (their archive segments
    /// are rewritten separately): their personal records go too.
    pub fn scrub(
        &mut self,
        archived: &std::collections::BTreeSet<(String, u64)>,
    ) -> Result<Vec<(PathBuf, u64)>, ServerError> {
        self.file.sync_data().map_err(io(&self.path))?;
        let files = blackbox_ledger::jsonl::mirror_files(&self.path)?;
        let mut out = Vec::with_capacity(files.len());
        let reader = self.reader.as_ref();
        for f in files {
            let dropped = blackbox_ledger::jsonl::scrub_personal(&f, &mut |t, s| {
                if archived.contains(&(t.to_owned(), s)) {
                    return Ok(true);
                }
                blackbox_ledger::erase::sidecar_erased(reader, t, s)
            })?;
            out.push((f, dropped));
        }
        // The current file may have been replaced: write on at the end of the new one.
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.path)
            .map_err(io(&self.path))?;
        self.len = self.file.metadata().map_err(io(&self.path))?.len();
        Ok(out)
    }

    /// Closes the current file as `PATH.N` and starts a new `PATH` with an anchor per chain. Call
    /// after signing a checkpoint at every chain's head and [`Self::catch_up`].
    ///
    /// # Errors
    /// I/O and store failures.
    pub fn rotate(&mut self) -> Result<PathBuf, ServerError> {
        self.file.sync_data().map_err(io(&self.path))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = self
            .path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_owned);
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let next = std::fs::read_dir(&dir)
            .map_err(io(&self.path))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|f| f.strip_prefix(&format!("{name}.")))
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .max()
            .unwrap_or(0)
            + 1;
        let rotated = dir.join(format!("{name}.{next}"));
        std::fs::rename(&self.path, &rotated).map_err(io(&self.path))?;
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
            .map_err(io(&self.path))?;
        self.len = 0;
        self.seen.clear();
        self.anchor_missing_chains()?;
        Ok(rotated)
    }
}
