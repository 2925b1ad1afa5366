//! One clock for every command: `BLACKBOX_TEST_NOW` sets the writer's time in `blackbox serve`
//! as it does in `blackbox append`.

// Helpers here panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::serve::{Server, http};
use common::{init_store, run};
use serde_json::Value;

const NOW: &str = "2031-02-03T04:05:06Z";

/// The time a UUIDv7 entry id was minted at (its first 48 bits), Unix ms.
fn written_ms(id: &str) -> i64 {
    let hex: String = id.chars().filter(|c| *c != '-').take(12).collect();
    i64::from_str_radix(&hex, 16).unwrap()
}

#[test]
fn serve_honours_blackbox_test_now_like_append() {
    let now = blackbox_core::entry::parse_timestamp(NOW).unwrap();
    let (_tmp, dir) = init_store();
    // The CLI's writer.
    let mut c = common::bin();
    let out = c
        .env("BLACKBOX_TEST_NOW", NOW)
        .args(["append", "--data-dir", &dir, "--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write as _;
            ch.stdin.take().unwrap().write_all(
                br#"{"agent_id":"a","session_id":"s","event_type":"tool_call","tool_name":"t"}"#,
            )?;
            ch.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    // The service's writer.
    let t = common::serve::token(&dir, Some("default"), "ingest,read");
    let mut server = Server::start_with(&dir, |mut c| {
        c.env("BLACKBOX_TEST_NOW", NOW);
        c
    });
    let (s, body) = http(
        server.addr,
        "POST",
        "/v1/events",
        Some(&t),
        Some(r#"{"agent_id":"a","session_id":"s","event_type":"tool_call","tool_name":"t"}"#),
    )
    .unwrap();
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let id = v["entries"][0]["entry_id"].as_str().unwrap();
    assert_eq!(
        written_ms(id),
        now,
        "the service wrote at BLACKBOX_TEST_NOW"
    );
    server.stop();
    // Both entries, and the closing checkpoint, carry the set time.
    let q = run(&["query", "--data-dir", &dir, "--format", "jsonl"]);
    assert_eq!(q.code, 0, "{}", q.stderr);
    let lines: Vec<Value> = q
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", q.stdout);
    for l in &lines {
        assert_eq!(written_ms(l["entry_id"].as_str().unwrap()), now, "{l}");
    }
}
