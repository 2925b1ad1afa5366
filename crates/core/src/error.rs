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
    ForwardSecure(String),
    /// The keyring has no key with this id.
    #[error("no HMAC key with id `{0}` in the keyring")]
    UnknownKey(String),
    /// A personal-data sidecar does not match its entry's digest, or is malformed.
    #[error("personal-data sidecar: {0}")]
    Sidecar(String),
}
