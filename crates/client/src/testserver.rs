//! The real Blackbox service, in-process, for the unit tests: `blackbox_server::api::router` on
//! a real store in a temporary directory, listening on 127.0.0.1:0. A thin front records what
//! it was sent and, when a test asks for it, answers with a failure instead (429/503 with
//! `Retry-After`, a refused event, not ready): the faults a client must survive, which a healthy
//! service does not produce on demand. Every other answer is the service's own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::client::Client;
use crate::retry::RetryPolicy;

/// A token of the documented shape that no service knows (for tests without a service).
pub(crate) const TOKEN: &str = "bbx_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The tenant of [`TestServer::client`]'s token.
pub(crate) const TENANT: &str = "acme";

/// Faults the front injects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Behaviour {
    /// Answer this status (and its API error) to every `/v1/` request.
    pub always_status: Option<u16>,
    /// Answer the first n requests with `fail_status` (429 or 503)…
    pub fail_first: u32,
    pub fail_status: u16,
    /// …with this `Retry-After`, if any.
    pub retry_after: Option<&'static str>,
    /// Refuse (400 `invalid_event` with its index) any ingest holding this `client_seq`.
    pub refuse_client_seq: Option<u64>,
    /// Answer `GET /readyz` with 503.
    pub not_ready: bool,
}

#[derive(Default)]
struct Recorded {
    /// (method, path and query, content type, body) of every request.
    requests: Vec<(String, String, String, String)>,
    /// Events of each ingest request the service accepted.
    batch_sizes: Vec<usize>,
}

struct Shared {
    behaviour: Behaviour,
    failures_left: AtomicU32,
    recorded: Mutex<Recorded>,
    service: Router,
}

pub(crate) struct TestServer {
    pub url: String,
    /// An ingest and read token of [`TENANT`].
    pub token: String,
    /// An admin token.
    pub admin_token: String,
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub(crate) async fn start(behaviour: Behaviour) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = blackbox_server::ServerConfig::load(
            None,
            &blackbox_server::config::Overrides {
                data_dir: Some(dir.path().join("data")),
                rate_limit: Some(0),
                ..blackbox_server::config::Overrides::default()
            },
        )
        .unwrap();
        let (state, _writer) = blackbox_server::start(config).unwrap();
        let tenant = blackbox_core::ids::TenantId::parse(TENANT).unwrap();
        let scopes = |s| blackbox_server::tokens::Scopes::parse(s).unwrap();
        let token = state
            .tokens
            .create(Some(&tenant), scopes("ingest,read"), "client tests")
            .unwrap()
            .1;
        let admin_token = state
            .tokens
            .create(None, scopes("admin"), "client tests")
            .unwrap()
            .1;
        let shared = Arc::new(Shared {
            failures_left: AtomicU32::new(behaviour.fail_first),
            behaviour,
            recorded: Mutex::default(),
            service: blackbox_server::api::router(state),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            token,
            admin_token,
            shared,
            _dir: dir,
        }
    }

    fn with_token(&self, token: &str) -> Client {
        Client::builder(&self.url, token)
            .retry_policy(RetryPolicy {
                initial_backoff: std::time::Duration::from_millis(1),
                max_backoff: std::time::Duration::from_millis(5),
                ..RetryPolicy::default()
            })
            .build()
            .unwrap()
    }

    /// A client of [`TENANT`] (ingest and read) with fast retries.
    pub(crate) fn client(&self) -> Client {
        self.with_token(&self.token)
    }

    /// An admin client with fast retries.
    pub(crate) fn admin(&self) -> Client {
        self.with_token(&self.admin_token)
    }

    pub(crate) fn requests(&self) -> Vec<(String, String, String, String)> {
        self.shared.recorded.lock().unwrap().requests.clone()
    }

    pub(crate) fn bodies(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.3).collect()
    }

    pub(crate) fn batch_sizes(&self) -> Vec<usize> {
        self.shared.recorded.lock().unwrap().batch_sizes.clone()
    }
}

fn api_error(status: u16, code: &str, message: &str, index: Option<usize>) -> Response {
    let mut err = json!({"code": code, "message": message});
    if let Some(i) = index {
        err["index"] = json!(i);
    }
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": err }).to_string(),
    )
        .into_response()
}

fn code_of(status: u16) -> &'static str {
    match status {
        401 => "unauthenticated",
        403 => "forbidden",
        429 => "rate_limited",
        503 => "unavailable",
        _ => "internal",
    }
}

async fn handle(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let target = parts
        .uri
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let ctype = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = to_bytes(body, usize::MAX).await.unwrap();
    s.recorded.lock().unwrap().requests.push((
        method.clone(),
        target,
        ctype.clone(),
        String::from_utf8(body.to_vec()).unwrap(),
    ));

    if path == "/readyz" && s.behaviour.not_ready {
        return api_error(503, "unavailable", "not ready", None);
    }
    if path.starts_with("/v1/") {
        if let Some(st) = s.behaviour.always_status {
            return api_error(st, code_of(st), "told to fail", None);
        }
        if s.failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let st = s.behaviour.fail_status;
            let mut resp = api_error(st, code_of(st), "try again later", None);
            if let Some(ra) = s.behaviour.retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, ra.parse().unwrap());
            }
            return resp;
        }
        if let (Some(bad), "/v1/events") = (s.behaviour.refuse_client_seq, path.as_str())
            && let Some(i) = events_of(&ctype, &body)
                .iter()
                .position(|e| e["client_seq"].as_u64() == Some(bad))
        {
            return api_error(
                400,
                "invalid_event",
                &format!("event {i}: refused"),
                Some(i),
            );
        }
    }

    let req = Request::from_parts(parts, Body::from(body));
    let resp = s.service.clone().oneshot(req).await.unwrap();
    if method == "POST" && path == "/v1/events" && resp.status() == StatusCode::OK {
        let (parts, body) = resp.into_parts();
        let body = to_bytes(body, usize::MAX).await.unwrap();
        let answer: Value = serde_json::from_slice(&body).unwrap();
        let count = usize::try_from(answer["count"].as_u64().unwrap()).unwrap();
        s.recorded.lock().unwrap().batch_sizes.push(count);
        return Response::from_parts(parts, Body::from(body));
    }
    resp
}

fn events_of(ctype: &str, body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).unwrap_or("");
    if ctype == "application/x-ndjson" {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    } else {
        match serde_json::from_str(text) {
            Ok(Value::Array(a)) => a,
            Ok(v) => vec![v],
            Err(_) => Vec::new(),
        }
    }
}
