//! The OTLP intake against real peers (issue 17): the OpenTelemetry Python SDK and its OTLP
//! exporters, and the `openai` client instrumented by `opentelemetry-instrumentation-openai-v2`,
//! talking to a real `blackbox serve` over OTLP/HTTP (the main listener and `--otlp-http`) and
//! OTLP/gRPC (`--otlp-grpc`). The peers are the scripts in `tests/otel/` (pinned in its
//! `requirements.txt`, installed by `.ci/run`).
//!
//! Each script plants a random marker in every piece of content it sends and prints what it
//! exported (span ids in hex). The test then checks that every GenAI span and event landed as
//! the entry the mapping promises, that nothing else did, that `verify` passes, and that the
//! marker is in no byte of the data directory (SQLite WAL and shm included, the server
//! stopped first) nor in the server's log.

// Test helpers panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::run;
use common::serve::{Server, token};
use serde_json::Value;

/// The Python modules the peers import.
const MODULES: &str = "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http.trace_exporter, \
     opentelemetry.exporter.otlp.proto.grpc.trace_exporter, \
     opentelemetry.instrumentation.openai_v2, opentelemetry.util.genai.handler, openai";

/// Fails (never skips) when python3 or the pinned packages are missing, saying how to get them.
fn require_python_peers() {
    let out = Command::new("python3").args(["-c", MODULES]).output();
    let why = match out {
        Err(e) => format!("python3 cannot be run: {e}"),
        Ok(o) if o.status.success() => return,
        Ok(o) => format!(
            "the peer packages are missing: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
    };
    let ci = if std::env::var_os("CI").is_some() {
        " (CI is set: .ci/run must install them)"
    } else {
        ""
    };
    panic!("{why}{ci}\nInstall them with: python3 -m pip install -r tests/otel/requirements.txt");
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/otel")
        .join(name)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A marker no file could hold by chance: 64 random bits in hex.
fn new_marker() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("BBXMARK{:016x}", h.finish())
}

fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a peer script with python3; its JSON summary. Panics with its stderr if it failed.
fn run_peer(name: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(script(name)).args(args);
    // The scripts set the OTEL_* variables they need; none may leak in from the caller.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\n{stderr}",
        out.status
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: no JSON summary ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    // The SDK takes a partial success for a success; the script read the answers (HTTP).
    assert_eq!(
        summary["partial_successes"],
        serde_json::json!([]),
        "{name} {args:?}: the intake refused part of a well-formed export"
    );
    summary
}

/// Runs a peer script that must fail; its stderr.
fn run_peer_failing(name: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(script(name)).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("PYTHONDONTWRITEBYTECODE", "1");
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name} {args:?} should have failed its export:\n{stderr}"
    );
    // A refusal that is not retryable is not retried (the SDK would back off for minutes).
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{name} took {:?}: the refusal was retried",
        started.elapsed()
    );
    stderr
}

/// Every entry of the store, from `blackbox query --format jsonl`.
fn entries(dir: &str) -> Vec<Value> {
    let q = run(&["query", "--data-dir", dir, "--format", "jsonl"]);
    assert_eq!(q.code, 0, "query failed: {}", q.stderr);
    q.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The entries whose payload names `trace_id`.
fn of_trace<'a>(all: &'a [Value], trace_id: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|e| e["payload"]["trace_id"].as_str() == Some(trace_id))
        .collect()
}

/// `name` from the payload, else from the entry itself.
fn field<'a>(e: &'a Value, name: &str) -> &'a Value {
    match &e["payload"][name] {
        Value::Null => &e[name],
        v => v,
    }
}

fn str_field<'a>(e: &'a Value, name: &str) -> &'a str {
    field(e, name)
        .as_str()
        .unwrap_or_else(|| panic!("{name} is not a string in {e}"))
}

fn assert_hash(e: &Value, name: &str) {
    let h = str_field(e, name);
    assert!(
        h.starts_with("sha256:") || h.starts_with("hmac-sha256:"),
        "{name} is not a hash in {e}"
    );
}

