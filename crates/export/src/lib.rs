//! Compliance evidence exports: SOC 2 CC7.2, ISO 27001 A.8.15 and GDPR Art. 30 reports, as PDF
//! (for the auditor), JSON (the same content for machines) and CSV (the population tables),
//! each with a signed manifest.
//!
//! - [`config`]: the export settings (organisation, retention, processing activities);
//! - [`figures`]: the figures, computed in one streamed pass plus a verification of the chain;
//! - [`alerts`]: the alert register (every alert, tested; rules versions; SIEM deliveries);
//! - [`report`]: the report of a standard and control: its text, figures and document;
//! - [`doc`] and [`pdf`]: the document model and its PDF rendering;
//! - [`manifest`]: the signed manifest and its verification with the public key alone;
//! - [`produce`]: one export end to end (files and manifest as bytes).

pub mod alerts;
pub mod config;
pub mod doc;
pub mod figures;
pub mod logfile;
pub mod manifest;
pub mod pdf;
pub mod produce;
pub mod reperform;
pub mod report;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Bad arguments (standard, control, period, tenant).
    #[error("{0}")]
    Usage(String),
    /// The period holds no entries.
    #[error("{0}")]
    EmptyPeriod(String),
    /// The export settings are missing or invalid.
    #[error("{0}")]
    Config(String),
    /// The ledger or store failed.
    #[error(transparent)]
    Ledger(#[from] blackbox_ledger::LedgerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] blackbox_store::StoreError),
    /// The retention settings (where the archive is) are invalid.
    #[error(transparent)]
    Archive(#[from] blackbox_archive::ArchiveError),
    /// The PDF could not be made.
    #[error("PDF: {0}")]
    Pdf(String),
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        cause: std::io::Error,
    },
    /// A manifest is malformed or does not verify.
    #[error("{0}")]
    Manifest(String),
}
