//! `GET /v1/checkpoints/latest` (proof documents are docs/FORMAT.md §10's, carried as they are).

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Answer of `GET /v1/checkpoints/latest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoint {
    /// The chain's tenant.
    pub tenant_id: String,
    /// Tree size the checkpoint covers.
    pub size: u64,
    /// When it was signed (RFC 3339, UTC, milliseconds).
    #[serde(deserialize_with = "string_or_number")]
    pub timestamp: String,
    /// The signed checkpoint note text (docs/FORMAT.md §7).
    pub note: String,
}

/// Services before 2026-04 wrote the timestamp as Unix ms: both are read.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, found {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn checkpoint_timestamp_string_or_number() {
        let c: Checkpoint = serde_json::from_str(
            r#"{"tenant_id":"acme","size":3,"timestamp":"2026-04-14T00:00:00.000Z","note":"n"}"#,
        )
        .unwrap();
        assert_eq!(c.timestamp, "2026-04-14T00:00:00.000Z");
        let c: Checkpoint = serde_json::from_str(
            r#"{"tenant_id":"acme","size":3,"timestamp":1776124800000,"note":"n"}"#,
        )
        .unwrap();
        assert_eq!(c.timestamp, "1776124800000");
    }
}
