//! Request and response bodies of the API (docs/API.md).

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A bearer token (`bbx_<id>_<secret>`). Its `Debug` shows the public id only, never the secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a token string.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The public token id (the 16 hex digits after `bbx_`), when the token has the documented
    /// shape.
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        let rest = self.0.strip_prefix("bbx_")?;
        let (id, _secret) = rest.split_once('_')?;
        (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    }

    /// The whole token, secret included: only to hand it to whoever must hold it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "Token(bbx_{id}_…)"),
            None => f.write_str("Token(…)"),
        }
    }
}

impl From<&str> for Token {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Token {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// Where one ingested event went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRef {
    /// The entry's id (UUIDv7).
    pub entry_id: String,
    /// Its position in the tenant's chain.
    pub seq: u64,
    /// `sha256:` + hex of the entry hash.
    pub entry_hash: String,
}

/// Answer of `POST /v1/events`: the entries, in the order of the events sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResponse {
    /// The tenant the events were written to.
    pub tenant_id: String,
    /// How many entries were written.
    pub count: usize,
    /// One per event, in request order.
    pub entries: Vec<EntryRef>,
}

/// A rule that fired on a decided call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRule {
    /// Rule name.
    pub name: String,
    /// Its action (`alert`, `alert_and_pause`, `alert_and_throttle`, `block_and_alert`).
    pub action: String,
    /// Its severity.
    pub severity: String,
}

/// Answer of `POST /v1/decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `allow`, `block`, `throttle` or `paused`.
    pub decision: String,
    /// For `throttle`: wait this long before retrying.
    pub retry_after_ms: Option<i64>,
    /// Rules that fired on the call.
    pub rules: Vec<DecisionRule>,
    /// The `tool_call` entry recording the attempt and the decision.
    pub entry_id: String,
    /// Its seq.
    pub seq: u64,
    /// Its hash.
    pub entry_hash: String,
    /// Whether the record was durably committed before the answer (`false` when the service
    /// answers decisions once sequenced; services before this field always committed first).
    #[serde(default = "committed")]
    pub durable: bool,
}

fn committed() -> bool {
    true
}

impl Decision {
    /// Whether the call may go ahead.
    #[must_use]
    pub fn allowed(&self) -> bool {
        self.decision == "allow"
    }
}

/// Answer of `GET /v1/entries/{entry_id}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EntryRecord {
    /// The entry's tenant.
    pub tenant_id: String,
    /// Its position in the tenant's chain.
    pub seq: u64,
    /// `sha256:` + hex of the entry hash.
    pub entry_hash: String,
    /// The exact signed bytes of the entry line.
    pub line: String,
    /// The entry, parsed.
    pub entry: Value,
}

/// Answer of `GET /v1/checkpoints/latest`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Checkpoint {
    /// The chain's tenant.
    pub tenant_id: String,
    /// Tree size the checkpoint covers.
    pub size: u64,
    /// When it was signed (as the service wrote it).
    #[serde(deserialize_with = "string_or_number")]
    pub timestamp: String,
    /// The signed checkpoint note text (docs/FORMAT.md §7).
    pub note: String,
}

/// One page of entries and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntryPage {
    /// The entries, as the service wrote them.
    pub entries: Vec<Value>,
    /// `Blackbox-Next-Cursor`: pass it as [`crate::EntryQuery::cursor`] for the next page.
    pub next_cursor: Option<String>,
}

/// Entries as raw bytes in the requested format (for CSV/JSONL passthrough).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawEntries {
    /// The body as sent by the service.
    pub body: Bytes,
    /// `Blackbox-Next-Cursor`, when the page has a successor.
    pub next_cursor: Option<String>,
}

/// Token scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Scope {
    /// `POST /v1/events` for the token's tenant.
    Ingest,
    /// Every `GET /v1/…` for the token's tenant.
    Read,
    /// Everything, for every tenant.
    Admin,
    /// A scope this client does not know (a newer service).
    #[serde(other, skip_serializing)]
    Unknown,
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewToken {
    /// The tenant the token acts for (`None`: an admin token of every tenant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// A name for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Answer of `POST /v1/tokens`: the token is shown only this once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreatedToken {
    /// Public id.
    pub id: String,
    /// The token itself (its `Debug` hides the secret).
    pub token: Token,
    /// Its tenant (`None` for an admin token of every tenant).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Its scopes.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
    /// When it was created, Unix ms.
    #[serde(default)]
    pub created_ms: Option<i64>,
    /// Any other member the service sends.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// One token in `GET /v1/tokens` (no secret).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TokenInfo {
    /// Public id.
    pub id: String,
    /// Its tenant (`None` for an admin token of every tenant).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Its scopes.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
    /// When it was created, Unix ms.
    #[serde(default)]
    pub created_ms: Option<i64>,
    /// When it was revoked, Unix ms.
    #[serde(default)]
    pub revoked_ms: Option<i64>,
    /// Any other member the service sends.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// `GET /v1/tokens` answers either a bare array or `{"tokens": [...]}`; both are accepted.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum TokenList {
    Bare(Vec<TokenInfo>),
    Wrapped { tokens: Vec<TokenInfo> },
}

impl TokenList {
    pub(crate) fn into_vec(self) -> Vec<TokenInfo> {
        match self {
            Self::Bare(v) | Self::Wrapped { tokens: v } => v,
        }
    }
}

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
    use super::*;

    #[test]
    fn token_debug_hides_the_secret() {
        let t = Token::new("bbx_0123456789abcdef_SECRETSECRETSECRETSECRETSECRETSECRETSECRE");
        assert_eq!(t.id(), Some("0123456789abcdef"));
        let d = format!("{t:?}");
        assert!(!d.contains("SECRET"), "{d}");
        assert!(d.contains("0123456789abcdef"));
        let odd = Token::new("hunter2");
        assert_eq!(format!("{odd:?}"), "Token(…)");
        let created: CreatedToken = serde_json::from_str(
            r#"{"id":"0123456789abcdef","token":"bbx_0123456789abcdef_SECRET","tenant_id":"acme",
                "scopes":["ingest","read","future"],"label":"","created_ms":1776124800000,"revoked_ms":null}"#,
        )
        .unwrap();
        assert!(!format!("{created:?}").contains("SECRET"));
        assert_eq!(created.scopes, [Scope::Ingest, Scope::Read, Scope::Unknown]);
    }

    #[test]
    fn token_lists_bare_or_wrapped() {
        let bare: TokenList = serde_json::from_str(
            r#"[{"id":"a","tenant_id":null,"scopes":["admin"],"revoked_ms":5,"x":true}]"#,
        )
        .unwrap();
        let v = bare.into_vec();
        assert_eq!(v[0].scopes, [Scope::Admin]);
        assert_eq!(v[0].revoked_ms, Some(5));
        assert_eq!(v[0].tenant_id, None);
        assert_eq!(v[0].other["x"], Value::Bool(true));
        let wrapped: TokenList =
            serde_json::from_str(r#"{"tokens":[{"id":"a","tenant_id":"t"}]}"#).unwrap();
        assert_eq!(wrapped.into_vec().len(), 1);
    }

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

    #[test]
    fn new_token_body() {
        let body = serde_json::to_string(&NewToken {
            tenant_id: Some("acme".into()),
            scopes: vec![Scope::Ingest, Scope::Read],
            label: Some("agent fleet".into()),
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"tenant_id":"acme","scopes":["ingest","read"],"label":"agent fleet"}"#
        );
    }
}
