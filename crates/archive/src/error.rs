//! Errors of archiving.

use std::path::PathBuf;

use blackbox_ledger::error::LedgerError;
use blackbox_store::StoreError;

/// What went wrong while archiving or reading an archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The archive location is unusable (bad URL, unreachable, refused).
    #[error("archive {url}: {message}")]
    Location {
        /// The archive URL (credentials are never part of it).
        url: String,
        /// What is wrong.
        message: String,
    },
    /// An object could not be written, read or deleted.
    #[error("archive object {object}: {message}")]
    Object {
        /// The object path.
        object: String,
        /// What failed.
        message: String,
    },
    /// A segment read back does not verify; nothing was removed from the store.
    #[error(
        "archive segment {object} does not verify, so nothing was removed from the store: {message}"
    )]
    Verify {
        /// The object path.
        object: String,
        /// The first problem.
        message: String,
    },
    /// The `[retention]` settings are invalid.
    #[error("configuration {}: {problem}", .path.display())]
    Config {
        /// The settings file.
        path: PathBuf,
        /// What is wrong, and where in the file.
        problem: String,
    },
    /// The settings file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Ledger failures.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Store failures.
    #[error(transparent)]
    Store(#[from] StoreError),
}
