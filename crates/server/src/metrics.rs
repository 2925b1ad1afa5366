//! Prometheus metrics (`GET /metrics`, text exposition format).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a rejected request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The error code (`unauthenticated`, `rate_limited`, `invalid_event`, …).
    pub reason: String,
}

/// Labels of a refused request, by whom it was refused for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// The token's tenant; [`ADMIN_LABEL`] for tokens without a tenant; [`UNAUTHENTICATED_LABEL`]
    /// for requests without a valid token (bounded: tenants come from tokens, never from the
    /// request).
    pub tenant: String,
    /// The error code.
    pub reason: String,
}

/// The `tenant` label of refusals of tokens without a tenant (never a tenant id: `<` is not
/// allowed in one).
pub const ADMIN_LABEL: &str = "<admin>";

/// The `tenant` label of refusals of requests without a valid token.
pub const UNAUTHENTICATED_LABEL: &str = "<unauthenticated>";

/// The `tenant` label of a refusal for `token`.
#[must_use]
pub fn tenant_label(token: Option<&crate::tokens::TokenInfo>) -> &str {
    match token {
        None => UNAUTHENTICATED_LABEL,
        Some(t) => t.tenant_id.as_deref().unwrap_or(ADMIN_LABEL),
    }
}

/// Labels of a chain.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    /// Tenant id.
    pub tenant: String,
}

/// Labels of a `/v1/decide` answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    /// `allow`, `block`, `throttle` or `paused`.
    pub decision: String,
}

/// Labels of a request to the external classifier.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassifierLabel {
    /// `ok`, or `error` (an HTTP error, a bad answer, no answer in time).
    pub outcome: String,
}

/// Labels of an entry written by the detector.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectionLabel {
    /// `anomaly_detected`, `agent_paused`, …
    pub event_type: String,
    /// The rule (empty for operator actions).
    pub rule: String,
}

/// Labels of webhook deliveries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    /// `pending`, `delivered` or `dead`.
    pub status: String,
}

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// The route pattern (`/v1/events`, `/v1/entries/{entry_id}`, …).
    pub route: String,
    /// Response status code.
    pub status: u16,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~52 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 20))
}

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Events committed.
    pub ingest_events: Counter,
    /// Time from an ingest request entering the writer's queue to its durable commit.
    pub ingest_latency: Histogram,
    /// Events per group commit.
    pub batch_events: Histogram,
    /// Duration of a group commit (including fsync).
    pub commit_seconds: Histogram,
    /// Group commits that failed (store or disk errors; their requests got 503).
    pub commit_failures: Counter,
    /// Entries per chain.
    pub chain_entries: Family<TenantLabel, Gauge>,
    /// Requests refused, by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Requests refused, by tenant and reason.
    pub refusals: Family<RefusalLabel, Counter>,
    /// Verifications (`GET /v1/verify`) that found a problem.
    pub verify_failures: Counter,
    /// `access_denied` records that could not be queued (the queue was full).
    pub denials_dropped: Counter,
    /// HTTP requests by route and status.
    pub http_requests: Family<RouteLabel, Counter>,
    /// HTTP request latency by route and status.
    pub http_seconds: Family<RouteLabel, Histogram>,
    /// `/v1/decide` answers by decision.
    pub decisions: Family<DecisionLabel, Counter>,
    /// Time to decide (handler entry to the answer, durable commit included).
    pub decide_seconds: Histogram,
    /// Time to evaluate a decision in the writer (gate, counters, every rule), record excluded.
    pub decide_eval_seconds: Histogram,
    /// Requests to the external classifier, by outcome.
    pub classifier_requests: Family<ClassifierLabel, Counter>,
    /// Time the external classifier took to answer (or to fail).
    pub classifier_seconds: Histogram,
    /// Entries written by the detector (alerts, pauses, throttles, operator actions).
    pub detections: Family<DetectionLabel, Counter>,
    /// Alerts suppressed (raised again within the rule's `suppress` period).
    pub anomalies_suppressed: Gauge,
    /// Agents tracked by the detector.
    pub agents_tracked: Gauge,
    /// Rules files refused at reload.
    pub rules_reload_failures: Counter,
    /// Webhook deliveries in the outbox, by status.
    pub webhook_deliveries: Family<WebhookLabel, Gauge>,
    /// Webhook delivery attempts that failed.
    pub webhook_failed_attempts: Gauge,
    /// OTLP spans and log records received, by signal, transport and what became of them.
    pub otlp_items: Family<OtlpLabel, Counter>,
    /// Guardrail spans exported, by outcome (`sent`, `failed`, `dropped`).
    pub guardrail_spans: Family<ResultLabel, Counter>,
    /// Submissions to witnesses, by witness and result (docs/WITNESS.md).
    pub witness_submissions: Family<WitnessLabel, Counter>,
}

/// Labels of [`Metrics::witness_submissions`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct WitnessLabel {
    /// The witness's name.
    pub witness: String,
    /// `cosigned`, `unreachable`, or the refusal's reason code (`inconsistent`, `conflict`,
    /// `witness_ahead`, `witness_rolled_back`, …).
    pub result: String,
}

/// Labels of [`Metrics::otlp_items`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OtlpLabel {
    /// `spans` or `log_records`.
    pub signal: &'static str,
    /// `http` or `grpc`.
    pub transport: &'static str,
    /// `accepted` (appended), `rejected` (reported in a partial success), `skipped` (not GenAI).
    pub result: &'static str,
}