/// The entry of span `span_id` among `es`; exactly one must exist.
fn entry_of_span<'a>(es: &[&'a Value], span_id: &str, event_type: &str) -> &'a Value {
    let found: Vec<&Value> = es
        .iter()
        .copied()
        .filter(|e| {
            e["payload"]["span_id"].as_str() == Some(span_id)
                && e["event_type"].as_str() != Some("llm_message")
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "span {span_id}: expected one {event_type} entry, found {found:#?}"
    );
    let e = found[0];
    assert_eq!(e["event_type"], event_type, "{e}");
    e
}

/// Unix milliseconds of an RFC 3339 UTC time (`2026-04-14T18:00:00.123Z`, any fraction).
fn unix_ms(ts: &str) -> i64 {
    let (date, time) = ts.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let time = time
        .strip_suffix('Z')
        .unwrap_or_else(|| panic!("not UTC: {ts}"));
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    let ms: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    // Days from the civil date (H. Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1])
    } else {
        (d[0], d[1])
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000) + ms
}

/// What every entry from the OTLP intake has in common with the span it came from.
fn assert_from_span(e: &Value, span: &Value, tenant: &str) {
    assert_eq!(e["tenant_id"], tenant, "{e}");
    assert_eq!(e["origin"]["kind"], "token", "{e}");
    assert_eq!(e["origin"]["via"], "otlp", "{e}");
    assert_eq!(e["payload"]["trace_id"], span["trace_id"], "{e}");
    assert_eq!(e["payload"]["span_id"], span["span_id"], "{e}");
    match span["parent_span_id"].as_str() {
        Some(p) => assert_eq!(e["payload"]["parent_span_id"], p, "{e}"),
        None => assert!(
            e["payload"]["parent_span_id"].is_null(),
            "a root span has no parent: {e}"
        ),
    }
    // The span's start, to the millisecond (truncated or rounded).
    let start_ms = span["start_unix_nano"].as_i64().unwrap() / 1_000_000;
    let ts_ms = unix_ms(e["timestamp"].as_str().unwrap());
    assert!(
        (ts_ms - start_ms).abs() <= 1,
        "the timestamp is the span's start ({start_ms} ms): {e}"
    );
    let attrs = &span["attributes"];
    if let Some(op) = attrs["gen_ai.operation.name"].as_str()
        && e["event_type"] == "llm_request"
    {
        assert_eq!(e["payload"]["operation"], op, "{e}");
    }
}

/// The first of `keys` that the span, else its nearest ancestor exported in the same request,
/// has (the intake sees one request at a time).
fn inherited(span: &Value, spans: &[Value], keys: &[&str]) -> Option<String> {
    let mut at = span;
    for _ in 0..64 {
        if let Some(v) = keys.iter().find_map(|k| at["attributes"][*k].as_str()) {
            return Some(v.to_owned());
        }
        let parent = at["parent_span_id"].as_str()?;
        at = spans
            .iter()
            .find(|s| s["span_id"] == parent && s["batch"] == span["batch"])?;
    }
    None
}

/// The agent the mapping names: gen_ai.agent.id, else gen_ai.agent.name (of the span or an
/// ancestor in its request), else service.name.
fn expected_agent(span: &Value, spans: &[Value], service: &str) -> String {
    inherited(span, spans, &["gen_ai.agent.id", "gen_ai.agent.name"])
        .unwrap_or_else(|| service.to_owned())
}

/// The session the mapping names: gen_ai.conversation.id, else session.id (likewise), else
/// the trace id.
fn expected_session(span: &Value, spans: &[Value]) -> String {
    inherited(span, spans, &["gen_ai.conversation.id", "session.id"])
        .unwrap_or_else(|| span["trace_id"].as_str().unwrap().to_owned())
}

/// A tool call an entry lists: its name, id, and its arguments hashed.
fn assert_tool_call(call: &Value, name: &str, id: &Value) {
    assert_eq!(call["name"], name, "{call}");
    assert_eq!(&call["id"], id, "{call}");
    // As the brief's interface and the intake say (docs/OTEL.md §4 says `args_hash`).
    assert_hash(call, "args_raw_hash");
}

