//! The HTTP API through the router (`tower::ServiceExt::oneshot`), against a real store.

// Test helpers panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use blackbox_core::ids::TenantId;
use blackbox_server::config::{Overrides, ServerConfig};
use blackbox_server::tokens::Scopes;
use blackbox_server::{AppState, api};
use serde_json::{Value, json};
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    state: AppState,
}

fn fixture_with(edit: impl FnOnce(&mut ServerConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::load(
        None,
        &Overrides {
            data_dir: Some(dir.path().join("data")),
            rate_limit: Some(0),
            ..Overrides::default()
        },
    )
    .unwrap();
    edit(&mut config);
    let (state, _writer) = blackbox_server::start(config).unwrap();
    Fixture {
        _dir: dir,
        app: api::router(state.clone()),
        state,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

impl Fixture {
    fn token(&self, tenant: Option<&str>, scopes: &str) -> String {
        let t = tenant.map(|t| TenantId::parse(t).unwrap());
        self.state
            .tokens
            .create(t.as_ref(), Scopes::parse(scopes).unwrap(), "test")
            .unwrap()
            .1
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        (status, headers, body)
    }

    async fn get(&self, token: &str, uri: &str) -> (StatusCode, Vec<u8>) {
        let req = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let (s, _, b) = self.call(req).await;
        (s, b)
    }

    async fn get_json(&self, token: &str, uri: &str) -> (StatusCode, Value) {
        let (s, b) = self.get(token, uri).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    async fn post(
        &self,
        token: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let req = Request::post("/v1/events")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap();
        let (s, _, b) = self.call(req).await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }
}

fn event(i: u64) -> Value {
    json!({"agent_id": "moltbot-analyst-07", "session_id": "sess_1", "client_seq": i,
        "timestamp": "2026-04-14T18:01:23.456Z", "event_type": "tool_call", "tool_name": "query_database",
        "args": {"query": format!("SELECT * FROM orders WHERE id = {i}"), "table": "orders"},
        "authorization": {"rbac_role": "analyst", "allowed": true, "policy_matched": "analyst-read"}})
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn ingest_one_an_array_and_ndjson_then_read_back() {
    let f = fixture();
    let t = f.token(Some("acme"), "ingest,read");
    let (s, one) = f.post(&t, "application/json", event(1).to_string()).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["tenant_id"], "acme");
    assert_eq!(one["entries"][0]["seq"], 1);
    let arr = json!([event(2), event(3)]).to_string();
    let (s, two) = f.post(&t, "application/json; charset=utf-8", arr).await;
    assert_eq!(s, StatusCode::OK, "{two}");
    assert_eq!(two["count"], 2);
    assert_eq!(two["entries"][1]["seq"], 3);
    let nd = format!("{}\n\n{}\n", event(4), event(5));
    let (s, nd) = f.post(&t, "application/x-ndjson", nd).await;
    assert_eq!(s, StatusCode::OK, "{nd}");
    assert_eq!(nd["entries"][1]["seq"], 5);

    let (s, body) = f.get(&t, "/v1/entries?tool=query_database").await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(!text.contains("SELECT"), "raw SQL was stored: {text}");
    assert!(text.contains("query_hash"));

    let id = one["entries"][0]["entry_id"].as_str().unwrap();
    let (s, e) = f.get_json(&t, &format!("/v1/entries/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["seq"], 1);
    assert_eq!(e["entry_hash"], one["entries"][0]["entry_hash"]);
    assert_eq!(e["entry"]["payload"]["tool_name"], "query_database");

    let (s, v) = f.get_json(&t, "/v1/verify").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["entries"], 5);
}

#[tokio::test]
async fn pages_follow_the_cursor_and_formats_differ() {
    let f = fixture();
    let t = f.token(Some("acme"), "ingest,read");
    let batch: Vec<Value> = (0..7).map(event).collect();
    let (s, _) = f
        .post(&t, "application/json", Value::Array(batch).to_string())
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut seen = Vec::new();
    let mut uri = "/v1/entries?limit=3&format=json".to_owned();
    for _ in 0..5 {
        let (s, page) = f.get_json(&t, &uri).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for e in page["entries"].as_array().unwrap() {
            seen.push(e["seq"].as_u64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/entries?limit=3&format=json&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    let (s, csv) = f.get(&t, "/v1/entries?format=csv&limit=2").await;
    assert_eq!(s, StatusCode::OK);
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.starts_with("tenant_id,seq,entry_id"), "{csv}");
    assert_eq!(csv.lines().count(), 3);
    let (s, tail) = f.get(&t, "/v1/entries?after_seq=5").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(String::from_utf8(tail).unwrap().lines().count(), 2);
    let (s, e) = f.get_json(&t, "/v1/entries?format=xml").await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
    let (s, e) = f.get_json(&t, "/v1/entries?cursor=zzz").await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
    let (s, e) = f.get_json(&t, "/v1/entries?colour=red").await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
}

#[tokio::test]
async fn tokens_scopes_and_refusals() {
    let f = fixture();
    let ingest = f.token(Some("acme"), "ingest");
    let read = f.token(Some("acme"), "read");
    let req = Request::post("/v1/events")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(event(1).to_string()))
        .unwrap();
    let (s, _, b) = f.call(req).await;
    let b: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    let (s, b) = f
        .post(
            "bbx_0123456789abcdef_nope",
            "application/json",
            event(1).to_string(),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    let (s, b) = f
        .post(&read, "application/json", event(1).to_string())
        .await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, b) = f.get_json(&ingest, "/v1/entries").await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"));
    let (s, b) = f.get_json(&read, "/v1/tokens").await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"));
    // Revoked tokens are refused at once.
    let id = ingest.split('_').nth(1).unwrap();
    assert!(f.state.tokens.revoke(id).unwrap());
    let (s, _) = f
        .post(&ingest, "application/json", event(1).to_string())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Admin tokens manage tokens over the API.
    let admin = f.token(None, "admin");
    let req = Request::post("/v1/tokens")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"tenant_id":"beta","scopes":["ingest"],"label":"x"}"#,
        ))
        .unwrap();
    let (s, _, b) = f.call(req).await;
    assert_eq!(s, StatusCode::CREATED);
    let created: Value = serde_json::from_slice(&b).unwrap();
    let new = created["token"].as_str().unwrap();
    let (s, _) = f.post(new, "application/json", event(1).to_string()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, list) = f.get_json(&admin, "/v1/tokens").await;
    assert_eq!(s, StatusCode::OK);
    let text = list.to_string();
    assert!(!text.contains(&new[21..]), "a secret is listed");
    // Every refusal above is in the audit log.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (s, denied) = f
        .get(
            &admin,
            "/v1/entries?tenant_id=_blackbox&event_type=access_denied",
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let denied = String::from_utf8(denied).unwrap();
    // Two unauthenticated refusals of the same kind within a second: one record.
    assert!(!denied.is_empty(), "{denied}");
    let (_, acme) = f
        .get(
            &admin,
            "/v1/entries?tenant_id=acme&event_type=access_denied",
        )
        .await;
    let acme = String::from_utf8(acme).unwrap();
    assert!(acme.contains("\"reason\":\"forbidden\""), "{acme}");
    assert!(
        !acme.contains("bbx_"),
        "a token leaked into the log: {acme}"
    );
}

#[tokio::test]
async fn tenants_are_isolated_on_every_endpoint() {
    let f = fixture();
    let a = f.token(Some("tenant_a"), "ingest,read");
    let b = f.token(Some("tenant_b"), "ingest,read");
    let mine = |i| {
        let mut e = event(i);
        e["agent_id"] = "agent-of-a".into();
        e
    };
    let (_, wa) = f
        .post(
            &a,
            "application/json",
            json!([mine(1), mine(2)]).to_string(),
        )
        .await;
    let (_, _) = f.post(&b, "application/json", event(9).to_string()).await;
    let a_id = wa["entries"][0]["entry_id"].as_str().unwrap();
    // B sees none of A's entries, by any endpoint or filter.
    for uri in [
        "/v1/entries".to_owned(),
        "/v1/entries?format=json".to_owned(),
        "/v1/entries?agent_id=agent-of-a".to_owned(),
        "/v1/entries?after_seq=0".to_owned(),
        format!("/v1/entries/{a_id}"),
        format!("/v1/proofs/inclusion?entry_id={a_id}"),
    ] {
        let (s, body) = f.get(&b, &uri).await;
        let text = String::from_utf8(body).unwrap();
        // A 404 may repeat the id asked for; nothing may show A's data.
        assert!(
            !text.contains("tenant_a") && !text.contains("agent-of-a"),
            "{uri}: {text}"
        );
        assert!(
            s == StatusCode::NOT_FOUND || (s == StatusCode::OK && !text.contains(a_id)),
            "{uri}: {s} {text}"
        );
    }
    for uri in [
        "/v1/entries?tenant_id=tenant_a",
        "/v1/verify?tenant_id=tenant_a",
        "/v1/checkpoints/latest?tenant_id=tenant_a",
        "/v1/proofs/consistency?tenant_id=tenant_a&from_size=1",
        "/v1/overview?tenant_id=tenant_a",
    ] {
        let (s, v) = f.get_json(&b, uri).await;
        assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{uri}");
    }
    // The overview: B's own tenant only; A's shows A's two entries and agent.
    let (s, v) = f.get_json(&b, "/v1/overview").await;
    assert_eq!(s, StatusCode::OK);
    let tenants = v["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "{v}");
    assert_eq!(tenants[0]["tenant_id"], "tenant_b");
    // Its event and the refusals above, as its chain holds them.
    let (_, report) = f.get_json(&b, "/v1/verify").await;
    assert_eq!(tenants[0]["entries"], report["entries"], "{report}");
    assert!(
        v["key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let (_, v) = f.get_json(&a, "/v1/overview").await;
    assert_eq!(v["tenants"][0]["tenant_id"], "tenant_a");
    assert_eq!(v["tenants"][0]["entries"], 2);
    assert_eq!(v["tenants"][0]["agents"], 1);
    assert_eq!(v["tenants"][0]["alerts_open"], 0);
    let (s, k) = f.get_json(&b, "/v1/checkpoints/key").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(k["fingerprint"], v["key_fingerprint"]);
    assert!(k["verifier_key"].as_str().unwrap().contains('+'), "{k}");
    let (s, v) = f.get_json(&b, "/v1/verify").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["chains"].as_array().unwrap().len(), 1);
    assert_eq!(v["chains"][0]["tenant_id"], "tenant_b");
    // A body naming another tenant is refused whole: nothing is written.
    let mut ev = event(3);
    ev["tenant_id"] = "tenant_a".into();
    let (s, e) = f
        .post(&b, "application/json", json!([event(4), ev]).to_string())
        .await;
    assert_eq!((s, code(&e)), (StatusCode::FORBIDDEN, "forbidden"));
    assert_eq!(e["error"]["index"], 1);
    let (_, v) = f.get_json(&a, "/v1/verify").await;
    assert_eq!(v["entries"], 2);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let f = fixture_with(|c| {
        c.body_limit = 4096;
        c.max_events_per_request = 3;
    });
    let t = f.token(Some("acme"), "ingest,read");
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "text/plain",
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "application/json",
            b"{\"agent_id\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "application/json",
            vec![b'{', 0xff, b'}'],
            StatusCode::BAD_REQUEST,
            "invalid_utf8",
        ),
        (
            "application/json",
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "application/x-ndjson",
            b"\n\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "empty_body",
        ),
        (
            "application/json",
            json!([event(1), {"agent_id": "a"}])
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "application/json",
            json!([event(1), event(2), event(3), event(4)])
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "too_many_events",
        ),
        (
            "application/json",
            format!("[{}]", "1,".repeat(3000) + "1").into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "application/json",
            b"[1]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "application/json",
            json!({"agent_id":"a","session_id":"s","event_type":"x","seq":5})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
    ];
    for (ct, body, status, want) in cases {
        let (s, e) = f.post(&t, ct, body.clone()).await;
        assert_eq!(
            (s, code(&e)),
            (status, want),
            "{ct} {:?}: {e}",
            String::from_utf8_lossy(&body)
        );
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
    }
    let (s, e) = f
        .post(
            &t,
            "application/json",
            json!([event(1), {"agent_id": "a"}]).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["index"], 1);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("event 1: "),
        "{e}"
    );
    // Nothing of any refused request was written.
    let (_, v) = f.get_json(&t, "/v1/verify").await;
    assert_eq!(v["entries"], 0, "{v}");
    // Unknown routes and methods are JSON errors too.
    let (s, e) = f.get_json(&t, "/v2/nothing").await;
    assert_eq!((s, code(&e)), (StatusCode::NOT_FOUND, "not_found"));
    let req = Request::delete("/v1/events").body(Body::empty()).unwrap();
    let (s, _, _) = f.call(req).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let f = fixture_with(|c| {
        c.rate_per_second = 1;
        c.rate_burst = 2;
    });
    let state = f.state.clone();
    let limited = blackbox_server::AppState {
        limiter: std::sync::Arc::new(api::RateLimiter::new(1, 2)),
        ..state
    };
    let app = api::router(limited);
    let t = f.token(Some("acme"), "read");
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..4 {
        let req = Request::get("/v1/entries")
            .header(header::AUTHORIZATION, format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        statuses.push(resp.status());
        if let Some(v) = resp.headers().get(header::RETRY_AFTER) {
            retry = Some(v.to_str().unwrap().to_owned());
        }
    }
    assert_eq!(statuses[..2], [StatusCode::OK, StatusCode::OK]);
    assert_eq!(statuses[3], StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry.as_deref(), Some("1"));
}

#[tokio::test]
async fn checkpoints_and_proofs_verify_with_the_public_key() {
    let f = fixture();
    let t = f.token(Some("acme"), "ingest,read");
    let (_, w) = f
        .post(
            &t,
            "application/json",
            json!([event(1), event(2), event(3)]).to_string(),
        )
        .await;
    let (s, cp) = f.get_json(&t, "/v1/checkpoints/latest").await;
    assert_eq!(s, StatusCode::OK, "{cp}");
    let size = cp["size"].as_u64().unwrap();
    assert!(size >= 3, "{cp}");
    // Signing on demand needs an admin token, and then covers the whole chain.
    let sign = |token: &str| {
        Request::post("/v1/checkpoints?tenant_id=acme")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (s, _, body) = f.call(sign(&t)).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let admin = f.token(None, "admin");
    let (s, _, body) = f.call(sign(&admin)).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let signed: Value = serde_json::from_slice(&body).unwrap();
    // It covers every entry of the chain (the refused request above is recorded too), and a
    // second request signs nothing new.
    let (_, head) = f
        .get_json(&admin, "/v1/entries?tenant_id=acme&limit=1000")
        .await;
    let entries = head["entries"].as_array().map_or(0, Vec::len) as u64;
    assert!(
        signed["size"].as_u64().unwrap() >= entries.max(3),
        "{signed} {head}"
    );
    let (s, _, again) = f.call(sign(&admin)).await;
    assert_eq!(s, StatusCode::OK);
    let again: Value = serde_json::from_slice(&again).unwrap();
    assert_eq!(again["note"], signed["note"]);
    let id = w["entries"][1]["entry_id"].as_str().unwrap();
    let (s, proof) = f
        .get(&t, &format!("/v1/proofs/inclusion?entry_id={id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&proof));
    let proven = blackbox_core::proof::verify_proof_document(
        std::str::from_utf8(&proof).unwrap(),
        &f.state.verifier,
    )
    .unwrap();
    assert!(format!("{proven:?}").contains("acme"));
    // A second batch, a new checkpoint, and a consistency proof between the two.
    let (_, _) = f.post(&t, "application/json", event(4).to_string()).await;
    let (s, proof) = f
        .get(&t, &format!("/v1/proofs/consistency?from_size={size}"))
        .await;
    if s == StatusCode::OK {
        blackbox_core::proof::verify_proof_document(
            std::str::from_utf8(&proof).unwrap(),
            &f.state.verifier,
        )
        .unwrap();
    } else {
        assert_eq!(s, StatusCode::NOT_FOUND);
    }
    let (s, e) = f.get_json(&t, "/v1/proofs/consistency?from_size=999").await;
    assert_eq!((s, code(&e)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, e) = f.get_json(&t, "/v1/proofs/inclusion?entry_id=nope").await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
}

#[tokio::test]
async fn operations_endpoints_and_the_openapi_document() {
    let f = fixture();
    let t = f.token(Some("acme"), "ingest");
    let (s, _) = f.post(&t, "application/json", event(1).to_string()).await;
    assert_eq!(s, StatusCode::OK);
    for (uri, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let (s, _, b) = f.call(Request::get(uri).body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(String::from_utf8(b).unwrap().starts_with(want));
    }
    let (s, _, _) = f
        .call(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "metrics name tenants: a token is needed"
    );
    let admin = f.token(None, "admin");
    let (s, m) = f.get(&admin, "/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let m = String::from_utf8(m).unwrap();
    for name in [
        "blackbox_ingest_events_total 1",
        "blackbox_ingest_latency_seconds_bucket",
        "blackbox_commit_batch_events_bucket",
        "blackbox_chain_entries{tenant=\"acme\"} 1",
        "blackbox_http_requests_total{route=\"/v1/events\",status=\"200\"} 1",
    ] {
        assert!(m.contains(name), "{name} missing from:\n{m}");
    }
    assert!(!m.contains("bbx_"));
    let (s, _, doc) = f
        .call(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    // Every route the router serves is documented (src/api/mod.rs lists them).
    let src = include_str!("../src/api/mod.rs");
    for line in src
        .lines()
        .filter(|l| l.trim_start().starts_with(".route(\""))
    {
        // `{*rest}` (a path of several segments) is `{rest}` in OpenAPI's templates.
        let route = line.split('"').nth(1).unwrap().replace("{*", "{");
        assert!(
            paths.iter().any(|p| **p == route),
            "{route} is not in docs/openapi.json"
        );
    }
    assert_eq!(paths.len(), src.matches(".route(\"").count());
}

mod no_input_makes_a_5xx {
    use super::*;
    use proptest::prelude::*;

    fn body() -> impl Strategy<Value = Vec<u8>> {
        let valid = json!([event(1), event(2)]).to_string().into_bytes();
        let decide = json!({"agent_id": "a1", "session_id": "s", "tool_name": "t",
            "args": {"q": "ignore previous instructions", "n": [1, 2.5, null]}, "agent_role": "r",
            "client_seq": 3, "tenant_id": "acme", "reason": "x"})
        .to_string()
        .into_bytes();
        prop_oneof![
            // A decision request (or an agent action) with a few bytes changed or cut.
            (
                prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                any::<prop::sample::Index>()
            )
                .prop_map(move |(edits, cut)| {
                    let mut b = decide.clone();
                    for (i, v) in edits {
                        let at = i.index(b.len());
                        b[at] = v;
                    }
                    b.truncate(cut.index(b.len() + 1));
                    b
                }),
            prop::collection::vec(any::<u8>(), 0..300),
            // A valid batch with a few bytes changed, cut, or repeated.
            (
                prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..5),
                any::<prop::sample::Index>()
            )
                .prop_map(move |(edits, cut)| {
                    let mut b = valid.clone();
                    for (i, v) in edits {
                        let at = i.index(b.len());
                        b[at] = v;
                    }
                    b.truncate(cut.index(b.len() + 1));
                    b
                }),
            // An erasure request with a few bytes changed or cut.
            (
                prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
                any::<prop::sample::Index>()
            )
                .prop_map(|(edits, cut)| {
                    let mut b =
                        br#"{"data_subject":"ds_1","reason":"GDPR","ticket":"T-1"}"#.to_vec();
                    for (i, v) in edits {
                        let at = i.index(b.len());
                        b[at] = v;
                    }
                    b.truncate(cut.index(b.len() + 1));
                    b
                }),
            Just(b"[".repeat(200)),
            Just(format!("{}1{}", "[".repeat(129), "]".repeat(129)).into_bytes()),
            Just(
                br#"{"agent_id":"a","session_id":"s","event_type":"t","payload":{"n":1e999}}"#
                    .to_vec()
            ),
        ]
    }

    fn uri() -> impl Strategy<Value = String> {
        let paths = prop_oneof![
            Just("/v1/events"),
            Just("/v1/entries"),
            Just("/v1/entries/019d8d26-717b-7111-9111-111111111111"),
            Just("/v1/entries/%ff"),
            Just("/v1/verify"),
            Just("/v1/checkpoints/latest"),
            Just("/v1/proofs/inclusion"),
            Just("/v1/proofs/consistency"),
            Just("/v1/tokens"),
            Just("/v1/tokens/x"),
            Just("/v1/decide"),
            Just("/v1/agents"),
            Just("/v1/agents/a1/pause"),
            Just("/v1/agents/a1/resume"),
            Just("/v1/agents/%ff/pause"),
            Just("/v1/erasures"),
            Just("/v1/retention/run"),
        ];
        let query = prop_oneof![
            Just(String::new()),
            // Only what a URI may hold (hyper refuses the rest before any handler runs).
            "[a-z_]{1,10}=[a-zA-Z0-9%._~-]{0,12}".prop_map(|q| format!("?{q}")),
            Just("?limit=0".to_owned()),
            Just("?limit=99999999999999999999".to_owned()),
            Just("?start=2026-02-30&end=x".to_owned()),
            Just("?from_size=18446744073709551615&to_size=1".to_owned()),
            Just("?after_seq=18446744073709551615".to_owned()),
            Just("?entry_id=019d8d26-717b-7111-9111-111111111111".to_owned()),
            Just("?cursor=MTIzCjQKYQ".to_owned()),
        ];
        (paths, query).prop_map(|(p, q)| format!("{p}{q}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn handlers_answer_every_request_without_a_server_error(
            method in prop_oneof![Just("GET"), Just("POST"), Just("DELETE"), Just("PUT")],
            uri in uri(),
            ct in prop_oneof![Just("application/json"), Just("application/x-ndjson"), Just("text/plain"), Just("application/json; charset=latin1"), Just("")],
            auth in prop_oneof![Just(0u8), Just(1), Just(2), Just(3)],
            body in body(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                static F: std::sync::OnceLock<(Fixture, [String; 3])> = std::sync::OnceLock::new();
                let (f, tokens) = F.get_or_init(|| {
                    let f = fixture();
                    let t = [f.token(Some("acme"), "ingest"), f.token(Some("acme"), "read"), f.token(None, "admin")];
                    (f, t)
                });
                let mut req = Request::builder().method(method).uri(&uri);
                if auth > 0 {
                    req = req.header(header::AUTHORIZATION, format!("Bearer {}", tokens[usize::from(auth - 1)]));
                }
                if !ct.is_empty() {
                    req = req.header(header::CONTENT_TYPE, ct);
                }
                let (s, _, b) = f.call(req.body(Body::from(body)).unwrap()).await;
                assert!(s.as_u16() < 500, "{method} {uri} -> {s}: {}", String::from_utf8_lossy(&b));
                if !s.is_success() && s != StatusCode::NO_CONTENT {
                    let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                    assert!(v["error"]["code"].is_string(), "{method} {uri} -> {s}: not a JSON error: {}", String::from_utf8_lossy(&b));
                }
            });
        }
    }
}

#[tokio::test]
async fn a_flood_of_refusals_is_summarised_not_written_one_by_one() {
    let f = fixture();
    for _ in 0..200 {
        let req = Request::get("/v1/entries").body(Body::empty()).unwrap();
        let (s, _, _) = f.call(req).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    // The next record written carries the count of those not written on their own.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let req = Request::get("/v1/entries").body(Body::empty()).unwrap();
    f.call(req).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let admin = f.token(None, "admin");
    let (_, body) = f.get(&admin, "/v1/entries?tenant_id=_blackbox").await;
    let text = String::from_utf8(body).unwrap();
    // Every refusal is accounted for: written on its own, or counted in a summary record.
    let mut written = 0u64;
    let mut counted = 0u64;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        match v["payload"]["dropped_count"].as_u64() {
            Some(n) => counted += n,
            None => written += 1,
        }
    }
    assert!(
        written <= 5,
        "{written} refusals written one by one:\n{text}"
    );
    assert_eq!(written + counted, 201, "{text}");
    // The reserved tenant cannot be given to a token.
    let t = TenantId::parse(blackbox_server::SYSTEM_TENANT).unwrap();
    assert!(
        f.state
            .tokens
            .create(Some(&t), Scopes::parse("read").unwrap(), "")
            .is_err()
    );
}

#[tokio::test]
async fn a_huge_array_of_tiny_items_is_refused_early() {
    let f = fixture_with(|c| c.max_events_per_request = 10);
    let t = f.token(Some("acme"), "ingest");
    let body = format!("[{}0]", "0,".repeat(1_000_000));
    let (s, e) = f.post(&t, "application/json", body).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::BAD_REQUEST, "too_many_events"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn erasure_through_the_service_with_a_mirror() {
    const GONE: &str = "ds_9c2e4a6b8d0f1e3a5c7b9d1f3e5a7c9b1d3f";
    let mirror_dir = tempfile::tempdir().unwrap();
    let mirror = mirror_dir.path().join("audit.jsonl");
    let m = mirror.clone();
    let f = fixture_with(move |c| c.mirror = Some(m));
    let ingest = f.token(Some("acme"), "ingest");
    let read = f.token(Some("acme"), "read");
    let admin = f.token(None, "admin");
    let events: Vec<Value> = (0..6)
        .map(|i| {
            let mut e = event(i);
            if i % 2 == 0 {
                e["data_subjects"] = json!([{"id": GONE, "category": "customer"}]);
            }
            e
        })
        .collect();
    let (s, _) = f
        .post(&ingest, "application/json", json!(events).to_string())
        .await;
    assert_eq!(s, StatusCode::OK);
    let erase = |token: &str, body: Value| {
        Request::post("/v1/erasures")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let body = json!({"data_subject": GONE, "reason": "GDPR Art. 17", "ticket": "DSR-7"});
    // Ingest and read tokens are refused, and the refusals are recorded.
    for t in [&ingest, &read] {
        let (s, _, b) = f.call(erase(t, body.clone())).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&b));
    }
    let (s, _, _) = f
        .call(erase(
            &admin,
            json!({"data_subject": GONE, "reason": "", "ticket": "t"}),
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, b) = f.call(erase(&admin, body.clone())).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let text = String::from_utf8(b).unwrap();
    assert!(!text.contains(GONE), "the answer names the subject: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["redacted"], 3, "{v}");
    assert_eq!(v["chains"][0]["tenant_id"], "acme");
    assert_eq!(v["chains"][0]["markers"].as_array().unwrap().len(), 1);
    assert_eq!(v["purge"]["complete"], true, "{v}");
    assert_eq!(v["mirror_files"][0]["personal_records_removed"], 3, "{v}");

    let (s, ver) = f.get_json(&admin, "/v1/verify?tenant_id=acme").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ver["status"], "ok", "{ver}");
    assert_eq!(
        (ver["redacted"].as_u64(), ver["erasure_markers"].as_u64()),
        (Some(3), Some(1)),
        "{ver}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, denied) = f
        .get(
            &admin,
            "/v1/entries?tenant_id=acme&event_type=access_denied",
        )
        .await;
    let denied = String::from_utf8(denied).unwrap();
    assert!(denied.contains("/v1/erasures"), "{denied}");
    // No byte of the id in the mirror or anywhere in the data directory.
    let holds = |p: &std::path::Path| {
        let b = std::fs::read(p).unwrap();
        b.windows(GONE.len()).any(|w| w == GONE.as_bytes())
    };
    assert!(!holds(&mirror), "the mirror still holds the id");
    let mut stack = vec![f._dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                assert!(!holds(&p), "{} still holds the id", p.display());
            }
        }
    }
}

#[tokio::test]
async fn retention_runs_on_request_for_admins_only() {
    let f = fixture();
    let ingest = f.token(Some("acme"), "ingest");
    let admin = f.token(None, "admin");
    let (s, _) = f
        .post(
            &ingest,
            "application/json",
            json!([event(0), event(1)]).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let run = |token: &str| {
        Request::post("/v1/retention/run")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (s, _, _) = f.call(run(&ingest)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, b) = f.call(run(&admin)).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).unwrap();
    // Everything was written just now: inside the default 365-day hot window.
    assert_eq!(v["report"]["archived"], json!([]), "{v}");
    assert_eq!(v["report"]["deleted"], json!([]), "{v}");
    assert_eq!(v["report"]["dry_run"], false, "{v}");
    // The archive directory exists (created on first use) and the chain still verifies.
    assert!(f._dir.path().join("data/archive").is_dir() || f._dir.path().join("archive").is_dir());
    let (s, ver) = f.get_json(&admin, "/v1/verify?tenant_id=acme").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ver["status"], "ok", "{ver}");
}

#[tokio::test]
async fn a_slice_proves_what_one_agent_or_trace_did_and_trace_filters_page() {
    let f = fixture();
    let acme = f.token(Some("acme"), "ingest,read");
    let globex = f.token(Some("globex"), "ingest,read");
    let admin = f.token(None, "admin");
    // Claimed an hour ago (within the clock's bounds), written now.
    let hour_ago = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
        - 3_600_000;
    let at = |ms: i64| blackbox_core::entry::format_timestamp(ms).unwrap();
    let traced = |i: u64, agent: &str, trace: &str| {
        json!({"agent_id": agent, "session_id": "sess_t", "client_seq": i,
            "timestamp": at(hour_ago + i64::try_from(i).unwrap() * 60_000), "event_type": "llm_request",
            "payload": {"model": "gpt-4o", "trace_id": trace, "span_id": format!("{i:016x}")}})
    };
    let t1 = "4bf92f3577b34da6a3ce929d0e0e4736";
    let t2 = "00f067aa0ba902b700f067aa0ba902b7";
    let batch: Vec<Value> = (0..9)
        .map(|i| {
            traced(
                i,
                if i % 3 == 0 { "a2" } else { "a1" },
                if i < 5 { t1 } else { t2 },
            )
        })
        .collect();
    let (s, w) = f
        .post(&acme, "application/json", Value::Array(batch).to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    let (s, _) = f
        .post(&globex, "application/json", traced(1, "a1", t1).to_string())
        .await;
    assert_eq!(s, StatusCode::OK);
    let sign = Request::post("/v1/checkpoints?tenant_id=acme")
        .header("authorization", format!("Bearer {admin}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.call(sign).await.0, StatusCode::OK);

    // Agent a1's slice: its six entries, proven with the public key alone.
    let (s, body) = f.get(&acme, "/v1/proofs/slice?agent_id=a1").await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let text = String::from_utf8(body).unwrap();
    let proven = blackbox_core::proof::verify_proof_document(&text, &f.state.verifier).unwrap();
    assert!(
        matches!(proven, blackbox_core::proof::Proven::Slice { entries: 6, ref tenant_id, .. } if tenant_id == "acme"),
        "{proven:?}"
    );
    // A trace within a window, with dates as bounds: written as full timestamps.
    let (s, v) = f
        .get_json(
            &acme,
            &format!(
                "/v1/proofs/slice?trace_id={t1}&start={}&end={}",
                &at(hour_ago)[..10],
                at(hour_ago + 3 * 60_000)
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["selection"]["start"].as_str().unwrap(),
        format!("{}T00:00:00.000Z", &at(hour_ago)[..10])
    );
    assert_eq!(v["entries"].as_array().unwrap().len(), 4, "{v}");
    let (s, v) = f
        .get_json(&acme, "/v1/proofs/slice?agent_id=a1&limit=2")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["complete"], false);
    // Nothing selected, or a bad bound: 400. Another tenant's chain: 403; its own holds no a1
    // entry of acme.
    for uri in [
        "/v1/proofs/slice",
        "/v1/proofs/slice?agent_id=a1&start=yesterday",
        "/v1/proofs/slice?agent_id=a1&limit=0",
    ] {
        let (s, e) = f.get_json(&acme, uri).await;
        assert_eq!(
            (s, code(&e)),
            (StatusCode::BAD_REQUEST, "invalid_parameter"),
            "{uri}"
        );
    }
    let (s, _) = f
        .get_json(&globex, "/v1/proofs/slice?agent_id=a1&tenant_id=acme")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, body) = f.get(&globex, "/v1/proofs/slice?agent_id=a1").await;
    assert!(!String::from_utf8_lossy(&body).contains("\\\"acme\\\""));

    // The trace filter of /v1/entries: exactly the trace's entries, in pages.
    let (s, v) = f
        .get_json(
            &acme,
            &format!("/v1/entries?trace_id={t2}&format=json&limit=3"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let page1 = v["entries"].as_array().unwrap().clone();
    assert_eq!(page1.len(), 3);
    assert!(page1.iter().all(|e| e["payload"]["trace_id"] == t2));
    let cursor = v["next_cursor"].as_str().unwrap();
    let (_, v) = f
        .get_json(
            &acme,
            &format!("/v1/entries?trace_id={t2}&format=json&limit=3&cursor={cursor}"),
        )
        .await;
    let page2 = v["entries"].as_array().unwrap();
    assert_eq!(page2.len(), 1, "{v}");
    assert_eq!(page2[0]["payload"]["trace_id"], t2);
    let (_, b) = f
        .get(&acme, &format!("/v1/entries?trace_id={t1}&format=csv"))
        .await;
    assert_eq!(String::from_utf8(b).unwrap().lines().count(), 1 + 5);
    let (s, e) = f
        .get_json(&acme, &format!("/v1/entries?trace_id={t1}&after_seq=0"))
        .await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );

    // Who wrote it, and the writer's time, as `blackbox query --origin --time written`.
    let (_, v) = f
        .get_json(&acme, "/v1/entries?origin=token&format=json&limit=100")
        .await;
    let rows = v["entries"].as_array().unwrap();
    assert_eq!(rows.len(), 9, "{v}");
    assert!(rows.iter().all(|e| e["origin"]["kind"] == "token"), "{v}");
    let (_, v) = f
        .get_json(&acme, "/v1/entries?origin=service&format=json&limit=100")
        .await;
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["origin"]["kind"] == "service"),
        "{v}"
    );
    // The agent claimed times from an hour ago; the service wrote them now.
    let window = format!(
        "start={}&end={}&format=json&limit=100",
        at(hour_ago - 60_000),
        at(hour_ago + 30 * 60_000)
    );
    let (_, v) = f.get_json(&acme, &format!("/v1/entries?{window}")).await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 9, "{v}");
    let (_, v) = f
        .get_json(&acme, &format!("/v1/entries?time=written&{window}"))
        .await;
    assert_eq!(v["entries"], json!([]), "{v}");
    // Verification with its progress streamed: NDJSON, the report last.
    let (s, body) = f.get(&acme, "/v1/verify?progress=true").await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines.last().unwrap();
    assert_eq!(last["report"]["status"], "ok", "{text}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l["checked"].is_u64()),
        "{text}"
    );
    let (_, whole) = f.get_json(&acme, "/v1/verify").await;
    assert_eq!(last["report"]["entries"], whole["entries"]);
    for uri in [
        "/v1/entries?origin=agents",
        "/v1/entries?time=sideways",
        "/v1/verify?progress=maybe",
    ] {
        let (s, e) = f.get_json(&acme, uri).await;
        assert_eq!(
            (s, code(&e)),
            (StatusCode::BAD_REQUEST, "invalid_parameter"),
            "{uri}"
        );
    }
}
