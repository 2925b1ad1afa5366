//! Request and response bodies of the API (docs/API.md): those of `blackbox-api`, written once
//! for the service and this client, plus what only a client needs.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

pub use blackbox_api::decide::{Decision, DecisionRule};
pub use blackbox_api::entries::EntryRecord;
pub use blackbox_api::events::{EntryRef, IngestResponse};
pub use blackbox_api::proofs::Checkpoint;
pub use blackbox_api::tokens::{CreatedToken, NewToken, Scope, Token, TokenInfo};

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

/// `GET /v1/tokens` answers `{"tokens": [...]}`; a bare array (older services) is accepted too.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
