//! The OpenTelemetry intake (docs/OTEL.md): OTLP/HTTP (`http`) and OTLP/gRPC (`grpc`)
//! receivers of trace and log exports, and guardrail spans out ([`guardrails`]).
//!
//! Both transports end in `append`: the spans or records, mapped by `blackbox_otel`, go through
//! the one intake path (`blackbox_ledger::appender::Normaliser`, as `/v1/events`): validated, the
//! content scanned by the rules and replaced by its hash, bound to the token's tenant, sealed with
//! the origin `{"kind":"token","via":"otlp",…}`; then the writer appends them and the answer
//! waits for the durable commit. An item the mapping or the normaliser refuses is reported in a
//! partial success; the others are appended.

pub(crate) mod grpc;
pub mod guardrails;
pub(crate) mod http;

use blackbox_core::entry::RedactionPolicy;
use blackbox_core::ids::TenantId;
use blackbox_ledger::appender::{Normaliser, Refusal};
use blackbox_otel::map::{Mapped, Rejected};

use crate::AppState;
use crate::api::auth::{Caller, Ingest};
use crate::error::ApiError;
use crate::metrics::OtlpLabel;

/// What the intake is configured with.
#[derive(Debug)]
pub struct Otlp {
    /// The service's redaction lists plus the mapping's content members
    /// ([`blackbox_otel::CONTENT_FIELDS`]): content is hashed whatever `[redaction]` says.
    pub policy: RedactionPolicy,
    /// Whether items that are not GenAI are recorded.
    pub options: blackbox_otel::MapOptions,
    /// Where guardrail spans go, if anywhere.
    pub guardrails: Option<guardrails::Exporter>,
    /// Requests being decoded, mapped and normalised at once (CPU work, and the memory a
    /// decoded request holds): one per core.
    pub decoding: tokio::sync::Semaphore,
    /// Span events appended lately, to recognise an exporter's retry of a request whose answer
    /// it lost.
    pub recent: Recent,
}

/// Span events appended in the last [`RECENT_FOR`] (at most [`RECENT_MAX`]), by a digest of
/// everything the event is made of (tenant, token, agent, session, type, claimed time, counter,
/// payload with its trace and span ids, personal fields): an export sent again whole is
/// recognised and not appended twice. Only the identical event is: a span that reuses ids with
/// other content is recorded (an agent cannot hide an event behind an earlier one's ids).
#[derive(Debug, Default)]
pub struct Recent {
    inner: std::sync::Mutex<RecentInner>,
}

#[derive(Debug, Default)]
struct RecentInner {
    keys: std::collections::HashSet<[u8; 32]>,
    order: std::collections::VecDeque<([u8; 32], std::time::Instant)>,
}

/// How long an appended span event is remembered (exporters retry within seconds to minutes).
pub const RECENT_FOR: std::time::Duration = std::time::Duration::from_secs(600);
/// Span events remembered at most (32 bytes each, twice).
pub const RECENT_MAX: usize = 200_000;

