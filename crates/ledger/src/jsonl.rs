//! The exported JSONL log: entry lines exactly as stored, plus checkpoint and personal-sidecar
//! records. See docs/FORMAT.md, "JSONL log".
//!
//! ```text
//! {"agent_id":…,"hmac_sha256":"…"}                            an entry line, byte for byte
//! {"personal":{"seq":7,"sidecar":{…},"tenant_id":"acme"}}     sidecar of the entry that follows
//! {"checkpoint":"<signed note text>"}                         a signed checkpoint
//! {"anchor":{"checkpoint":…,"frontier":[…],"head":…,…}}      where a file picks a chain up
//! ```
//!
//! Anchor records are read and checked by [`blackbox_core::anchor::Anchor`].

use serde::Deserialize;
use serde_json::value::RawValue;

/// Prefix of a checkpoint record.
pub const CHECKPOINT_PREFIX: &[u8] = b"{\"checkpoint\":";
/// Prefix of a personal-sidecar record.
pub const PERSONAL_PREFIX: &[u8] = b"{\"personal\":";
/// Prefix of an anchor record.
pub const ANCHOR_PREFIX: &[u8] = blackbox_core::anchor::ANCHOR_PREFIX;

/// What a JSONL line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// An entry line.
    Entry,
    /// A checkpoint record.
    Checkpoint,
    /// A personal sidecar record.
    Personal,
    /// An anchor record: the state of a chain before the entries that follow.
    Anchor,
}

/// Classifies a line by its prefix.
#[must_use]
pub fn record_kind(line: &[u8]) -> RecordKind {
    if line.starts_with(CHECKPOINT_PREFIX) {
        RecordKind::Checkpoint
    } else if line.starts_with(PERSONAL_PREFIX) {
        RecordKind::Personal
    } else if line.starts_with(ANCHOR_PREFIX) {
        RecordKind::Anchor
    } else {
        RecordKind::Entry
    }
}

/// A checkpoint record line.
#[must_use]
pub fn checkpoint_record(note: &str) -> String {
    serde_json::json!({ "checkpoint": note }).to_string()
}

/// Reads the note text of a checkpoint record.
///
/// # Errors
/// A plain-English reason.
pub fn parse_checkpoint_record(line: &[u8]) -> Result<String, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rec {
        checkpoint: String,
    }
    serde_json::from_slice::<Rec>(line)
        .map(|r| r.checkpoint)
        .map_err(|e| format!("checkpoint record: {e}"))
}

/// A personal-sidecar record line (`sidecar` is embedded verbatim: it is JCS already).
#[must_use]
pub fn personal_record(tenant: &str, seq: u64, sidecar: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sidecar.len() + 80);
    out.extend_from_slice(b"{\"personal\":{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"sidecar\":");
    out.extend_from_slice(sidecar);
    out.extend_from_slice(b",\"tenant_id\":");
    out.extend_from_slice(
        serde_json::Value::String(tenant.to_owned())
            .to_string()
            .as_bytes(),
    );
    out.extend_from_slice(b"}}");
    out
}

/// The parts of a personal record: (tenant, seq, exact sidecar bytes).
///
/// # Errors
/// A plain-English reason.
pub fn parse_personal_record(line: &[u8]) -> Result<(String, u64, Vec<u8>), String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner<'a> {
        seq: u64,
        #[serde(borrow)]
        sidecar: &'a RawValue,
        tenant_id: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rec<'a> {
        #[serde(borrow)]
        personal: Inner<'a>,
    }
    let r: Rec<'_> = serde_json::from_slice(line).map_err(|e| format!("personal record: {e}"))?;
    Ok((
        r.personal.tenant_id,
        r.personal.seq,
        r.personal.sidecar.get().as_bytes().to_vec(),
    ))
}

