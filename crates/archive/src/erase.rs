//! Erasure in the archive: after `blackbox erase` (or `POST /v1/erasures`) has committed the
//! markers, the archive segments holding personal records of the erased entries are rewritten
//! without them.
//!
//! A segment is rewritten under its next *revision* name (`….r<N>.jsonl.zst`), read back and
//! verified (the only problems allowed are the redactions being made: their marker is in a later
//! part of the chain), then one store transaction points the catalogue at the new object and
//! drops the subject-index rows of the entries; only then are the earlier revisions deleted. A
//! run killed at any point leaves the catalogue naming an object that exists and verifies; the
//! next erasure of the subject (or `blackbox retention run`, which deletes superseded revisions)
//! finishes the work. Until then `verify --include-archive` reports `erasure_incomplete`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, Write as _};

use blackbox_core::Hash;
use blackbox_ledger::jsonl::{PERSONAL_PREFIX, parse_personal_record};
use blackbox_store::{ArchiveSegment, SegmentState};
use serde::Serialize;

use crate::error::ArchiveError;
use crate::objects::Archive;
use crate::run::{Committer, RunOptions, Staged};

/// One segment rewritten.
#[derive(Debug, Clone, Serialize)]
pub struct Rewritten {
    /// Tenant.
    pub tenant_id: String,
    /// The new object.
    pub object: String,
    /// The object it replaced (deleted).
    pub replaced: String,
    /// Personal records removed from it.
    pub personal_records_removed: u64,
}

/// The revision of a segment object name (0 for `<first>-<last>.jsonl.zst`).
#[must_use]
pub fn revision(object: &str) -> u64 {
    object
        .strip_suffix(".jsonl.zst")
        .and_then(|s| s.rsplit_once(".r"))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// The name of revision `rev` of the segment named `object` (any revision).
#[must_use]
pub fn revision_name(object: &str, rev: u64) -> String {
    let stem = object.strip_suffix(".jsonl.zst").unwrap_or(object);
    let base = match stem.rsplit_once(".r") {
        Some((b, n)) if n.parse::<u64>().is_ok() => b,
        _ => stem,
    };
    if rev == 0 {
        format!("{base}.jsonl.zst")
    } else {
        format!("{base}.r{rev}.jsonl.zst")
    }
}

/// Deletes the revisions of `seg` older than the one the catalogue names.
///
/// # Errors
/// Object-store failures.
pub fn delete_superseded(archive: &Archive, seg: &ArchiveSegment) -> Result<(), ArchiveError> {
    for rev in 0..revision(&seg.object) {
        archive.delete(&revision_name(&seg.object, rev))?;
    }
    Ok(())
}

fn rewrite(
    bytes: Vec<u8>,
    object: &str,
    tenant: &str,
    seqs: &BTreeSet<u64>,
) -> Result<(Vec<u8>, u64), ArchiveError> {
    let io = |e: std::io::Error| ArchiveError::Object {
        object: object.to_owned(),
        message: e.to_string(),
    };
    let mut reader = std::io::BufReader::new(crate::segment::decompress(object, bytes)?);
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).map_err(io)?;
    let mut line = Vec::new();
    let mut dropped = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            break;
        }
        if line.starts_with(PERSONAL_PREFIX) {
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            if let Ok((t, s, _)) = parse_personal_record(body)
                && t == tenant
                && seqs.contains(&s)
            {
                dropped += 1;
                continue;
            }
        }
        enc.write_all(&line).map_err(io)?;
    }
    Ok((enc.finish().map_err(io)?, dropped))
}

/// Rewrites the archive segments holding personal records of `entries` (tenant, seq), and
/// drops their subject-index rows. Entries in segments already deleted, or in none, only lose
/// their index rows.
///
/// # Errors
/// The first failure; segments finished before it stay finished.
pub fn erase(
    archive: &Archive,
    c: &mut dyn Committer,
    entries: &BTreeSet<(String, u64)>,
    opts: &RunOptions<'_>,
) -> Result<Vec<Rewritten>, ArchiveError> {
    let mut by_tenant: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for (t, s) in entries {
        by_tenant.entry(t.as_str()).or_default().insert(*s);
    }
    let mut out = Vec::new();
    for (tenant, seqs) in by_tenant {
        for seg in c.store().retention()?.archive_segments(tenant)? {
            let mine: BTreeSet<u64> = seqs.range(seg.first_seq..=seg.last_seq).copied().collect();
            if mine.is_empty() {
                continue;
            }
            if seg.state != SegmentState::Live {
                continue; // deleted: nothing of it is left
            }
            let bytes = archive.get(&seg.object)?;
            if Hash::digest(&bytes) != seg.sha256 {
                return Err(ArchiveError::Verify {
                    object: seg.object.clone(),
                    message: "its bytes do not match the digest the store recorded; nothing was rewritten".to_owned(),
                });
            }
            let (new_bytes, dropped) = rewrite(bytes, &seg.object, tenant, &mine)?;
            if dropped == 0 {
                continue; // already without them
            }
            let new_name = revision_name(&seg.object, revision(&seg.object) + 1);
            let sha = Hash::digest(&new_bytes);
            let size = new_bytes.len() as u64;
            archive.put(&new_name, new_bytes)?;
            let back = archive.get(&new_name)?;
            crate::segment::check_allowing(
                &new_name,
                back,
                &sha,
                tenant,
                seg.first_seq,
                seg.last_seq,
                opts.keys,
                opts.verifier,
                &mine,
            )?;
            let mut updated = seg.clone();
            updated.object = new_name.clone();
            updated.sha256 = sha;
            updated.bytes = size;
            updated.state_ms = opts.now_ms;
            c.commit(
                Staged {
                    anchor: None,
                    segment: Some(updated.clone()),
                    forget: Some((tenant.to_owned(), mine.iter().copied().collect())),
                    event: None,
                },
                opts.now_ms,
            )?;
            delete_superseded(archive, &updated)?;
            out.push(Rewritten {
                tenant_id: tenant.to_owned(),
                object: new_name,
                replaced: seg.object.clone(),
                personal_records_removed: dropped,
            });
        }
        // Every entry's personal data is now gone from the archive (rewritten above, already
        // absent, or in a segment deleted past its retention): its index rows go too.
        c.commit(
            Staged {
                anchor: None,
                segment: None,
                forget: Some((tenant.to_owned(), seqs.iter().copied().collect())),
                event: None,
            },
            opts.now_ms,
        )?;
    }
    Ok(out)
}
