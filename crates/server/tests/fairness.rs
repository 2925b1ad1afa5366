//! Fair shares through the router: a tenant at its part is refused (429) while another tenant,
//! and paged reads, are answered (docs/API.md, "Limits and fairness"). The end-to-end tests with
//! a real `blackbox serve` are in crates/cli/tests/fairness.rs.

// Test helpers panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use blackbox_core::ids::TenantId;
use blackbox_server::config::{Overrides, ServerConfig};
use blackbox_server::limits::ShareKey;
use blackbox_server::tokens::Scopes;
use serde_json::Value;
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    app: axum::Router,
    state: blackbox_server::AppState,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::load(
        None,
        &Overrides {
            data_dir: Some(dir.path().join("data")),
            rate_limit: Some(0),
            ..Overrides::default()
        },
    )
    .unwrap();
    let (state, _writer) = blackbox_server::start(config).unwrap();
    Fixture {
        _dir: dir,
        app: blackbox_server::api::router(state.clone()),
        state,
    }
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

    async fn call(
        &self,
        method: &str,
        token: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, Option<String>, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let retry = resp
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            retry,
            serde_json::from_slice(&b).unwrap_or(Value::Null),
        )
    }
}

fn event() -> String {
    r#"{"agent_id":"a-1","session_id":"s-1","event_type":"tool_call","tool_name":"t","args":{}}"#
        .to_owned()
}

fn tenant(t: &str) -> ShareKey {
    ShareKey::Tenant(t.to_owned())
}

#[tokio::test]
async fn a_tenant_at_its_part_of_expensive_reads_gets_429_and_another_is_answered() {
    let f = fixture();
    let a = f.token(Some("tenant_a"), "ingest,read");
    let b = f.token(Some("tenant_b"), "ingest,read");
    let admin = f.token(None, "admin");
    for t in [&a, &b] {
        let (s, _, v) = f.call("POST", t, "/v1/events", &event()).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // Tenant A runs two expensive reads (the most one tenant may with the defaults).
    let held: Vec<_> = (0..2)
        .map(|_| {
            f.state
                .heavy_reads
                .try_take(&tenant("tenant_a"), 1)
                .unwrap()
        })
        .collect();
    for uri in [
        "/v1/verify",
        "/v1/proofs/consistency?from_size=1",
        "/v1/exports?standard=soc2&control=CC7.2&output=e.pdf",
    ] {
        let (s, retry, v) = f.call("GET", &a, uri, "").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{uri}: {v}");
        assert_eq!(v["error"]["code"], "tenant_busy", "{uri}: {v}");
        assert_eq!(retry.as_deref(), Some("2"), "{uri}");
    }
    let (s, _, v) = f.call("GET", &b, "/v1/verify", "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // An admin token counts under its own name, even for tenant_a's chain.
    let (s, _, v) = f
        .call("GET", &admin, "/v1/verify?tenant_id=tenant_a", "")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    drop(held);
    let (s, _, v) = f.call("GET", &a, "/v1/verify", "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let m = f.state.metrics.encode();
    assert!(
        m.contains(r#"blackbox_refused_requests_total{tenant="tenant_a",reason="tenant_busy"} 3"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_tenant_at_its_part_of_bytes_or_streams_gets_429_and_another_is_answered() {
    let f = fixture();
    let a = f.token(Some("tenant_a"), "ingest,read");
    let b = f.token(Some("tenant_b"), "ingest,read");
    // Tenant A's bodies in flight fill its part (64 MiB).
    let held = f
        .state
        .ingest_bytes
        .try_take(&tenant("tenant_a"), 64 << 20)
        .unwrap();
    let (s, retry, v) = f.call("POST", &a, "/v1/events", &event()).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "tenant_busy", "{v}");
    assert_eq!(retry.as_deref(), Some("1"));
    let decide = r#"{"agent_id":"a-1","session_id":"s-1","tool_name":"t","args":{}}"#;
    let (s, _, v) = f.call("POST", &a, "/v1/decide", decide).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "decide counts too: {v}");
    let (s, _, v) = f.call("POST", &b, "/v1/events", &event()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    drop(held);
    let (s, _, v) = f.call("POST", &a, "/v1/events", &event()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Tenant A reads 16 unpaged answers: the 17th is refused, a page is not.
    let streams: Vec<_> = (0..16)
        .map(|_| f.state.streams.try_take(&tenant("tenant_a"), 1).unwrap())
        .collect();
    let (s, _, v) = f.call("GET", &a, "/v1/entries", "").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("limit"),
        "{v}"
    );
    let (s, _, _) = f.call("GET", &a, "/v1/entries?limit=10", "").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = f.call("GET", &b, "/v1/entries", "").await;
    assert_eq!(s, StatusCode::OK);
    drop(streams);
    let (s, _, _) = f.call("GET", &a, "/v1/entries", "").await;
    assert_eq!(s, StatusCode::OK);
}