/// Rewrites the JSONL file at `path` without the personal records for which `erased(tenant,
/// seq)` says yes (callers ask the store whether the entry's sidecar was erased, which makes the
/// scrub idempotent and catches up earlier erasures): the rest is kept byte for byte. Written to a temporary file beside it (same permissions),
/// fsynced, renamed over it and the directory fsynced, so a crash leaves the old or the new file,
/// never a mix. Returns how many records were dropped (the file is left untouched when none).
///
/// # Errors
/// [`crate::error::LedgerError::Io`].
pub fn scrub_personal(
    path: &std::path::Path,
    erased: &mut dyn FnMut(&str, u64) -> Result<bool, crate::LedgerError>,
) -> Result<u64, crate::LedgerError> {
    use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = crate::LedgerError::io;
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mode = f.metadata().map_err(io(path))?.permissions().mode() & 0o777;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".erase-tmp");
    let tmp = path.with_file_name(name);
    let mut dropped = 0u64;
    {
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let mut w = BufWriter::new(out);
        let mut r = BufReader::new(f);
        let mut line = Vec::new();
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line).map_err(io(path))? == 0 {
                break;
            }
            let rec = line.strip_suffix(b"\n").unwrap_or(&line);
            if record_kind(rec) == RecordKind::Personal
                && let Ok((tenant, seq, _)) = parse_personal_record(rec)
                && erased(&tenant, seq)?
            {
                dropped += 1;
                continue;
            }
            w.write_all(&line).map_err(io(&tmp))?;
        }
        let out = w.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
        out.sync_all().map_err(io(&tmp))?;
    }
    if dropped == 0 {
        let _ = std::fs::remove_file(&tmp);
        return Ok(0);
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))?;
    Ok(dropped)
}

/// The files of a mirror at `path`: its rotated files `PATH.1`, `PATH.2`, … (in order) and then
/// `PATH` itself (those that exist).
///
/// # Errors
/// [`crate::error::LedgerError::Io`] when the directory cannot be read.
pub fn mirror_files(path: &std::path::Path) -> Result<Vec<std::path::PathBuf>, crate::LedgerError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let prefix = format!("{name}.");
    let mut rotated: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .map_err(crate::LedgerError::io(&dir))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix(&prefix)?
                .parse::<u64>()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort();
    let mut out: Vec<std::path::PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        out.push(path.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbing_drops_only_the_named_personal_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log.jsonl");
        let keep = personal_record("acme", 1, br#"{"fields":{"a":"keep"},"salt":"00"}"#);
        let drop = personal_record("acme", 2, br#"{"fields":{"a":"ds_gone"},"salt":"00"}"#);
        let other = personal_record("beta", 2, br#"{"fields":{"a":"other"},"salt":"00"}"#);
        let mut text = Vec::new();
        for l in [
            &keep[..],
            b"{\"agent_id\":1}",
            &drop,
            b"{\"agent_id\":2}",
            &other,
        ] {
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        text.extend_from_slice(b"{\"half");
        std::fs::write(&p, &text).unwrap();
        let mut erased = |t: &str, s: u64| Ok(t == "acme" && s == 2);
        assert_eq!(scrub_personal(&p, &mut erased).unwrap(), 1);
        let after = std::fs::read(&p).unwrap();
        let mut want = text.clone();
        let at = want.windows(drop.len()).position(|w| w == drop).unwrap();
        want.drain(at..=at + drop.len());
        assert_eq!(after, want);
        assert_eq!(scrub_personal(&p, &mut erased).unwrap(), 0);
        assert_eq!(std::fs::read(&p).unwrap(), want);
    }

    #[test]
    fn records_round_trip() {
        let cp = "origin\n1\nAAAA\n\n\u{2014} x abc\n";
        let line = checkpoint_record(cp);
        assert_eq!(record_kind(line.as_bytes()), RecordKind::Checkpoint);
        assert_eq!(parse_checkpoint_record(line.as_bytes()).unwrap(), cp);
        let sc = br#"{"fields":{"data_subjects":["ds_1"]},"salt":"00"}"#;
        let p = personal_record("acme", 7, sc);
        assert_eq!(record_kind(&p), RecordKind::Personal);
        assert_eq!(
            parse_personal_record(&p).unwrap(),
            ("acme".to_owned(), 7, sc.to_vec())
        );
        assert_eq!(record_kind(b"{\"agent_id\":\"a\"}"), RecordKind::Entry);
        assert_eq!(
            record_kind(b"{\"anchor\":{\"checkpoint\":\"\"}}"),
            RecordKind::Anchor
        );
    }
}
