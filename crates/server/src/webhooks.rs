//! SIEM webhooks: committed alert entries (`anomaly_detected`, `agent_paused`, …) POSTed to the
//! URLs of a rules file, signed per [Standard Webhooks] and delivered through a durable outbox.
//!
//! [Standard Webhooks]: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
//!
//! # Data path
//!
//! The service hands every committed entry whose `event_type` some webhook lists to
//! [`Outbox::enqueue`], which writes one delivery per (entry, webhook) to `DATA_DIR/webhooks.db`
//! (SQLite, mode 0600, WAL, `synchronous = FULL`) **before** any attempt, with the payload bytes
//! built once. The [`Dispatcher`] takes due deliveries from that file, signs and sends them, and
//! records every attempt's result there before it schedules the next. `blackbox webhooks
//! list|retry` work on the same file; the running service sees their changes on its next poll.
//!
//! # Guarantees
//!
//! - **At least once.** An attempt is counted (and the delivery leased for the attempt's timeout
//!   plus its backoff) before the request leaves, and its outcome is written before the next
//!   attempt is scheduled; a crash (`kill -9`) at any point therefore re-sends at most the one
//!   attempt that was in flight. Receivers must de-duplicate by `webhook-id`, which is the same
//!   on every attempt of a delivery, across restarts.
//! - **A restart loses no alert.** Deliveries are durable before the first attempt;
//!   [`Outbox::high_water_mark`] tells the service, on start, from which `seq` of each tenant it
//!   must hand committed entries to [`Outbox::enqueue`] again (enqueueing is idempotent).
//! - **Retries**: any answer other than 2xx, a network error or a timeout is retried with
//!   exponential backoff and full jitter ([`Backoff`]: a random delay in
//!   `[0, min(cap, base × 2^(attempt−1))]`, base 1 s, cap 1 h). A `Retry-After` header (seconds or
//!   HTTP-date) is honoured as the minimum delay, capped at the backoff cap. `410 Gone`
//!   dead-letters at once (the Standard Webhooks convention for "stop sending"). Redirects are
//!   not followed (a 3xx is a failed attempt). After `max_attempts` attempts (default 12) a
//!   delivery is *dead*: it stays in the outbox until `blackbox webhooks retry` makes it pending
//!   again.
//! - **Secrets** are never stored, logged or shown: the outbox keeps the reference
//!   (`env:NAME`, `file:PATH`, `k8s-secret/NAME`), resolved at every attempt (so a rotated secret
//!   is picked up), and [`WebhookSecret`] is zeroized on drop and has a redacting `Debug`.
//!   Logs carry the URL without user info or query string, the `webhook-id`, the attempt and
//!   the HTTP status; never the body or the secret.
//!
//! # Requests
//!
//! `POST <url>` with `content-type: application/json`, `user-agent: blackbox-webhooks/<version>`
//! and the Standard Webhooks headers:
//!
//! - `webhook-id`: `msg_<entry_id>_<first 8 hex digits of SHA-256(url)>`: the same alert sent to
//!   two URLs has two ids; every attempt of one delivery has the same id;
//! - `webhook-timestamp`: Unix seconds of the attempt (fresh on every attempt, as the spec asks,
//!   so receivers can refuse stale or replayed requests, e.g. older than 5 minutes);
//! - `webhook-signature`: `v1,<base64 of HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`
//!   (see [`sign`] and [`verify_signature`]). A secret written `whsec_<base64>` is base64-decoded
//!   to get the key; any other value is the key as raw bytes (a trailing newline of a secret file
//!   is ignored).
//!
//! HTTPS uses rustls with the ring provider and the system's trusted CA certificates
//! (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them). HTTP/1.1 only; no proxy.
//!
//! # Payloads
//!
//! The body is built once, when the delivery is enqueued, and is identical on every attempt.
//! The same entry always gives the same bytes (golden files in `crates/server/tests/golden/`).
//!
//! ## `format: json` (default)
//!
//! The Standard Webhooks envelope, compact JSON, keys in this order:
//!
//! ```json
//! {"type":"anomaly_detected","timestamp":"2026-11-30T12:00:00.000Z","data":{…the entry…}}
//! ```
//!
//! - `type`: the entry's `event_type`;
//! - `timestamp`: the entry's `timestamp` (RFC 3339, as in the chain);
//! - `data`: the entry object exactly as stored in the chain (byte for byte), so a receiver
//!   holding the HMAC key can check its `hmac_sha256` and chain it by `prev_entry_hash`.
//!
//! ## `format: ocsf`
//!
//! An [OCSF 1.1.0] Detection Finding, compact JSON, keys in this order:
//!
//! [OCSF 1.1.0]: https://schema.ocsf.io/1.1.0/classes/detection_finding
//!
//! | OCSF attribute | value |
//! | --- | --- |
//! | `class_uid`, `class_name` | `2004`, `"Detection Finding"` |
//! | `category_uid`, `category_name` | `2`, `"Findings"` |
//! | `activity_id`, `activity_name` | `1`, `"Create"` |
//! | `type_uid`, `type_name` | `200401`, `"Detection Finding: Create"` |
//! | `severity_id`, `severity` | from `payload.severity`: `info`/`informational` 1, `low` 2, `medium` 3, `high` 4, `critical` 5 (case-insensitive); missing or other 0 `"Unknown"` |
//! | `status_id`, `status` | `1`, `"New"` |
//! | `time` | the entry's `timestamp` as Unix milliseconds |
//! | `message` | `payload.description`, else `"<event_type> (agent <agent_id>)"` |
//! | `metadata.version` | `"1.1.0"` |
//! | `metadata.product` | `{"name":"Blackbox","vendor_name":"Blackbox"}` |
//! | `metadata.uid` | `entry_id` |
//! | `metadata.original_time` | the entry's `timestamp` string |
//! | `metadata.sequence` | the entry's `seq` in its tenant chain |
//! | `finding_info.uid` | `entry_id` |
//! | `finding_info.title` | `payload.rule`, else the `event_type` |
//! | `finding_info.desc` | `payload.description` (omitted when absent) |
//! | `finding_info.types` | `[payload.kind]` (omitted when absent) |
//! | `finding_info.analytic` | `{"name": payload.rule, "type_id": 1, "type": "Rule"}` (omitted without a rule) |
//! | `finding_info.related_events` | `[{"uid": id}]` for each id of `payload.triggered_by` (omitted when empty) |
//! | `finding_info.created_time` | as `time` |
//! | `actor.user` | `{"uid": agent_id, "name": agent_id, "type_id": 99, "type": "AI agent", "org": {"uid": tenant, "name": tenant}}` |
//! | `actor.session` | `{"uid": session_id}` (omitted when absent) |
//! | `resources` | `[{"uid": agent_id, "name": agent_id, "type": "AI agent", "group": {"uid": tenant, "name": tenant}}]` |
//! | `unmapped` | the entry object exactly as stored in the chain |
//!
//! Optional attributes whose source is absent are omitted, never `null`.
//!
//! # Outbox (`DATA_DIR/webhooks.db`, schema version 1 in `PRAGMA user_version`)
//!
//! ```sql
//! CREATE TABLE deliveries(
//!     id                 INTEGER PRIMARY KEY,   -- shown by `blackbox webhooks list`
//!     webhook_id         TEXT NOT NULL UNIQUE,  -- the webhook-id header
//!     url                TEXT NOT NULL,
//!     secret_ref         TEXT NOT NULL,         -- env:NAME | file:PATH | k8s-secret/NAME (never the secret)
//!     format             TEXT NOT NULL,         -- json | ocsf
//!     event_type         TEXT NOT NULL,
//!     tenant             TEXT NOT NULL,
//!     seq                INTEGER NOT NULL,
//!     entry_id           TEXT NOT NULL,
//!     body               BLOB NOT NULL,         -- the payload, sent as is on every attempt
//!     status             TEXT NOT NULL,         -- pending | delivered | dead
//!     attempts           INTEGER NOT NULL,      -- attempts made (or in flight)
//!     max_attempts       INTEGER NOT NULL,
//!     timeout_ms         INTEGER NOT NULL,      -- per attempt
//!     next_attempt_at_ms INTEGER NOT NULL,      -- Unix ms; a lease while an attempt is in flight
//!     last_status        INTEGER,               -- HTTP status of the last answer
//!     last_error         TEXT,                  -- short reason of the last failure (no secret, no body)
//!     last_attempt_at_ms INTEGER,
//!     created_at_ms      INTEGER NOT NULL,
//!     delivered_at_ms    INTEGER
//! );
//! CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at_ms);
//! CREATE TABLE high_water(tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL);
//! ```
//!
//! Delivered rows are pruned after [`DispatcherConfig::keep_delivered`] (7 days by default);
//! dead rows stay until retried.
//!
//! # Metrics
//!
//! [`WebhookStats`] holds plain counters and gauges for the Prometheus exporter.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read as _;
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, STANDARD_NO_PAD as B64_NO_PAD};
use bytes::Bytes;
use hmac::{KeyInit as _, Mac as _};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use zeroize::Zeroizing;