/// Checks one exported span against its entry (or its absence), by what the span says.
fn check_span(es: &[&Value], span: &Value, spans: &[Value], service: &str, tenant: &str) {
    let a = &span["attributes"];
    let id = span["span_id"].as_str().unwrap();
    let Some(op) = a["gen_ai.operation.name"].as_str() else {
        assert!(
            es.iter()
                .all(|e| e["payload"]["span_id"].as_str() != Some(id)),
            "a span that is not GenAI ({}) became an entry",
            span["name"]
        );
        return;
    };
    let event_type = match op {
        "chat" | "text_completion" | "generate_content" | "embeddings" => "llm_request",
        "execute_tool" => "tool_call",
        "invoke_agent" => "agent_invocation",
        "create_agent" => "agent_created",
        other => panic!("the peer sent an operation this test does not know: {other}"),
    };
    let e = entry_of_span(es, id, event_type);
    assert_from_span(e, span, tenant);
    assert_eq!(e["agent_id"], expected_agent(span, spans, service), "{e}");
    assert_eq!(e["session_id"], expected_session(span, spans), "{e}");
    let nanos = span["end_unix_nano"].as_u64().unwrap() - span["start_unix_nano"].as_u64().unwrap();
    // A span lasts far less than 2^53 ns: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let duration_ms = nanos as f64 / 1e6;
    match event_type {
        "llm_request" => {
            let model = a
                .get("gen_ai.response.model")
                .or_else(|| a.get("gen_ai.request.model"))
                .unwrap();
            assert_eq!(field(e, "model"), model, "{e}");
            assert_eq!(
                field(e, "provider"),
                a.get("gen_ai.provider.name")
                    .or_else(|| a.get("gen_ai.system"))
                    .unwrap(),
                "{e}"
            );
            for (attr, key) in [
                ("gen_ai.usage.input_tokens", "token_count_in"),
                ("gen_ai.usage.output_tokens", "token_count_out"),
            ] {
                if let Some(n) = a.get(attr) {
                    assert_eq!(field(e, key).as_u64(), n.as_u64(), "{key}: {e}");
                }
            }
            if let Some(fr) = a.get("gen_ai.response.finish_reasons") {
                assert_eq!(field(e, "finish_reasons"), fr, "{e}");
            }
            if let Some(id) = a.get("gen_ai.response.id") {
                assert_eq!(field(e, "response_id"), id, "{e}");
            }
            let latency = field(e, "latency_ms").as_f64().unwrap();
            assert!(
                (latency - duration_ms).abs() <= 1.0,
                "latency {latency} ms for a span of {duration_ms} ms: {e}"
            );
            for (attr, key) in [
                ("gen_ai.input.messages", "prompt_hash"),
                ("gen_ai.output.messages", "completion_hash"),
                ("gen_ai.system_instructions", "system_instructions_hash"),
            ] {
                if a.get(attr).is_some() {
                    assert_hash(e, key);
                }
            }
            // The tool calls the output messages announce are listed, arguments hashed.
            let announced: Vec<Value> = a["gen_ai.output.messages"]
                .as_str()
                .map(|m| serde_json::from_str::<Vec<Value>>(m).unwrap())
                .unwrap_or_default()
                .iter()
                .flat_map(|m| m["parts"].as_array().cloned().unwrap_or_default())
                .filter(|p| p["type"] == "tool_call")
                .collect();
            if !announced.is_empty() {
                let listed = field(e, "tool_calls")
                    .as_array()
                    .unwrap_or_else(|| panic!("{e}"));
                assert_eq!(listed.len(), announced.len(), "{e}");
                for (l, p) in listed.iter().zip(&announced) {
                    assert_tool_call(l, p["name"].as_str().unwrap(), &p["id"]);
                }
            }
            if span["status"] == "ERROR" {
                let err = field(e, "error");
                assert!(!err.is_null(), "a failed call records its error: {e}");
                if let Some(t) = a["error.type"].as_str() {
                    assert!(err.to_string().contains(t), "error {err} lacks {t}");
                }
            } else {
                assert!(field(e, "error").is_null(), "no error: {e}");
            }
        }
        "tool_call" => {
            assert_eq!(str_field(e, "tool_name"), a["gen_ai.tool.name"], "{e}");
            if let Some(call) = a.get("gen_ai.tool.call.id") {
                assert_eq!(field(e, "invocation_id"), call, "{e}");
            }
            if a.get("gen_ai.tool.call.arguments").is_some() {
                assert_hash(e, "args_raw_hash");
            }
            if a.get("gen_ai.tool.call.result").is_some() {
                assert_hash(e, "result_data_hash");
            }
            let d = field(e, "duration_ms").as_f64().unwrap();
            assert!(
                (d - duration_ms).abs() <= 1.0,
                "duration {d} ms for a span of {duration_ms} ms: {e}"
            );
        }
        _ => {
            if let Some(name) = a["gen_ai.agent.name"].as_str() {
                assert!(e.to_string().contains(name), "the agent's name: {e}");
            }
        }
    }
}

