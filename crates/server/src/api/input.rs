//! Reading a request: its body (bounded, timed), JSON bodies, query and path parameters, time
//! bounds and page cursors. Every malformed input is a 400 with a stable code.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;

use crate::error::ApiError;

/// The body; 413 past the limit, 408 when it stalled (see [`guard`](super::guard)), 400 when it is malformed
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
    // The announced length (Content-Length), within the limit: one allocation, no regrowth.
    let announced = usize::try_from(http_body::Body::size_hint(&body).lower()).unwrap_or(0);
    let mut out = bytes::BytesMut::with_capacity(announced.min(limit));
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

/// Parameters naming a tenant (admin tokens).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantParam {
    pub(crate) tenant_id: Option<String>,
}

/// The query parameters of a request, or a 400 `invalid_parameter`.
pub(crate) fn params<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    Query::try_from_uri(uri)
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))
}

/// Query parameters that may all be left out: no query string gives `T::default()`.
pub(crate) fn optional_params<T: serde::de::DeserializeOwned + Default>(
    q: Option<&str>,
) -> Result<T, ApiError> {
    match q {
        None | Some("") => Ok(T::default()),
        Some(q) => {
            axum::extract::Query::<T>::try_from_uri(&format!("/?{q}").parse().map_err(|_| {
                ApiError::bad_request("invalid_parameter", "malformed query string")
            })?)
            .map(|axum::extract::Query(v)| v)
            .map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))
        }
    }
}

/// The route's one path parameter, or a JSON 400 (e.g. for invalid UTF-8 in the path). Listed
/// before the [`Caller`](super::auth::Caller) of a handler, it is checked first.
#[derive(Debug)]
pub(crate) struct PathParam(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))
    }
}

/// RFC 3339, or a bare date (its first or last millisecond).
pub(crate) fn parse_bound(name: &str, s: &str, end: bool) -> Result<i64, ApiError> {
    blackbox_core::entry::parse_time_bound(s, end)
        .map_err(|e| ApiError::bad_request("invalid_parameter", format!("{name}={s:?}: {e}")))
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

/// A 400 `invalid_parameter` about `field`.
pub(crate) fn bad_param(field: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_parameter", format!("{field}: {e}"))
}