type HmacSha256 = hmac::Hmac<Sha256>;
type HttpClient = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// File name of the outbox inside the data directory.
pub const OUTBOX_FILE: &str = "webhooks.db";
/// Where `k8s-secret/NAME` is read from unless configured otherwise (`<dir>/NAME`).
pub const DEFAULT_K8S_SECRETS_DIR: &str = "/var/run/secrets/blackbox";
/// Attempts before a delivery is dead-lettered, unless the webhook says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;
/// Time allowed for one attempt (connect, send, answer), unless the webhook says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// OCSF schema version of [`PayloadFormat::Ocsf`] payloads.
pub const OCSF_VERSION: &str = "1.1.0";

const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries(
    id                 INTEGER PRIMARY KEY,
    webhook_id         TEXT NOT NULL UNIQUE,
    url                TEXT NOT NULL,
    secret_ref         TEXT NOT NULL,
    format             TEXT NOT NULL,
    event_type         TEXT NOT NULL,
    tenant             TEXT NOT NULL,
    seq                INTEGER NOT NULL,
    entry_id           TEXT NOT NULL,
    body               BLOB NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts           INTEGER NOT NULL,
    max_attempts       INTEGER NOT NULL,
    timeout_ms         INTEGER NOT NULL,
    next_attempt_at_ms INTEGER NOT NULL,
    last_status        INTEGER,
    last_error         TEXT,
    last_attempt_at_ms INTEGER,
    created_at_ms      INTEGER NOT NULL,
    delivered_at_ms    INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(status, next_attempt_at_ms);
CREATE TABLE IF NOT EXISTS high_water(
    tenant TEXT PRIMARY KEY NOT NULL,
    seq    INTEGER NOT NULL
);";

/// Largest secret read from a file.
const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// Longest `last_error` kept.
const MAX_ERROR_CHARS: usize = 200;
/// Most bytes of a response body read (and discarded) so the connection can be reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const USER_AGENT: &str = concat!("blackbox-webhooks/", env!("CARGO_PKG_VERSION"));

// ---------------------------------------------------------------------------------------------
// Errors

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
    /// The TLS client could not be set up.
    #[error("TLS setup for webhooks: {0}")]
    Tls(#[from] rustls::Error),
    /// I/O.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// Payload format of a webhook (see the module docs for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The Standard Webhooks envelope `{"type", "timestamp", "data": <entry>}`.
    #[default]
    Json,
    /// An OCSF 1.1.0 Detection Finding (class 2004).
    Ocsf,
}

impl PayloadFormat {
    /// Parses `json` or `ocsf`.
    ///
    /// # Errors
    /// [`WebhookError::UnknownFormat`].
    pub fn parse(s: &str) -> Result<Self, WebhookError> {
        match s {
            "json" => Ok(Self::Json),
            "ocsf" => Ok(Self::Ocsf),
            other => Err(WebhookError::UnknownFormat {
                given: other.to_owned(),
            }),
        }
    }

    /// `json` or `ocsf`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Ocsf => "ocsf",
        }
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a webhook's HMAC secret is read from (`hmac_secret_ref`). The reference is what is
/// stored and shown; the secret is read at each attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// `env:NAME`: the environment variable `NAME` of the service.
    Env(String),
    /// `file:PATH`: a file readable by its owner only (mode 0600 or stricter).
    File(PathBuf),
    /// `k8s-secret/NAME`: the file `NAME` in the mounted secrets directory
    /// ([`DEFAULT_K8S_SECRETS_DIR`] unless configured).
    K8s(String),
}

impl SecretRef {
    /// Parses `env:NAME`, `file:PATH` or `k8s-secret/NAME` (surrounding spaces ignored).
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecretRef`], which lists the accepted forms and never repeats the
    /// value.
    pub fn parse(s: &str) -> Result<Self, WebhookError> {
        let s = s.trim();
        let bad = |reason| Err(WebhookError::InvalidSecretRef { reason });
        if let Some(name) = s.strip_prefix("env:") {
            let mut chars = name.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return bad("env: needs a variable name (letters, digits and `_`)");
            }
            Ok(Self::Env(name.to_owned()))
        } else if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() || path.contains('\0') {
                return bad("file: needs a path");
            }
            Ok(Self::File(PathBuf::from(path)))
        } else if let Some(name) = s.strip_prefix("k8s-secret/") {
            let name_ok = !name.is_empty()
                && name != "."
                && name != ".."
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !name_ok {
                return bad("k8s-secret/ needs a key name (letters, digits, `.`, `_` and `-`)");
            }
            Ok(Self::K8s(name.to_owned()))
        } else {
            bad("is not in a recognised form")
        }
    }
}

impl std::str::FromStr for SecretRef {
    type Err = WebhookError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::K8s(name) => write!(f, "k8s-secret/{name}"),
        }
    }
}

/// One webhook of the rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// Where to POST (`http://` or `https://`).
    pub url: String,
    /// Event types delivered (`anomaly_detected`, `agent_paused`, …).
    pub events: Vec<String>,
    /// Where the HMAC secret is read from.
    pub secret_ref: SecretRef,
    /// Payload format.
    pub format: PayloadFormat,
    /// Attempts before a delivery is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Time allowed for one attempt.
    pub timeout: Duration,
}

impl WebhookTarget {
    /// A webhook with the default format (JSON), attempts (12) and timeout (10 s).
    ///
    /// # Errors
    /// As [`SecretRef::parse`] and [`WebhookTarget::validate`].
    pub fn new(url: &str, events: Vec<String>, secret_ref: &str) -> Result<Self, WebhookError> {
        let t = Self {
            url: url.trim().to_owned(),
            events,
            secret_ref: SecretRef::parse(secret_ref)?,
            format: PayloadFormat::Json,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
        };
        t.validate()?;
        Ok(t)
    }

