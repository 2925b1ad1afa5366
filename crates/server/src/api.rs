//! The routes (docs/API.md).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use blackbox_core::entry::{NormalizedEvent, parse_entry_id};
use blackbox_core::event::normalize_json;
use blackbox_core::ids::TenantId;
use blackbox_core::origin::Origin;
use blackbox_detect::Features;

use crate::api_alerts as alerts;
use crate::api_detect as det;
use blackbox_store::{Query as StoreQuery, StoredEntry};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::limits::{Refused, Share, ShareKey};
use crate::metrics::RouteLabel;
use crate::tokens::{Scopes, TokenInfo};

/// Most rows of one page (`limit`).
const MAX_PAGE: u64 = 10_000;

/// Rows an unpaged answer reads per read transaction.
const STREAM_SLICE: usize = 1000;

/// How long a streamed answer waits for the client to take the next chunk.
const STREAM_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A page stops after this many bytes of entry lines (its cursor continues after it).
const MAX_PAGE_BYTES: usize = 8 << 20;

/// Largest single event, bytes (as `blackbox append`'s longest line: one constant for both).
const MAX_EVENT_BYTES: usize = blackbox_core::json::MAX_EVENT_BYTES;

fn check_event_size(index: usize, len: usize) -> Result<(), ApiError> {
    if len > MAX_EVENT_BYTES {
        return Err(ApiError::bad_request(
            "invalid_event",
            format!("event {index}: is {len} bytes; an event may have at most {MAX_EVENT_BYTES}"),
        )
        .at(index));
    }
    Ok(())
}

/// The service's routes, with metrics and request logging.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(ingest))
        .route("/v1/entries", get(entries))
        .route("/v1/entries/{entry_id}", get(entry))
        .route("/v1/verify", get(verify))
        .route("/v1/checkpoints/latest", get(latest_checkpoint))
        .route("/v1/proofs/inclusion", get(inclusion))
        .route("/v1/proofs/consistency", get(consistency))
        .route("/v1/decide", post(det::decide))
        .route("/v1/agents", get(det::list_agents))
        .route("/v1/exports", get(det::export))
        .route("/v1/agents/{agent_id}/pause", post(det::pause_agent))
        .route("/v1/agents/{agent_id}/resume", post(det::resume_agent))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/alerts/{alert_id}/ack", post(alerts::acknowledge))
        .route("/v1/alerts/{alert_id}/resolve", post(alerts::resolve))
        .route("/v1/erasures", post(crate::api_erase::erase))
        .route("/v1/retention/run", post(crate::api_erase::retention_run))
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{id}", delete(revoke_token))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("no such route; see GET /openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see GET /openapi.json",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Before any handler: refuses a query string that is not UTF-8 once percent-decoded, and puts
/// the body under the idle timeout and deadline (docs/API.md, "Limits and fairness"). A body
/// that timed out closes the connection after the answer (408).
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(message) = req.uri().query().and_then(crate::limits::query_utf8_error) {
        state
            .metrics
            .refuse(crate::metrics::UNAUTHENTICATED_LABEL, "invalid_parameter");
        return ApiError::bad_request("invalid_parameter", message).into_response();
    }
    if http_body::Body::is_end_stream(req.body()) {
        // No body (most reads): nothing to time.
        return next.run(req).await;
    }
    let timed_out = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (idle, deadline) = (state.config.body_idle_timeout, state.config.body_deadline);
    let flag = std::sync::Arc::clone(&timed_out);
    let req = req.map(|b| Body::new(crate::limits::TimedBody::new(b, idle, deadline, flag)));
    let mut resp = next.run(req).await;
    if timed_out.load(std::sync::atomic::Ordering::Relaxed) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Records metrics and one log line per request (method, route, status, time; never a token,
/// key or payload).
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let label = RouteLabel {
        route: route.clone(),
        status,
    };
    let secs = started.elapsed().as_secs_f64();
    state.metrics.http_requests.get_or_create(&label).inc();
    state
        .metrics
        .http_seconds
        .get_or_create(&label)
        .observe(secs);
    tracing::info!(%method, %route, status, ms = secs * 1000.0, "request");
    resp
}

// ---- authentication and rate limits ------------------------------------------------------------

