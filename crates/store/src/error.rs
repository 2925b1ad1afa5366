//! Errors reported by stores.

/// Why a store operation failed.
///
/// Backend errors that mean "another writer holds the lock" are reported as [`StoreError::Busy`]
/// rather than as a raw [`StoreError::Sqlite`], so callers can retry without inspecting SQLite
/// error codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another writer held the store's write lock for longer than the lock timeout.
    #[error(
        "the store is busy: another writer held its lock for longer than the timeout; \
         retry later, or stop the other process writing to this store"
    )]
    Busy,

    /// An entry (or a head) does not continue its chain: its `seq` is not `expected`.
    #[error(
        "sequence conflict in tenant {tenant:?}: expected seq {expected}, got {got}; \
         the chain was changed by another writer or the caller skipped or repeated an entry; \
         re-read the chain head and retry"
    )]
    SeqConflict {
        /// Tenant whose chain was being written.
        tenant: String,
        /// The seq (or head size) the store expected.
        expected: u64,
        /// The seq (or head size) it was given.
        got: u64,
    },

    /// Stored data cannot be decoded (for example a hash column of the wrong length).
    #[error(
        "the store is corrupt: {what}; run `blackbox verify` and restore from a backup if needed"
    )]
    Corrupt {
        /// What was found to be wrong.
        what: String,
    },

    /// The store's schema version is not the one this build understands.
    #[error(
        "the store has schema version {found}, but this version of Blackbox supports only schema \
         version {supported}; use a Blackbox release that supports schema version {found}"
    )]
    Schema {
        /// Schema version recorded in the store.
        found: u32,
        /// Schema version this build reads and writes.
        supported: u32,
    },

    /// The store to open does not exist.
    #[error("no store at {path}; check the path, or create the store first (`blackbox init`)")]
    NotFound {
        /// The path that was opened.
        path: String,
    },

    /// A new store was to be created where a file already exists.
    #[error(
        "a file already exists at {path}; open it instead, or choose another path for the new \
         store"
    )]
    AlreadyExists {
        /// The path that was to be created.
        path: String,
    },

    /// The file exists but is not a Blackbox store (it has no Blackbox schema).
    #[error("{path} is not a Blackbox store; check the path")]
    NotAStore {
        /// The path that was opened.
        path: String,
    },

    /// Erased data could not yet be purged from the write-ahead log: readers kept old snapshots
    /// open for the whole wait. The erasure itself is committed.
    #[error(
        "the erasure is committed, but the write-ahead log still holds the erased bytes: readers \
         kept older snapshots open for {waited_s} s; stop long-running readers (verify, export, \
         open `sqlite3` shells) and run the erasure again (it then only purges), or restart the \
         service"
    )]
    PurgeIncomplete {
        /// Seconds waited.
        waited_s: u64,
    },

    /// A write was attempted through a store opened read-only.
    #[error("the store was opened read-only; open it for writing to change it")]
    ReadOnly,

    /// The caller passed a value this store cannot hold or an operation that breaks the storage
    /// contract (for example a seq beyond the backend's limit, or a commit that appends entries
    /// without recording the new chain head).
    #[error("invalid store operation: {what}")]
    Invalid {
        /// What was wrong.
        what: String,
    },

    /// The backend does not implement an optional part of the contract (retention or erasure).
    #[error(
        "this store does not support {operation}; use a storage backend that implements it \
         (the embedded SQLite store does)"
    )]
    Unsupported {
        /// The part asked for (`"retention"`, `"erasure"`).
        operation: &'static str,
    },

    /// A database server backend (PostgreSQL) failed or refused: `message` says what and what
    /// to do.
    #[error("{backend} error: {message}")]
    Backend {
        /// The backend (`"PostgreSQL"`).
        backend: &'static str,
        /// What happened (never a password).
        message: String,
    },

    /// A database server backend cannot be reached, or refused the login.
    #[error(
        "cannot reach the {backend} database {target}: {message}; check that the server runs \
         and that the address, user, password and TLS settings (sslmode) are right"
    )]
    Unreachable {
        /// The backend (`"PostgreSQL"`).
        backend: &'static str,
        /// The database, without its password.
        target: String,
        /// Why.
        message: String,
    },

    /// An error from SQLite.
    #[error("SQLite error: {0}")]
    Sqlite(#[source] rusqlite::Error),

    /// An I/O error (creating or opening the store file).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    /// Converts a SQLite error, reporting lock time-outs (`SQLITE_BUSY`, `SQLITE_LOCKED`) as
    /// [`StoreError::Busy`].
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Busy
            }
            _ => Self::Sqlite(e),
        }
    }
}
