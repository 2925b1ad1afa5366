//! `POST /v1/erasures` (docs/FORMAT.md §5).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Body of `POST /v1/erasures`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Erasure {
    /// The data subject whose personal data is erased.
    pub data_subject: String,
    /// Why (recorded in the markers).
    pub reason: String,
    /// The request's ticket.
    pub ticket: String,
}
