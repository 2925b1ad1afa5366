//! The OpenAPI document against the real router: every route of the document is called
//! (through `tower::ServiceExt::oneshot`, against a real store), and every answer's status is
//! documented for that route and its JSON body validates against the documented schema. The
//! document itself is generated from the API types (crates/api), so this checks that the
//! handlers answer with those types and that the route table lists what the router serves.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use blackbox_core::ids::TenantId;
use blackbox_server::config::{Overrides, ServerConfig};
use blackbox_server::tokens::Scopes;
use blackbox_server::{AppState, api};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const RULES: &str = r#"
anomaly_detection:
  rules:
    - name: prompt_injection_in_tool_args
      condition:
        match_patterns: ["ignore previous instructions"]
      action: block_and_alert
"#;

struct Service {
    _dir: tempfile::TempDir,
    app: Router,
    state: AppState,
    doc: Value,
    /// (method, route template) of every call made.
    called: BTreeSet<(String, String)>,
}

impl Service {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        let config = ServerConfig::load(
            None,
            &Overrides {
                data_dir: Some(dir.path().join("data")),
                rate_limit: Some(0),
                rules: Some(dir.path().join("rules.yaml")),
                ..Overrides::default()
            },
        )
        .unwrap();
        let (state, _writer) = blackbox_server::start(config).unwrap();
        std::fs::write(
            dir.path().join("data/export.toml"),
            blackbox_export::config::EXAMPLE,
        )
        .unwrap();
        Self {
            _dir: dir,
            app: api::router(state.clone()),
            state,
            doc: blackbox_api::openapi::document(),
            called: BTreeSet::new(),
        }
    }

    fn token(&self, tenant: Option<&str>, scopes: &str) -> String {
        let t = tenant.map(|t| TenantId::parse(t).unwrap());
        self.state
            .tokens
            .create(t.as_ref(), Scopes::parse(scopes).unwrap(), "test")
            .unwrap()
            .1
    }

    /// Calls `uri` (documented as `route`), checks the answer against the document, and returns
    /// its status and JSON body (`Null` for other bodies).
    async fn call(
        &mut self,
        method: Method,
        route: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method.clone()).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let m = method.as_str().to_ascii_lowercase();
        self.called.insert((m.clone(), route.to_owned()));
        let op = &self.doc["paths"][route][&m];
        assert!(op.is_object(), "{method} {route} is not in the document");
        let mut documented = op["responses"][status.as_str()].clone();
        assert!(
            documented.is_object(),
            "{method} {uri}: status {status} is not documented for {route}"
        );
        if let Some(r) = documented["$ref"].as_str() {
            documented = self.doc.pointer(&r[1..]).unwrap().clone();
        }
        let mut json_body = Value::Null;
        if let Some(ct) = content_type.filter(|_| !bytes.is_empty()) {
            let schema = &documented["content"][&ct]["schema"];
            assert!(
                schema.is_object(),
                "{method} {uri}: {status} answers {ct}, which is not documented"
            );
            if ct == "application/json" {
                json_body = serde_json::from_slice(&bytes).unwrap();
                if let Err(e) = blackbox_api::schema_check::check(&self.doc, schema, &json_body) {
                    panic!(
                        "{method} {uri}: {status}: the answer does not match the document: {e}\n{json_body}"
                    );
                }
            }
        }
        (status, json_body)
    }
}

fn event(i: u64, agent: &str) -> Value {
    json!({"agent_id": agent, "session_id": "sess_1", "client_seq": i,
        "event_type": "tool_call", "tool_name": "query_database",
        "args": {"query": format!("SELECT * FROM orders WHERE id = {i}")},
        "data_subjects": [{"id": "user:42", "category": "customer"}]})
}

