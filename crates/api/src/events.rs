//! `POST /v1/events`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where one ingested event went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EntryRef {
    /// The entry's id (UUIDv7).
    pub entry_id: String,
    /// Its position in the tenant's chain.
    pub seq: u64,
    /// `sha256:` + hex of the entry hash.
    pub entry_hash: String,
}

/// Answer of `POST /v1/events`: the entries, in the order of the events sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IngestResponse {
    /// The tenant the events were written to.
    pub tenant_id: String,
    /// How many entries were written.
    pub count: usize,
    /// One per event, in request order.
    pub entries: Vec<EntryRef>,
}