/// Checks the log records a peer exported: a gen_ai.* event is one `llm_message` entry on its
/// span; any other record is no entry at all.
fn check_logs(es: &[&Value], logs: &[Value], tenant: &str) {
    for span_id in logs.iter().filter_map(|l| l["span_id"].as_str()) {
        let sent = logs
            .iter()
            .filter(|l| {
                l["span_id"].as_str() == Some(span_id)
                    && l["event_name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("gen_ai."))
            })
            .count();
        let got: Vec<&&Value> = es
            .iter()
            .filter(|e| {
                e["event_type"] == "llm_message"
                    && e["payload"]["span_id"].as_str() == Some(span_id)
            })
            .collect();
        assert_eq!(
            got.len(),
            sent,
            "span {span_id}: {sent} gen_ai events sent, entries {got:#?}"
        );
        for e in &got {
            assert_eq!(e["tenant_id"], tenant, "{e}");
            assert_eq!(e["origin"]["via"], "otlp", "{e}");
        }
        // Each event is there by name, with the hashes of the content it carried.
        for l in logs
            .iter()
            .filter(|l| l["span_id"].as_str() == Some(span_id))
        {
            let Some(name) = l["event_name"]
                .as_str()
                .filter(|n| n.starts_with("gen_ai."))
            else {
                continue;
            };
            let e = got
                .iter()
                .find(|e| e["payload"]["event_name"] == name)
                .unwrap_or_else(|| panic!("no llm_message for {name}: {got:#?}"));
            if l["has_body"] == true {
                assert_hash(e, "content_hash");
            } else {
                // docs/OTEL.md §4: members only for what the record has. (An SDK sends an
                // absent body as an empty AnyValue, which is no content either.)
                assert!(
                    e["payload"]["content_hash"].is_null(),
                    "{name} had no body, yet its entry has a content_hash: {e}"
                );
            }
            let keys = l["attribute_keys"].as_array().unwrap();
            for (attr, key) in [
                ("gen_ai.input.messages", "prompt_hash"),
                ("gen_ai.output.messages", "completion_hash"),
                ("gen_ai.system_instructions", "system_instructions_hash"),
            ] {
                if keys.iter().any(|k| k == attr) {
                    assert_hash(e, key);
                }
            }
        }
    }
}

/// Every byte of every file under `dir` (zstd objects also decompressed).
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let raw = std::fs::read(&p).unwrap();
            if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
                && let Ok(plain) = zstd::decode_all(&raw[..])
            {
                out.push((p.clone(), plain));
            }
            out.push((p, raw));
        }
    }
    out
}

