//! `GET /v1/exports`: a compliance export made by the service.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Answer of `GET /v1/exports`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Export {
    /// The files, the output first.
    pub files: Vec<ExportFile>,
    /// The signed manifest.
    pub manifest: Manifest,
    /// The period covered.
    pub period: Period,
    /// The export's figures in brief.
    pub summary: ExportSummary,
}

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportFile {
    /// File name.
    pub name: String,
    /// Its bytes, base64.
    pub base64: String,
}

/// The signed manifest of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    /// File name.
    pub name: String,
    /// Its signed text.
    pub text: String,
}

/// A period of whole days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Period {
    /// First day, `YYYY-MM-DD`.
    pub start: String,
    /// Last day, `YYYY-MM-DD`.
    pub end: String,
}

/// The figures of an export in brief.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExportSummary {
    /// The tenant exported.
    pub tenant_id: String,
    /// Completeness, percent.
    pub completeness: f64,
    /// Entries present.
    pub present: u64,
    /// Entries expected.
    pub expected: u64,
    /// The integrity finding in words.
    pub integrity: String,
    /// Anomalies in the period.
    pub anomalies: u64,
    /// Of which resolved.
    pub resolved: u64,
    /// Days the log reaches back (the oldest entry kept to `retention_as_of`, both days
    /// counted).
    pub oldest_age_days: u64,
    /// The day (`YYYY-MM-DD`, UTC) the retention figure is as of: the earlier of the period's
    /// last day and the day the export was made.
    pub retention_as_of: String,
    /// Days the standard requires.
    pub required_days: u64,
    /// Whether retention meets them.
    pub retention_met: bool,
}
