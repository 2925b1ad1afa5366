//! Verification drivers: a store or a JSONL file, every core busy.
//!
//! A reader thread produces chunks of lines; each chunk's entries are checked in parallel
//! ([`blackbox_core::verify::check_entry`]: parse, SHA-256, HMAC, sidecar) and then fed in order
//! to the sequential [`LogVerifier`]. Memory is bounded by a few chunks plus the verifier's window.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::sync::mpsc;

use blackbox_core::keys::Keyring;
use blackbox_core::note::NoteVerifier;
use blackbox_core::verify::{EntryCheck, LogVerifier, Report, check_entry};
use blackbox_store::Store as _;
use blackbox_store::sqlite::SqliteStore;
use rayon::prelude::*;

use crate::error::LedgerError;
use crate::jsonl::{RecordKind, parse_checkpoint_record, parse_personal_record, record_kind};

/// Lines per chunk handed to the parallel stage.
const CHUNK: usize = 8192;

/// Called with the number of entries verified so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// One unit of parallel work: an entry line and its sidecar.
struct Item {
    position: u64,
    line: Vec<u8>,
    sidecar: Option<Vec<u8>>,
    sidecar_error: Option<String>,
}

fn check_chunk(items: &[Item], keys: Option<&Keyring>) -> Vec<EntryCheck> {
    items
        .par_iter()
        .map(|it| {
            let mut c = check_entry(it.position, &it.line, it.sidecar.as_deref(), keys);
            if let (Some(why), Ok(_)) = (&it.sidecar_error, &c.meta) {
                c.meta = Err(why.clone());
            }
            c
        })
        .collect()
}

/// What to check a store against.
#[derive(Debug, Default)]
pub struct StoreVerifyOptions {
    /// Only this tenant's chain.
    pub tenant: Option<String>,
    /// Trusted checkpoints (signed note texts) from the auditor.
    pub trusted_checkpoints: Vec<String>,
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
    let store = SqliteStore::open_read_only(db_path)?;
    let mut v = LogVerifier::new(keys.is_some(), verifier);
    for (i, cp) in opts.trusted_checkpoints.iter().enumerate() {
        v.add_checkpoint(u64::try_from(i).unwrap_or(0) + 1, cp, true);
    }
    let mut done = 0u64;
    for head in store.chains()? {
        if opts.tenant.as_ref().is_some_and(|t| *t != head.tenant_id) {
            continue;
        }
        for cp in store.checkpoints(&head.tenant_id)? {
            v.add_checkpoint(0, &cp.note, false);
        }
        v.expect_head(&head.tenant_id, head.size, head.head_hash);
        let tenant = head.tenant_id.clone();
        let path = db_path.to_owned();
        std::thread::scope(|scope| -> Result<(), LedgerError> {
            let (tx, rx) = mpsc::sync_channel::<Vec<Item>>(2);
            let reader = scope.spawn(move || -> Result<(), LedgerError> {
                let rstore = SqliteStore::open_read_only(&path)?;
                let mut chunk = Vec::with_capacity(CHUNK);
                let mut pos = 0u64;
                rstore.scan(&tenant, 1, u64::MAX, &mut |e| {
                    pos += 1;
                    chunk.push(Item { position: pos, line: e.line, sidecar: e.personal, sidecar_error: None });
                    if chunk.len() == CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        if tx.send(full).is_err() {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                })?;
                if !chunk.is_empty() {
                    let _ = tx.send(chunk);
                }
                Ok(())
            });
            for chunk in rx {
                for c in check_chunk(&chunk, keys) {
                    v.feed(c);
                }
                done += chunk.len() as u64;
                progress(done);
            }
            reader.join().map_err(|_| LedgerError::Inconsistent("the reader thread panicked".to_owned()))?
        })?;
    }
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
        let got = r.read_until(b'\n', &mut buf).map_err(LedgerError::io(path))?;
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

/// Counts the entry lines of a JSONL file and collects its checkpoints (a fast first pass).
///
/// # Errors
/// I/O errors.
pub fn prescan_log(path: &Path) -> Result<(u64, Vec<(u64, Result<String, String>)>), LedgerError> {
    let mut entries = 0u64;
    let mut cps = Vec::new();
    for_each_line(path, |n, line| {
        match record_kind(line) {
            RecordKind::Entry => entries += 1,
            RecordKind::Checkpoint => cps.push((n, parse_checkpoint_record(line))),
            RecordKind::Personal => {}
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
    let (_, cps) = prescan_log(path)?;
    let mut v = LogVerifier::new(keys.is_some(), verifier);
    for (i, cp) in trusted_checkpoints.iter().enumerate() {
        v.add_checkpoint(u64::try_from(i).unwrap_or(0) + 1, cp, true);
    }
    for (n, cp) in cps {
        match cp {
            Ok(text) => v.add_checkpoint(n, &text, false),
            Err(why) => v.add_checkpoint(n, &why, false),
        }
    }
    let mut io_result = Ok(());
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Vec<Item>>(2);
        let reader = scope.spawn(move || -> Result<(), LedgerError> {
            let mut chunk = Vec::with_capacity(CHUNK);
            let mut pending: Option<(u64, Result<(String, u64, Vec<u8>), String>)> = None;
            for_each_line(path, |n, line| {
                match record_kind(line) {
                    RecordKind::Checkpoint => {}
                    RecordKind::Personal => pending = Some((n, parse_personal_record(line))),
                    RecordKind::Entry => {
                        let (sidecar, sidecar_error) = match pending.take() {
                            None => (None, None),
                            Some((_, Ok((_, _, bytes)))) => (Some(bytes), None),
                            Some((pn, Err(why))) => (None, Some(format!("the personal record on line {pn} is malformed: {why}"))),
                        };
                        chunk.push(Item { position: n, line: line.to_vec(), sidecar, sidecar_error });
                        if chunk.len() == CHUNK {
                            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                            if tx.send(full).is_err() {
                                return false;
                            }
                        }
                    }
                }
                true
            })?;
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            Ok(())
        });
        let mut done = 0u64;
        for chunk in rx {
            for c in check_chunk(&chunk, keys) {
                v.feed(c);
            }
            done += chunk.len() as u64;
            progress(done);
        }
        io_result = reader.join().unwrap_or_else(|_| Err(LedgerError::Inconsistent("the reader thread panicked".to_owned())));
    });
    io_result?;
    Ok(v.finish())
}