    /// Checks the URL (absolute `http://` or `https://` with a host), that `events` is not empty
    /// and that `max_attempts` is at least 1.
    ///
    /// # Errors
    /// [`WebhookError::InvalidUrl`], [`WebhookError::NoEvents`], [`WebhookError::ZeroAttempts`].
    pub fn validate(&self) -> Result<(), WebhookError> {
        let shown = redact_url(&self.url);
        let invalid = |reason| WebhookError::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        let uri: hyper::Uri = self
            .url
            .parse()
            .map_err(|_| invalid("is not a valid URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(invalid("must start with http:// or https://"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid("has no host"));
        }
        if self.events.is_empty() {
            return Err(WebhookError::NoEvents { url: shown });
        }
        if self.max_attempts == 0 {
            return Err(WebhookError::ZeroAttempts { url: shown });
        }
        Ok(())
    }

    /// Whether entries of `event_type` go to this webhook.
    #[must_use]
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_type)
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets and signatures

/// A webhook's HMAC key. Zeroized on drop; `Debug` shows nothing of it; compared in constant
/// time.
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl PartialEq for WebhookSecret {
    fn eq(&self, other: &Self) -> bool {
        // ct_eq of slices of different lengths is false (only the length is not hidden).
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for WebhookSecret {}

/// Turns the text of a secret into key bytes (`whsec_<base64>` or raw).
fn decode_secret(raw: &[u8]) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let key = match raw.strip_prefix(b"whsec_") {
        Some(b64) => Zeroizing::new(
            B64.decode(b64)
                .or_else(|_| B64_NO_PAD.decode(b64))
                .map_err(|_| "starts with whsec_ but the rest is not valid base64")?,
        ),
        None => Zeroizing::new(raw.to_vec()),
    };
    if key.is_empty() {
        return Err("is empty");
    }
    Ok(key)
}

impl WebhookSecret {
    /// A secret as written in a secret store: `whsec_<base64>` (Standard Webhooks) is
    /// base64-decoded to get the key; any other text is the key as raw bytes.
    ///
    /// # Errors
    /// [`WebhookError::SecretMalformed`] for an empty secret or bad base64 after `whsec_`.
    pub fn from_text(text: &str) -> Result<Self, WebhookError> {
        decode_secret(text.as_bytes())
            .map(Self)
            .map_err(|reason| WebhookError::SecretMalformed {
                secret_ref: "given inline".to_owned(),
                reason,
            })
    }

    /// A key given as raw bytes.
    ///
    /// # Errors
    /// [`WebhookError::SecretMalformed`] for an empty key.
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, WebhookError> {
        let key = Zeroizing::new(key);
        if key.is_empty() {
            return Err(WebhookError::SecretMalformed {
                secret_ref: "given inline".to_owned(),
                reason: "is empty",
            });
        }
        Ok(Self(key))
    }
}

/// Reads at most [`MAX_SECRET_BYTES`] of a secret file, without its trailing newline.
fn read_secret_file(path: &Path, r: &SecretRef) -> Result<Zeroizing<Vec<u8>>, WebhookError> {
    let unavailable = |e: std::io::Error| WebhookError::SecretUnavailable {
        secret_ref: r.to_string(),
        reason: format!("cannot read {} ({e})", path.display()),
    };
    let file = std::fs::File::open(path).map_err(unavailable)?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(unavailable)?;
    if buf.len() as u64 > MAX_SECRET_BYTES {
        return Err(WebhookError::SecretMalformed {
            secret_ref: r.to_string(),
            reason: "is larger than 64 KiB",
        });
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(buf)
}

/// Reads the secret a reference names. `k8s-secret/NAME` is the file `k8s_dir/NAME`.
///
/// `file:` secrets must not be readable by group or others. Kubernetes secret volumes are
/// mode 0644 by default (the mount is private to the pod), so `k8s-secret/` files are not
/// checked.
///
/// # Errors
/// [`WebhookError::SecretUnavailable`] (variable not set, file missing or unreadable),
/// [`WebhookError::SecretPermissions`], [`WebhookError::SecretMalformed`] (empty, bad base64
/// after `whsec_`, over 64 KiB). None of them contains the secret.
pub fn resolve_secret(r: &SecretRef, k8s_dir: &Path) -> Result<WebhookSecret, WebhookError> {
    let raw = match r {
        SecretRef::Env(name) => match std::env::var_os(name) {
            Some(v) => Zeroizing::new(v.into_vec()),
            None => {
                return Err(WebhookError::SecretUnavailable {
                    secret_ref: r.to_string(),
                    reason: format!("the environment variable {name} is not set"),
                });
            }
        },
        SecretRef::File(path) => {
            let meta = std::fs::metadata(path).map_err(|e| WebhookError::SecretUnavailable {
                secret_ref: r.to_string(),
                reason: format!("cannot read {} ({e})", path.display()),
            })?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(WebhookError::SecretPermissions {
                    path: path.clone(),
                    mode,
                });
            }
            read_secret_file(path, r)?
        }
        SecretRef::K8s(name) => read_secret_file(&k8s_dir.join(name), r)?,
    };
    decode_secret(&raw)
        .map(WebhookSecret)
        .map_err(|reason| WebhookError::SecretMalformed {
            secret_ref: r.to_string(),
            reason,
        })
}

fn mac(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut m = match HmacSha256::new_from_slice(&secret.0) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    m.update(msg_id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().into()
}

/// The `webhook-signature` header value: `v1,<base64 of HMAC-SHA256(secret,
/// "<msg_id>.<timestamp>.<body>")>` (Standard Webhooks, symmetric signature).
#[must_use]
pub fn sign(secret: &WebhookSecret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", B64.encode(mac(secret, msg_id, timestamp, body)))
}

/// Whether a `webhook-signature` header holds a valid `v1` signature of the message (the header
/// may list several space-separated signatures, e.g. during a secret rotation). Comparison is
/// constant-time. Receivers should also refuse timestamps too far from their clock.
#[must_use]
pub fn verify_signature(
    secret: &WebhookSecret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = mac(secret, msg_id, timestamp, body);
    let mut ok = subtle::Choice::from(0);
    for sig in header.split(' ').filter(|s| !s.is_empty()) {
        if let Some(b64) = sig.strip_prefix("v1,")
            && let Ok(bytes) = B64.decode(b64)
        {
            ok |= bytes.as_slice().ct_eq(expected.as_slice());
        }
    }
    ok.into()
}

/// The `webhook-id` of an entry sent to `url`: `msg_<entry_id>_<first 8 hex of SHA-256(url)>`.
#[must_use]
pub fn webhook_id(entry_id: &str, url: &str) -> String {
    let h = Sha256::digest(url.as_bytes());
    format!("msg_{entry_id}_{}", hex::encode(&h[..4]))
}

/// `url` without user info and query string (for logs, errors and listings).
#[must_use]
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let query = if rest.contains('?') { "?…" } else { "" };
    match scheme {
        Some(s) => format!("{s}://{host}{path}{query}"),
        None => format!("{host}{path}{query}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// A committed ledger entry to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEntry {
    /// Tenant of its chain.
    pub tenant: String,
    /// Its position in the tenant chain.
    pub seq: u64,
    /// Its id.
    pub entry_id: String,
    /// Its `event_type`.
    pub event_type: String,
    /// Its `timestamp` (RFC 3339).
    pub timestamp: String,
    /// The entry JSON object as stored in the chain.
    pub entry_json: String,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: &'a str,
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct EntryFields {
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Ocsf<'a> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
    type_uid: u32,
    type_name: &'static str,
    severity_id: u8,
    severity: &'static str,
    status_id: u8,
    status: &'static str,
    time: i64,
    message: String,
    metadata: OcsfMetadata<'a>,
    finding_info: OcsfFindingInfo<'a>,
    actor: OcsfActor<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<OcsfResource<'a>>,
    unmapped: &'a RawValue,
}

#[derive(Serialize)]
struct OcsfMetadata<'a> {
    version: &'static str,
    product: OcsfProduct,
    uid: &'a str,
    original_time: &'a str,
    sequence: u64,
}

#[derive(Serialize)]
struct OcsfProduct {
    name: &'static str,
    vendor_name: &'static str,
}

#[derive(Serialize)]
struct OcsfFindingInfo<'a> {
    uid: &'a str,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    desc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    types: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    analytic: Option<OcsfAnalytic<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_events: Vec<OcsfUid<'a>>,
    created_time: i64,
}

#[derive(Serialize)]
struct OcsfAnalytic<'a> {
    name: &'a str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct OcsfUid<'a> {
    uid: &'a str,
}

#[derive(Serialize)]
struct OcsfActor<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<OcsfUser<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<OcsfUid<'a>>,
}

#[derive(Serialize)]
struct OcsfUser<'a> {
    uid: &'a str,
    name: &'a str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
    org: OcsfNamed<'a>,
}

#[derive(Serialize)]
struct OcsfNamed<'a> {
    uid: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct OcsfResource<'a> {
    uid: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    group: OcsfNamed<'a>,
}