/// A single `result` label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabel {
    /// What happened.
    pub result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered.
    #[must_use]
    pub fn new() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("blackbox")),
            ingest_events: Counter::default(),
            ingest_latency: latency_histogram(),
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 18)),
            commit_seconds: latency_histogram(),
            commit_failures: Counter::default(),
            chain_entries: Family::default(),
            rejected: Family::default(),
            refusals: Family::default(),
            verify_failures: Counter::default(),
            denials_dropped: Counter::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency_histogram),
            decisions: Family::default(),
            // Boundaries at the 1 ms target and around it, so a p99 can be read against it.
            decide_seconds: Histogram::new([
                0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.001_5, 0.002_5,
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            decide_eval_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 20)),
            classifier_requests: Family::default(),
            classifier_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 18)),
            detections: Family::default(),
            anomalies_suppressed: Gauge::default(),
            agents_tracked: Gauge::default(),
            rules_reload_failures: Counter::default(),
            webhook_deliveries: Family::default(),
            webhook_failed_attempts: Gauge::default(),
            otlp_items: Family::default(),
            guardrail_spans: Family::default(),
            witness_submissions: Family::default(),
        };
        {
            let mut r = m
                .registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            r.register(
                "ingest_events",
                "Events durably committed",
                m.ingest_events.clone(),
            );
            r.register(
                "ingest_latency_seconds",
                "Time from an ingest request being queued to its durable commit",
                m.ingest_latency.clone(),
            );
            r.register(
                "commit_batch_events",
                "Events per group commit",
                m.batch_events.clone(),
            );
            r.register(
                "commit_seconds",
                "Duration of a group commit, fsync included",
                m.commit_seconds.clone(),
            );
            r.register(
                "commit_failures",
                "Group commits that failed (their requests were answered 503)",
                m.commit_failures.clone(),
            );
            r.register(
                "chain_entries",
                "Entries in each tenant chain",
                m.chain_entries.clone(),
            );
            r.register(
                "rejected_requests",
                "Requests refused, by reason",
                m.rejected.clone(),
            );
            r.register(
                "refused_requests",
                "Requests refused, by tenant (<admin> for tokens without a tenant, <unauthenticated> without a valid token) and reason",
                m.refusals.clone(),
            );
            r.register(
                "verify_failures",
                "Verifications that found a problem",
                m.verify_failures.clone(),
            );
            r.register(
                "access_denied_dropped",
                "access_denied records not written because the queue was full",
                m.denials_dropped.clone(),
            );
            r.register(
                "http_requests",
                "HTTP requests by route and status",
                m.http_requests.clone(),
            );
            r.register(
                "http_request_seconds",
                "HTTP request latency by route and status",
                m.http_seconds.clone(),
            );
            r.register(
                "decisions",
                "/v1/decide answers by decision",
                m.decisions.clone(),
            );
            r.register(
                "decide_seconds",
                "Time to answer /v1/decide (durable commit of the record included)",
                m.decide_seconds.clone(),
            );
            r.register(
                "decide_eval_seconds",
                "Time to evaluate a /v1/decide call against the rules (recording excluded)",
                m.decide_eval_seconds.clone(),
            );
            r.register(
                "classifier_requests",
                "Requests to the external classifier at /v1/decide, by outcome (ok, error)",
                m.classifier_requests.clone(),
            );
            r.register(
                "classifier_seconds",
                "Time the external classifier took to answer or fail (its deadline included)",
                m.classifier_seconds.clone(),
            );
            r.register(
                "detection_entries",
                "Entries written by anomaly detection and operators (anomaly_detected, agent_paused, ...), by rule",
                m.detections.clone(),
            );
            r.register(
                "anomalies_suppressed",
                "Alerts not recorded again because their rule's suppress period was running",
                m.anomalies_suppressed.clone(),
            );
            r.register(
                "agents_tracked",
                "Agents whose counters the detector holds",
                m.agents_tracked.clone(),
            );
            r.register(
                "rules_reload_failures",
                "Rules files refused at reload (the previous rules stayed in force)",
                m.rules_reload_failures.clone(),
            );
            r.register(
                "webhook_deliveries",
                "Webhook deliveries in the outbox, by status",
                m.webhook_deliveries.clone(),
            );
            r.register(
                "webhook_failed_attempts",
                "Webhook delivery attempts that failed since the start",
                m.webhook_failed_attempts.clone(),
            );
            r.register(
                "otlp_items",
                "OTLP spans and log records received, by signal, transport and result (accepted: appended; rejected: refused in a partial success; skipped: not GenAI)",
                m.otlp_items.clone(),
            );
            r.register(
                "guardrail_spans",
                "Enforcement decisions exported as OpenTelemetry guardrail spans, by result (sent, failed, dropped)",
                m.guardrail_spans.clone(),
            );
            r.register(
                "witness_submissions",
                "Checkpoints submitted to witnesses, by witness and result (cosigned, unreachable, or the refusal's reason code)",
                m.witness_submissions.clone(),
            );
        }
        m
    }

    /// Counts a refused request.
    pub fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a refused request of `tenant` (a [`tenant_label`]), also in the per-reason count.
    pub fn refuse(&self, tenant: &str, reason: &str) {
        self.reject(reason);
        self.refusals
            .get_or_create(&RefusalLabel {
                tenant: tenant.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts an entry written by the detector.
    pub fn detection_entry(&self, w: &crate::detection::Written) {
        self.detections
            .get_or_create(&DetectionLabel {
                event_type: w.event_type.to_owned(),
                rule: w.rule.clone().unwrap_or_default(),
            })
            .inc();
    }

    /// The text exposition.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}
