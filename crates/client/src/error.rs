//! Errors of the client.
//!
//! Every variant is `Clone` (sources are shared through `Arc`) so that a [`crate::Batcher`] can
//! hand the error of one request to every event of it. No variant ever holds the token: it lives
//! only in the `Authorization` header, which is marked sensitive.

use std::sync::Arc;
use std::time::Duration;

/// Errors from talking to a Blackbox service.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service answered with an error body (docs/API.md, "Errors").
    #[error("HTTP {status}: {code}: {message}")]
    Api {
        /// HTTP status code.
        status: u16,
        /// The stable error code, e.g. `invalid_event`, `rate_limited`.
        code: String,
        /// What is wrong and where, as the service said it.
        message: String,
        /// The 0-based index of the offending event in an ingest request, when given.
        index: Option<usize>,
        /// `Retry-After` of a 429 or 503, when given in seconds.
        retry_after: Option<Duration>,
    },
    /// The service answered with an unexpected status or body that is not an API error
    /// (a proxy's page, a truncated body, a success body of the wrong shape).
    #[error("HTTP {status}: unexpected response: {detail}")]
    UnexpectedResponse {
        /// HTTP status code.
        status: u16,
        /// What was wrong, with at most 200 characters of the body.
        detail: String,
    },
    /// No connection could be made: the request was not sent, so nothing was written.
    #[error("cannot connect to the service: {0}")]
    Connect(#[source] Arc<reqwest::Error>),
    /// The request failed after it may have been sent (timeout, reset, lost response). For
    /// ingest the outcome is unknown: the events may have been committed.
    #[error("request failed: {0}")]
    Transport(#[source] Arc<reqwest::Error>),
    /// The base URL is not an absolute `http://` or `https://` URL.
    #[error("invalid base URL `{url}`: {problem}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The token holds characters that cannot be sent in an HTTP header (the token itself is
    /// not repeated here).
    #[error("the token contains characters not allowed in an HTTP header")]
    InvalidToken,
    /// An event could not be hashed client-side (docs/FORMAT.md §4): a raw field and its
    /// `_hash` disagree, an integer is out of range, or it nests too deeply. Nothing was sent.
    #[error("event {index}: {source}")]
    Event {
        /// 0-based index of the event in the call.
        index: usize,
        /// What the core found.
        #[source]
        source: Arc<blackbox_core::Error>,
    },
    /// The [`crate::Batcher`] has stopped (its task ended or panicked) and takes no more events.
    #[error("the batcher has stopped")]
    BatcherClosed,
    /// A [`crate::Batcher`] was started outside a Tokio runtime.
    #[error("a batcher needs a Tokio runtime")]
    NoRuntime,
}

impl Error {
    /// The HTTP status, for errors that came with one.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::UnexpectedResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API error code (`invalid_event`, `unauthenticated`, …), for API errors.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether an ingest request that failed with this error may nevertheless have been
    /// committed. Retrying it then may write its events twice (ingest is at-least-once).
    #[must_use]
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Transport(_))
    }

    /// Decodes an error response. Anything that is not `{"error": {"code", "message"}}` becomes
    /// [`Error::UnexpectedResponse`].
    pub(crate) fn from_response(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Self {
        match serde_json::from_slice::<blackbox_api::error::ErrorBody>(body) {
            Ok(blackbox_api::error::ErrorBody { error }) => Self::Api {
                status,
                code: error.code,
                message: error.message,
                index: error.index,
                retry_after,
            },
            Err(_) => Self::UnexpectedResponse {
                status,
                detail: format!("not an API error body: {}", excerpt(body)),
            },
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_connect() {
            Self::Connect(Arc::new(e))
        } else {
            Self::Transport(Arc::new(e))
        }
    }

    pub(crate) fn bad_body(status: u16, what: &str, e: &serde_json::Error, body: &[u8]) -> Self {
        Self::UnexpectedResponse {
            status,
            detail: format!("{what}: {e}: {}", excerpt(body)),
        }
    }
}

/// At most 200 characters of a body, for messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(200).collect();
    if text.chars().nth(200).is_some() {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("(empty)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_api_error_with_index() {
        let body = br#"{"error": {"code": "invalid_event", "message": "event 3: field `agent_id` is required", "index": 3}}"#;
        let e = Error::from_response(400, None, body);
        match &e {
            Error::Api {
                status,
                code,
                message,
                index,
                retry_after,
            } => {
                assert_eq!(*status, 400);
                assert_eq!(code, "invalid_event");
                assert_eq!(message, "event 3: field `agent_id` is required");
                assert_eq!(*index, Some(3));
                assert_eq!(*retry_after, None);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(e.status(), Some(400));
        assert_eq!(e.code(), Some("invalid_event"));
        assert!(!e.outcome_unknown());
        assert_eq!(
            e.to_string(),
            "HTTP 400: invalid_event: event 3: field `agent_id` is required"
        );
    }

    #[test]
    fn decodes_api_error_without_index_and_keeps_retry_after() {
        let body = br#"{"error":{"code":"rate_limited","message":"slow down"}}"#;
        let e = Error::from_response(429, Some(Duration::from_secs(2)), body);
        assert!(matches!(
            e,
            Error::Api { status: 429, index: None, retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
    }

    #[test]
    fn a_non_api_body_is_an_unexpected_response() {
        let e = Error::from_response(502, None, b"<html>Bad Gateway</html>");
        assert!(
            matches!(&e, Error::UnexpectedResponse { status: 502, detail } if detail.contains("Bad Gateway"))
        );
        let e = Error::from_response(500, None, b"");
        assert!(e.to_string().contains("(empty)"));
        let long = "x".repeat(1000);
        let e = Error::from_response(500, None, long.as_bytes());
        assert!(e.to_string().len() < 400);
    }
}