impl Recent {
    fn key(tenant: &str, e: &blackbox_core::event::NormalizedEvent) -> [u8; 32] {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut part = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        part(tenant.as_bytes());
        part(
            e.origin
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
                .as_bytes(),
        );
        part(e.agent_id.as_str().as_bytes());
        part(e.session_id.as_str().as_bytes());
        part(e.event_type.as_str().as_bytes());
        part(&e.timestamp_ms.unwrap_or(i64::MIN).to_be_bytes());
        part(&e.client_seq.map_or(u64::MAX, |c| c).to_be_bytes());
        part(&e.payload_jcs);
        part(
            e.personal
                .as_ref()
                .map(|p| serde_json::to_vec(p).unwrap_or_default())
                .unwrap_or_default()
                .as_slice(),
        );
        h.finalize().into()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, RecentInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether each key was appended lately.
    fn seen(&self, keys: &[[u8; 32]]) -> Vec<bool> {
        let mut r = self.inner();
        let now = std::time::Instant::now();
        while let Some((k, at)) = r.order.front().copied() {
            if now.duration_since(at) < RECENT_FOR {
                break;
            }
            r.order.pop_front();
            r.keys.remove(&k);
        }
        keys.iter().map(|k| r.keys.contains(k)).collect()
    }

    /// Remembers keys just appended.
    fn remember(&self, keys: impl IntoIterator<Item = [u8; 32]>) {
        let mut r = self.inner();
        let now = std::time::Instant::now();
        for k in keys {
            if r.keys.insert(k) {
                r.order.push_back((k, now));
            }
            while r.order.len() > RECENT_MAX {
                if let Some((old, _)) = r.order.pop_front() {
                    r.keys.remove(&old);
                }
            }
        }
    }
}

impl Otlp {
    /// The intake's settings from the service's.
    #[must_use]
    pub fn new(
        policy: &RedactionPolicy,
        keep_other: bool,
        guardrails: Option<guardrails::Exporter>,
    ) -> Self {
        let mut policy = policy.clone();
        for f in blackbox_otel::CONTENT_FIELDS {
            policy.raw_fields.insert(f.to_owned());
        }
        // A content member listed as personal would be lifted out whole instead of hashed.
        for f in blackbox_otel::CONTENT_FIELDS {
            policy.personal_fields.remove(f);
        }
        Self {
            policy,
            options: blackbox_otel::MapOptions { keep_other },
            guardrails,
            decoding: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            ),
            recent: Recent::default(),
        }
    }
}

/// Which signal a request exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Spans,
    Logs,
}

impl Signal {
    /// What its items are called in messages.
    fn items(self) -> &'static str {
        match self {
            Self::Spans => "spans",
            Self::Logs => "log records",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Spans => "spans",
            Self::Logs => "log_records",
        }
    }
}

/// Which transport a request came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Http,
    Grpc,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }
}

/// Counts the items of a protobuf export before it is decoded (decoding allocates a few hundred
/// bytes for each item however small its encoding), refuses one of more items than a request
/// may hold, then waits for a decoding slot. A body that is not protobuf passes the count: the
/// decoding reports it, with the message's name.
///
/// # Errors
/// 400 `too_many_events`; 503 when the service is shutting down.
pub(crate) async fn before_decoding<'s>(
    state: &'s AppState,
    protobuf: Option<&[u8]>,
    signal: Signal,
) -> Result<tokio::sync::SemaphorePermit<'s>, ApiError> {
    if let Some(bytes) = protobuf
        && let Err(e @ blackbox_otel::DecodeError::TooManyItems { .. }) =
            blackbox_otel::decode::count_items(
                bytes,
                signal.items(),
                state.config.max_events_per_request,
            )
    {
        return Err(ApiError::bad_request("too_many_events", e.to_string()));
    }
    state
        .otlp
        .decoding
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("the service is shutting down; nothing was written", 5))
}

/// What became of a request's items.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Items refused (0: a full success).
    pub rejected: i64,
    /// What was wrong with them (empty on a full success).
    pub message: String,
}

/// The caller's tenant: an ingest token's.
pub(crate) fn tenant_of(caller: &Caller<Ingest>) -> Result<String, ApiError> {
    caller.token.tenant_id.clone().ok_or_else(|| {
        caller.forbidden(
            "an admin token without a tenant cannot write spans or log records; use an ingest token of the tenant",
        )
    })
}

/// Refuses a request with more items than `/v1/events` takes events
/// (`server.max_events_per_request`), before any of them is normalised.
pub(crate) fn check_count(
    state: &AppState,
    mapped: &Mapped,
    signal: Signal,
) -> Result<(), ApiError> {
    let max = state.config.max_events_per_request;
    if mapped.total > max {
        let what = signal.items();
        let knob = match signal {
            Signal::Spans => "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            Signal::Logs => "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE",
        };
        return Err(ApiError::bad_request(
            "too_many_events",
            format!(
                "the request holds {} {what}; send at most {max} per request (the SDK's {knob}); nothing was written",
                mapped.total
            ),
        ));
    }
    Ok(())
}