/// OCSF `severity_id` and `severity` of a Blackbox severity.
fn ocsf_severity(s: Option<&str>) -> (u8, &'static str) {
    match s.map(str::to_ascii_lowercase).as_deref() {
        Some("info" | "informational") => (1, "Informational"),
        Some("low") => (2, "Low"),
        Some("medium") => (3, "Medium"),
        Some("high") => (4, "High"),
        Some("critical") => (5, "Critical"),
        _ => (0, "Unknown"),
    }
}

/// The payload bytes of `entry` in `format` (see the module docs). Deterministic: the same entry
/// always gives the same bytes.
///
/// # Errors
/// [`WebhookError::InvalidEntry`] when `entry_json` is not a JSON object (or, for OCSF, its
/// fields have unexpected types or the timestamp is not RFC 3339).
pub fn payload(format: PayloadFormat, entry: &AlertEntry) -> Result<Vec<u8>, WebhookError> {
    let invalid = |reason: String| WebhookError::InvalidEntry {
        entry_id: entry.entry_id.clone(),
        reason,
    };
    let raw: &RawValue = serde_json::from_str(&entry.entry_json)
        .map_err(|e| invalid(format!("the entry is not JSON ({e})")))?;
    if !raw.get().starts_with('{') {
        return Err(invalid("the entry is not a JSON object".to_owned()));
    }
    let out = match format {
        PayloadFormat::Json => serde_json::to_vec(&Envelope {
            kind: &entry.event_type,
            timestamp: &entry.timestamp,
            data: raw,
        }),
        PayloadFormat::Ocsf => {
            let fields: EntryFields = serde_json::from_str(raw.get())
                .map_err(|e| invalid(format!("unexpected entry fields ({e})")))?;
            let time = blackbox_core::entry::parse_timestamp(&entry.timestamp)
                .map_err(|e| invalid(format!("timestamp {e}")))?;
            let p = fields.payload.as_ref();
            let text = |k: &str| p.and_then(|p| p.get(k)).and_then(serde_json::Value::as_str);
            let rule = text("rule");
            let description = text("description");
            let (severity_id, severity) = ocsf_severity(text("severity"));
            let related_events = p
                .and_then(|p| p.get("triggered_by"))
                .and_then(serde_json::Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(serde_json::Value::as_str)
                        .map(|uid| OcsfUid { uid })
                        .collect()
                })
                .unwrap_or_default();
            let agent = fields.agent_id.as_deref();
            let tenant = OcsfNamed {
                uid: &entry.tenant,
                name: &entry.tenant,
            };
            let message = match (description, agent) {
                (Some(d), _) => d.to_owned(),
                (None, Some(a)) => format!("{} (agent {a})", entry.event_type),
                (None, None) => entry.event_type.clone(),
            };
            serde_json::to_vec(&Ocsf {
                class_uid: 2004,
                class_name: "Detection Finding",
                category_uid: 2,
                category_name: "Findings",
                activity_id: 1,
                activity_name: "Create",
                type_uid: 200_401,
                type_name: "Detection Finding: Create",
                severity_id,
                severity,
                status_id: 1,
                status: "New",
                time,
                message,
                metadata: OcsfMetadata {
                    version: OCSF_VERSION,
                    product: OcsfProduct {
                        name: "Blackbox",
                        vendor_name: "Blackbox",
                    },
                    uid: &entry.entry_id,
                    original_time: &entry.timestamp,
                    sequence: entry.seq,
                },
                finding_info: OcsfFindingInfo {
                    uid: &entry.entry_id,
                    title: rule.unwrap_or(&entry.event_type),
                    desc: description,
                    types: text("kind").map(|k| [k]),
                    analytic: rule.map(|name| OcsfAnalytic {
                        name,
                        type_id: 1,
                        kind: "Rule",
                    }),
                    related_events,
                    created_time: time,
                },
                actor: OcsfActor {
                    user: agent.map(|a| OcsfUser {
                        uid: a,
                        name: a,
                        type_id: 99,
                        kind: "AI agent",
                        org: OcsfNamed {
                            uid: &entry.tenant,
                            name: &entry.tenant,
                        },
                    }),
                    session: fields.session_id.as_deref().map(|uid| OcsfUid { uid }),
                },
                resources: agent
                    .map(|a| OcsfResource {
                        uid: a,
                        name: a,
                        kind: "AI agent",
                        group: tenant,
                    })
                    .into_iter()
                    .collect(),
                unmapped: raw,
            })
        }
    };
    out.map_err(|e| invalid(format!("cannot serialise the payload ({e})")))
}

// ---------------------------------------------------------------------------------------------
// The outbox

/// State of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in flight).
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Given up (attempts exhausted, or 410 Gone); `retry` makes it pending again.
    Dead,
}

impl DeliveryStatus {
    /// Parses `pending`, `delivered` or `dead`.
    ///
    /// # Errors
    /// [`WebhookError::UnknownStatus`], listing the accepted values.
    pub fn parse(s: &str) -> Result<Self, WebhookError> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            other => Err(WebhookError::UnknownStatus {
                given: other.to_owned(),
            }),
        }
    }

    /// `pending`, `delivered` or `dead`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery as listed: never its body, never a secret (the secret *reference* is shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryInfo {
    /// Row id (for `blackbox webhooks retry ID`).
    pub id: i64,
    /// The `webhook-id` header.
    pub webhook_id: String,
    /// Target URL without user info and query string.
    pub url: String,
    /// Where the secret is read from.
    pub secret_ref: String,
    /// `json` or `ocsf`.
    pub format: String,
    /// Event type of the entry.
    pub event_type: String,
    /// Tenant of the entry.
    pub tenant: String,
    /// `seq` of the entry.
    pub seq: u64,
    /// Id of the entry.
    pub entry_id: String,
    /// State.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Unix ms of the next attempt (pending deliveries only).
    pub next_attempt_at_ms: Option<i64>,
    /// HTTP status of the last answer.
    pub last_status: Option<u16>,
    /// Reason of the last failure.
    pub last_error: Option<String>,
    /// Unix ms of the last attempt.
    pub last_attempt_at_ms: Option<i64>,
    /// Unix ms of enqueueing.
    pub created_at_ms: i64,
    /// Unix ms of delivery.
    pub delivered_at_ms: Option<i64>,
}

/// Deliveries by state (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DeliveryCounts {
    /// Waiting or in flight.
    pub pending: u64,
    /// Delivered (and not yet pruned).
    pub delivered: u64,
    /// Dead-lettered.
    pub dead: u64,
}

