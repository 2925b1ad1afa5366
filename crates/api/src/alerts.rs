//! `GET /v1/alerts`, `POST /v1/alerts/{alert_id}/ack` and `/resolve` (docs/FORMAT.md §14).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Answer of `GET /v1/alerts`: a page of alerts, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlertList {
    /// The alerts, each with the state its triage entries give it.
    #[schemars(schema_with = "crate::openapi::refs::alerts")]
    pub alerts: Vec<Value>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Body of the triage routes (optional for `ack`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Triage {
    /// `resolve` only: `true_positive`, `false_positive` or `accepted_risk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// A ticket reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// A note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Answer of a triage: the alert as it now stands and the entry recording the triage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Triaged {
    /// The alert after the triage.
    #[schemars(schema_with = "crate::openapi::refs::alert_or_null")]
    pub alert: Option<Value>,
    /// The `alert_acknowledged` / `alert_resolved` entry.
    pub entry_id: String,
    /// Its seq.
    pub seq: u64,
    /// Its hash.
    pub entry_hash: String,
}
