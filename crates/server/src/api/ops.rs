//! Operations: `GET /healthz`, `GET /readyz`, `GET /metrics` (admin), `GET /openapi.json`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::{Admin, Caller};
use super::json_text;
use crate::AppState;
use crate::error::ApiError;

/// `GET /healthz`: the process answers.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the last commit succeeded.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    if state.ingest.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::unavailable("the last commit failed (disk full or I/O error)", 1).into_response()
    }
}

/// `GET /metrics` (Prometheus text).
pub(super) async fn metrics(
    State(state): State<AppState>,
    // Metrics name every tenant and its size: an admin token reads them (Prometheus sends it
    // with `authorization: {credentials: …}`).
    _caller: Caller<Admin>,
) -> Result<Response, ApiError> {
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

/// `GET /openapi.json`.
pub(super) async fn openapi() -> Response {
    json_text(crate::OPENAPI.to_owned())
}
