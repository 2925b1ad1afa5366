//! Erasure markers (docs/FORMAT.md §5): the signed entries that record which entries had their
//! personal-data sidecars erased, and why, without repeating the erased values.
//!
//! A marker is an ordinary chained, HMAC-signed entry of the chain whose entries were redacted,
//! with `event_type` [`EVENT_TYPE`], `agent_id` [`AGENT_ID`], `session_id` [`SESSION_ID`] and the
//! payload [`MarkerPayload`]. Clients cannot send the event type (normalisation refuses it), so a
//! marker with a valid HMAC was written by the log itself.
//!
//! Also here: the keyed hash under which a store indexes data-subject ids
//! ([`subject_index_key`]), so that the index never holds an id in clear.

use serde::{Deserialize, Serialize};

use crate::keys::HmacKey;

/// `event_type` of erasure markers (reserved: clients cannot send it).
pub const EVENT_TYPE: &str = "erasure";
/// `agent_id` of erasure markers.
pub const AGENT_ID: &str = "blackbox";
/// `session_id` of erasure markers.
pub const SESSION_ID: &str = "erasure";
/// Most entries one marker lists; longer erasures are split into several markers.
pub const MAX_PER_MARKER: usize = 10_000;
/// Longest `reason` and `ticket`, in characters.
pub const MAX_TEXT_CHARS: usize = 1_000;

/// One redacted entry named by a marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redacted {
    /// The entry's UUIDv7, lower-case hyphenated text (as in the entry's `entry_id`).
    pub entry_id: String,
    /// Its sequence number in the marker's chain.
    pub seq: u64,
}

/// The payload of an erasure marker. Members are written in RFC 8785 order (the entry's payload
/// is canonicalised anyway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerPayload {
    /// How many entries `redacted` lists.
    pub count: u64,
    /// 1-based number of this marker among those written for one erasure of one chain.
    pub part: u32,
    /// How many markers that erasure wrote for this chain.
    pub parts: u32,
    /// Why (free text given by the operator; never the subject id).
    pub reason: String,
    /// The redacted entries, ascending by `seq`.
    pub redacted: Vec<Redacted>,
    /// Who asked: `cli` or `operator:<token id>`.
    pub requested_by: String,
    /// The operator's reference (ticket, request number).
    pub ticket: String,
}

/// Why a marker's payload is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MarkerError(pub String);

impl MarkerPayload {
    /// Reads and checks a marker payload: the members above and nothing else, `count` equal to
    /// the number listed, at most [`MAX_PER_MARKER`] entries, strictly ascending `seq`, `part` in
    /// `1 ..= parts`.
    ///
    /// # Errors
    /// [`MarkerError`] saying what is wrong.
    pub fn parse(payload: &[u8]) -> Result<Self, MarkerError> {
        let p: Self = serde_json::from_slice(payload)
            .map_err(|e| MarkerError(format!("its payload is not an erasure marker: {e}")))?;
        if p.redacted.len() > MAX_PER_MARKER {
            return Err(MarkerError(format!(
                "it lists {} entries; a marker lists at most {MAX_PER_MARKER}",
                p.redacted.len()
            )));
        }
        if p.count != p.redacted.len() as u64 {
            return Err(MarkerError(format!(
                "its count is {} but it lists {} entries",
                p.count,
                p.redacted.len()
            )));
        }
        if p.redacted.windows(2).any(|w| w[0].seq >= w[1].seq) {
            return Err(MarkerError(
                "its redacted entries are not in strictly ascending seq order".to_owned(),
            ));
        }
        for r in &p.redacted {
            let canonical = uuid::Uuid::try_parse(&r.entry_id)
                .ok()
                .is_some_and(|u| u.hyphenated().to_string() == r.entry_id);
            if !canonical {
                return Err(MarkerError(format!(
                    "it names entry_id {:?}, which is not a lower-case hyphenated UUID",
                    r.entry_id
                )));
            }
        }
        if p.part == 0 || p.part > p.parts {
            return Err(MarkerError(format!(
                "its part {} is not within 1..={}",
                p.part, p.parts
            )));
        }
        Ok(p)
    }
}

impl Redacted {
    /// The entry id as a number (ordered like the UUID); 0 if it is not a UUID (which
    /// [`MarkerPayload::parse`] refuses).
    #[must_use]
    pub fn id(&self) -> u128 {
        uuid::Uuid::try_parse(&self.entry_id).map_or(0, |u| u.as_u128())
    }
}

/// The keyed hash a store indexes a data-subject id under: HMAC-SHA256(key, UTF-8 bytes of the
/// id). The key is a secret of the data directory, so the index cannot be searched for a guessed
/// id without it, and B-tree pages that keep copies of index keys never hold the id itself.
#[must_use]
pub fn subject_index_key(key: &HmacKey, subject_id: &str) -> [u8; 32] {
    key.sign(subject_id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(redacted: &str, count: u64) -> String {
        format!(
            r#"{{"count":{count},"part":1,"parts":1,"reason":"r","redacted":[{redacted}],"requested_by":"cli","ticket":"T-1"}}"#
        )
    }

    #[test]
    fn a_marker_payload_round_trips() {
        let id = "01890a5d-ac96-774b-bcce-b302099a8057";
        let text = payload(&format!(r#"{{"entry_id":"{id}","seq":3}}"#), 1);
        let p = MarkerPayload::parse(text.as_bytes()).unwrap();
        assert_eq!(p.redacted[0].seq, 3);
        assert_eq!(p.redacted[0].entry_id, id);
        assert_eq!(p.redacted[0].id(), 0x01890a5d_ac96_774b_bcce_b302099a8057);
        assert_eq!(serde_json::to_string(&p).unwrap(), text);
    }

    #[test]
    fn inconsistent_markers_are_refused() {
        let e =
            |s: u64| format!(r#"{{"entry_id":"01890a5d-ac96-774b-bcce-b302099a8057","seq":{s}}}"#);
        let two = format!("{},{}", e(3), e(2));
        assert!(MarkerPayload::parse(payload(&two, 2).as_bytes()).is_err());
        assert!(MarkerPayload::parse(payload(&e(1), 2).as_bytes()).is_err());
        let extra = payload(&e(1), 1).replace("\"ticket\"", "\"subject\":\"x\",\"ticket\"");
        assert!(MarkerPayload::parse(extra.as_bytes()).is_err());
        let zero = payload(&e(1), 1).replace("\"part\":1", "\"part\":0");
        assert!(MarkerPayload::parse(zero.as_bytes()).is_err());
        let upper = payload(&e(1), 1).replace("b302099a8057", "B302099A8057");
        assert!(MarkerPayload::parse(upper.as_bytes()).is_err());
    }

    #[test]
    fn the_subject_index_key_is_hmac_sha256_of_the_id() {
        // RFC 4231 test case 2 shape: key "Jefe" would not be 32 bytes; use a fixed 32-byte key
        // and check against the keyed MAC directly.
        let key = HmacKey::from_bytes([7; 32]);
        assert_eq!(subject_index_key(&key, "ds_1"), key.sign(b"ds_1"));
        assert_ne!(
            subject_index_key(&key, "ds_1"),
            subject_index_key(&key, "ds_2")
        );
    }
}
