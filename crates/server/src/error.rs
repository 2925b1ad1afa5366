//! Errors of the service: what fails inside it ([`ServerError`]) and what a client is told
//! ([`ApiError`], always a JSON body `{"error": {"code", "message", "index"?}}`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Failures inside the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is invalid (file, flag or environment variable named in the message).
    #[error("configuration: {0}")]
    Config(String),
    /// A ledger operation failed.
    #[error(transparent)]
    Ledger(#[from] blackbox_ledger::LedgerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] blackbox_store::StoreError),
    /// The token file failed (see [`crate::tokens::TokenStore`]).
    #[error("token file: {0}")]
    Tokens(#[source] blackbox_store::StoreError),
    /// A webhook of the rules file cannot be used (its URL or secret reference).
    #[error("configuration: webhook {url}: {source}")]
    Webhook {
        /// The URL as written in the rules file.
        url: String,
        /// What is wrong with it.
        source: blackbox_webhooks::WebhookError,
    },
    /// The webhook outbox failed.
    #[error("webhook outbox: {0}")]
    Webhooks(#[from] blackbox_webhooks::WebhookError),
    /// I/O, e.g. binding the listen address.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// An error answer: status, stable code, message, and the index of the offending event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine code (`invalid_event`, `forbidden`, …).
    pub code: &'static str,
    /// What is wrong and where, in plain words.
    pub message: String,
    /// 0-based index of the event the error is about.
    pub index: Option<usize>,
    /// Seconds to wait before retrying (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            index: None,
            retry_after: None,
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422 with a code: the request is well-formed but refused by a rule of the service.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503, retry after `secs`.
    pub fn unavailable(message: impl Into<String>, secs: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after = Some(secs);
        e
    }

    /// With the index of the offending event.
    #[must_use]
    pub fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    /// The JSON body.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self.wire()).unwrap_or_default()
    }

    /// The body, as the API types write it.
    #[must_use]
    pub fn wire(&self) -> blackbox_api::error::ErrorBody {
        blackbox_api::error::ErrorBody {
            error: blackbox_api::error::ErrorDetail {
                code: self.code.to_owned(),
                message: self.message.clone(),
                index: self.index,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.wire())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<blackbox_store::StoreError> for ApiError {
    fn from(e: blackbox_store::StoreError) -> Self {
        ServerError::from(e).into()
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        // Internal failures are the store's or the disk's: retryable, and never a 500 with
        // details a client should not see. The log has the cause.
        tracing::error!(error = %e, "request failed inside the service");
        Self::unavailable(
            "the service could not complete the request; nothing was written; retry later",
            1,
        )
    }
}
