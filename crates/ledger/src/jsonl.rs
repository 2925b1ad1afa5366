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

#[cfg(test)]
mod tests {
    use super::*;

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
