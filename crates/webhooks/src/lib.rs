//! # blackbox-webhooks
//!
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
//! HTTPS uses rustls with the aws-lc-rs provider (the one crypto provider of the binary) and the
//! system's trusted CA certificates
//! (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them). HTTP/1.1 only; no proxy.
//!
//! # Payloads
//!
//! The body is built once, when the delivery is enqueued, and is identical on every attempt.
//! The same entry always gives the same bytes (golden files in `crates/webhooks/tests/golden/`).
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
//! A delivered row's payload is dropped after [`DispatcherConfig::keep_delivered`] (7 days by
//! default); its record (status, attempts, times, HTTP status) stays for the evidence reports'
//! alert register. Dead rows stay until retried.
//!
//! # Metrics
//!
//! [`WebhookStats`] holds plain counters and gauges for the Prometheus exporter.
//!
//! # Layout
//!
//! - [`config`]: a webhook target, its payload format and secret reference;
//! - [`signing`]: secrets, Standard Webhooks signatures, `webhook-id`;
//! - [`payload`](mod@payload): the JSON and OCSF bodies;
//! - [`outbox`]: the [`Outbox`] contract and its SQLite implementation [`SqliteOutbox`];
//! - [`retry`]: backoff with jitter, `Retry-After`;
//! - [`dispatch`]: the [`Dispatcher`] that sends due deliveries.
//!
//! What it leaves out: which entries are alerts and when they are committed (the service
//! hands them over), and any knowledge of the ledger's storage.
#![forbid(unsafe_code)]

pub mod config;
pub mod dispatch;
pub mod error;
pub mod outbox;
pub mod payload;
pub mod retry;
pub mod signing;

use std::time::Duration;

pub use config::{PayloadFormat, SecretRef, WebhookTarget, redact_url};
pub use dispatch::{Dispatcher, DispatcherConfig, WebhookStats, spawn_dispatcher};
pub use error::WebhookError;
pub use outbox::{
    AttemptFailure, Delivery, DeliveryCounts, DeliveryInfo, DeliveryStatus, NewDelivery, NextStep,
    Outbox, PgOutbox, SqliteOutbox,
};
pub use payload::{AlertEntry, payload};
pub use retry::Backoff;
pub use signing::{WebhookSecret, resolve_secret, sign, verify_signature, webhook_id};

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

/// The wall clock, Unix ms (attempt timestamps, leases).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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
        assert_eq!(
            blackbox_core::duration::retry_after("120", 0),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            blackbox_core::duration::retry_after(" 0 ", 0),
            Some(Duration::ZERO)
        );
        let now = blackbox_core::entry::parse_timestamp("2015-10-21T07:28:00Z").unwrap();
        assert_eq!(
            blackbox_core::duration::retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        assert_eq!(
            blackbox_core::duration::retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(blackbox_core::duration::retry_after("soon", now), None);
        assert_eq!(blackbox_core::duration::retry_after("-5", now), None);
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