/// A delivery claimed for an attempt.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Row id.
    pub id: i64,
    /// The `webhook-id` header.
    pub webhook_id: String,
    /// Target URL (full: it is where the request goes).
    pub url: String,
    /// Where the secret is read from.
    pub secret_ref: String,
    /// Payload bytes.
    pub body: Vec<u8>,
    /// Number of this attempt (1-based).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Time allowed for the attempt.
    pub timeout: Duration,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("webhook_id", &self.webhook_id)
            .field("url", &redact_url(&self.url))
            .field("secret_ref", &self.secret_ref)
            .field("body_bytes", &self.body.len())
            .field("attempt", &self.attempt)
            .field("max_attempts", &self.max_attempts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFailure {
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Short reason (no secret, no body).
    pub error: String,
    /// The receiver's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Try again at this Unix ms.
    RetryAt(i64),
    /// Give up (dead-letter).
    Dead,
}

/// Retry delays: full jitter over an exponential ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling after the first failed attempt (doubling after each further one).
    pub base: Duration,
    /// Largest delay, `Retry-After` included.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// `min(cap, base × 2^(attempt−1))`: the longest delay after failed attempt `attempt`.
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }

    /// The delay after failed attempt `attempt`: uniformly random in `[0, ceiling]`, and at
    /// least `retry_after` (itself capped).
    #[must_use]
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(attempt);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        // Without randomness, the ceiling (no jitter) is still a valid backoff.
        let jittered = match getrandom::u64() {
            Ok(r) => Duration::from_millis(r % ceiling_ms.saturating_add(1)),
            Err(_) => ceiling,
        };
        jittered.max(retry_after.unwrap_or_default().min(self.cap))
    }
}

/// Parses a `Retry-After` value (delay seconds or an HTTP-date) into a delay from `now_ms`.
#[must_use]
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(v)
        .ok()?
        .as_millisecond();
    Some(Duration::from_millis(
        u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0),
    ))
}

