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
use blackbox_detect::Features;

use crate::api_alerts as alerts;
use crate::api_detect as det;
use blackbox_store::{Query as StoreQuery, Store as _, StoredEntry};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
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

/// Largest single event, bytes (as `blackbox append`'s longest line).
const MAX_EVENT_BYTES: usize = 1 << 20;

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
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
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
    state.metrics.reject(err.code);
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
    if let Ok(n) = normalize_json(ev.to_string().as_bytes(), &state.policy) {
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
    let Some(presented) = presented else {
        let e = ApiError::unauthenticated(
            "this request needs `Authorization: Bearer <token>`; create a token with `blackbox tokens create`",
        );
        deny(state, &e, None, method, path, addr, None);
        return Err(e);
    };
    let token = match state.tokens.authenticate(presented) {
        Ok(Some(t)) => t,
        Ok(None) => {
            let e = ApiError::unauthenticated("the token is unknown or revoked");
            deny(state, &e, None, method, path, addr, None);
            return Err(e);
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
    f: impl FnOnce(&blackbox_store::sqlite::SqliteStore) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let readers = std::sync::Arc::clone(&state.readers);
    blocking(move || {
        let r = readers.get()?;
        f(&r)
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

/// The body, or 413 past the limit.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes; send fewer events per request"),
        )
    })
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
    // Alert triage is the service's to write: a client sending it is refused as such.
    if let blackbox_core::Error::Field(f) = e
        && f.field == "event_type"
        && blackbox_core::alert::TRIAGE_EVENT_TYPES
            .iter()
            .any(|t| f.problem.starts_with(&format!("`{t}` is reserved")))
    {
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

fn parse_events(body: &[u8], kind: &BodyKind, state: &AppState) -> Result<Parsed, ApiError> {
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
    parse_valid_utf8(body, kind, state).map_err(|e| utf8_error().unwrap_or(e))
}

fn parse_valid_utf8(body: &[u8], kind: &BodyKind, state: &AppState) -> Result<Parsed, ApiError> {
    let max = state.config.max_events_per_request;
    let rules = state.rules.get();
    let mut features = Vec::new();
    let mut norm = |text: &[u8], i: usize, out: &mut Vec<NormalizedEvent>| {
        let (ev, f) = crate::detection::normalize_with_features(text, &state.policy, &rules)
            .map_err(|e| invalid_event(i, &e))?;
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
    let kind = body_kind(&parts.headers).inspect_err(|e| state.metrics.reject(e.code))?;
    // Memory: bodies in flight are bounded in bytes (the declared length, or the limit).
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(state.config.body_limit)
        .clamp(
            1,
            state.config.body_limit.min(crate::INGEST_BYTES_IN_FLIGHT),
        );
    let _permit = std::sync::Arc::clone(&state.ingest_bytes)
        .try_acquire_many_owned(u32::try_from(declared).unwrap_or(u32::MAX))
        .map_err(|_| {
            state.metrics.reject("overloaded");
            ApiError::unavailable(
                "too many large requests are being written; nothing was written; retry shortly",
                1,
            )
        })?;
    let body = read_body(body, state.config.body_limit)
        .await
        .inspect_err(|e| state.metrics.reject(e.code))?;
    let (mut events, features) =
        parse_events(&body, &kind, &state).inspect_err(|e| state.metrics.reject(e.code))?;
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
    // Verification reads a whole chain: a few at a time, so that it cannot starve ingest.
    let _running = std::sync::Arc::clone(&state.verifications)
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::unavailable("verifications are already running; retry shortly", 5)
        })?;
    // An admin without tenant_id verifies every chain.
    let tenant = caller.tenant(p.tenant_id.as_deref())?;
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
    let t: NewToken = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("expected {{\"tenant_id\", \"scopes\": [...], \"label\"}}: {e}"),
        )
    })?;
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
