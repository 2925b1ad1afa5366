//! Who is calling: bearer tokens, scopes, per-token rate limits, and the record of every refusal.
//!
//! A handler asks for a [`Caller`] with the scope its route needs (`Caller<Read>`,
//! `Caller<Ingest>`, `Caller<Admin>`); the extractor authenticates and authorises before the
//! handler runs, so no handler can forget the check and the route table shows who may call what.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use blackbox_core::event::normalize_json;
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;
use crate::tokens::{Scopes, TokenInfo};

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

/// A scope a route needs (admin tokens may call every route).
pub(crate) trait Scope: Send + Sync + 'static {
    /// Whether `scopes` hold it.
    fn allows(scopes: &Scopes) -> bool;
}

/// Writing: `POST /v1/events`, `POST /v1/decide`.
#[derive(Debug)]
pub(crate) struct Ingest;
/// Reading the token's tenant.
#[derive(Debug)]
pub(crate) struct Read;
/// Everything, for every tenant.
#[derive(Debug)]
pub(crate) struct Admin;

impl Scope for Ingest {
    fn allows(s: &Scopes) -> bool {
        s.ingest
    }
}
impl Scope for Read {
    fn allows(s: &Scopes) -> bool {
        s.read
    }
}
impl Scope for Admin {
    fn allows(s: &Scopes) -> bool {
        s.admin
    }
}

/// What a route does, in the words of a 403 ("this token's scopes (…) do not allow …").
fn purpose(method: &Method, route: &str) -> &'static str {
    match (method.as_str(), route) {
        ("POST", "/v1/events") => "writing events",
        ("POST", "/v1/traces" | "/v1/logs") => "writing spans and log records",
        (_, "/v1/entries" | "/v1/entries/{entry_id}") => "reading the log",
        (_, "/v1/verify") => "verifying the log",
        (_, "/v1/checkpoints/latest") => "reading checkpoints",
        ("POST", "/v1/checkpoints") => "signing checkpoints",
        (_, "/v1/proofs/inclusion" | "/v1/proofs/consistency") => "reading proofs",
        (_, "/v1/decide") => "asking for decisions",
        ("GET", "/v1/agents") => "listing agents",
        (_, "/v1/agents/{agent_id}/pause" | "/v1/agents/{agent_id}/resume") => {
            "pausing or resuming agents"
        }
        (_, "/v1/exports") => "exporting evidence",
        ("GET", "/v1/alerts") => "listing alerts",
        (_, "/v1/alerts/{alert_id}/ack") => "acknowledging alerts",
        (_, "/v1/alerts/{alert_id}/resolve") => "resolving alerts",
        (_, "/v1/erasures") => "erasing personal data",
        (_, "/v1/retention/run") => "running retention",
        (_, "/v1/tokens" | "/v1/tokens/{id}") => "managing tokens",
        (_, "/metrics") => "reading metrics",
        _ => "this request",
    }
}

/// An authenticated request whose token holds scope `S` (or admin): what it may touch.
#[derive(Debug)]
pub(crate) struct Caller<S> {
    pub(crate) token: TokenInfo,
    state: AppState,
    method: Method,
    path: String,
    addr: Option<SocketAddr>,
    scope: PhantomData<fn() -> S>,
}

impl<S> Clone for Caller<S> {
    fn clone(&self) -> Self {
        Self {
            token: self.token.clone(),
            state: self.state.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            addr: self.addr,
            scope: PhantomData,
        }
    }
}

impl<S: Scope> FromRequestParts<AppState> for Caller<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The route's template (`/v1/entries/{entry_id}`), as refusals have always named it.
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let what = purpose(&parts.method, &route);
        authorize(
            state,
            &parts.headers,
            &parts.extensions,
            &parts.method,
            &route,
            S::allows,
            what,
        )
    }
}

impl<S> Caller<S> {
    /// The tenant a tenant-scoped request works on: the token's, or for an admin token the
    /// `tenant_id` parameter.
    pub(crate) fn tenant(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        match (&self.token.tenant_id, requested) {
            (Some(own), Some(req)) if own != req && !self.token.scopes.admin => {
                let e =
                    ApiError::forbidden(format!("this token is for tenant `{own}`, not `{req}`"));
                self.deny(&e, Some(req));
                Err(e)
            }
            (_, Some(req)) => match self.state.misdirected(req) {
                Some(e) => {
                    self.deny(&e, Some(req));
                    Err(e)
                }
                None => Ok(Some(req.to_owned())),
            },
            (Some(own), None) => Ok(Some(own.clone())),
            (None, None) => Ok(None),
        }
    }

    /// A 403 for this caller, recorded like every refusal.
    pub(crate) fn forbidden(&self, message: impl Into<String>) -> ApiError {
        let e = ApiError::forbidden(message);
        self.deny(&e, None);
        e
    }

    /// Records a refusal of this caller (naming the tenant it asked for, if any).
    pub(crate) fn deny(&self, err: &ApiError, requested_tenant: Option<&str>) {
        deny(
            &self.state,
            err,
            Some(&self.token),
            &self.method,
            &self.path,
            self.addr,
            requested_tenant,
        );
    }

    /// The operator an action of this caller is recorded as (`operator:<token id>`).
    pub(crate) fn operator(&self) -> String {
        format!("operator:{}", self.token.id)
    }
}

/// Authenticates and authorises a write that did not come through the router (OTLP/gRPC), with
/// the same checks, limits and refusal records as the extractor; `route` names the RPC.
pub(crate) fn authorize_ingest(
    state: &AppState,
    headers: &HeaderMap,
    addr: Option<SocketAddr>,
    route: &str,
) -> Result<Caller<Ingest>, ApiError> {
    let mut ext = axum::http::Extensions::new();
    if let Some(a) = addr {
        ext.insert(ConnectInfo(a));
    }
    authorize(
        state,
        headers,
        &ext,
        &Method::POST,
        route,
        Ingest::allows,
        "writing spans and log records",
    )
}

fn client_addr(ext: &axum::http::Extensions) -> Option<SocketAddr> {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a)
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
        .unwrap_or_else(|| crate::system_tenant(&state.dir));
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
fn authorize<S>(
    state: &AppState,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
    method: &Method,
    path: &str,
    need: fn(&Scopes) -> bool,
    what: &str,
) -> Result<Caller<S>, ApiError> {
    let addr = client_addr(ext);
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1): OTLP exporters are configured by hand.
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .and_then(|_| v.get(7..))
        })
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
            let message = match state.dir.tenant_map() {
                Some((_, Some(here))) => format!(
                    "the token is unknown or revoked (this instance serves the database `{here}` \
                     of a tenant map: a tenant's tokens are known to the instances of its \
                     database only)"
                ),
                _ => "the token is unknown or revoked".to_owned(),
            };
            return Err(refuse(ApiError::unauthenticated(message)));
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
    if let Some(e) = token
        .tenant_id
        .as_deref()
        .and_then(|t| state.misdirected(t))
    {
        deny(state, &e, Some(&token), method, path, addr, None);
        return Err(e);
    }
    Ok(Caller {
        token,
        state: state.clone(),
        method: method.clone(),
        path: path.to_owned(),
        addr,
        scope: PhantomData,
    })
}