use crate::now_ms;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The durable outbox of webhook deliveries (`DATA_DIR/webhooks.db`), shared by the service
/// and the CLI.
pub struct Outbox {
    conn: Mutex<Connection>,
    path: PathBuf,
    wake: Arc<Notify>,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const INFO_COLUMNS: &str = "id, webhook_id, url, secret_ref, format, event_type, tenant, seq, \
     entry_id, status, attempts, max_attempts, next_attempt_at_ms, last_status, last_error, \
     last_attempt_at_ms, created_at_ms, delivered_at_ms";

fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryInfo> {
    let status_text: String = r.get(9)?;
    let status = DeliveryStatus::parse(&status_text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let url: String = r.get(2)?;
    let next: i64 = r.get(12)?;
    Ok(DeliveryInfo {
        id: r.get(0)?,
        webhook_id: r.get(1)?,
        url: redact_url(&url),
        secret_ref: r.get(3)?,
        format: r.get(4)?,
        event_type: r.get(5)?,
        tenant: r.get(6)?,
        seq: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
        entry_id: r.get(8)?,
        status,
        attempts: r.get(10)?,
        max_attempts: r.get(11)?,
        next_attempt_at_ms: (status == DeliveryStatus::Pending).then_some(next),
        last_status: r.get(13)?,
        last_error: r.get(14)?,
        last_attempt_at_ms: r.get(15)?,
        created_at_ms: r.get(16)?,
        delivered_at_ms: r.get(17)?,
    })
}

struct NewRow {
    webhook_id: String,
    url: String,
    secret_ref: String,
    format: &'static str,
    event_type: String,
    tenant: String,
    seq: i64,
    entry_id: String,
    body: Vec<u8>,
    max_attempts: u32,
    timeout_ms: i64,
}

impl Outbox {
    /// Opens (creating if needed, mode 0600) the outbox at `path`.
    ///
    /// # Errors
    /// [`WebhookError::OutboxPermissions`] when the file is readable by group or others,
    /// [`WebhookError::OutboxVersion`] for a file of a newer version, SQLite and I/O failures.
    pub fn open(path: &Path) -> Result<Self, WebhookError> {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            // An empty file is a new SQLite database; it is created owner-only from the start.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(WebhookError::OutboxPermissions {
                        path: path.to_owned(),
                        mode,
                    });
                }
            }
            Err(e) => return Err(e.into()),
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        // An acknowledged enqueue must survive a power loss, not only a crash.
        conn.execute_batch("PRAGMA synchronous = FULL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(WebhookError::OutboxVersion {
                path: path.to_owned(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        conn.execute_batch(SCHEMA)?;
        if version < SCHEMA_VERSION {
            conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        }
        // The write-ahead log holds the same alerts: owner only, like the file.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            if Path::new(&side).exists() {
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            wake: Arc::new(Notify::new()),
        })
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Notified after every enqueue or retry that made a delivery due, so a [`Dispatcher`]
    /// sharing this outbox sends at once instead of at its next poll.
    #[must_use]
    pub fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A poisoned lock only means a panic elsewhere; SQLite keeps the file consistent.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes one pending delivery per (entry, webhook listing the entry's event type), due
    /// now, and raises each tenant's high-water mark to the largest `seq` among `entries`
    /// (whether or not any webhook wanted them), in one transaction. Idempotent: a delivery
    /// already in the outbox (same `webhook-id`) is left as it is. An entry whose JSON cannot
    /// be turned into a payload is logged and skipped (it could never be delivered). Returns
    /// the number of deliveries added.
    ///
    /// # Errors
    /// SQLite failures (nothing is written then).
    pub fn enqueue(
        &self,
        targets: &[WebhookTarget],
        entries: &[AlertEntry],
        now_ms: i64,
    ) -> Result<usize, WebhookError> {
        let mut rows = Vec::new();
        let mut high: HashMap<&str, u64> = HashMap::new();
        for e in entries {
            let h = high.entry(e.tenant.as_str()).or_insert(e.seq);
            *h = (*h).max(e.seq);
            for t in targets.iter().filter(|t| t.wants(&e.event_type)) {
                let body = match payload(t.format, e) {
                    Ok(b) => b,
                    Err(err) => {
                        tracing::error!(
                            tenant = %e.tenant, seq = e.seq, url = %redact_url(&t.url), error = %err,
                            "cannot build a webhook payload; the entry is not delivered"
                        );
                        continue;
                    }
                };
                rows.push(NewRow {
                    webhook_id: webhook_id(&e.entry_id, &t.url),
                    url: t.url.clone(),
                    secret_ref: t.secret_ref.to_string(),
                    format: t.format.as_str(),
                    event_type: e.event_type.clone(),
                    tenant: e.tenant.clone(),
                    seq: to_i64(e.seq),
                    entry_id: e.entry_id.clone(),
                    body,
                    max_attempts: t.max_attempts.max(1),
                    timeout_ms: ms(t.timeout),
                });
            }
        }
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut added = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO deliveries(webhook_id, url, secret_ref, format, event_type, \
                 tenant, seq, entry_id, body, status, attempts, max_attempts, timeout_ms, \
                 next_attempt_at_ms, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?10, ?11, ?12, ?12)",
            )?;
            for r in &rows {
                added += insert.execute(params![
                    r.webhook_id,
                    r.url,
                    r.secret_ref,
                    r.format,
                    r.event_type,
                    r.tenant,
                    r.seq,
                    r.entry_id,
                    r.body,
                    r.max_attempts,
                    r.timeout_ms,
                    now_ms
                ])?;
            }
            let mut mark = tx.prepare_cached(
                "INSERT INTO high_water(tenant, seq) VALUES (?1, ?2) \
                 ON CONFLICT(tenant) DO UPDATE SET seq = max(seq, excluded.seq)",
            )?;
            for (tenant, seq) in &high {
                mark.execute(params![tenant, to_i64(*seq)])?;
            }
        }
        tx.commit()?;
        drop(c);
        if added > 0 {
            self.wake.notify_one();
        }
        Ok(added)
    }

    /// The largest `seq` of `tenant` handed to [`Outbox::enqueue`], if any. On start, the
    /// service enqueues again the tenant's committed entries after it (a crash may have come
    /// between a commit and its enqueue).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn high_water_mark(&self, tenant: &str) -> Result<Option<u64>, WebhookError> {
        let seq: Option<i64> = self
            .conn()
            .query_row(
                "SELECT seq FROM high_water WHERE tenant = ?1",
                [tenant],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.map(|s| u64::try_from(s).unwrap_or(0)))
    }

    /// Pending deliveries due at `now_ms`, soonest first (a read-only view; the dispatcher
    /// uses [`Outbox::claim_due`]).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<DeliveryInfo>, WebhookError> {
        let c = self.conn();
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {INFO_COLUMNS} FROM deliveries WHERE status = 'pending' \
             AND next_attempt_at_ms <= ?1 ORDER BY next_attempt_at_ms, id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now_ms, to_i64(limit as u64)], info_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Claims up to `limit` due deliveries (not in `exclude`) for an attempt: counts the attempt
    /// and leases the delivery until `now + timeout + backoff.ceiling(attempt)`, so that if the
    /// process dies during the attempt, it is made again after the lease (and only then).
    /// A delivery whose last allowed attempt was interrupted that way is given that attempt
    /// again rather than dead-lettered unanswered.
    ///
    /// # Errors
    /// SQLite failures (nothing is claimed then).
    pub fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        backoff: &Backoff,
        exclude: &HashSet<i64>,
    ) -> Result<Vec<Delivery>, WebhookError> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut claimed = Vec::new();
        {
            let mut select = tx.prepare_cached(
                "SELECT id, webhook_id, url, secret_ref, body, attempts, max_attempts, timeout_ms \
                 FROM deliveries WHERE status = 'pending' AND next_attempt_at_ms <= ?1 \
                 ORDER BY next_attempt_at_ms, id LIMIT ?2",
            )?;
            let rows = select.query_map(
                params![now_ms, to_i64((limit + exclude.len()) as u64)],
                |r| {
                    Ok((
                        Delivery {
                            id: r.get(0)?,
                            webhook_id: r.get(1)?,
                            url: r.get(2)?,
                            secret_ref: r.get(3)?,
                            body: r.get(4)?,
                            attempt: 0,
                            max_attempts: r.get(6)?,
                            timeout: Duration::from_millis(
                                u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
                            ),
                        },
                        r.get::<_, u32>(5)?,
                    ))
                },
            )?;
            for row in rows {
                let (d, attempts) = row?;
                if !exclude.contains(&d.id) && claimed.len() < limit {
                    claimed.push((d, attempts));
                }
            }
            let mut lease = tx.prepare_cached(
                "UPDATE deliveries SET attempts = ?2, last_attempt_at_ms = ?3, \
                 next_attempt_at_ms = ?4 WHERE id = ?1",
            )?;
            for (d, attempts) in &mut claimed {
                d.attempt = if *attempts < d.max_attempts {
                    *attempts + 1
                } else {
                    *attempts
                };
                let until = now_ms
                    .saturating_add(ms(d.timeout))
                    .saturating_add(ms(backoff.ceiling(d.attempt)));
                lease.execute(params![d.id, d.attempt, now_ms, until])?;
            }
        }
        tx.commit()?;
        Ok(claimed.into_iter().map(|(d, _)| d).collect())
    }

    /// Records a 2xx answer. Returns whether the delivery was pending.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn mark_delivered(&self, id: i64, status: u16, now_ms: i64) -> Result<bool, WebhookError> {
        let n = self.conn().execute(
            "UPDATE deliveries SET status = 'delivered', last_status = ?2, last_error = NULL, \
             delivered_at_ms = ?3, next_attempt_at_ms = ?3 WHERE id = ?1 AND status = 'pending'",
            params![id, status, now_ms],
        )?;
        Ok(n == 1)
    }

    /// Records failed attempt number `attempt` and what follows. Ignored (returns false) when
    /// the delivery is no longer pending at that attempt (delivered meanwhile, or retried by
    /// `blackbox webhooks retry`, which resets the count).
    ///
    /// # Errors
    /// SQLite failures.
    pub fn mark_failed(
        &self,
        id: i64,
        attempt: u32,
        failure: &AttemptFailure,
        next: NextStep,
        now_ms: i64,
    ) -> Result<bool, WebhookError> {
        let (status, at) = match next {
            NextStep::RetryAt(at) => ("pending", at),
            NextStep::Dead => ("dead", now_ms),
        };
        let n = self.conn().execute(
            "UPDATE deliveries SET status = ?3, last_status = ?4, last_error = ?5, \
             next_attempt_at_ms = ?6 WHERE id = ?1 AND status = 'pending' AND attempts = ?2",
            params![id, attempt, status, failure.status, failure.error, at],
        )?;
        Ok(n == 1)
    }

    /// Deliveries, newest first, optionally of one status.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn list(
        &self,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, WebhookError> {
        let c = self.conn();
        let limit = to_i64(limit as u64);
        let rows = match status {
            Some(s) => {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {INFO_COLUMNS} FROM deliveries WHERE status = ?1 ORDER BY id DESC LIMIT ?2"
                ))?;
                stmt.query_map(params![s.as_str(), limit], info_row)?
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {INFO_COLUMNS} FROM deliveries ORDER BY id DESC LIMIT ?1"
                ))?;
                stmt.query_map(params![limit], info_row)?
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows)
    }

    /// One delivery.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn get(&self, id: i64) -> Result<Option<DeliveryInfo>, WebhookError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {INFO_COLUMNS} FROM deliveries WHERE id = ?1"),
                [id],
                info_row,
            )
            .optional()?)
    }

    /// Makes delivery `id` due now: a dead one becomes pending with its attempt count reset, a
    /// pending one is tried without waiting for its backoff. Returns 1, or 0 when there is no
    /// such delivery or it was delivered already.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn retry(&self, id: i64, now_ms: i64) -> Result<usize, WebhookError> {
        let n = self.conn().execute(
            "UPDATE deliveries SET attempts = CASE status WHEN 'dead' THEN 0 ELSE attempts END, \
             status = 'pending', next_attempt_at_ms = ?2 \
             WHERE id = ?1 AND status IN ('pending', 'dead')",
            params![id, now_ms],
        )?;
        if n > 0 {
            self.wake.notify_one();
        }
        Ok(n)
    }

    /// Makes every dead delivery pending again, attempt counts reset, due now. Returns how many.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn retry_dead(&self, now_ms: i64) -> Result<usize, WebhookError> {
        let n = self.conn().execute(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at_ms = ?1 \
             WHERE status = 'dead'",
            params![now_ms],
        )?;
        if n > 0 {
            self.wake.notify_one();
        }
        Ok(n)
    }

    /// Deliveries by status.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn counts(&self) -> Result<DeliveryCounts, WebhookError> {
        let c = self.conn();
        let mut stmt =
            c.prepare_cached("SELECT status, count(*) FROM deliveries GROUP BY status")?;
        let mut out = DeliveryCounts::default();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (status, n) = row?;
            let n = u64::try_from(n).unwrap_or(0);
            match status.as_str() {
                "pending" => out.pending = n,
                "delivered" => out.delivered = n,
                "dead" => out.dead = n,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Deletes deliveries delivered before `before_ms`. Returns how many.
    ///
    /// # Errors
    /// SQLite failures.
    pub fn prune_delivered(&self, before_ms: i64) -> Result<usize, WebhookError> {
        Ok(self.conn().execute(
            "DELETE FROM deliveries WHERE status = 'delivered' AND delivered_at_ms < ?1",
            [before_ms],
        )?)
    }
}