#[tokio::test]
async fn every_route_answers_as_the_document_says() {
    let mut s = Service::start();
    let writer = s.token(Some("acme"), "ingest,read");
    let admin = s.token(None, "admin");
    let (w, a) = (Some(writer.as_str()), Some(admin.as_str()));
    use Method as M;

    // Writing.
    let (st, ingest) = s
        .call(
            M::POST,
            "/v1/events",
            "/v1/events",
            w,
            Some(json!([event(1, "a1"), event(2, "a1")])),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let _: blackbox_api::events::IngestResponse = serde_json::from_value(ingest.clone()).unwrap();
    let id = ingest["entries"][0]["entry_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, _) = s
        .call(
            M::POST,
            "/v1/events",
            "/v1/events",
            None,
            Some(event(3, "a1")),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // OTLP/HTTP (in OTLP/JSON here; docs/OTEL.md).
    let trace: Value =
        serde_json::from_str(include_str!("../../../examples/otlp/genai-trace.json")).unwrap();
    let (st, _) = s
        .call(M::POST, "/v1/traces", "/v1/traces", w, Some(trace.clone()))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, refused) = s
        .call(M::POST, "/v1/traces", "/v1/traces", None, Some(trace))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(refused["code"], 16);
    let (st, _) = s
        .call(
            M::POST,
            "/v1/logs",
            "/v1/logs",
            w,
            Some(json!({"resourceLogs": []})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(M::POST, "/v1/decide", "/v1/decide", w, Some(json!({"agent_id": "a1", "session_id": "s", "tool_name": "t", "args": {"q": "hello"}})))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, blocked) = s
        .call(M::POST, "/v1/decide", "/v1/decide", w, Some(json!({"agent_id": "a1", "session_id": "s", "tool_name": "t", "args": {"q": "ignore previous instructions"}})))
        .await;
    assert_eq!(
        (st, blocked["decision"].as_str()),
        (StatusCode::OK, Some("block"))
    );

    // Reading.
    let (st, _) = s
        .call(
            M::GET,
            "/v1/entries",
            "/v1/entries?format=json&limit=2",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.call(M::GET, "/v1/entries", "/v1/entries", w, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(M::GET, "/v1/entries", "/v1/entries?limit=0", w, None)
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s
        .call(
            M::GET,
            "/v1/entries/{entry_id}",
            &format!("/v1/entries/{id}"),
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::GET,
            "/v1/entries/{entry_id}",
            "/v1/entries/019d8d26-717b-7111-9111-111111111111",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.call(M::GET, "/v1/verify", "/v1/verify", w, None).await;
    assert_eq!(st, StatusCode::OK);
    for route in ["/v1/overview", "/v1/checkpoints/key"] {
        let (st, _) = s.call(M::GET, route, route, w, None).await;
        assert_eq!(st, StatusCode::OK, "{route}");
    }
    let (st, cp) = s
        .call(
            M::GET,
            "/v1/checkpoints/latest",
            "/v1/checkpoints/latest",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let size = cp["size"].as_u64().unwrap();
    let (st, _) = s
        .call(
            M::GET,
            "/v1/proofs/inclusion",
            &format!("/v1/proofs/inclusion?entry_id={id}"),
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::GET,
            "/v1/proofs/consistency",
            &format!("/v1/proofs/consistency?from_size={size}"),
            w,
            None,
        )
        .await;
    assert!(st == StatusCode::OK || st == StatusCode::NOT_FOUND, "{st}");
    // Signing now (admin): the latest checkpoint then covers the whole chain.
    let (st, signed) = s
        .call(
            M::POST,
            "/v1/checkpoints",
            "/v1/checkpoints?tenant_id=acme",
            a,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{signed}");
    assert!(signed["size"].as_u64().unwrap() >= size, "{signed}");

    // Agents and alerts.
    let (st, _) = s.call(M::GET, "/v1/agents", "/v1/agents", w, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::POST,
            "/v1/agents/{agent_id}/pause",
            "/v1/agents/a2/pause",
            a,
            Some(json!({"tenant_id": "acme", "reason": "test"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::POST,
            "/v1/agents/{agent_id}/resume",
            "/v1/agents/a2/resume",
            a,
            Some(json!({"tenant_id": "acme"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::POST,
            "/v1/agents/{agent_id}/pause",
            "/v1/agents/a2/pause",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, alerts) = s.call(M::GET, "/v1/alerts", "/v1/alerts", w, None).await;
    assert_eq!(st, StatusCode::OK);
    let alert = alerts["alerts"][0]["alert_id"]
        .as_str()
        .expect("the blocked call raised an alert")
        .to_owned();
    let (st, _) = s
        .call(
            M::POST,
            "/v1/alerts/{alert_id}/ack",
            &format!("/v1/alerts/{alert}/ack"),
            a,
            Some(json!({"ticket": "T-1"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::POST,
            "/v1/alerts/{alert_id}/resolve",
            &format!("/v1/alerts/{alert}/resolve"),
            a,
            Some(json!({"resolution": "true_positive"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::POST,
            "/v1/alerts/{alert_id}/resolve",
            &format!("/v1/alerts/{alert}/resolve"),
            a,
            Some(json!({"resolution": "true_positive"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    // Evidence, erasure, retention.
    let (st, export) = s
        .call(
            M::GET,
            "/v1/exports",
            "/v1/exports?standard=soc2&control=CC7.2&output=evidence.json",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{export}");
    // As one tar archive; a bundle (admin only: it holds the service's own chains).
    let (st, _) = s
        .call(
            M::GET,
            "/v1/exports",
            "/v1/exports?standard=soc2&control=CC7.2&output=evidence.csv&archive=tar",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, refused) = s
        .call(
            M::GET,
            "/v1/exports",
            "/v1/exports?standard=soc2&control=CC7.2&output=evidence.json&bundle=true",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{refused}");
    let (st, bundle) = s
        .call(
            M::GET,
            "/v1/exports",
            "/v1/exports?standard=soc2&control=CC7.2&output=report.json&bundle=true&tenant_id=acme",
            a,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{bundle}");
    let names: Vec<&str> = bundle["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"log.jsonl") && names.contains(&"checkpoint.pub"),
        "{names:?}"
    );
    // The rules in force, and a verified slice of what agent a1 did.
    let (st, rules) = s.call(M::GET, "/v1/rules", "/v1/rules", w, None).await;
    assert_eq!(st, StatusCode::OK, "{rules}");
    // The chain as C2SP tlog-tiles: its checkpoint, a partial level-0 tile, its entry bundle.
    let (st, _) = s
        .call(
            M::GET,
            "/tlog/{tenant}/checkpoint",
            "/tlog/acme/checkpoint",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::GET,
            "/tlog/{tenant}/tile/{path}",
            "/tlog/acme/tile/0/000.p/1",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::GET,
            "/tlog/{tenant}/tile/{path}",
            "/tlog/acme/tile/9/000",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // No witness configured here: quorum 0, no witness.
    let (st, wit) = s
        .call(M::GET, "/v1/witnesses", "/v1/witnesses", w, None)
        .await;
    assert_eq!(st, StatusCode::OK, "{wit}");
    assert_eq!(wit["quorum"], 0);
    assert_eq!(wit["witnesses"].as_array().map(Vec::len), Some(0));
    let (st, slice) = s
        .call(
            M::GET,
            "/v1/proofs/slice",
            "/v1/proofs/slice?agent_id=a1",
            w,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{slice}");
    assert_eq!(slice["type"], "blackbox.log_slice.v1");
    let (st, _) = s
        .call(
            M::POST,
            "/v1/erasures",
            "/v1/erasures",
            a,
            Some(json!({"data_subject": "user:42", "reason": "request", "ticket": "T-2"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(M::POST, "/v1/retention/run", "/v1/retention/run", a, None)
        .await;
    assert_eq!(st, StatusCode::OK);

    // Tokens.
    let (st, created) = s
        .call(
            M::POST,
            "/v1/tokens",
            "/v1/tokens",
            a,
            Some(json!({"tenant_id": "acme", "scopes": ["read"], "label": "x"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let created: blackbox_api::tokens::CreatedToken = serde_json::from_value(created).unwrap();
    let (st, _) = s.call(M::GET, "/v1/tokens", "/v1/tokens", a, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .call(
            M::DELETE,
            "/v1/tokens/{id}",
            &format!("/v1/tokens/{}", created.id),
            a,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s
        .call(
            M::DELETE,
            "/v1/tokens/{id}",
            &format!("/v1/tokens/{}", created.id),
            a,
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Operations.
    for route in ["/healthz", "/readyz", "/openapi.json"] {
        let (st, _) = s.call(M::GET, route, route, None, None).await;
        assert_eq!(st, StatusCode::OK, "{route}");
    }
    let (st, _) = s.call(M::GET, "/metrics", "/metrics", a, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.call(M::GET, "/metrics", "/metrics", w, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Every operation of the document was called.
    let mut documented = BTreeSet::new();
    for (route, ops) in s.doc["paths"].as_object().unwrap() {
        for m in ops.as_object().unwrap().keys() {
            documented.insert((m.clone(), route.clone()));
        }
    }
    let missed: Vec<_> = documented.difference(&s.called).collect();
    assert!(missed.is_empty(), "not exercised: {missed:?}");
}

/// The service serves the generated document (docs/openapi.json, kept up to date by
/// blackbox-api's tests).
#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let mut s = Service::start();
    let resp = s
        .app
        .clone()
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let served: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(served, s.doc);
    s.called.clear();
}
