//! The routes (docs/API.md), one file per resource. Every handler that needs a token asks for
//! an `auth::Caller` with the scope its route needs; the table in [`router`] shows which.
//!
//! Shared pieces sit below the resources and import none of them: `auth` (tokens, scopes,
//! refusals), `input` (bodies, parameters, cursors), `shares` (fair shares of what requests
//! hold), and the helpers at the end of this file.

mod agents;
mod alerts;
pub(crate) mod auth;
mod decide;
mod entries;
mod erasures;
mod events;
mod exports;
pub(crate) mod input;
pub(crate) mod ops;
mod overview;
mod proofs;
mod retention;
mod rules;
pub(crate) mod shares;
mod tiles;
mod tokens;
mod verify;
mod witnesses;

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

pub use auth::{DenialSampler, RateLimiter};
pub use decide::decide_for;

use crate::AppState;
use crate::error::ApiError;
use crate::metrics::RouteLabel;

/// The service's routes, with metrics and request logging.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(events::append))
        .route("/v1/traces", post(crate::otlp::http::traces))
        .route("/v1/logs", post(crate::otlp::http::logs))
        .route("/v1/entries", get(entries::query))
        .route("/v1/entries/{entry_id}", get(entries::one))
        .route("/v1/verify", get(verify::verify))
        .route("/v1/overview", get(overview::overview))
        .route("/v1/checkpoints/key", get(overview::checkpoint_key))
        .route("/v1/checkpoints/latest", get(proofs::latest_checkpoint))
        .route("/v1/checkpoints", post(proofs::sign_checkpoint))
        .route("/v1/proofs/inclusion", get(proofs::inclusion))
        .route("/v1/proofs/consistency", get(proofs::consistency))
        .route("/v1/proofs/slice", get(proofs::slice))
        .route("/v1/decide", post(decide::decide))
        .route("/v1/agents", get(agents::list))
        .route("/v1/rules", get(rules::rules))
        .route("/v1/witnesses", get(witnesses::witnesses))
        .route("/tlog/{tenant}/checkpoint", get(tiles::checkpoint))
        .route("/tlog/{tenant}/tile/{*path}", get(tiles::tile))
        .route("/v1/exports", get(exports::export))
        .route("/v1/agents/{agent_id}/pause", post(agents::pause))
        .route("/v1/agents/{agent_id}/resume", post(agents::resume))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/alerts/{alert_id}/ack", post(alerts::acknowledge))
        .route("/v1/alerts/{alert_id}/resolve", post(alerts::resolve))
        .route("/v1/erasures", post(erasures::erase))
        .route("/v1/retention/run", post(retention::run))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{id}", delete(tokens::revoke))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
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
pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
pub(crate) async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
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

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
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

/// A JSON text written by the service itself, as the answer.
pub(crate) fn json_text(text: String) -> Response {
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
