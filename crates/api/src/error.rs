//! The body of every error answer (docs/API.md "Errors").

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `{"error": {"code", "message", "index"?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, for people and for programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// Stable machine code (`invalid_event`, `forbidden`, `rate_limited`, …).
    pub code: String,
    /// What is wrong and where, in plain words.
    pub message: String,
    /// 0-based index of the event the error is about (batch requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}