// ---------------------------------------------------------------------------------------------
// The dispatcher

/// Counters and gauges of webhook delivery, for the Prometheus exporter:
///
/// - `attempts`: attempts started (counter; suggested name `blackbox_webhook_attempts_total`);
/// - `delivered`: deliveries answered 2xx (counter; `blackbox_webhook_delivered_total`);
/// - `failed_attempts`: attempts that failed: non-2xx, network error, timeout, unreadable
///   secret (counter; `blackbox_webhook_failed_attempts_total`);
/// - `dead_lettered`: deliveries given up (counter; `blackbox_webhook_dead_lettered_total`);
/// - `pending`: deliveries waiting or in flight, refreshed from the outbox about every second
///   (gauge; `blackbox_webhook_pending`);
/// - `dead`: deliveries in the dead-letter state, refreshed likewise (gauge;
///   `blackbox_webhook_dead`).
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Attempts started.
    pub attempts: AtomicU64,
    /// Deliveries answered 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed.
    pub failed_attempts: AtomicU64,
    /// Deliveries dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Deliveries pending (gauge).
    pub pending: AtomicU64,
    /// Deliveries dead (gauge).
    pub dead: AtomicU64,
}

/// Settings of a [`Dispatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Directory of `k8s-secret/NAME` secrets (default [`DEFAULT_K8S_SECRETS_DIR`]).
    pub k8s_dir: PathBuf,
    /// Retry delays (default base 1 s, cap 1 h).
    pub backoff: Backoff,
    /// How often the outbox is checked for due deliveries besides wake-ups (default 250 ms).
    pub poll_interval: Duration,
    /// Attempts in flight at once (default 8).
    pub concurrency: usize,
    /// On shutdown, how long attempts in flight may finish before they are abandoned (they
    /// are made again after the restart; default 5 s).
    pub shutdown_grace: Duration,
    /// How long delivered rows are kept for `blackbox webhooks list` (default 7 days).
    pub keep_delivered: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            k8s_dir: PathBuf::from(DEFAULT_K8S_SECRETS_DIR),
            backoff: Backoff::default(),
            poll_interval: Duration::from_millis(250),
            concurrency: 8,
            shutdown_grace: Duration::from_secs(5),
            keep_delivered: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

struct Inner {
    outbox: Arc<Outbox>,
    config: DispatcherConfig,
    stats: Arc<WebhookStats>,
    client: HttpClient,
}

/// Sends due deliveries of an [`Outbox`] (see the module docs for the retry policy).
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("outbox", &self.inner.outbox)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn http_client() -> Result<HttpClient, WebhookError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!(
            "no trusted CA certificates found (system store, SSL_CERT_FILE, SSL_CERT_DIR); \
             https:// webhooks will fail until some are installed"
        );
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https))
}

/// Runs `f` on the outbox off the async workers (SQLite may wait for a lock).
async fn db<T: Send + 'static>(
    outbox: &Arc<Outbox>,
    f: impl FnOnce(&Outbox) -> Result<T, WebhookError> + Send + 'static,
) -> Result<T, WebhookError> {
    let o = Arc::clone(outbox);
    tokio::task::spawn_blocking(move || f(&o))
        .await
        .map_err(|e| WebhookError::Io(std::io::Error::other(e.to_string())))?
}

enum Sent {
    Delivered(u16),
    Gone(u16),
    Failed(AttemptFailure),
}

fn short(s: &str) -> String {
    if s.chars().count() <= MAX_ERROR_CHARS {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_ERROR_CHARS - 1).collect();
    out.push('…');
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    short(&out)
}

fn failed(status: Option<u16>, error: String, retry_after: Option<Duration>) -> Sent {
    Sent::Failed(AttemptFailure {
        status,
        error: short(&error),
        retry_after,
    })
}

async fn send(inner: &Inner, d: &Delivery) -> Sent {
    let secret = match SecretRef::parse(&d.secret_ref)
        .and_then(|r| resolve_secret(&r, &inner.config.k8s_dir))
    {
        Ok(s) => s,
        Err(e) => return failed(None, e.to_string(), None),
    };
    let timestamp = now_ms() / 1000;
    let signature = sign(&secret, &d.webhook_id, timestamp, &d.body);
    drop(secret);
    let req = hyper::Request::post(d.url.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .header("webhook-id", d.webhook_id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(Full::new(Bytes::from(d.body.clone())));
    let req = match req {
        Ok(r) => r,
        Err(e) => return failed(None, format!("cannot build the request: {e}"), None),
    };
    let resp = match tokio::time::timeout(d.timeout, inner.client.request(req)).await {
        Err(_) => {
            return failed(
                None,
                format!("no answer within {} ms", d.timeout.as_millis()),
                None,
            );
        }
        Ok(Err(e)) => return failed(None, error_chain(&e), None),
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now_ms()));
    // Read (and drop) a little of the answer so the connection can be reused.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        Limited::new(resp.into_body(), MAX_RESPONSE_BYTES).collect(),
    )
    .await;
    let code = status.as_u16();
    if status.is_success() {
        Sent::Delivered(code)
    } else if status == hyper::StatusCode::GONE {
        Sent::Gone(code)
    } else {
        let mut error = format!("HTTP {code}");
        if let Some(reason) = status.canonical_reason() {
            error.push(' ');
            error.push_str(reason);
        }
        if status.is_redirection() {
            error.push_str(" (redirects are not followed)");
        }
        failed(Some(code), error, retry_after)
    }
}

async fn attempt(inner: Arc<Inner>, d: Delivery) {
    let stats = &inner.stats;
    stats.attempts.fetch_add(1, Ordering::Relaxed);
    let url = redact_url(&d.url);
    tracing::debug!(%url, webhook_id = %d.webhook_id, attempt = d.attempt, "sending webhook");
    let outcome = send(&inner, &d).await;
    let now = now_ms();
    let (id, n) = (d.id, d.attempt);
    let result = match outcome {
        Sent::Delivered(status) => {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%url, webhook_id = %d.webhook_id, attempt = n, status, "webhook delivered");
            db(&inner.outbox, move |o| o.mark_delivered(id, status, now)).await
        }
        Sent::Gone(status) => {
            stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                %url, webhook_id = %d.webhook_id, attempt = n, status,
                "webhook receiver answered 410 Gone: dead-lettered without further attempts"
            );
            let failure = AttemptFailure {
                status: Some(status),
                error: "HTTP 410 Gone (the receiver asked to stop)".to_owned(),
                retry_after: None,
            };
            db(&inner.outbox, move |o| {
                o.mark_failed(id, n, &failure, NextStep::Dead, now)
            })
            .await
        }
        Sent::Failed(failure) => {
            stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            let next = if n >= d.max_attempts {
                stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    %url, webhook_id = %d.webhook_id, attempt = n, status = failure.status,
                    error = %failure.error,
                    "webhook failed its last attempt: dead-lettered (`blackbox webhooks retry` resends it)"
                );
                NextStep::Dead
            } else {
                let delay = inner.config.backoff.delay(n, failure.retry_after);
                tracing::warn!(
                    %url, webhook_id = %d.webhook_id, attempt = n, status = failure.status,
                    error = %failure.error, retry_in_ms = delay.as_millis(),
                    "webhook attempt failed; will retry"
                );
                NextStep::RetryAt(now.saturating_add(ms(delay)))
            };
            db(&inner.outbox, move |o| {
                o.mark_failed(id, n, &failure, next, now)
            })
            .await
        }
    };
    if let Err(e) = result {
        // The lease taken before the attempt still stands: the delivery is retried after it.
        tracing::error!(webhook_id = %d.webhook_id, error = %e, "cannot record a webhook attempt");
    }
}