/// Per-token token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` requests per second with bursts of `burst` (0: unlimited).
    #[must_use]
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(per_second),
            burst: f64::from(burst.max(per_second)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` to go ahead, or the seconds to wait.
    fn check(&self, token_id: &str) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut b = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = b.entry(token_id.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            // a small positive number of seconds
            let wait = ((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64;
            Err(wait)
        }
    }
}

/// Refusals recorded on their own: the first per (token or client address, reason) and second;
/// the rest are counted into a summary record, so that a flood of bad requests (which costs the
/// sender nothing) cannot fill the log.
#[derive(Debug, Default)]
pub struct DenialSampler {
    last: Mutex<HashMap<String, Instant>>,
}

impl DenialSampler {
    fn admit(&self, key: String) -> bool {
        let now = Instant::now();
        let mut m = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.len() > 10_000 {
            m.retain(|_, t| now.duration_since(*t).as_secs() < 1);
            if m.len() > 10_000 {
                m.clear();
            }
        }
        match m.get(&key) {
            Some(t) if now.duration_since(*t).as_secs() < 1 => false,
            _ => {
                m.insert(key, now);
                true
            }
        }
    }
}

/// What an authenticated request may touch.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) token: TokenInfo,
    state: AppState,
    method: Method,
    path: String,
    addr: Option<SocketAddr>,
}

impl Caller {
    /// The tenant a tenant-scoped request works on: the token's, or for an admin token the
    /// `tenant_id` parameter.
    pub(crate) fn tenant(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        match (&self.token.tenant_id, requested) {
            (Some(own), Some(req)) if own != req && !self.token.scopes.admin => {
                let e =
                    ApiError::forbidden(format!("this token is for tenant `{own}`, not `{req}`"));
                deny(
                    &self.state,
                    &e,
                    Some(&self.token),
                    &self.method,
                    &self.path,
                    self.addr,
                    Some(req),
                );
                Err(e)
            }
            (_, Some(req)) => Ok(Some(req.to_owned())),
            (Some(own), None) => Ok(Some(own.clone())),
            (None, None) => Ok(None),
        }
    }
}

fn client_addr(headers_ext: &axum::http::Extensions) -> Option<SocketAddr> {
    headers_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a)
}

/// A 403 for an authenticated caller, recorded like every refusal.
pub(crate) fn deny_forbidden(state: &AppState, caller: &Caller, message: &str) -> ApiError {
    let e = ApiError::forbidden(message.to_owned());
    deny(
        state,
        &e,
        Some(&caller.token),
        &caller.method,
        &caller.path,
        caller.addr,
        None,
    );
    e
}

/// Records a refusal in the audit log (`access_denied`) and counts it.
fn deny(
    state: &AppState,
    err: &ApiError,
    token: Option<&TokenInfo>,
    method: &Method,
    path: &str,
    addr: Option<SocketAddr>,
    requested_tenant: Option<&str>,
) {
    state
        .metrics
        .refuse(crate::metrics::tenant_label(token), err.code);
    let who = token.map_or_else(
        || addr.map_or_else(|| "unknown".to_owned(), |a| format!("ip:{}", a.ip())),
        |t| format!("token:{}", t.id),
    );
    if !state.denials.admit(format!("{who} {}", err.code)) {
        state.ingest.count_unrecorded();
        return;
    }
    let tenant = token
        .and_then(|t| t.tenant_id.clone())
        .unwrap_or_else(|| crate::SYSTEM_TENANT.to_owned());
    let mut payload = json!({
        "reason": err.code,
        "status": err.status.as_u16(),
        "method": method.as_str(),
        "path": path,
        "message": err.message,
    });
    if let Some(t) = token {
        payload["token_id"] = t.id.clone().into();
        payload["scopes"] = t.scopes.to_string().into();
    }
    if let Some(r) = requested_tenant {
        payload["requested_tenant"] = r.into();
    }
    let mut ev = json!({
        "tenant_id": tenant,
        "agent_id": token.map_or_else(|| "unauthenticated".to_owned(), |t| format!("token:{}", t.id)),
        "session_id": "http",
        "event_type": "access_denied",
        "payload": payload,
    });
    // The client's address is personal data: it goes to the erasable sidecar.
    if let Some(a) = addr {
        ev["data_subjects"] =
            json!([{"id": format!("ip:{}", a.ip()), "category": "client_address"}]);
    }
    if let Ok(n) = normalize_json(
        ev.to_string().as_bytes(),
        &state.policy,
        &blackbox_core::origin::Origin::Service,
    ) {
        state.ingest.deny(n);
    }
}

/// Checks the bearer token, its scope and its rate limit.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
    method: &Method,
    path: &str,
    need: fn(&Scopes) -> bool,
    what: &str,
) -> Result<Caller, ApiError> {
    let addr = client_addr(ext);
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // Requests without a valid token are limited per client address: past the burst they get
    // 429 instead of 401 (and cost one sampled record at most). A valid token from the same
    // address is still answered: behind a proxy every client has the proxy's address.
    let refuse = |e: ApiError| {
        let e = match addr.map(|a| state.unauthenticated.check(a.ip())) {
            Some(Err(wait)) => {
                let mut r = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "too many requests without a valid token from this address; retry in {wait} s with a valid `Authorization: Bearer <token>`"
                    ),
                );
                r.retry_after = Some(wait);
                r
            }
            _ => e,
        };
        deny(state, &e, None, method, path, addr, None);
        e
    };
    let Some(presented) = presented else {
        return Err(refuse(ApiError::unauthenticated(
            "this request needs `Authorization: Bearer <token>`; create a token with `blackbox tokens create`",
        )));
    };
    let token = match state.tokens.authenticate(presented) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(refuse(ApiError::unauthenticated(
                "the token is unknown or revoked",
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(wait) = state.limiter.check(&token.id) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this token's rate limit is reached; retry in {wait} s"),
        );
        e.retry_after = Some(wait);
        deny(state, &e, Some(&token), method, path, addr, None);
        return Err(e);
    }
    if !(need(&token.scopes) || token.scopes.admin) {
        let e = ApiError::forbidden(format!(
            "this token's scopes ({}) do not allow {what}",
            token.scopes
        ));
        deny(state, &e, Some(&token), method, path, addr, None);
        return Err(e);
    }
    Ok(Caller {
        token,
        state: state.clone(),
        method: method.clone(),
        path: path.to_owned(),
        addr,
    })
}

/// Counts a write's body in the bytes in flight (the declared length, or the limit when not
/// declared) under the caller's tenant, so that memory stays bounded and one tenant holds only
/// its part: 429 when the tenant's part is full, 503 when every tenant's together is.
pub(crate) fn body_share(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<Share, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(state.config.body_limit)
        .clamp(1, state.config.body_limit);
    state
        .ingest_bytes
        .try_take(&ShareKey::of(&caller.token), declared)
        .map_err(|r| match r {
            Refused::KeyFull { held, cap } => {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "tenant_busy",
                    format!(
                        "tenant `{tenant}` already has {held} bytes of request bodies in flight, of the {cap} one tenant may have (this one declares {declared}); nothing was written; retry when its requests in flight are answered"
                    ),
                );
                e.retry_after = Some(1);
                e
            }
            Refused::Exhausted => ApiError::unavailable(
                "too many large requests are being written; nothing was written; retry shortly",
                1,
            ),
        })
        .inspect_err(|e| {
            let reason = if e.code == "unavailable" {
                "overloaded"
            } else {
                e.code
            };
            state.metrics.refuse(tenant, reason);
        })
}

/// A slot for an unpaged (streamed) answer of the caller's tenant: 429 past the tenant's part,
/// 503 when every tenant's streams together fill the service's.
fn stream_share(state: &AppState, caller: &Caller) -> Result<Share, ApiError> {
    let label = crate::metrics::tenant_label(Some(&caller.token));
    state
        .streams
        .try_take(&ShareKey::of(&caller.token), 1)
        .map_err(|r| {
            let e = match r {
                Refused::KeyFull { held, .. } => {
                    let mut e = ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "tenant_busy",
                        format!(
                            "this {} already reads {held} unpaged answers, the most one may at once; give `limit` to read in pages, or retry when one ends",
                            if caller.token.tenant_id.is_some() { "tenant" } else { "token" }
                        ),
                    );
                    e.retry_after = Some(2);
                    e
                }
                Refused::Exhausted => ApiError::unavailable(
                    "too many unpaged answers are being read; give `limit` to read in pages, or retry shortly",
                    2,
                ),
            };
            let reason = if e.code == "unavailable" { "overloaded" } else { e.code };
            state.metrics.refuse(label, reason);
            e
        })
}

/// How long an expensive read waits for the shared slots before it is refused with 503.
const HEAVY_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A slot for an expensive read (verify, exports, proofs) of the caller's tenant (or of the
/// caller, for a token without a tenant): 429 when it already runs as many as one may, 503
/// when the slots of all tenants stay taken for [`HEAVY_READ_WAIT`].
pub(crate) async fn heavy_read(
    state: &AppState,
    caller: &Caller,
    what: &str,
) -> Result<Share, ApiError> {
    let label = crate::metrics::tenant_label(Some(&caller.token));
    state
        .heavy_reads
        .take_within(&ShareKey::of(&caller.token), 1, HEAVY_READ_WAIT)
        .await
        .map_err(|r| {
            let e = match r {
                Refused::KeyFull { held, .. } => {
                    let mut e = ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "tenant_busy",
                        format!(
                            "this {} already runs {held} expensive reads (verify, exports, proofs), the most one may at once; retry when one is answered",
                            if caller.token.tenant_id.is_some() { "tenant" } else { "token" }
                        ),
                    );
                    e.retry_after = Some(2);
                    e
                }
                Refused::Exhausted => ApiError::unavailable(
                    format!("the service is busy with other tenants' {what} and expensive reads; retry shortly"),
                    5,
                ),
            };
            let reason = if e.code == "unavailable" { "overloaded" } else { e.code };
            state.metrics.refuse(label, reason);
            e
        })
}

/// [`authorize`] for a request's parts.
pub(crate) fn authorize_parts(
    state: &AppState,
    parts: &axum::http::request::Parts,
    route: &str,
    need: fn(&Scopes) -> bool,
    what: &str,
) -> Result<Caller, ApiError> {
    authorize(
        state,
        &parts.headers,
        &parts.extensions,
        &parts.method,
        route,
        need,
        what,
    )
}

pub(crate) fn need_ingest(s: &Scopes) -> bool {
    s.ingest
}
pub(crate) fn need_read(s: &Scopes) -> bool {
    s.read
}
pub(crate) fn need_admin(s: &Scopes) -> bool {
    s.admin
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::unavailable("the request's worker failed; retry", 1))?
}

/// Runs `f` with a read-only store connection, off the async threads.
pub(crate) async fn with_reader<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn blackbox_store::Store) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let readers = std::sync::Arc::clone(&state.readers);
    blocking(move || {
        let r = readers.get()?;
        f(&*r)
    })
    .await
}

/// A proof document as the answer's text.
fn proof_text(proof: &impl serde::Serialize) -> Result<String, ApiError> {
    serde_json::to_string_pretty(proof)
        .map_err(|e| ApiError::unavailable(format!("the proof could not be written: {e}"), 1))
}

// ---- ingest ------------------------------------------------------------------------------------

/// How the body holds its events.
enum BodyKind {
    Json,
    Ndjson,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyKind::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(BodyKind::Ndjson),
        "" => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the request has no Content-Type; send application/json (an event or an array) or application/x-ndjson",
        )),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type `{other}` is not accepted; send application/json (an event or an array) or application/x-ndjson"
            ),
        )),
    }
}

/// The body; 413 past the limit, 408 when it stalled (see [`guard`]), 400 when it is malformed
/// (e.g. a broken chunked encoding) or ended early.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt as _;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes; send fewer events per request"),
        )
    };
    if usize::try_from(http_body::Body::size_hint(&body).lower()).map_or(true, |n| n > limit) {
        return Err(too_large());
    }
    let mut body = body;
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match crate::limits::find_timeout(&e) {
            Some(t) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("{t}; nothing was written; send the whole body without pausing (the connection is closed)"),
            ),
            None => ApiError::bad_request(
                "malformed_body",
                format!("the request body could not be read: {e}; check its Content-Length or chunked encoding; nothing was written"),
            ),
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// A request body other than events, read with the rules every JSON input is read with
/// (`blackbox_core::json`: UTF-8, no duplicate keys at any depth, nesting) and then into `T`.
/// `expected` describes the body, for the error.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    expected: &str,
) -> Result<T, ApiError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ApiError::bad_request(
            "invalid_utf8",
            format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        ));
    }
    let v = blackbox_core::json::read_value(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("expected {expected}: {e}")))?;
    serde_json::from_value(v)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("expected {expected}: {e}")))
}

const TOO_MANY: &str = "too many events";

/// A JSON array of raw events, refused as soon as it holds more than `.0` (so a body of a
/// million tiny items is not collected first).
struct BoundedArray(usize);

impl<'de> serde::de::DeserializeSeed<'de> for BoundedArray {
    type Value = Vec<&'de serde_json::value::RawValue>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BoundedArray {
    type Value = Vec<&'de serde_json::value::RawValue>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<&serde_json::value::RawValue>()? {
            if out.len() == self.0 {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            out.push(item);
        }
        Ok(out)
    }
}

fn invalid_event(index: usize, e: &blackbox_core::Error) -> ApiError {
    // Reserved types (FORMAT.md §3) are the service's to write: a client sending one is
    // refused as such.
    if blackbox_core::origin::refuses_reserved_type(e) {
        return ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_event_type",
            format!("event {index}: {e}"),
        )
        .at(index);
    }
    let code = match e {
        blackbox_core::Error::Json(_) => "invalid_json",
        _ => "invalid_event",
    };
    ApiError::bad_request(code, format!("event {index}: {e}")).at(index)
}

/// Splits and normalises the events of a request body. Every event is checked; the first bad
/// one refuses the request.
/// Events of a request, with what the detector needs of each.
type Parsed = (Vec<NormalizedEvent>, Vec<Features>);

fn parse_events(
    body: &[u8],
    kind: &BodyKind,
    state: &AppState,
    origin: &Origin,
) -> Result<Parsed, ApiError> {
    // The JSON parser checks UTF-8 itself; only a refused body is looked at again, to say so
    // precisely when that is why.
    let utf8_error = || {
        std::str::from_utf8(body).err().map(|e| {
            ApiError::bad_request(
                "invalid_utf8",
                format!("the body is not valid UTF-8 (at byte {})", e.valid_up_to()),
            )
        })
    };
    parse_valid_utf8(body, kind, state, origin).map_err(|e| utf8_error().unwrap_or(e))
}

fn parse_valid_utf8(
    body: &[u8],
    kind: &BodyKind,
    state: &AppState,
    origin: &Origin,
) -> Result<Parsed, ApiError> {
    let max = state.config.max_events_per_request;
    let rules = state.rules.get();
    let mut features = Vec::new();
    let now = crate::now_ms();
    let mut norm = |text: &[u8], i: usize, out: &mut Vec<NormalizedEvent>| {
        let (ev, f) =
            crate::detection::normalize_with_features(text, &state.policy, &rules, origin)
                .map_err(|e| invalid_event(i, &e))?;
        state.clock.admit(ev.timestamp_ms, now).map_err(|m| {
            ApiError::unprocessable("timestamp_out_of_bound", format!("event {i}: {m}")).at(i)
        })?;
        out.push(ev);
        features.push(f);
        Ok::<(), ApiError>(())
    };
    let too_many = |n: usize| {
        ApiError::bad_request(
            "too_many_events",
            format!("the request holds {n} events or more; send at most {max} per request"),
        )
    };
    let mut out = Vec::new();
    match kind {
        BodyKind::Ndjson => {
            for line in body.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if out.len() >= max {
                    return Err(too_many(out.len() + 1));
                }
                let i = out.len();
                check_event_size(i, line.len())?;
                norm(line, i, &mut out)?;
            }
        }
        BodyKind::Json => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'[') {
                let mut de = serde_json::Deserializer::from_slice(body);
                let items = serde::de::DeserializeSeed::deserialize(BoundedArray(max), &mut de)
                    .and_then(|items| de.end().map(|()| items))
                    .map_err(|e| {
                        if e.to_string().starts_with(TOO_MANY) {
                            too_many(max + 1)
                        } else {
                            ApiError::bad_request(
                                "invalid_json",
                                format!("the body is not a JSON array of events: {e}"),
                            )
                        }
                    })?;
                for (i, raw) in items.iter().enumerate() {
                    check_event_size(i, raw.get().len())?;
                    norm(raw.get().as_bytes(), i, &mut out)?;
                }
            } else {
                check_event_size(0, body.len())?;
                norm(body, 0, &mut out)?;
            }
        }
    }
    if out.is_empty() {
        return Err(ApiError::bad_request(
            "empty_body",
            "the request holds no events",
        ));
    }
    Ok((out, features))
}

async fn ingest(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = "/v1/events";
    let caller = authorize_parts(&state, &parts, path, need_ingest, "writing events")?;
    let Some(tenant) = caller.token.tenant_id.clone() else {
        let e = ApiError::forbidden(
            "an admin token without a tenant cannot write events; use an ingest token of the tenant",
        );
        deny(
            &state,
            &e,
            Some(&caller.token),
            &parts.method,
            path,
            client_addr(&parts.extensions),
            None,
        );
        return Err(e);
    };
    let origin = caller
        .token
        .origin("events")
        .map_err(|e| ApiError::forbidden(format!("the token cannot be named in entries: {e}")))?;
    let refused = |e: &ApiError| state.metrics.refuse(&tenant, e.code);
    let kind = body_kind(&parts.headers).inspect_err(refused)?;
    let _share = body_share(&state, &caller, &tenant, &parts.headers)?;
    let body = read_body(body, state.config.body_limit)
        .await
        .inspect_err(refused)?;
    let (mut events, features) =
        parse_events(&body, &kind, &state, &origin).inspect_err(refused)?;
    drop(body);
    // The tenant comes from the token: an event naming another one refuses the whole request.
    for (i, ev) in events.iter().enumerate() {
        if let Some(t) = &ev.tenant_id
            && t.as_str() != tenant
        {
            let e = ApiError::forbidden(format!(
                "event {i} names tenant `{t}` but this token writes to tenant `{tenant}`; nothing was written"
            ))
            .at(i);
            deny(
                &state,
                &e,
                Some(&caller.token),
                &parts.method,
                path,
                client_addr(&parts.extensions),
                Some(t.as_str()),
            );
            return Err(e);
        }
    }
    let tenant_id = TenantId::parse(&tenant)
        .map_err(|e| ApiError::forbidden(format!("the token's tenant is invalid: {e}")))?;
    // Set here, on the request's thread, rather than by the (sequential) writer.
    for ev in &mut events {
        if ev.tenant_id.is_none() {
            ev.tenant_id = Some(tenant_id.clone());
        }
    }
    let appended = state.ingest.submit(tenant_id, events, features).await?;
    // The answer is written directly: it is as long as the request (one member per event).
    let mut out = String::with_capacity(64 + appended.len() * 160);
    out.push_str("{\"tenant_id\":");
    out.push_str(&serde_json::to_string(&tenant).unwrap_or_default());
    out.push_str(",\"count\":");
    out.push_str(&appended.len().to_string());
    out.push_str(",\"entries\":[");
    for (i, a) in appended.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"entry_id\":\"");
        out.push_str(
            a.entry_id
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
        out.push_str("\",\"seq\":");
        out.push_str(&a.seq.to_string());
        out.push_str(",\"entry_hash\":\"");
        out.push_str(&a.entry_hash.to_prefixed());
        out.push_str("\"}");
    }
    out.push_str("]}");
    Ok(json_text(out))
}

// ---- reading -----------------------------------------------------------------------------------

/// Query parameters of `GET /v1/entries`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EntriesParams {
    tenant_id: Option<String>,
    agent_id: Option<String>,
    session_id: Option<String>,
    tool: Option<String>,
    event_type: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<u64>,
    format: Option<String>,
    cursor: Option<String>,
    after_seq: Option<u64>,
}

/// RFC 3339, or a bare date (its first or last millisecond).
pub(crate) fn parse_bound(name: &str, s: &str, end: bool) -> Result<i64, ApiError> {
    blackbox_core::entry::parse_time_bound(s, end)
        .map_err(|e| ApiError::bad_request("invalid_parameter", format!("{name}={s:?}: {e}")))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Json,
    Csv,
}

/// A page cursor: the last row's (timestamp, tenant, seq), opaque to clients.
pub(crate) fn encode_cursor(ts: i64, tenant: &str, seq: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{ts}\n{seq}\n{tenant}"))
}

pub(crate) fn decode_cursor(s: &str) -> Result<(i64, u64, String), ApiError> {
    use base64::Engine as _;
    let bad = || {
        ApiError::bad_request(
            "invalid_parameter",
            "cursor: not a cursor this service gave out",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut it = text.splitn(3, '\n');
    let ts = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let seq = it.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
    let tenant = it.next().ok_or_else(bad)?.to_owned();
    Ok((ts, seq, tenant))
}

fn entry_ts(line: &[u8]) -> i64 {
    blackbox_core::line_scan::scan(line).map_or(0, |e| e.timestamp_ms)
}

/// Streams rows produced by a blocking producer.
fn stream_body(
    content_type: &'static str,
    next_cursor: Option<String>,
    produce: impl FnOnce(&tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) + Send + 'static,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || produce(&tx));
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(c) = next_cursor
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().insert("blackbox-next-cursor", v);
    }
    resp
}

fn row_bytes(format: Format, e: &StoredEntry, first: bool) -> Vec<u8> {
    match format {
        Format::Jsonl => {
            let mut v = e.line.clone();
            v.push(b'\n');
            v
        }
        Format::Json => {
            let mut v = Vec::with_capacity(e.line.len() + 2);
            if !first {
                v.push(b',');
            }
            v.extend_from_slice(&e.line);
            v
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let _ = w.write_record(blackbox_ledger::query::flatten(
                &e.tenant_id,
                e.seq,
                &e.line,
            ));
            w.into_inner().unwrap_or_default()
        }
    }
}

fn csv_header() -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(blackbox_ledger::query::COLUMNS);
    w.into_inner().unwrap_or_default()
}

async fn entries(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let caller = authorize(
        &state,
        &headers,
        &parts.extensions,
        &parts.method,
        "/v1/entries",
        need_read,
        "reading the log",
    )?;
    let p: EntriesParams = Query::try_from_uri(&parts.uri)
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))?;
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
    let format = match p.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => Format::Jsonl,
        "json" => Format::Json,
        "csv" => Format::Csv,
        other => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("format={other:?}: use jsonl, json or csv"),
            ));
        }
    };
    if p.limit == Some(0) || p.limit.is_some_and(|l| l > MAX_PAGE) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let start_ms = p
        .start
        .as_deref()
        .map(|s| parse_bound("start", s, false))
        .transpose()?;
    let end_ms = p
        .end
        .as_deref()
        .map(|s| parse_bound("end", s, true))
        .transpose()?;
    let cursor = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let content_type = match format {
        Format::Jsonl => "application/x-ndjson",
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
    };
    let readers = std::sync::Arc::clone(&state.readers);
    // Tailing a chain in seq order.
    if let Some(after) = p.after_seq {
        let Some(tenant) = tenant else {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "after_seq needs tenant_id with an admin token",
            ));
        };
        let limit = p.limit.unwrap_or(MAX_PAGE);
        let rows = with_reader(&state, move |r| {
            let mut rows = Vec::new();
            let Some(from) = after.checked_add(1) else {
                return Ok(rows);
            };
            let mut bytes = 0usize;
            r.scan(&tenant, from, after.saturating_add(limit), &mut |e| {
                bytes += e.line.len();
                rows.push(e);
                Ok(bytes < MAX_PAGE_BYTES)
            })?;
            Ok(rows)
        })
        .await?;
        let next = rows.last().map(|e| e.seq.to_string());
        return Ok(page_response(
            format,
            content_type,
            &rows,
            next,
            "blackbox-next-after-seq",
        ));
    }
    // The store skips the rows up to the cursor without reading them.
    let q = StoreQuery {
        tenant_id: tenant,
        agent_id: p.agent_id,
        session_id: p.session_id,
        tool: p.tool,
        event_type: p.event_type,
        start_ms,
        end_ms,
        limit: None,
        after: cursor.map(|(ts_ms, seq, tenant_id)| blackbox_store::After {
            ts_ms,
            tenant_id,
            seq,
        }),
    };
    // An unpaged answer holds a blocking thread while its client reads: a few per tenant, so
    // that one tenant's slow readers cannot take every thread.
    let stream_slot = match p.limit {
        None => Some(stream_share(&state, &caller)?),
        Some(_) => None,
    };
    match p.limit {
        Some(limit) => {
            // A page: read it (bounded), then answer with the cursor of its last row.
            let (rows, more) = with_reader(&state, move |r| {
                let mut rows = Vec::new();
                let want = usize::try_from(limit).unwrap_or(usize::MAX);
                let mut bytes = 0usize;
                let mut more = false;
                r.query(&q, &mut |e| {
                    // The page ends after `limit` rows or MAX_PAGE_BYTES of lines; one more
                    // row tells whether anything follows.
                    if rows.len() == want || (bytes >= MAX_PAGE_BYTES && !rows.is_empty()) {
                        more = true;
                        return Ok(false);
                    }
                    bytes += e.line.len();
                    rows.push(e);
                    Ok(true)
                })?;
                Ok((rows, more))
            })
            .await?;
            let rows = rows.as_slice();
            let next = if more {
                rows.last()
                    .map(|e| encode_cursor(entry_ts(&e.line), &e.tenant_id, e.seq))
            } else {
                None
            };
            Ok(page_response(
                format,
                content_type,
                rows,
                next,
                "blackbox-next-cursor",
            ))
        }
        None => Ok(stream_body(content_type, None, move |tx| {
            let _slot = stream_slot;
            // A reader that stops reading must not hold anything for long: each slice of the
            // answer is its own short read transaction, and a send that waits more than
            // STREAM_SEND_TIMEOUT ends the answer.
            let handle = tokio::runtime::Handle::current();
            let send = |b: Vec<u8>| {
                handle
                    .block_on(tokio::time::timeout(
                        STREAM_SEND_TIMEOUT,
                        tx.send(Ok(Bytes::from(b))),
                    ))
                    .is_ok_and(|r| r.is_ok())
            };
            let Ok(r) = readers.get() else {
                let _ = tx.blocking_send(Err(std::io::Error::other("store unavailable")));
                return;
            };
            let head = match format {
                Format::Json => b"{\"entries\":[".to_vec(),
                Format::Csv => csv_header(),
                Format::Jsonl => Vec::new(),
            };
            if !head.is_empty() && !send(head) {
                return;
            }
            let mut first = true;
            let mut page_q = q;
            loop {
                let mut page = Vec::new();
                let res = r.query(&page_q, &mut |e| {
                    page.push(e);
                    Ok(page.len() < STREAM_SLICE)
                });
                if res.is_err() {
                    let _ = tx.blocking_send(Err(std::io::Error::other("the query failed")));
                    return;
                }
                let Some(last) = page.last() else { break };
                page_q.after = Some(blackbox_store::After {
                    ts_ms: entry_ts(&last.line),
                    tenant_id: last.tenant_id.clone(),
                    seq: last.seq,
                });
                let mut buf = Vec::with_capacity(64 << 10);
                for e in &page {
                    buf.extend_from_slice(&row_bytes(format, e, first));
                    first = false;
                    if buf.len() >= 60 << 10 {
                        let chunk = std::mem::replace(&mut buf, Vec::with_capacity(64 << 10));
                        if !send(chunk) {
                            return;
                        }
                    }
                }
                if !buf.is_empty() && !send(buf) {
                    return;
                }
                if page.len() < STREAM_SLICE {
                    break;
                }
            }
            if format == Format::Json {
                send(b"],\"next_cursor\":null}".to_vec());
            }
        })),
    }
}

fn page_response(
    format: Format,
    content_type: &'static str,
    rows: &[StoredEntry],
    next: Option<String>,
    next_header: &'static str,
) -> Response {
    let mut body = Vec::new();
    match format {
        Format::Json => {
            body.extend_from_slice(b"{\"entries\":[");
            for (i, e) in rows.iter().enumerate() {
                body.extend_from_slice(&row_bytes(format, e, i == 0));
            }
            body.extend_from_slice(b"],\"next_cursor\":");
            body.extend_from_slice(
                serde_json::to_string(&next)
                    .unwrap_or_else(|_| "null".into())
                    .as_bytes(),
            );
            body.push(b'}');
        }
        Format::Csv => {
            body.extend_from_slice(&csv_header());
            for e in rows {
                body.extend_from_slice(&row_bytes(format, e, false));
            }
        }
        Format::Jsonl => {
            for e in rows {
                body.extend_from_slice(&row_bytes(format, e, false));
            }
        }
    }
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(c) = next
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        resp.headers_mut().insert(next_header, v);
    }
    resp
}

/// Parameters naming a tenant (admin tokens).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TenantParam {
    tenant_id: Option<String>,
}

pub(crate) fn params<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    Query::try_from_uri(uri)
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))
}

/// A path parameter, or a JSON 400 (e.g. for invalid UTF-8 in the path).
pub(crate) fn path_param(
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))
}

async fn entry(
    State(state): State<AppState>,
    entry_id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let entry_id = path_param(entry_id)?;
    let (parts, _) = req.into_parts();
    let caller = authorize_parts(
        &state,
        &parts,
        "/v1/entries/{entry_id}",
        need_read,
        "reading the log",
    )?;
    let id = parse_entry_id(&entry_id)
        .map_err(|e| ApiError::bad_request("invalid_parameter", format!("entry id: {e}")))?;
    let found = with_reader(&state, move |r| Ok(r.entry_by_id(id.as_bytes())?)).await?;
    // Another tenant's entry is "not found", not "forbidden": its existence is not disclosed.
    let visible = |e: &StoredEntry| {
        caller.token.scopes.admin || caller.token.tenant_id.as_deref() == Some(e.tenant_id.as_str())
    };
    let Some(e) = found.filter(visible) else {
        return Err(ApiError::not_found(format!("no entry {entry_id}")));
    };
    let line = String::from_utf8_lossy(&e.line).into_owned();
    let parsed: Value = serde_json::from_slice(&e.line).unwrap_or(Value::Null);
    Ok(axum::Json(json!({
        "tenant_id": e.tenant_id, "seq": e.seq,
        "entry_hash": blackbox_core::Hash::digest(&e.line).to_prefixed(),
        "line": line, "entry": parsed,
    }))
    .into_response())
}

/// The tenant a per-chain request works on: the token's, the parameter (admin), or the only
/// chain.
async fn chain_tenant(
    state: &AppState,
    caller: &Caller,
    requested: Option<&str>,
) -> Result<String, ApiError> {
    if let Some(t) = caller.tenant(requested)? {
        return Ok(t);
    }
    let chains = with_reader(state, move |r| Ok(r.chains()?)).await?;
    let real: Vec<_> = chains
        .into_iter()
        .filter(|c| c.tenant_id != crate::SYSTEM_TENANT)
        .collect();
    match real.as_slice() {
        [only] => Ok(only.tenant_id.clone()),
        [] => Err(ApiError::not_found("the store has no chain yet")),
        _ => Err(ApiError::bad_request(
            "invalid_parameter",
            "the store has several chains: give tenant_id",
        )),
    }
}

async fn verify(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let caller = authorize_parts(&state, &parts, "/v1/verify", need_read, "verifying the log")?;
    let p: TenantParam = params(&parts.uri)?;
    // An admin without tenant_id verifies every chain.
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
    // Verification reads a whole chain: a few at a time, so that it cannot starve ingest, and
    // a few per tenant, so that one tenant cannot starve the others.
    let _running = heavy_read(&state, &caller, "verifications").await?;
    let path = state.readers.path().to_owned();
    // Read at each verification rather than kept: the writer moves a forward-secure key to a
    // new epoch in the file, and a copy held since start would keep the erased state in memory.
    let keys_path = state.dir.hmac_keys_path();
    let verifier = (*state.verifier).clone();
    let report = blocking(move || {
        let keys = blackbox_ledger::datadir::load_keyring(&keys_path)
            .map_err(|e| ApiError::from(crate::ServerError::from(e)))?;
        let opts = blackbox_ledger::verify::StoreVerifyOptions {
            tenant,
            trusted_checkpoints: Vec::new(),
        };
        blackbox_ledger::verify::verify_store(&path, Some(&keys), Some(verifier), &opts, &|_| {})
            .map_err(|e| ApiError::from(crate::ServerError::from(e)))
    })
    .await?;
    if !report.ok() {
        state.metrics.verify_failures.inc();
    }
    Ok(axum::Json(blackbox_ledger::report::report_json(&report)).into_response())
}

async fn latest_checkpoint(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let caller = authorize_parts(
        &state,
        &parts,
        "/v1/checkpoints/latest",
        need_read,
        "reading checkpoints",
    )?;
    let p: TenantParam = params(&parts.uri)?;
    let tenant = chain_tenant(&state, &caller, p.tenant_id.as_deref()).await?;
    let t = tenant.clone();
    let cp = with_reader(&state, move |r| Ok(r.latest_checkpoint(&t)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}` has no checkpoint yet")))?;
    let ts = blackbox_core::entry::format_timestamp(cp.ts_ms).unwrap_or_default();
    Ok(
        axum::Json(json!({"tenant_id": tenant, "size": cp.size, "timestamp": ts, "note": cp.note}))
            .into_response(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionParams {
    entry_id: String,
    tenant_id: Option<String>,
}

fn ledger_to_api(e: blackbox_ledger::LedgerError) -> ApiError {
    match e {
        blackbox_ledger::LedgerError::NotFound(m) => ApiError::not_found(m),
        blackbox_ledger::LedgerError::Proof(m) => ApiError::bad_request("invalid_parameter", m),
        other => crate::ServerError::from(other).into(),
    }
}

async fn inclusion(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let caller = authorize_parts(
        &state,
        &parts,
        "/v1/proofs/inclusion",
        need_read,
        "reading proofs",
    )?;
    let p: InclusionParams = params(&parts.uri)?;
    let _running = heavy_read(&state, &caller, "proofs").await?;
    // A tenant named must be the caller's (admin tokens: any); the entry must then be in it.
    let want_tenant = caller
        .tenant(p.tenant_id.as_deref())?
        .filter(|_| p.tenant_id.is_some());
    let id = parse_entry_id(&p.entry_id)
        .map_err(|e| ApiError::bad_request("invalid_parameter", format!("entry_id: {e}")))?;
    let admin = caller.token.scopes.admin;
    let own = caller.token.tenant_id.clone();
    let entry_id = p.entry_id.clone();
    let doc = with_reader(&state, move |r| {
        let e = r
            .entry_by_id(id.as_bytes())?
            .filter(|e| admin || own.as_deref() == Some(e.tenant_id.as_str()))
            .filter(|e| want_tenant.as_deref().is_none_or(|t| t == e.tenant_id))
            .ok_or_else(|| ApiError::not_found(format!("no entry {entry_id}")))?;
        let proof = blackbox_ledger::proof::prove_inclusion(r, &e, true).map_err(ledger_to_api)?;
        proof_text(&proof)
    })
    .await?;
    Ok(json_text(doc))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyParams {
    tenant_id: Option<String>,
    from_size: u64,
    to_size: Option<u64>,
}

async fn consistency(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let caller = authorize_parts(
        &state,
        &parts,
        "/v1/proofs/consistency",
        need_read,
        "reading proofs",
    )?;
    let p: ConsistencyParams = params(&parts.uri)?;
    let _running = heavy_read(&state, &caller, "proofs").await?;
    let tenant = chain_tenant(&state, &caller, p.tenant_id.as_deref()).await?;
    let doc = with_reader(&state, move |r| {
        let proof = blackbox_ledger::proof::prove_sizes(r, &tenant, p.from_size, p.to_size)
            .map_err(ledger_to_api)?;
        proof_text(&proof)
    })
    .await?;
    Ok(json_text(doc))
}

fn json_text(text: String) -> Response {
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

// ---- tokens (admin) ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    tenant_id: Option<String>,
    scopes: Vec<String>,
    #[serde(default)]
    label: String,
}

async fn create_token(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    authorize_parts(&state, &parts, "/v1/tokens", need_admin, "managing tokens")?;
    let body = read_body(body, 64 << 10).await?;
    let t: NewToken = json_body(&body, r#"{"tenant_id", "scopes": [...], "label"}"#)?;
    let scopes = Scopes::parse(&t.scopes.join(","))
        .map_err(|e| ApiError::bad_request("invalid_parameter", e))?;
    let tenant = t
        .tenant_id
        .as_deref()
        .map(TenantId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.to_string()))?;
    let (info, token) = state
        .tokens
        .create(tenant.as_ref(), scopes, &t.label)
        .map_err(|e| match e {
            crate::ServerError::Config(m) => ApiError::bad_request("invalid_parameter", m),
            other => other.into(),
        })?;
    let mut v = serde_json::to_value(&info).unwrap_or(Value::Null);
    v["token"] = token.into();
    v["scopes"] = json!(info.scopes.names());
    Ok((StatusCode::CREATED, axum::Json(v)).into_response())
}

async fn list_tokens(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    authorize_parts(&state, &parts, "/v1/tokens", need_admin, "managing tokens")?;
    let list: Vec<Value> = state
        .tokens
        .list()?
        .into_iter()
        .map(|t| {
            let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
            v["scopes"] = json!(t.scopes.names());
            v
        })
        .collect();
    Ok(axum::Json(json!({ "tokens": list })).into_response())
}

async fn revoke_token(
    State(state): State<AppState>,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let id = path_param(id)?;
    let (parts, _) = req.into_parts();
    authorize_parts(
        &state,
        &parts,
        "/v1/tokens/{id}",
        need_admin,
        "managing tokens",
    )?;
    if state.tokens.revoke(&id)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no active token {id}")))
    }
}

// ---- operations ----------------------------------------------------------------------------------

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ingest.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::unavailable("the last commit failed (disk full or I/O error)", 1).into_response()
    }
}

async fn metrics(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    // Metrics name every tenant and its size: an admin token reads them (Prometheus sends it
    // with `authorization: {credentials: …}`).
    let (parts, _) = req.into_parts();
    authorize_parts(&state, &parts, "/metrics", need_admin, "reading metrics")?;
    {
        use std::sync::atomic::Ordering::Relaxed;
        let w = &state.webhooks.stats;
        let m = &state.metrics;
        let gauge = |status: &str, v: u64| {
            m.webhook_deliveries
                .get_or_create(&crate::metrics::WebhookLabel {
                    status: status.to_owned(),
                })
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge("pending", w.pending.load(Relaxed));
        gauge("dead", w.dead.load(Relaxed));
        gauge("delivered", w.delivered.load(Relaxed));
        m.webhook_failed_attempts
            .set(i64::try_from(w.failed_attempts.load(Relaxed)).unwrap_or(i64::MAX));
    }
    let mut resp = Response::new(Body::from(state.metrics.encode()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}

async fn openapi() -> Response {
    json_text(crate::OPENAPI.to_owned())
}
