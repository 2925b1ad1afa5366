//! `blackbox witness serve`: a C2SP tlog-witness HTTP service.
//!
//! - `POST /add-checkpoint`: the protocol (body at most 64 KiB). 200 with the cosignature line;
//!   400, 403, 404, 409 (body: the latest cosigned size, `text/x.tlog.size`) or 422 as the
//!   specification says; 503 when the state could not be written (nothing was recorded).
//! - `GET /`: the witness's name, public key and the logs it follows, as text.
//!
//! Which origins a log key covers: a key named `N` is trusted for the origin `N` (any C2SP log)
//! and for `N/<tenant>` (each tenant chain of a Blackbox service whose log name is `N`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use blackbox_core::cosignature::Cosigner;
use blackbox_core::note::NoteVerifier;
use blackbox_core::witness::{AddCheckpoint, MAX_REQUEST_BYTES, Refusal, SIZE_CONTENT_TYPE};

use crate::state::WitnessState;

/// A running witness's parts.
#[derive(Debug)]
pub struct WitnessService {
    cosigner: Cosigner,
    logs: Vec<NoteVerifier>,
    state: WitnessState,
    cosigned: AtomicU64,
    refused: AtomicU64,
}

/// Whether a log key named `name` covers `origin`: `name` itself or `name/<one segment>`.
#[must_use]
pub fn covers(name: &str, origin: &str) -> bool {
    origin == name
        || origin
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|t| !t.is_empty() && !t.contains('/'))
}

impl WitnessService {
    /// A witness signing with `cosigner`, following the logs whose checkpoint keys are `logs`,
    /// its state in `state`.
    #[must_use]
    pub fn new(cosigner: Cosigner, logs: Vec<NoteVerifier>, state: WitnessState) -> Self {
        Self {
            cosigner,
            logs,
            state,
            cosigned: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The log keys trusted for `origin`.
    #[must_use]
    pub fn trusted_for(&self, origin: &str) -> Vec<NoteVerifier> {
        self.logs
            .iter()
            .filter(|v| covers(v.name(), origin))
            .cloned()
            .collect()
    }

    /// Handles one request body; returns the status, content type and body.
    pub async fn handle(&self, body: &[u8]) -> (StatusCode, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        let refuse = |r: &Refusal| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
            match r {
                Refusal::Conflict { size, .. } => (status, SIZE_CONTENT_TYPE, format!("{size}\n")),
                other => (status, TEXT, format!("{other}\n")),
            }
        };
        let Ok(text) = std::str::from_utf8(body) else {
            return refuse(&Refusal::BadRequest("the body is not UTF-8".into()));
        };
        let req = match AddCheckpoint::parse(text) {
            Ok(r) => r,
            Err(e) => return refuse(&Refusal::BadRequest(e.to_string())),
        };
        let origin = req.checkpoint.checkpoint.origin.clone();
        let size = req.checkpoint.checkpoint.size;
        let note_text = req.checkpoint.note.text.clone();
        let trusted = self.trusted_for(&origin);
        let now = crate::now_ms();
        match self.state.submit(req, trusted, now).await {
            Ok(()) => {
                let secs = u64::try_from(now / 1000).unwrap_or(0);
                match self.cosigner.cosign(&note_text, secs) {
                    Ok(sig) => {
                        self.cosigned.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(origin, size, "cosigned");
                        (
                            StatusCode::OK,
                            TEXT,
                            format!(
                                "{}{} {}\n",
                                blackbox_core::note::SIGNATURE_PREFIX,
                                sig.name,
                                sig.to_base64()
                            ),
                        )
                    }
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
                }
            }
            Err(Ok(r)) => {
                tracing::warn!(origin, size, status = r.status(), reason = %r, "refused a checkpoint");
                refuse(&r)
            }
            Err(Err(e)) => {
                tracing::error!(error = %e, "the witness state could not be written");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "the witness could not record the checkpoint; nothing was cosigned; retry later\n"
                        .into(),
                )
            }
        }
    }

    /// The text `GET /` answers.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut s = format!(
            "blackbox witness (C2SP tlog-witness, cosignature/v1)\nname: {}\npublic key: {}\ncosigned: {}\nrefused: {}\nlogs followed:\n",
            self.cosigner.key().name(),
            self.cosigner.key().to_vkey(),
            self.cosigned.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        );
        for l in &self.logs {
            s.push_str(&format!(
                "  {} (origins {0} and {0}/<tenant>)\n",
                l.to_vkey()
            ));
        }
        s
    }
}

/// How long a request body may take in all: a client that sends it slowly (or stops half-way)
/// is answered 408 and its connection closed, instead of holding the connection for ever (a
/// witness faces the network; its headers are bounded by the listener).
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// The witness's HTTP routes.
pub fn router(svc: Arc<WitnessService>) -> Router {
    router_with(svc, BODY_DEADLINE)
}

/// [`router`] with another body deadline.
pub fn router_with(svc: Arc<WitnessService>, body_deadline: Duration) -> Router {
    Router::new()
        .route(
            "/add-checkpoint",
            post(move |State(svc): State<Arc<WitnessService>>, body: Body| {
                add_checkpoint(svc, body, body_deadline)
            }),
        )
        .route("/", get(describe))
        .with_state(svc)
}

async fn add_checkpoint(svc: Arc<WitnessService>, body: Body, deadline: Duration) -> Response {
    const TEXT: &str = "text/plain; charset=utf-8";
    let body = match tokio::time::timeout(deadline, to_bytes(body, MAX_REQUEST_BYTES)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                let why = format!(
                    "the request body is larger than {MAX_REQUEST_BYTES} bytes; an add-checkpoint \
                     request is a checkpoint and its consistency proof\n"
                );
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    [(header::CONTENT_TYPE, TEXT)],
                    why,
                )
                    .into_response()
            } else {
                let why = format!("the request body could not be read: {e}\n");
                (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, TEXT)], why).into_response()
            };
        }
        Err(_) => {
            let why = format!(
                "the request body was not complete after {} s; send it whole\n",
                deadline.as_secs_f64()
            );
            return (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONTENT_TYPE, TEXT), (header::CONNECTION, "close")],
                why,
            )
                .into_response();
        }
    };
    let (status, ctype, body) = svc.handle(&body).await;
    (status, [(header::CONTENT_TYPE, ctype)], body).into_response()
}

async fn describe(State(svc): State<Arc<WitnessService>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        svc.describe(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_cover_their_origins_only() {
        assert!(covers("log.example", "log.example"));
        assert!(covers("log.example", "log.example/acme"));
        assert!(!covers("log.example", "log.example/acme/x"));
        assert!(!covers("log.example", "log.example/"));
        assert!(!covers("log.example", "log.examplex/acme"));
        assert!(!covers("log.example", "other/log.example"));
    }
}
