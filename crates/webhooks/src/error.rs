//! What can go wrong with webhooks.

use std::path::PathBuf;

/// What can go wrong with webhooks. No variant ever carries a secret or a payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// An `hmac_secret_ref` in none of the accepted forms. The value is not repeated: it may be
    /// the secret itself, pasted by mistake.
    #[error(
        "hmac_secret_ref {reason}; the accepted forms are env:NAME, file:/path/to/secret and \
         k8s-secret/NAME (the value given is not repeated here in case it is the secret itself)"
    )]
    InvalidSecretRef {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The secret could not be read (variable not set, file missing or unreadable).
    #[error("webhook secret {secret_ref}: {reason}")]
    SecretUnavailable {
        /// The reference (never the secret).
        secret_ref: String,
        /// Why.
        reason: String,
    },
    /// A `file:` secret readable by group or others.
    #[error(
        "webhook secret file {} is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
        .path.display(),
        .path.display()
    )]
    SecretPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secret was read but cannot be used.
    #[error("webhook secret {secret_ref} {reason}")]
    SecretMalformed {
        /// The reference (never the secret).
        secret_ref: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A webhook URL that cannot be used.
    #[error("webhook url `{url}` {reason}")]
    InvalidUrl {
        /// The URL without user info or query string.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A webhook with an empty `events` list.
    #[error("the webhook to {url} lists no event types; name at least one in `events`")]
    NoEvents {
        /// The URL without user info or query string.
        url: String,
    },
    /// `max_attempts: 0`.
    #[error("the webhook to {url} has max_attempts 0; it must be at least 1")]
    ZeroAttempts {
        /// The URL without user info or query string.
        url: String,
    },
    /// An entry that cannot be turned into a payload.
    #[error("entry {entry_id} cannot be turned into a webhook payload: {reason}")]
    InvalidEntry {
        /// The entry.
        entry_id: String,
        /// Why.
        reason: String,
    },
    /// A delivery status other than `pending`, `delivered` or `dead`.
    #[error("unknown delivery status `{given}`; use pending, delivered or dead")]
    UnknownStatus {
        /// What was given.
        given: String,
    },
    /// A payload format other than `json` or `ocsf`.
    #[error("unknown webhook format `{given}`; use json or ocsf")]
    UnknownFormat {
        /// What was given.
        given: String,
    },
    /// The outbox file is readable by group or others.
    #[error(
        "{} is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
        .path.display(),
        .path.display()
    )]
    OutboxPermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The outbox was written by a newer version.
    #[error(
        "{} has outbox schema version {found}; this Blackbox knows version {known} only (upgrade it)",
        .path.display()
    )]
    OutboxVersion {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// The version this build writes.
        known: i64,
    },
    /// SQLite failed on the outbox.
    #[error("webhook outbox: {0}")]
    Outbox(#[from] rusqlite::Error),
    /// The database holding the outbox (PostgreSQL) failed.
    #[error("webhook outbox: {0}")]
    OutboxDatabase(#[from] blackbox_store::StoreError),
    /// The TLS client could not be set up.
    #[error("TLS setup for webhooks: {0}")]
    Tls(#[from] rustls::Error),
    /// I/O.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