fn refusal_reason(r: &Refusal) -> String {
    match r {
        Refusal::TooLarge { len, max } => format!(
            "it maps to an event of {len} bytes, more than the {max} an event may have (content \
             is hashed; the other attributes are too large)"
        ),
        other => other.to_string(),
    }
}

/// Appends a request's mapped items for the caller's tenant and waits for the durable commit.
///
/// # Errors
/// 403 for a token without a tenant; 503 (retryable) when the writer is saturated or the commit
/// failed: nothing of the request was appended then.
pub(crate) async fn append(
    state: &AppState,
    caller: &Caller<Ingest>,
    tenant: &str,
    mapped: Mapped<'_>,
    signal: Signal,
    transport: Transport,
    decoding: Option<tokio::sync::SemaphorePermit<'_>>,
) -> Result<Outcome, ApiError> {
    let tenant_id = TenantId::parse(tenant)
        .map_err(|e| ApiError::forbidden(format!("the token's tenant is invalid: {e}")))?;
    let origin = caller
        .token
        .origin("otlp")
        .map_err(|e| ApiError::forbidden(format!("the token cannot be named in entries: {e}")))?;
    let rules = state.rules.get();
    let normaliser = Normaliser {
        policy: &state.otlp.policy,
        bound: state.clock,
        now_ms: crate::now_ms(),
        tenant: Some(&tenant_id),
        rules: Some(&rules),
    };
    let Mapped {
        items,
        mut rejected,
        skipped,
        total,
    } = mapped;
    let mut events = Vec::with_capacity(items.len());
    let mut features = Vec::with_capacity(items.len());
    for item in items {
        match normaliser.normalise_node(item.event, &origin) {
            Ok(n) => {
                events.push(n.event);
                features.push(n.features);
            }
            Err(r) => rejected.push(Rejected {
                index: item.index,
                locator: item.locator.to_string(),
                reason: refusal_reason(&r),
            }),
        }
    }
    let count = |result: &'static str, n: usize| {
        state
            .metrics
            .otlp_items
            .get_or_create(&OtlpLabel {
                signal: signal.label(),
                transport: transport.label(),
                result,
            })
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    };
    // An exporter's retry of a request it lost the answer to: the span events appended then
    // are not appended again (accepted, as they are recorded).
    let mut keys = Vec::new();
    let mut repeated = 0;
    if signal == Signal::Spans {
        let all: Vec<[u8; 32]> = events.iter().map(|e| Recent::key(tenant, e)).collect();
        let seen = state.otlp.recent.seen(&all);
        repeated = seen.iter().filter(|s| **s).count();
        if repeated > 0 {
            let mut kept = (Vec::new(), Vec::new());
            for ((e, f), s) in events.into_iter().zip(features).zip(&seen) {
                if !s {
                    kept.0.push(e);
                    kept.1.push(f);
                }
            }
            (events, features) = kept;
        }
        keys = all
            .into_iter()
            .zip(seen)
            .filter(|(_, s)| !s)
            .map(|(k, _)| k)
            .collect();
    }
    // The CPU work is done: the wait for the commit does not hold a decoding slot.
    drop(decoding);
    let accepted = events.len();
    if !events.is_empty() {
        state.ingest.submit(tenant_id, events, features).await?;
        state.otlp.recent.remember(keys);
    }
    count("accepted", accepted);
    count("repeated", repeated);
    count("rejected", rejected.len());
    count("skipped", skipped);
    if rejected.is_empty() {
        return Ok(Outcome::default());
    }
    rejected.sort_by_key(|r| r.index);
    Ok(Outcome {
        rejected: i64::try_from(rejected.len()).unwrap_or(i64::MAX),
        message: blackbox_otel::map::summarise(&rejected, total, signal.items()),
    })
}