/// The forms `secret` could be stored in: as is, hex, and base64 at each of the three
/// alignments (the characters that depend on the secret's bytes alone).
fn encodings(secret: &str) -> Vec<Vec<u8>> {
    let b = secret.as_bytes();
    let mut forms = vec![b.to_vec(), hex(b).into_bytes()];
    for pad in 0..3 {
        let mut buf = vec![b'\0'; pad];
        buf.extend_from_slice(b);
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&buf);
        // Skip the characters touched by the padding, and the last, partial group.
        let start = (pad * 4).div_ceil(3);
        let end = enc.len() - 4;
        forms.push(enc.as_bytes()[start..end].to_vec());
    }
    forms
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `secret` is in no byte of `dir` and no line of `log`.
fn assert_nowhere(dir: &Path, log: &[String], secret: &str, what: &str) {
    let files = all_files(dir);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("blackbox.db")),
        "the walk missed the database: {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for form in encodings(secret) {
        for (p, bytes) in &files {
            assert!(
                !contains(bytes, &form),
                "{what} reached {} (as {})",
                p.display(),
                String::from_utf8_lossy(&form)
            );
        }
        let joined = log.join("\n");
        assert!(
            !contains(joined.as_bytes(), &form),
            "{what} is in the server's log"
        );
    }
}

/// The server's log must say enough for a leak to show: its own crates at debug.
const LOG_LEVEL: &str =
    "info,blackbox=debug,blackbox_server=debug,blackbox_otel=debug,blackbox_ledger=debug";

