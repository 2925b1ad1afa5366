//! HTTP request bodies through the service's real router (server/api*.rs) and a real store:
//! `POST /v1/events` as JSON and as NDJSON, and `POST /v1/decide`, with an ingest token of
//! tenant `acme` and rules of every kind loaded (those of examples/seed-rules.yaml, without its
//! webhook: the target makes no network calls). The first input byte chooses the route, the
//! rest is the body.
//!
//! Must hold: nothing panics; no body makes the service answer 5xx; every answer is JSON, an
//! error carrying `error.code`; an accepted batch answers one entry per event, in increasing
//! `seq`; a decision is one of the documented ones; and every 128 requests the tenant's chain,
//! whatever was accepted into it, still verifies (`GET /v1/verify` says `ok`).
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use blackbox_core::ids::TenantId;
use blackbox_server::config::{Overrides, ServerConfig};
use blackbox_server::tokens::Scopes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower::ServiceExt as _;

const RULES: &str = r#"anomaly_detection:
  rules:
    - name: excessive_tool_calls
      condition: {metric: tool_calls_per_minute, baseline_window: 7d, threshold_multiplier: 10}
      action: alert_and_pause
    - name: off_hours_data_access
      condition: {tool: query_database, time_window: "00:00-06:00 weekdays, all weekends", min_count: 1}
      action: alert
    - name: data_volume_spike
      condition: {metric: result_rows_per_session, baseline_window: 7d, threshold_multiplier: 10}
      action: alert_and_throttle
    - name: prompt_injection_in_tool_args
      condition:
        match_patterns: ["ignore previous instructions", "system prompt", "jailbreak"]
      action: block_and_alert
"#;

struct Service {
    rt: tokio::runtime::Runtime,
    app: Router,
    ingest: String,
    read: String,
}

fn service() -> Option<&'static Service> {
    static SERVICE: OnceLock<Option<Service>> = OnceLock::new();
    SERVICE
        .get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("blackbox-fuzz-http-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let mut config = ServerConfig::load(
                None,
                &Overrides {
                    data_dir: Some(dir.join("data")),
                    rate_limit: Some(0),
                    ..Overrides::default()
                },
            )
            .ok()?;
            std::fs::create_dir_all(&dir).ok()?;
            let rules = dir.join("rules.yaml");
            std::fs::write(&rules, RULES).ok()?;
            config.rules = Some(rules);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .ok()?;
            let (state, writer) = {
                let _guard = rt.enter();
                blackbox_server::start(config).ok()?
            };
            // The writer runs for the life of the process.
            std::mem::forget(writer);
            let tenant = TenantId::parse("acme").ok()?;
            let ingest = state
                .tokens
                .create(Some(&tenant), Scopes::parse("ingest").ok()?, "fuzz")
                .ok()?
                .1;
            let read = state
                .tokens
                .create(Some(&tenant), Scopes::parse("read").ok()?, "fuzz")
                .ok()?
                .1;
            let app = {
                let _guard = rt.enter();
                blackbox_server::api::router(state)
            };
            Some(Service {
                rt,
                app,
                ingest,
                read,
            })
        })
        .as_ref()
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app
        .clone()
        .oneshot(req)
        .await
        .expect("the router is infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .expect("a body");
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "answer {status} is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

fuzz_target!(|data: &[u8]| {
    let Some(svc) = service() else {
        panic!("the service did not start");
    };
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let (path, content_type) = match route % 3 {
        0 => ("/v1/events", "application/json"),
        1 => ("/v1/events", "application/x-ndjson"),
        _ => ("/v1/decide", "application/json"),
    };
    let req = Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {}", svc.ingest))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_vec()))
        .expect("a request");
    let (status, answer) = svc.rt.block_on(call(&svc.app, req));
    assert!(
        !status.is_server_error(),
        "{path} answered {status}: {answer}"
    );
    if !status.is_success() {
        assert!(
            answer["error"]["code"].is_string(),
            "{status} without an error code: {answer}"
        );
    } else if path == "/v1/events" {
        let entries = answer["entries"].as_array().expect("entries");
        assert_eq!(answer["count"].as_u64(), Some(entries.len() as u64));
        let seqs: Vec<u64> = entries.iter().filter_map(|e| e["seq"].as_u64()).collect();
        assert_eq!(seqs.len(), entries.len());
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{answer}");
    } else {
        let d = answer["decision"].as_str().unwrap_or("");
        assert!(
            ["allow", "block", "throttle", "paused"].contains(&d),
            "{answer}"
        );
    }

    static CALLS: AtomicU64 = AtomicU64::new(0);
    if CALLS.fetch_add(1, Ordering::Relaxed) % 128 == 127 {
        let req = Request::get("/v1/verify")
            .header(header::AUTHORIZATION, format!("Bearer {}", svc.read))
            .body(Body::empty())
            .expect("a request");
        let (status, report) = svc.rt.block_on(call(&svc.app, req));
        if status != StatusCode::NOT_FOUND {
            assert_eq!(status, StatusCode::OK, "{report}");
            assert_eq!(
                report["status"], "ok",
                "the chain no longer verifies: {report}"
            );
        }
    }
});
