//! Errors of the core crate.

use std::fmt;

/// A problem with one field of an event or entry: which field (a JSON path such as
/// `payload.tool_calls[0].args_hash`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field.
    pub field: String,
    /// What is wrong, in plain English.
    pub problem: String,
}

impl FieldError {
    /// A new field error.
    #[must_use]
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}` {}", self.field, self.problem)
    }
}

impl std::error::Error for FieldError {}

/// Errors from building, signing and reading entries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input event is not valid JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// An input event or entry has a field that is missing, of the wrong type or out of range.
    #[error("{0}")]
    Field(#[from] FieldError),
    /// An entry line does not have the v1 layout (see docs/FORMAT.md, "Entry line").
    #[error("entry line is malformed: {0}")]
    MalformedEntry(String),
    /// A keyring file is malformed (the message never contains key material).
    #[error("HMAC keyring is malformed at line {line}: {problem}")]
    Keyring {
        /// 1-based line number in the keyring text.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// Forward-secure key parameters are out of range (docs/FORMAT.md §17).
    #[error("forward-secure key: {0}")]
    ForwardSecure(#[from] FssError),
}

/// Why forward-secure key parameters or a keyring step are refused (docs/FORMAT.md §17).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FssError {
    /// An epoch length outside the accepted range.
    #[error(
        "the epoch length must be between {min} seconds and {max} seconds (366 days), not {given}"
    )]
    EpochLength {
        /// The length given, seconds.
        given: u64,
        /// The shortest accepted.
        min: u64,
        /// The longest accepted.
        max: u64,
    },
    /// An origin that is not a multiple of the epoch length.
    #[error("the epoch origin {origin} is not a multiple of the epoch length {epoch_secs}")]
    Unaligned {
        /// Unix seconds.
        origin: u64,
        /// Seconds.
        epoch_secs: u64,
    },
    /// An epoch whose key id would be invalid.
    #[error("epoch {epoch} of key generation `{generation}` has no valid key id ({source})")]
    KeyId {
        /// The generation.
        generation: String,
        /// The epoch.
        epoch: u64,
        /// Why the id is invalid.
        source: FieldError,
    },
    /// A generation the keyring does not hold as forward-secure.
    #[error("the keyring has no forward-secure generation `{generation}`")]
    NotForwardSecure {
        /// The generation asked for.
        generation: String,
    },
    /// An epoch before the one the keyring holds (its earlier states are gone).
    #[error(
        "generation `{generation}` already holds epoch {held} of the keyring, after epoch {target}"
    )]
    EpochPassed {
        /// The generation.
        generation: String,
        /// The epoch held.
        held: u64,
        /// The epoch asked for.
        target: u64,
    },
}
