//! Errors of the ledger crate.

use std::path::PathBuf;

/// Everything that can go wrong opening, writing or reading a ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The data directory has not been initialised.
    #[error("no Blackbox store in {dir}: run `blackbox init --data-dir {dir}` first")]
    NotInitialised {
        /// The directory looked at.
        dir: PathBuf,
    },
    /// Another process writes to the data directory (a running `blackbox serve`, or another
    /// command): one writer at a time keeps the chains' state right.
    #[error(
        "{dir} is in use by another writer (a running `blackbox serve`, or another blackbox command): use the service instead (`--server URL --token T`, or its admin API), or stop it first"
    )]
    InUse {
        /// The directory.
        dir: PathBuf,
    },
    /// `init` was asked to create a store that exists.
    #[error("{dir} already holds a Blackbox store; refusing to overwrite it")]
    AlreadyInitialised {
        /// The directory.
        dir: PathBuf,
    },
    /// A key file may be read by other users.
    #[error(
        "key file {path} is readable by group or others (mode {mode:03o}); a secret key must be private: run `chmod 600 {path}`"
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file is missing or malformed (never quotes the key).
    #[error("key file {path}: {problem}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// An input event is invalid.
    #[error("line {line}: {source}")]
    Event {
        /// 1-based input line.
        line: u64,
        /// What is wrong with it.
        source: blackbox_core::Error,
    },
    /// The configuration file is invalid.
    #[error("configuration {path}: {problem}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A file given as a log is not a Blackbox log at all (docs/FORMAT.md §9, "Files that are
    /// not a log"): nothing in it was checked, so it is neither intact nor tampered.
    #[error("{path} is not a Blackbox log: {why}; {hint}")]
    NotALog {
        /// The file.
        path: PathBuf,
        /// What it holds instead.
        why: String,
        /// What to do.
        hint: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] blackbox_store::StoreError),
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Signing a checkpoint failed.
    #[error("signing a checkpoint failed: {0}")]
    Checkpoint(#[from] blackbox_core::checkpoint::CheckpointError),
    /// The store's content is inconsistent in a way that prevents the operation.
    #[error("{0}")]
    Inconsistent(String),
    /// An anchor was asked for with a checkpoint of another size than the chain head.
    #[error(
        "chain `{tenant}`: an anchor needs a checkpoint of the head's size {head_size}, but the checkpoint given has size {checkpoint_size}"
    )]
    AnchorSize {
        /// The chain.
        tenant: String,
        /// Entries in the chain.
        head_size: u64,
        /// The checkpoint's tree size.
        checkpoint_size: u64,
    },
    /// Something asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A proof could not be produced or checked.
    #[error("{0}")]
    Proof(String),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(getrandom::Error),
}

impl LedgerError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }
}