#[test]
fn the_python_sdk_exporting_genai_spans_over_http_and_grpc_lands_every_span_and_no_content() {
    require_python_peers();
    let (tmp, dir) = common::init_store();
    let secret = token(&dir, Some("acme"), "ingest");
    let (http_port, grpc_port) = (free_port(), free_port());
    let otlp_http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let otlp_grpc: SocketAddr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
    let mut server = Server::start_with(&dir, |mut c| {
        c.args(["--otlp-http", &otlp_http.to_string()])
            .args(["--otlp-grpc", &otlp_grpc.to_string()])
            .env("BLACKBOX_LOG", LOG_LEVEL);
        c
    });
    wait_for_port(otlp_http);
    wait_for_port(otlp_grpc);

    let marker = new_marker();
    // (transport, endpoint, span processor, compression): the main listener serves OTLP/HTTP
    // too; the extra listeners are the ones an exporter finds at its default ports.
    let runs = [
        ("http", server.url(), "batch", "gzip"),
        ("http", format!("http://{otlp_http}"), "batch", "none"),
        ("grpc", format!("http://{otlp_grpc}"), "simple", "gzip"),
        ("grpc", format!("http://{otlp_grpc}"), "batch", "none"),
    ];
    let mut summaries = Vec::new();
    for (transport, endpoint, processor, compression) in &runs {
        let s = run_peer(
            "emit_genai.py",
            &[
                "--transport",
                transport,
                "--endpoint",
                endpoint,
                "--token",
                &secret,
                "--marker",
                &marker,
                "--processor",
                processor,
                "--compression",
                compression,
            ],
        );
        assert_eq!(s["marker_exported"], true, "the peer sent no content: {s}");
        assert_eq!(s["spans"].as_array().unwrap().len(), 8, "{s}");
        assert_eq!(s["logs"].as_array().unwrap().len(), 4, "{s}");
        summaries.push(s);
    }

    server.stop();
    let log = server.log.lock().unwrap().clone();
    assert_nowhere(
        &tmp.path().join("data"),
        &log,
        &marker,
        "content (the marker)",
    );
    assert_nowhere(&tmp.path().join("data"), &log, &secret, "the bearer token");

    let all = entries(&dir);
    for s in &summaries {
        let spans = s["spans"].as_array().unwrap();
        let trace = spans[0]["trace_id"].as_str().unwrap();
        let es = of_trace(&all, trace);
        let service = s["service_name"].as_str().unwrap();
        for span in spans {
            check_span(&es, span, spans, service, "acme");
        }
        check_logs(&es, s["logs"].as_array().unwrap(), "acme");
        // Six GenAI spans and three gen_ai events; the two HTTP spans and the application
        // log are skipped.
        assert_eq!(
            es.len(),
            9,
            "{} over {}: {es:#?}",
            s["transport"],
            s["processor"]
        );

        // The inference that asked for the tool: its gen_ai.choice event lists the call.
        let chat = spans
            .iter()
            .find(|x| x["role"] == "chat_tool_call")
            .unwrap();
        let choice: Vec<&&Value> = es
            .iter()
            .filter(|e| {
                e["event_type"] == "llm_message"
                    && e["payload"]["span_id"] == chat["span_id"]
                    && !e["payload"]["tool_calls"].is_null()
            })
            .collect();
        assert_eq!(choice.len(), 1, "{es:#?}");
        let calls = choice[0]["payload"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_tool_call(&calls[0], "get_weather", &s["tool_call_id"]);
        // The model asked for the call with the very string the tool was then run with: the
        // two digests match, so an auditor can tie the call to the request without content.
        let tool = spans.iter().find(|x| x["role"] == "tool").unwrap();
        let ran = entry_of_span(&es, tool["span_id"].as_str().unwrap(), "tool_call");
        assert_eq!(
            calls[0]["args_raw_hash"], ran["payload"]["args_raw_hash"],
            "{calls:?} {ran}"
        );
        // The inference span announces the same call in its output messages.
        let req = entry_of_span(&es, chat["span_id"].as_str().unwrap(), "llm_request");
        let calls = req["payload"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{req}");
        assert_tool_call(&calls[0], "get_weather", &s["tool_call_id"]);
    }
    assert_eq!(
        all.len(),
        9 * runs.len(),
        "only the peers' GenAI spans and events are entries"
    );

    let v = run(&["verify", "--data-dir", &dir]);
    assert_eq!(v.code, 0, "verify: {}{}", v.stdout, v.stderr);
    assert!(v.stdout.starts_with("OK"), "{}", v.stdout);
}

#[test]
fn the_openai_client_instrumented_by_openai_v2_is_audited_in_both_semconv_modes() {
    require_python_peers();
    let (tmp, dir) = common::init_store();
    let secret = token(&dir, Some("travel"), "ingest");
    let grpc_port = free_port();
    let otlp_grpc: SocketAddr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
    let mut server = Server::start_with(&dir, |mut c| {
        c.args(["--otlp-grpc", &otlp_grpc.to_string()])
            .env("BLACKBOX_LOG", LOG_LEVEL);
        c
    });
    wait_for_port(otlp_grpc);

    let marker = new_marker();
    let runs = [
        ("default", "http", server.url()),
        ("latest", "http", server.url()),
        ("latest", "grpc", format!("http://{otlp_grpc}")),
    ];
    let mut summaries = Vec::new();
    for (mode, transport, endpoint) in &runs {
        let s = run_peer(
            "openai_agent.py",
            &[
                "--mode",
                mode,
                "--transport",
                transport,
                "--endpoint",
                endpoint,
                "--token",
                &secret,
                "--marker",
                &marker,
            ],
        );
        assert_eq!(s["model_calls"], 2, "{s}");
        if *mode == "latest" {
            // Opted in with span_and_event: the content went out, on spans and in events.
            assert_eq!(s["marker_exported"], true, "{s}");
            assert!(!s["logs"].as_array().unwrap().is_empty(), "{s}");
        }
        summaries.push(s);
    }

    server.stop();
    let log = server.log.lock().unwrap().clone();
    assert_nowhere(
        &tmp.path().join("data"),
        &log,
        &marker,
        "content (the marker)",
    );
    assert_nowhere(&tmp.path().join("data"), &log, &secret, "the bearer token");

    let all = entries(&dir);
    let mut total = 0;
    for s in &summaries {
        let spans = s["spans"].as_array().unwrap();
        let trace = spans[0]["trace_id"].as_str().unwrap();
        let es = of_trace(&all, trace);
        let service = s["service_name"].as_str().unwrap();
        // invoke_agent, two chats, one execute_tool.
        let kinds: Vec<&str> = spans
            .iter()
            .filter_map(|x| x["attributes"]["gen_ai.operation.name"].as_str())
            .collect();
        let mut sorted = kinds.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            ["chat", "chat", "execute_tool", "invoke_agent"],
            "{s}"
        );
        for span in spans {
            check_span(&es, span, spans, service, "travel");
        }
        let logs = s["logs"].as_array().unwrap();
        check_logs(&es, logs, "travel");
        let gen_ai_logs = logs
            .iter()
            .filter(|l| {
                l["event_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("gen_ai."))
            })
            .count();
        assert_eq!(es.len(), spans.len() + gen_ai_logs, "{es:#?}");
        total += es.len();

        let tool = entry_of_span(
            &es,
            spans
                .iter()
                .find(|x| x["attributes"]["gen_ai.operation.name"] == "execute_tool")
                .unwrap()["span_id"]
                .as_str()
                .unwrap(),
            "tool_call",
        );
        assert_eq!(str_field(tool, "tool_name"), "get_weather");
        assert_eq!(field(tool, "invocation_id"), &s["tool_call_id"]);
        let agent = es
            .iter()
            .find(|e| e["event_type"] == "agent_invocation")
            .unwrap();
        assert_eq!(agent["agent_id"], s["agent_id"], "{agent}");
        assert_eq!(agent["session_id"], s["conversation_id"], "{agent}");
    }
    assert_eq!(
        all.len(),
        total,
        "only the agents' GenAI telemetry is entries"
    );

    let v = run(&["verify", "--data-dir", &dir]);
    assert_eq!(v.code, 0, "verify: {}{}", v.stdout, v.stderr);
    assert!(v.stdout.starts_with("OK"), "{}", v.stdout);
}

#[test]
fn unix_ms_reads_rfc3339_utc_times() {
    assert_eq!(unix_ms("1970-01-01T00:00:00Z"), 0);
    assert_eq!(unix_ms("2000-03-01T00:00:00.5Z"), 951_868_800_500);
    assert_eq!(unix_ms("2026-04-14T18:00:00.123456Z"), 1_776_189_600_123);
}

#[test]
fn the_sdk_with_a_wrong_or_read_only_token_fails_at_once_and_appends_nothing() {
    require_python_peers();
    let (tmp, dir) = common::init_store();
    let good = token(&dir, Some("acme"), "ingest");
    let read_only = token(&dir, Some("acme"), "read");
    // A well-formed token that was never issued: the good one with its last character changed.
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    let grpc_port = free_port();
    let otlp_grpc: SocketAddr = format!("127.0.0.1:{grpc_port}").parse().unwrap();
    let mut server = Server::start_with(&dir, |mut c| {
        c.args(["--otlp-grpc", &otlp_grpc.to_string()])
            .env("BLACKBOX_LOG", LOG_LEVEL);
        c
    });
    wait_for_port(otlp_grpc);

    let marker = new_marker();
    for (secret, http_status, grpc_status) in [
        (&forged, "401", "UNAUTHENTICATED"),
        (&read_only, "403", "PERMISSION_DENIED"),
    ] {
        for (transport, endpoint, expect) in [
            ("http", server.url(), http_status),
            ("grpc", format!("http://{otlp_grpc}"), grpc_status),
        ] {
            let stderr = run_peer_failing(
                "emit_genai.py",
                &[
                    "--transport",
                    transport,
                    "--endpoint",
                    &endpoint,
                    "--token",
                    secret,
                    "--marker",
                    &marker,
                ],
            );
            assert!(
                stderr.contains(expect),
                "{transport}: the SDK should report {expect}:\n{stderr}"
            );
            assert!(
                !stderr.contains(secret.as_str()),
                "the SDK printed the token"
            );
        }
    }

    server.stop();
    let log = server.log.lock().unwrap().clone();
    let data = tmp.path().join("data");
    assert_nowhere(&data, &log, &marker, "content (the marker)");
    for secret in [&good, &read_only, &forged] {
        assert_nowhere(&data, &log, secret, "a bearer token");
    }
    let all = entries(&dir);
    assert!(
        all.iter().all(|e| e["origin"]["via"] != "otlp"),
        "a refused export appended entries: {all:#?}"
    );
    let v = run(&["verify", "--data-dir", &dir]);
    assert_eq!(v.code, 0, "verify: {}{}", v.stdout, v.stderr);
}
