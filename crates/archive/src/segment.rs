//! Archive segments: names, building one from the store, and checking one read back.
//!
//! A segment holds entries `first ..= last` of one chain as the JSONL of docs/FORMAT.md §8 —
//! an anchor record at size `first - 1` (none when `first` is 1), then each entry (after its
//! personal record, if it has one) and the checkpoint records of the sizes it covers, ending
//! with a checkpoint of size `last` — compressed as one zstd frame. It verifies on its own with
//! `blackbox verify --log-file` once decompressed, and the segments of a chain, read in order
//! and followed by the store's anchor and entries, verify as one chain.

use std::io::Write as _;

use blackbox_core::Hash;
use blackbox_core::keys::Keyring;
use blackbox_core::line_scan::scan;
use blackbox_core::note::NoteVerifier;
use blackbox_ledger::jsonl::{checkpoint_record, personal_record};
use blackbox_store::{Store, StoredAnchor};

use crate::error::ArchiveError;

/// When the writer sequenced an entry line (Unix ms: `written_at`, the millisecond of its entry
/// id, in every format version): what retention ages, archive segments and "oldest entry" are
/// measured by. Never the agent's claimed `timestamp`, which an agent can set to any date.
#[must_use]
pub fn entry_written_ms(line: &[u8]) -> Option<i64> {
    scan(line).map(|e| e.written_ms()).or_else(|| {
        blackbox_core::entry::EntryView::parse(line)
            .ok()
            .map(|v| v.written_ms)
    })
}

/// zstd level: fast, and about 8× on Blackbox JSONL.
const ZSTD_LEVEL: i32 = 3;

/// The object directory of a tenant's chain: the tenant id with every byte outside
/// `A-Z a-z 0-9 _ -` written as `~` and two hex digits (object keys stay portable).
#[must_use]
pub fn tenant_dir(tenant: &str) -> String {
    let mut out = String::with_capacity(tenant.len());
    for b in tenant.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("~{b:02x}"));
        }
    }
    out
}

/// The object name of a segment: `<tenant dir>/<first, 20 digits>-<last, 20 digits>.jsonl.zst`.
#[must_use]
pub fn object_name(tenant: &str, first: u64, last: u64) -> String {
    format!("{}/{first:020}-{last:020}.jsonl.zst", tenant_dir(tenant))
}

/// A segment built from the store.
#[derive(Debug)]
pub struct Built {
    /// The object's bytes: the JSONL, compressed as it was written (the uncompressed JSONL is
    /// never held in memory whole).
    pub compressed: Vec<u8>,
    /// Entries in it.
    pub entries: u64,
    /// Smallest entry timestamp (Unix ms).
    pub first_ts_ms: i64,
    /// Largest entry timestamp (Unix ms).
    pub last_ts_ms: i64,
}

