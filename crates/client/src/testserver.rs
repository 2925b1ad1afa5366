//! A fake Blackbox service on 127.0.0.1:0 for the unit tests: it speaks the wire format of
//! docs/API.md with canned data and records what it was sent.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::client::Client;
use crate::retry::RetryPolicy;

pub(crate) const TOKEN: &str = "bbx_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// What the fake service does.
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
}

#[derive(Default)]
struct Recorded {
    /// (method, path and query, content type, body) of every request.
    requests: Vec<(String, String, String, String)>,
    batch_sizes: Vec<usize>,
}

struct Shared {
    behaviour: Behaviour,
    failures_left: AtomicU32,
    next_seq: AtomicU64,
    recorded: Mutex<Recorded>,
}

pub(crate) struct TestServer {
    pub url: String,
    shared: Arc<Shared>,
}

impl TestServer {
    pub(crate) async fn start(behaviour: Behaviour) -> Self {
        let shared = Arc::new(Shared {
            failures_left: AtomicU32::new(behaviour.fail_first),
            behaviour,
            next_seq: AtomicU64::new(1),
            recorded: Mutex::default(),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, shared }
    }

    /// A client with fast retries.
    pub(crate) fn client(&self) -> Client {
        Client::builder(&self.url, TOKEN)
            .retry_policy(RetryPolicy {
                initial_backoff: std::time::Duration::from_millis(1),
                max_backoff: std::time::Duration::from_millis(5),
                ..RetryPolicy::default()
            })
            .build()
            .unwrap()
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

fn json_ok(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
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
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_default();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let authed = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    let body = to_bytes(req.into_body(), usize::MAX).await.unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    s.recorded
        .lock()
        .unwrap()
        .requests
        .push((method.clone(), target, ctype.clone(), body.clone()));

    match path.as_str() {
        "/healthz" => return "ok".into_response(),
        "/readyz" => return api_error(503, "unavailable", "not ready", None),
        _ => {}
    }
    if !authed {
        return api_error(401, "unauthenticated", "no valid token", None);
    }
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

    match (method.as_str(), path.as_str()) {
        ("POST", "/v1/events") => ingest(&s, &ctype, &body),
        ("GET", "/v1/entries") => entries(&query),
        ("GET", "/v1/verify") => json_ok(&json!({"ok": true, "entries": 5})),
        ("GET", "/v1/checkpoints/latest") => json_ok(
            &json!({"tenant_id": "acme", "size": 5, "timestamp": "2026-04-14T00:00:00.000Z",
                    "note": "blackbox/0/acme\n5\nAAAA\n"}),
        ),
        ("GET", "/v1/proofs/inclusion") => {
            json_ok(&json!({"type": "blackbox.inclusion_proof.v1", "q": query}))
        }
        ("GET", "/v1/proofs/consistency") => {
            json_ok(&json!({"type": "blackbox.consistency_proof.v1", "q": query}))
        }
        ("POST", "/v1/tokens") => {
            let req: Value = serde_json::from_str(&body).unwrap();
            json_ok(
                &json!({"id": "fedcba9876543210", "token": "bbx_fedcba9876543210_NEWSECRET",
                            "tenant_id": req["tenant_id"], "scopes": req["scopes"],
                            "label": req["label"], "created_ms": 1_776_124_800_000_i64}),
            )
        }
        ("GET", "/v1/tokens") => json_ok(&json!({"tokens": [
            {"id": "0123456789abcdef", "tenant_id": "acme", "scopes": ["admin"], "label": "",
             "created_ms": 1_776_124_800_000_i64, "revoked_ms": null}]})),
        ("DELETE", p) if p.starts_with("/v1/tokens/") => StatusCode::NO_CONTENT.into_response(),
        ("GET", p) if p.starts_with("/v1/entries/") => {
            let id = &p["/v1/entries/".len()..];
            if id == "missing" {
                return api_error(404, "not_found", "no such entry", None);
            }
            json_ok(
                &json!({"tenant_id": "acme", "seq": 1, "entry_hash": "sha256:00",
                            "line": format!("{{\"entry_id\":\"{id}\"}}"), "entry": {"entry_id": id}}),
            )
        }
        _ => api_error(404, "not_found", "no such route", None),
    }
}

fn ingest(s: &Shared, ctype: &str, body: &str) -> Response {
    let events: Vec<Value> = if ctype == "application/x-ndjson" {
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        serde_json::from_str(body).unwrap()
    };
    if let Some(bad) = s.behaviour.refuse_client_seq
        && let Some(i) = events
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
    s.recorded.lock().unwrap().batch_sizes.push(events.len());
    let entries: Vec<Value> = events
        .iter()
        .map(|e| {
            let seq = s.next_seq.fetch_add(1, Ordering::SeqCst);
            json!({"entry_id": format!("id-{}", e["client_seq"]), "seq": seq,
                   "entry_hash": format!("sha256:{seq:064x}")})
        })
        .collect();
    json_ok(&json!({"tenant_id": "acme", "count": entries.len(), "entries": entries}))
}

/// Five entries; `limit` pages them with the offset as cursor.
fn entries(query: &str) -> Response {
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::to_owned)
    };
    let from: usize = param("cursor").map_or(0, |c| c.parse().unwrap());
    let limit: usize = param("limit").map_or(5, |l| l.parse().unwrap());
    let to = (from + limit).min(5);
    let format = param("format").unwrap_or_else(|| "jsonl".into());
    let body: String = if format == "csv" {
        let mut b = String::from("seq,entry_id\n");
        for i in from..to {
            b.push_str(&format!("{},e{i}\n", i + 1));
        }
        b
    } else {
        (from..to)
            .map(|i| format!("{}\n", json!({"seq": i + 1, "entry_id": format!("e{i}")})))
            .collect()
    };
    let mut resp = Response::new(Body::from(body));
    if to < 5 {
        resp.headers_mut()
            .insert("Blackbox-Next-Cursor", to.to_string().parse().unwrap());
    }
    resp
}