impl Dispatcher {
    /// A dispatcher over `outbox` (builds the HTTP client and loads the trusted CA
    /// certificates).
    ///
    /// # Errors
    /// [`WebhookError::Tls`] when the TLS client cannot be set up.
    pub fn new(
        outbox: Arc<Outbox>,
        config: DispatcherConfig,
        stats: Arc<WebhookStats>,
    ) -> Result<Self, WebhookError> {
        Ok(Self {
            inner: Arc::new(Inner {
                outbox,
                config,
                stats,
                client: http_client()?,
            }),
        })
    }

    /// Runs [`Dispatcher::run`] on the current tokio runtime.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    /// Sends due deliveries until `shutdown` turns true (or its sender is dropped), then lets
    /// attempts in flight finish for up to [`DispatcherConfig::shutdown_grace`]; attempts still
    /// running then are abandoned and made again after the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let inner = self.inner;
        let cfg = inner.config.clone();
        let wake = inner.outbox.notifier();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, i64> = HashMap::new();
        let mut gauges_at: Option<Instant> = None;
        let mut pruned_at: Option<Instant> = None;
        let mut stop = *shutdown.borrow();
        tracing::info!(outbox = %inner.outbox.path().display(), "webhook dispatcher started");
        while !stop {
            let free = cfg.concurrency.max(1).saturating_sub(running.len());
            if free > 0 {
                let exclude: HashSet<i64> = running.values().copied().collect();
                let backoff = cfg.backoff;
                match db(&inner.outbox, move |o| {
                    o.claim_due(now_ms(), free, &backoff, &exclude)
                })
                .await
                {
                    Ok(batch) => {
                        for d in batch {
                            let id = d.id;
                            let h = tasks.spawn(attempt(Arc::clone(&inner), d));
                            running.insert(h.id(), id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "webhook outbox unavailable; will retry"),
                }
            }
            if gauges_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                gauges_at = Some(Instant::now());
                match db(&inner.outbox, Outbox::counts).await {
                    Ok(c) => {
                        inner.stats.pending.store(c.pending, Ordering::Relaxed);
                        inner.stats.dead.store(c.dead, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot count webhook deliveries"),
                }
            }
            if pruned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                pruned_at = Some(Instant::now());
                let before = now_ms().saturating_sub(ms(cfg.keep_delivered));
                match db(&inner.outbox, move |o| o.prune_delivered(before)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned old delivered webhook rows"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune delivered webhook rows"),
                }
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    stop = changed.is_err() || *shutdown.borrow();
                }
                () = wake.notified() => {}
                () = tokio::time::sleep(cfg.poll_interval) => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    forget(&mut running, done);
                }
            }
        }
        if !tasks.is_empty() {
            tracing::info!(
                in_flight = tasks.len(),
                "webhook dispatcher stopping: waiting for attempts in flight"
            );
            let grace = tokio::time::sleep(cfg.shutdown_grace);
            tokio::pin!(grace);
            loop {
                tokio::select! {
                    done = tasks.join_next_with_id() => match done {
                        Some(done) => forget(&mut running, done),
                        None => break,
                    },
                    () = &mut grace => {
                        tracing::warn!(
                            abandoned = tasks.len(),
                            "webhook attempts still in flight are abandoned; they are made again after the restart"
                        );
                        tasks.abort_all();
                        while tasks.join_next().await.is_some() {}
                        break;
                    }
                }
            }
        }
        tracing::info!("webhook dispatcher stopped");
    }
}

fn forget(
    running: &mut HashMap<tokio::task::Id, i64>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    let task = match done {
        Ok((task, ())) => task,
        Err(e) => {
            tracing::error!(error = %e, "a webhook attempt failed unexpectedly");
            e.id()
        }
    };
    running.remove(&task);
}

/// Starts a [`Dispatcher`] over `outbox` on the current tokio runtime. Poke
/// [`Outbox::notifier`] to make it look at once (enqueue and retry do it themselves).
///
/// # Errors
/// As [`Dispatcher::new`].
pub fn spawn_dispatcher(
    outbox: Arc<Outbox>,
    config: DispatcherConfig,
    stats: Arc<WebhookStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, WebhookError> {
    Ok(Dispatcher::new(outbox, config, stats)?.spawn(shutdown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_test_vector() {
        // From the Standard Webhooks reference libraries' tests.
        let secret = WebhookSecret::from_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert!(verify_signature(&secret, id, 1_614_265_330, body, &sig));
        assert!(verify_signature(
            &secret,
            id,
            1_614_265_330,
            body,
            &format!("v1,bm90IGl0 {sig}")
        ));
        assert!(!verify_signature(&secret, id, 1_614_265_331, body, &sig));
        assert!(!verify_signature(&secret, id, 1_614_265_330, b"{}", &sig));
        assert!(!verify_signature(&secret, id, 1_614_265_330, body, ""));
        assert!(!verify_signature(
            &secret,
            id,
            1_614_265_330,
            body,
            "v2,xyz"
        ));
    }

    #[test]
    fn backoff_is_capped_jittered_and_honours_retry_after() {
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        };
        assert_eq!(b.ceiling(1), Duration::from_secs(1));
        assert_eq!(b.ceiling(2), Duration::from_secs(2));
        assert_eq!(b.ceiling(5), Duration::from_secs(16));
        assert_eq!(b.ceiling(40), Duration::from_secs(3600));
        for attempt in 1..20 {
            assert!(b.delay(attempt, None) <= b.ceiling(attempt));
        }
        assert!(b.delay(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(86_400))),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(Duration::ZERO));
        let now = blackbox_core::entry::parse_timestamp("2015-10-21T07:28:00Z").unwrap();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn urls_are_redacted_for_display() {
        assert_eq!(
            redact_url("https://user:pw@siem.internal:8443/hook?token=abc#x"),
            "https://siem.internal:8443/hook?…"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9/a/b"),
            "http://127.0.0.1:9/a/b"
        );
        assert_eq!(redact_url("https://h?k=v"), "https://h?…");
    }

    #[test]
    fn targets_are_checked() {
        let ok = WebhookTarget::new(
            "https://siem.internal/x",
            vec!["anomaly_detected".into()],
            "env:X",
        )
        .unwrap();
        assert!(ok.wants("anomaly_detected") && !ok.wants("agent_paused"));
        for url in ["ftp://h/x", "siem.internal/x", "https:///x", "not a url"] {
            let e = WebhookTarget::new(url, vec!["a".into()], "env:X").unwrap_err();
            assert!(matches!(e, WebhookError::InvalidUrl { .. }), "{url}: {e}");
        }
        assert!(matches!(
            WebhookTarget::new("https://h/x", vec![], "env:X"),
            Err(WebhookError::NoEvents { .. })
        ));
        let mut t = ok;
        t.max_attempts = 0;
        assert!(matches!(
            t.validate(),
            Err(WebhookError::ZeroAttempts { .. })
        ));
    }

    #[test]
    fn webhook_ids_differ_per_url_only() {
        let a = webhook_id("0193-e", "https://a/x");
        assert_eq!(a, webhook_id("0193-e", "https://a/x"));
        assert_ne!(a, webhook_id("0193-e", "https://b/x"));
        assert!(a.starts_with("msg_0193-e_") && a.len() == "msg_0193-e_".len() + 8);
    }
}
