//! OTLP/HTTP: `POST /v1/traces` and `POST /v1/logs`, binary protobuf or OTLP/JSON, optionally
//! gzip-compressed, as the OpenTelemetry Protocol specifies ("OTLP/HTTP"): 200 with the export
//! response (a partial success names what was refused), 4xx/5xx with a `google.rpc.Status` body in
//! the request's encoding, `Retry-After` on 429 and 503.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use blackbox_otel::Encoding;
use blackbox_otel::proto::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use blackbox_otel::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message as _;

use super::grpc::{RpcStatus, grpc_code};
use super::{Signal, Transport};
use crate::AppState;
use crate::api::auth::{Caller, Ingest};
use crate::api::input::read_body;
use crate::api::shares::body_share;
use crate::error::ApiError;

/// The routes of a dedicated OTLP/HTTP listener (`--otlp-http`): `/v1/traces`, `/v1/logs` and
/// the health checks, with the same limits, metrics and logging as the main listener.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/logs", post(logs))
        .route("/healthz", get(crate::api::ops::healthz))
        .route("/readyz", get(crate::api::ops::readyz))
        .fallback(|| async {
            ApiError::not_found("this listener serves OTLP/HTTP only: POST /v1/traces and /v1/logs")
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::api::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::api::observe,
        ))
        .with_state(state)
}

/// `POST /v1/traces`.
pub(crate) async fn traces(
    State(state): State<AppState>,
    caller: Result<Caller<Ingest>, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(state, caller, headers, body, Signal::Spans).await
}

/// `POST /v1/logs`.
pub(crate) async fn logs(
    State(state): State<AppState>,
    caller: Result<Caller<Ingest>, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(state, caller, headers, body, Signal::Logs).await
}

/// An error as OTLP/HTTP answers it: the status, `Retry-After`, and a `google.rpc.Status` body.
fn failure(enc: Encoding, e: &ApiError) -> Response {
    let status = RpcStatus {
        code: grpc_code(e) as i32,
        message: e.message.clone(),
        details: Vec::new(),
    };
    let body = match enc {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&serde_json::json!({
            "code": status.code,
            "message": status.message,
        }))
        .unwrap_or_default(),
    };
    let mut resp = (e.status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(enc.content_type()),
    );
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn success(enc: Encoding, signal: Signal, outcome: &super::Outcome) -> Response {
    let body = match signal {
        // A full success is an empty message: `{}` in JSON (not `{"partialSuccess":null}`).
        _ if outcome.rejected == 0 && enc == Encoding::Json => b"{}".to_vec(),
        Signal::Spans => {
            let r = ExportTraceServiceResponse {
                partial_success: (outcome.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: outcome.rejected,
                    error_message: outcome.message.clone(),
                }),
            };
            match enc {
                Encoding::Protobuf => r.encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&r).unwrap_or_default(),
            }
        }
        Signal::Logs => {
            let r = ExportLogsServiceResponse {
                partial_success: (outcome.rejected > 0).then(|| ExportLogsPartialSuccess {
                    rejected_log_records: outcome.rejected,
                    error_message: outcome.message.clone(),
                }),
            };
            match enc {
                Encoding::Protobuf => r.encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&r).unwrap_or_default(),
            }
        }
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(enc.content_type()),
    );
    resp
}

async fn export(
    state: AppState,
    caller: Result<Caller<Ingest>, ApiError>,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(enc) = Encoding::from_content_type(ct) else {
        let e = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            if ct.is_empty() {
                "the request has no Content-Type; OTLP/HTTP sends application/x-protobuf or application/json".to_owned()
            } else {
                format!(
                    "Content-Type `{ct}` is not OTLP/HTTP; send application/x-protobuf or application/json"
                )
            },
        );
        state.metrics.reject(e.code);
        return failure(Encoding::Json, &e);
    };
    match run(&state, caller, &headers, body, signal, enc).await {
        Ok(outcome) => success(enc, signal, &outcome),
        Err(e) => failure(enc, &e),
    }
}

/// A decoded export request (the mapped events borrow from it).
enum Decoded {
    Traces(blackbox_otel::proto::collector::trace::v1::ExportTraceServiceRequest),
    Logs(blackbox_otel::proto::collector::logs::v1::ExportLogsServiceRequest),
}

async fn run(
    state: &AppState,
    caller: Result<Caller<Ingest>, ApiError>,
    headers: &HeaderMap,
    body: Body,
    signal: Signal,
    enc: Encoding,
) -> Result<super::Outcome, ApiError> {
    let caller = caller?;
    let tenant = super::tenant_of(&caller)?;
    let refused = |e: &ApiError| state.metrics.refuse(&tenant, e.code);
    let _share = body_share(state, &caller, &tenant, headers)?;
    let limit = state.config.body_limit;
    let raw = read_body(body, limit).await.inspect_err(refused)?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let bytes: std::borrow::Cow<'_, [u8]> = match encoding.as_str() {
        "" | "identity" => raw.as_ref().into(),
        "gzip" | "x-gzip" => blackbox_otel::gunzip(&raw, limit)
            .map_err(|e| match e {
                blackbox_otel::DecodeError::TooLarge { .. } => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    e.to_string(),
                ),
                other => ApiError::bad_request("invalid_encoding", other.to_string()),
            })
            .inspect_err(refused)?
            .into(),
        other => {
            let e = ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("Content-Encoding `{other}` is not accepted; send gzip or none"),
            );
            refused(&e);
            return Err(e);
        }
    };
    let opts = state.otlp.options;
    let protobuf = (enc == Encoding::Protobuf).then_some(&*bytes);
    let decoding = super::before_decoding(state, protobuf, signal)
        .await
        .inspect_err(refused)?;
    let decoded = match signal {
        Signal::Spans => blackbox_otel::decode_traces(&bytes, enc).map(Decoded::Traces),
        Signal::Logs => blackbox_otel::decode_logs(&bytes, enc).map(Decoded::Logs),
    }
    .map_err(|e| ApiError::bad_request("invalid_otlp", e.to_string()))
    .inspect_err(refused)?;
    drop(bytes);
    drop(raw);
    let mapped = match &decoded {
        Decoded::Traces(r) => blackbox_otel::map_traces(r, opts),
        Decoded::Logs(r) => blackbox_otel::map_logs(r, opts),
    };
    super::check_count(state, &mapped, signal).inspect_err(refused)?;
    super::append(
        state,
        &caller,
        &tenant,
        mapped,
        signal,
        Transport::Http,
        Some(decoding),
    )
    .await
    .inspect_err(refused)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_saturated_writer_answers_503_with_retry_after_and_a_status_body() {
        let e = ApiError::unavailable("the writer's queue is full; nothing was written", 2);
        let r = failure(Encoding::Protobuf, &e);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/x-protobuf");
        let r = failure(Encoding::Json, &e);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }
}