/// Builds the JSONL of entries `from.size + 1 ..= last` of `tenant` (`from`: the store's
/// current anchor, `None` at the genesis hash).
///
/// # Errors
/// Store failures, or entries missing from the store.
pub fn build(
    store: &dyn Store,
    tenant: &str,
    from: Option<&StoredAnchor>,
    last: u64,
) -> Result<Built, ArchiveError> {
    let start = from.map_or(0, |a| a.size);
    let zerr = |e: std::io::Error| compress_err(&e);
    let mut out = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(zerr)?;
    // One compression worker: the store is read on this thread while the other core compresses.
    out.multithread(1).map_err(zerr)?;
    if let Some(a) = from {
        out.write_all(&a.record).map_err(zerr)?;
        out.write_all(b"\n").map_err(zerr)?;
    }
    let cps: Vec<_> = store
        .checkpoints(tenant)?
        .into_iter()
        .filter(|c| c.size >= start && c.size <= last)
        .collect();
    let mut cps = cps.into_iter().peekable();
    while let Some(cp) = cps.next_if(|c| c.size <= start) {
        out.write_all(checkpoint_record(&cp.note).as_bytes())
            .map_err(zerr)?;
        out.write_all(b"\n").map_err(zerr)?;
    }
    let mut built = Built {
        compressed: Vec::new(),
        entries: 0,
        first_ts_ms: i64::MAX,
        last_ts_ms: i64::MIN,
    };
    let mut next = start + 1;
    let mut bad: Option<String> = None;
    store.scan(tenant, start + 1, last, &mut |e| {
        if e.seq != next {
            bad = Some(format!("entry {next} is not in the store"));
            return Ok(false);
        }
        next += 1;
        if let Some(sc) = &e.personal {
            out.write_all(&personal_record(&e.tenant_id, e.seq, sc))?;
            out.write_all(b"\n")?;
        }
        out.write_all(&e.line)?;
        out.write_all(b"\n")?;
        if let Some(ts) = entry_written_ms(&e.line) {
            built.first_ts_ms = built.first_ts_ms.min(ts);
            built.last_ts_ms = built.last_ts_ms.max(ts);
        }
        built.entries += 1;
        while let Some(cp) = cps.next_if(|c| c.size <= e.seq) {
            out.write_all(checkpoint_record(&cp.note).as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(true)
    })?;
    if bad.is_none() && next != last + 1 {
        bad = Some(format!("entries {next}..={last} are not in the store"));
    }
    if let Some(why) = bad {
        return Err(ArchiveError::Ledger(
            blackbox_ledger::error::LedgerError::Inconsistent(format!("chain `{tenant}`: {why}")),
        ));
    }
    if built.entries == 0 {
        built.first_ts_ms = 0;
        built.last_ts_ms = 0;
    }
    built.compressed = out.finish().map_err(zerr)?;
    Ok(built)
}

/// Compresses a segment's JSONL.
///
/// # Errors
/// Compression failures (out of memory).
pub fn compress(jsonl: &[u8]) -> Result<Vec<u8>, ArchiveError> {
    let mut enc = zstd::stream::Encoder::new(Vec::with_capacity(jsonl.len() / 6), ZSTD_LEVEL)
        .map_err(|e| compress_err(&e))?;
    enc.write_all(jsonl).map_err(|e| compress_err(&e))?;
    enc.finish().map_err(|e| compress_err(&e))
}

fn compress_err(e: &std::io::Error) -> ArchiveError {
    ArchiveError::Object {
        object: "<new segment>".to_owned(),
        message: format!("zstd: {e}"),
    }
}

/// A reader of a segment's decompressed JSONL.
///
/// # Errors
/// The bytes are not a zstd stream.
pub fn decompress(
    object: &str,
    bytes: Vec<u8>,
) -> Result<Box<dyn std::io::Read + Send>, ArchiveError> {
    let dec = zstd::stream::Decoder::new(std::io::Cursor::new(bytes)).map_err(|e| {
        ArchiveError::Object {
            object: object.to_owned(),
            message: format!("not a zstd stream: {e}"),
        }
    })?;
    Ok(Box::new(dec))
}

/// Verifies a segment read back: its bytes hash to `sha256`, it decompresses, and it verifies
/// on its own as entries `first ..= last` of `tenant` ending at a signed checkpoint of size
/// `last` (HMACs with `keys`, checkpoints with `verifier`).
///
/// # Errors
/// [`ArchiveError::Verify`] naming the first problem.
#[allow(clippy::too_many_arguments)]
pub fn check(
    object: &str,
    bytes: Vec<u8>,
    sha256: &Hash,
    tenant: &str,
    first: u64,
    last: u64,
    keys: Option<&Keyring>,
    verifier: &NoteVerifier,
) -> Result<(), ArchiveError> {
    check_allowing(
        object,
        bytes,
        sha256,
        tenant,
        first,
        last,
        keys,
        verifier,
        &std::collections::BTreeSet::new(),
    )
}

/// [`check`], where the entries `redacted` may have lost their personal records (an erasure
/// whose marker is later in the chain, outside the segment): an unmarked redaction of exactly
/// those entries is the only problem allowed.
///
/// # Errors
/// [`ArchiveError::Verify`] naming the first other problem.
#[allow(clippy::too_many_arguments)]
pub fn check_allowing(
    object: &str,
    bytes: Vec<u8>,
    sha256: &Hash,
    tenant: &str,
    first: u64,
    last: u64,
    keys: Option<&Keyring>,
    verifier: &NoteVerifier,
    redacted: &std::collections::BTreeSet<u64>,
) -> Result<(), ArchiveError> {
    let fail = |message: String| ArchiveError::Verify {
        object: object.to_owned(),
        message,
    };
    let got = Hash::digest(&bytes);
    if got != *sha256 {
        return Err(fail(format!(
            "its bytes read back hash to {} but {} was written",
            got.to_prefixed(),
            sha256.to_prefixed()
        )));
    }
    let reader = decompress(object, bytes)?;
    let report = blackbox_ledger::verify::verify_readers(
        vec![(object.to_owned(), reader)],
        keys,
        Some(verifier.clone()),
        &[],
        &|_| {},
    )?;
    let allowed = |f: &blackbox_core::verify::Finding| {
        f.kind == blackbox_core::verify::FindingKind::UnmarkedRedaction
            && f.tenant_id == tenant
            && redacted.contains(&f.seq)
    };
    if let Some(f) = report.findings.iter().find(|f| !allowed(f)) {
        return Err(fail(f.headline()));
    }
    if report.findings_total > report.findings.len() as u64 {
        return Err(fail(format!(
            "{} problems, more than could be listed",
            report.findings_total
        )));
    }
    let Some(chain) = report.chains.iter().find(|c| c.tenant_id == tenant) else {
        return Err(fail(format!("it holds no entries of tenant `{tenant}`")));
    };
    if report.chains.len() != 1
        || chain.start != first - 1
        || chain.size != last
        || chain.entries != last - first + 1
    {
        return Err(fail(format!(
            "it should hold entries {first}..={last} of `{tenant}` but holds {}..={}",
            chain.start + 1,
            chain.size
        )));
    }
    if chain.largest_checkpoint != last {
        return Err(fail(format!(
            "it does not end with a verified checkpoint of size {last}"
        )));
    }
    Ok(())
}
