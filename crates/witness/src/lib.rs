//! # blackbox-witness
//!
//! Witnessing (docs/WITNESS.md): a signed checkpoint proves what the operator's key signed, not
//! that the operator showed everyone the same log. A witness cosigns a checkpoint only after
//! checking it is consistent with the last one it saw for the same origin (C2SP tlog-witness,
//! tlog-cosignature), so a split view or a rewritten history needs the witnesses' collusion.
//!
//! - [`serve`]: a witness others can run in another trust domain (`blackbox witness serve`):
//!   `POST /add-checkpoint`, durable state ([`state`]), Ed25519 `cosignature/v1`.
//! - [`client`]: what a log uses to submit a checkpoint with its consistency proof and collect
//!   the cosignature.
//! - [`keys`]: the witness's key files.
//!
//! The formats and checks themselves are pure and live in `blackbox_core::witness` and
//! `blackbox_core::cosignature`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

pub mod client;
pub mod keys;
pub mod serve;
pub mod state;

/// What can go wrong running a witness or talking to one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The state directory or its database cannot be used.
    #[error("witness state {path}: {problem}")]
    State {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// A key file is missing, unreadable, too open or malformed.
    #[error("key file {path}: {problem}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// The configuration is not usable.
    #[error("{0}")]
    Config(String),
}

/// Milliseconds since the epoch, from the system clock.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
