//! The durable outbox of deliveries: what a backend MUST do ([`Outbox`]), the rows it keeps,
//! the SQLite implementation ([`SqliteOutbox`], `DATA_DIR/webhooks.db`) and the PostgreSQL one
//! ([`PgOutbox`], in the log's database, shared by the service instances on it).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::payload::{AlertEntry, payload};
use crate::retry::Backoff;
use crate::signing::webhook_id;
use crate::{WebhookError, WebhookTarget, redact_url};

mod postgres;
mod sqlite;

pub use postgres::PgOutbox;
pub use sqlite::SqliteOutbox;

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

/// A delivery to write: one (entry, webhook) pair, its payload built once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The `webhook-id` header (unique: a second insert of it is ignored).
    pub webhook_id: String,
    /// Target URL (full).
    pub url: String,
    /// Where the secret is read from (never the secret).
    pub secret_ref: String,
    /// Payload format.
    pub format: crate::PayloadFormat,
    /// Event type of the entry.
    pub event_type: String,
    /// Tenant of the entry.
    pub tenant: String,
    /// `seq` of the entry.
    pub seq: u64,
    /// Id of the entry.
    pub entry_id: String,
    /// Payload bytes.
    pub body: Vec<u8>,
    /// Attempts allowed (at least 1 is kept).
    pub max_attempts: u32,
    /// Time allowed for one attempt.
    pub timeout: Duration,
}

impl fmt::Debug for NewDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewDelivery")
            .field("webhook_id", &self.webhook_id)
            .field("url", &redact_url(&self.url))
            .field("tenant", &self.tenant)
            .field("seq", &self.seq)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The durable outbox of webhook deliveries: what a backend MUST do. [`SqliteOutbox`] is the
/// one implementation (`DATA_DIR/webhooks.db`).
///
/// - [`Outbox::insert`] MUST be durable when it returns `Ok` (deliveries and high-water marks
///   written together, or nothing), and MUST ignore a delivery whose `webhook_id` is present.
/// - An attempt MUST be counted and leased ([`Outbox::claim_due`]) before it is made, so a
///   crash re-sends at most the attempt in flight.
/// - [`Outbox::mark_failed`] MUST ignore an outcome for an attempt that is no longer the
///   delivery's current one.
/// - Whatever makes a delivery due MUST notify [`Outbox::notifier`].
pub trait Outbox: Send + Sync + fmt::Debug {
    /// Notified after every insert or retry that made a delivery due, so a
    /// [`crate::Dispatcher`] sharing this outbox sends at once instead of at its next poll.
    fn notifier(&self) -> Arc<Notify>;

    /// Where the outbox lives, for logs.
    fn location(&self) -> String;

    /// Writes `rows` as pending deliveries due at `now_ms` (a row whose `webhook_id` is
    /// present is left as it is) and raises each tenant's high-water mark to the given `seq`,
    /// in one transaction. Returns the number of deliveries added.
    ///
    /// # Errors
    /// Storage failures (nothing is written then).
    fn insert(
        &self,
        rows: &[NewDelivery],
        high_water: &[(&str, u64)],
        now_ms: i64,
    ) -> Result<usize, WebhookError>;

    /// The largest `seq` of `tenant` handed to [`Outbox::enqueue`], if any. On start, the
    /// service enqueues again the tenant's committed entries after it (a crash may have come
    /// between a commit and its enqueue).
    ///
    /// # Errors
    /// Storage failures.
    fn high_water_mark(&self, tenant: &str) -> Result<Option<u64>, WebhookError>;

    /// Pending deliveries due at `now_ms`, soonest first (a read-only view; the dispatcher
    /// uses [`Outbox::claim_due`]).
    ///
    /// # Errors
    /// Storage failures.
    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<DeliveryInfo>, WebhookError>;

