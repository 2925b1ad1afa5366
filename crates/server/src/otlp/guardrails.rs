//! Guardrail spans out (`[otlp.guardrails]`, off by default): every `/v1/decide` answer that
//! blocks a call, or finds the agent paused or throttled, is sent as an OpenTelemetry
//! `apply_guardrail` span (`blackbox_otel::guardrail`) to the user's collector over OTLP/HTTP
//! protobuf, as a child of the agent's span when the decide request carried a `traceparent`.
//!
//! Best effort and never on the agent's path: the decision is already recorded in the chain;
//! spans wait in a bounded queue (full: dropped and counted) and are sent by one task, in
//! batches, with a few retries on 429/5xx. `blackbox_guardrail_spans{result}` counts them.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use blackbox_otel::guardrail::{Guardrail, TraceParent};
use blackbox_otel::proto::collector::trace::v1::ExportTraceServiceRequest;
use bytes::Bytes;
use http_body_util::Full;
use prost::Message as _;
use tokio::sync::mpsc;

use crate::config::GuardrailExport;
use crate::metrics::{Metrics, ResultLabel};

/// Spans waiting to be sent before new ones are dropped.
const QUEUE: usize = 4096;
/// Spans per export request.
const BATCH: usize = 256;

/// A decision to export, owned.
#[derive(Debug, Clone)]
pub struct GuardrailSpan {
    /// `block`, `pause` or `throttle`.
    pub action: &'static str,
    /// Tenant.
    pub tenant: String,
    /// Agent.
    pub agent: String,
    /// Session.
    pub session: String,
    /// Tool.
    pub tool: String,
    /// Invocation id, if given.
    pub invocation_id: Option<String>,
    /// The entry recording the decision.
    pub entry_id: String,
    /// Rules: name and severity.
    pub rules: Vec<(String, String)>,
    /// Why, as the agent was told.
    pub reason: String,
    /// The arguments' digest.
    pub args_hash: Option<String>,
    /// The agent's span (`traceparent` of the decide request).
    pub parent: Option<TraceParent>,
    /// When, Unix ns.
    pub time_ns: u64,
}

/// The sender's handle.
#[derive(Debug)]
pub struct Exporter {
    tx: mpsc::Sender<GuardrailSpan>,
    metrics: Arc<Metrics>,
}

impl Exporter {
    /// Starts the sending task (needs a tokio runtime).
    ///
    /// # Errors
    /// The HTTP client cannot be built (TLS roots).
    pub fn start(
        to: GuardrailExport,
        metrics: Arc<Metrics>,
    ) -> Result<Self, blackbox_webhooks::WebhookError> {
        let client = blackbox_webhooks::dispatch::http_client()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(client, to, rx, Arc::clone(&metrics)));
        Ok(Self { tx, metrics })
    }

    /// Queues a decision; drops it (counted) when the queue is full.
    pub fn send(&self, span: GuardrailSpan) {
        if self.tx.try_send(span).is_err() {
            self.count("dropped", 1);
        }
    }

    fn count(&self, result: &'static str, n: usize) {
        count(&self.metrics, result, n);
    }
}

fn count(metrics: &Metrics, result: &'static str, n: usize) {
    metrics
        .guardrail_spans
        .get_or_create(&ResultLabel { result })
        .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
}

fn random_ids() -> ([u8; 16], [u8; 8]) {
    let mut t = [0u8; 16];
    let mut s = [0u8; 8];
    // Random ids only tell spans apart; an all-zero id (a failed read) is invalid in OTLP, so
    // fall back to the clock.
    if getrandom::fill(&mut t).is_err() || getrandom::fill(&mut s).is_err() {
        let n = crate::now_ms().unsigned_abs();
        t[..8].copy_from_slice(&n.to_be_bytes());
        t[15] = 1;
        s.copy_from_slice(&n.to_be_bytes());
        s[7] |= 1;
    }
    (t, s)
}

fn request(batch: &[GuardrailSpan]) -> ExportTraceServiceRequest {
    let mut out = ExportTraceServiceRequest::default();
    for g in batch {
        let r = blackbox_otel::guardrail::export_request(
            &Guardrail {
                action: g.action,
                tenant: &g.tenant,
                agent: &g.agent,
                session: &g.session,
                tool: &g.tool,
                invocation_id: g.invocation_id.as_deref(),
                entry_id: &g.entry_id,
                rules: &g.rules,
                reason: &g.reason,
                args_hash: g.args_hash.as_deref(),
                time_ns: g.time_ns,
                parent: g.parent,
                new_ids: random_ids(),
            },
            env!("CARGO_PKG_VERSION"),
        );
        out.resource_spans.extend(r.resource_spans);
    }
    out
}

async fn run(
    client: blackbox_webhooks::dispatch::HttpClient,
    to: GuardrailExport,
    mut rx: mpsc::Receiver<GuardrailSpan>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let body = Bytes::from(request(&batch).encode_to_vec());
        let mut sent = false;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            match post(&client, &to, body.clone()).await {
                Ok(status) if status.is_success() => {
                    sent = true;
                    break;
                }
                Ok(status) if status.as_u16() == 429 || status.is_server_error() => {
                    tracing::debug!(%status, "guardrail span export refused; retrying");
                }
                Ok(status) => {
                    tracing::warn!(%status, endpoint = %blackbox_webhooks::redact_url(&to.endpoint), "the collector refused guardrail spans");
                    break;
                }
                Err(e) => tracing::debug!(error = %e, "guardrail span export failed; retrying"),
            }
        }
        count(&metrics, if sent { "sent" } else { "failed" }, batch.len());
        batch.clear();
    }
}

async fn post(
    client: &blackbox_webhooks::dispatch::HttpClient,
    to: &GuardrailExport,
    body: Bytes,
) -> Result<axum::http::StatusCode, String> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(&to.endpoint)
        .header(header::CONTENT_TYPE, "application/x-protobuf");
    for (name, value) in &to.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            req = req.header(n, v);
        }
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out after 10 s".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(resp.status())
}
