//! `GET /v1/entries` (as JSON) and `GET /v1/entries/{entry_id}`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Answer of `GET /v1/entries/{entry_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "StoredEntry")]
pub struct EntryRecord {
    /// The entry's tenant.
    pub tenant_id: String,
    /// Its position in the tenant's chain.
    pub seq: u64,
    /// `sha256:` + hex of the entry hash.
    pub entry_hash: String,
    /// The exact signed bytes of the entry line.
    pub line: String,
    /// The entry, parsed (docs/FORMAT.md §2).
    #[schemars(schema_with = "crate::openapi::refs::entry")]
    pub entry: Value,
}

/// `GET /v1/entries?format=json`: a page of entries and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EntriesJson {
    /// The entries, as the service wrote them (docs/FORMAT.md §2).
    #[schemars(schema_with = "crate::openapi::refs::entries")]
    pub entries: Vec<Value>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}