    /// Claims up to `limit` due deliveries (not in `exclude`) for an attempt: counts the attempt
    /// and leases the delivery until `now + timeout + backoff.ceiling(attempt)`, so that if the
    /// process dies during the attempt, it is made again after the lease (and only then).
    /// A delivery whose last allowed attempt was interrupted that way is given that attempt
    /// again rather than dead-lettered unanswered.
    ///
    /// # Errors
    /// Storage failures (nothing is claimed then).
    fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        backoff: &Backoff,
        exclude: &HashSet<i64>,
    ) -> Result<Vec<Delivery>, WebhookError>;

    /// Records a 2xx answer. Returns whether the delivery was pending.
    ///
    /// # Errors
    /// Storage failures.
    fn mark_delivered(&self, id: i64, status: u16, now_ms: i64) -> Result<bool, WebhookError>;

    /// Records failed attempt number `attempt` and what follows. Ignored (returns false) when
    /// the delivery is no longer pending at that attempt (delivered meanwhile, or retried by
    /// `blackbox webhooks retry`, which resets the count).
    ///
    /// # Errors
    /// Storage failures.
    fn mark_failed(
        &self,
        id: i64,
        attempt: u32,
        failure: &AttemptFailure,
        next: NextStep,
        now_ms: i64,
    ) -> Result<bool, WebhookError>;

    /// Deliveries, newest first, optionally of one status.
    ///
    /// # Errors
    /// Storage failures.
    fn list(
        &self,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, WebhookError>;

    /// One delivery.
    ///
    /// # Errors
    /// Storage failures.
    fn get(&self, id: i64) -> Result<Option<DeliveryInfo>, WebhookError>;

    /// Makes delivery `id` due now: a dead one becomes pending with its attempt count reset, a
    /// pending one is tried without waiting for its backoff. Returns 1, or 0 when there is no
    /// such delivery or it was delivered already.
    ///
    /// # Errors
    /// Storage failures.
    fn retry(&self, id: i64, now_ms: i64) -> Result<usize, WebhookError>;

    /// Makes every dead delivery pending again, attempt counts reset, due now. Returns how many.
    ///
    /// # Errors
    /// Storage failures.
    fn retry_dead(&self, now_ms: i64) -> Result<usize, WebhookError>;

    /// Deliveries by status.
    ///
    /// # Errors
    /// Storage failures.
    fn counts(&self) -> Result<DeliveryCounts, WebhookError>;

    /// Drops the payload of deliveries delivered before `before_ms` and keeps their record
    /// (status, attempts, times, HTTP status): the evidence reports show, per alert, whether it
    /// reached the SIEM. Returns how many payloads were dropped.
    ///
    /// # Errors
    /// Storage failures.
    fn prune_delivered(&self, before_ms: i64) -> Result<usize, WebhookError>;

    /// The deliveries of `tenant`'s entries with `first_seq <= seq <= last_seq`, by seq then
    /// id (the evidence reports' SIEM delivery column).
    ///
    /// # Errors
    /// Storage failures.
    fn of_entries(
        &self,
        tenant: &str,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Vec<DeliveryInfo>, WebhookError>;

    /// Writes one pending delivery per (entry, webhook listing the entry's event type), due
    /// now, and raises each tenant's high-water mark to the largest `seq` among `entries`
    /// (whether or not any webhook wanted them), in one transaction. Idempotent: a delivery
    /// already in the outbox (same `webhook-id`) is left as it is. An entry whose JSON cannot
    /// be turned into a payload is logged and skipped (it could never be delivered). Returns
    /// the number of deliveries added.
    ///
    /// # Errors
    /// Storage failures (nothing is written then).
    fn enqueue(
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
                rows.push(NewDelivery {
                    webhook_id: webhook_id(&e.entry_id, &t.url),
                    url: t.url.clone(),
                    secret_ref: t.secret_ref.to_string(),
                    format: t.format,
                    event_type: e.event_type.clone(),
                    tenant: e.tenant.clone(),
                    seq: e.seq,
                    entry_id: e.entry_id.clone(),
                    body,
                    max_attempts: t.max_attempts,
                    timeout: t.timeout,
                });
            }
        }
        let high: Vec<(&str, u64)> = high.into_iter().collect();
        self.insert(&rows, &high, now_ms)
    }
}
