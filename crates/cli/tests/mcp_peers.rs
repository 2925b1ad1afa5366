//! The MCP gateway (issue 18) against real peers: the MCP Python SDK as the client
//! (`tests/mcp/client.py`), the reference servers from npm (`@modelcontextprotocol/
//! server-everything`, `server-filesystem`) and a Python SDK server that changes a tool's
//! definition (`tests/mcp/rugpull_server.py`) as upstreams, over stdio (`blackbox mcp wrap`) and
//! Streamable HTTP (`blackbox mcp proxy`), in front of a real `blackbox serve`.
//!
//! The peers are installed by `.ci/run` into `target/mcp-peers/` (npm packages pinned in
//! `tests/mcp/package.json`, the SDK in a virtualenv from `tests/mcp/requirements.txt`);
//! `BLACKBOX_MCP_PEERS` points elsewhere. Without them the tests fail, saying how to install
//! them.

// Test helpers panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::run;
use common::serve::{Server, token};
use serde_json::Value;

const RULES: &str = r#"anomaly_detection:
  rules:
    - name: prompt_injection_in_tool_args
      condition:
        match_patterns: ["ignore previous instructions", "system prompt"]
      action: block_and_alert
    - name: mcp_tool_definition_changed
      description: "An MCP server changed a tool's definition after it was pinned (rug pull)"
      condition:
        event_type: mcp_tool_changed
        time_window: "daily"
        min_count: 1
      action: alert
"#;

fn peers() -> PathBuf {
    std::env::var_os("BLACKBOX_MCP_PEERS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/mcp-peers"),
        PathBuf::from,
    )
}

fn python() -> PathBuf {
    peers().join("venv/bin/python")
}

/// The SDK of the 2025-06-18 revision (v1), in a virtualenv of its own.
fn python_2025_06_18() -> PathBuf {
    peers().join("venv-2025-06-18/bin/python")
}

fn npm_bin(name: &str) -> String {
    peers()
        .join("node_modules/.bin")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Fails (never skips) when the peers are missing, saying how to install them.
fn require_peers() {
    let mut missing = Vec::new();
    let ok = Command::new(python())
        .args(["-c", "import mcp.client.streamable_http, mcp.server"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        missing.push(format!("the MCP Python SDK in {}", python().display()));
    }
    let old_ok = Command::new(python_2025_06_18())
        .args(["-c", "import mcp.client.streamable_http"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !old_ok {
        missing.push(format!(
            "the MCP Python SDK 1.22.0 in {}",
            python_2025_06_18().display()
        ));
    }
    for b in ["mcp-server-everything", "mcp-server-filesystem"] {
        if !Path::new(&npm_bin(b)).exists() {
            missing.push(npm_bin(b));
        }
    }
    if missing.is_empty() {
        return;
    }
    let ci = if std::env::var_os("CI").is_some() {
        " (CI is set: .ci/run must install them)"
    } else {
        ""
    };
    panic!(
        "missing MCP peers: {}{ci}\nInstall them with:\n  npm install --prefix target/mcp-peers \
         --no-audit --no-fund $(jq -r '.dependencies|to_entries[]|\"\\(.key)@\\(.value)\"' \
         tests/mcp/package.json)\n  python3 -m venv target/mcp-peers/venv && \
         target/mcp-peers/venv/bin/pip install -r tests/mcp/requirements.txt\n  python3 -m venv \
         target/mcp-peers/venv-2025-06-18 && target/mcp-peers/venv-2025-06-18/bin/pip install -r \
         tests/mcp/requirements-2025-06-18.txt",
        missing.join(", ")
    );
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/mcp")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn bin_path() -> String {
    env!("CARGO_BIN_EXE_blackbox").to_owned()
}

/// Runs the SDK client; returns its steps by name.
fn client(args: &[&str], env: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    client_of(&python(), "client.py", args, env)
}

/// Runs a client script with `python`; returns its steps (one JSON object a line) by name.
fn client_of(
    python: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> serde_json::Map<String, Value> {
    let mut c = Command::new(python);
    c.arg(script(name)).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.stderr(Stdio::piped()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the MCP client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut steps = serde_json::Map::new();
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        steps.insert(v["step"].as_str().unwrap().to_owned(), v);
    }
    steps
}

fn entries(dir: &str, agent: &str) -> Vec<Value> {
    let r = run(&[
        "query",
        "--data-dir",
        dir,
        "--agent-id",
        agent,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    serde_json::from_str::<Value>(&r.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn of_type<'a>(es: &'a [Value], t: &str) -> Vec<&'a Value> {
    es.iter().filter(|e| e["event_type"] == t).collect()
}

fn grep_dir(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            hits.extend(grep_dir(&p, needle));
        } else if let Ok(b) = std::fs::read(&p)
            && b.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(p);
        }
    }
    hits
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: String,
    state: String,
    server: Server,
    ingest: String,
    admin: String,
}

fn setup() -> Setup {
    require_peers();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d").to_string_lossy().into_owned();
    let state = tmp.path().join("state").to_string_lossy().into_owned();
    let rules = tmp.path().join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    assert_eq!(run(&["init", "--data-dir", &dir]).code, 0);
    let ingest = token(&dir, Some("acme"), "ingest");
    let admin = token(&dir, Some("acme"), "admin");
    let rules = rules.to_string_lossy().into_owned();
    let server = Server::start_with(&dir, |mut c| {
        c.args(["--rules", &rules]);
        c
    });
    Setup {
        _tmp: tmp,
        dir,
        state,
        server,
        ingest,
        admin,
    }
}

fn gateway_env<'a>(s: &'a Setup, url: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("BLACKBOX_SERVER", url),
        ("BLACKBOX_TOKEN", &s.ingest),
        ("BLACKBOX_MCP_STATE_DIR", &s.state),
        ("BLACKBOX_LOG", "warn"),
    ]
}

fn wrap_cmd(agent: &str, server: &[&str]) -> String {
    let mut v = vec![
        bin_path(),
        "mcp".into(),
        "wrap".into(),
        "--agent-id".into(),
        agent.into(),
        "--".into(),
    ];
    v.extend(server.iter().map(|s| (*s).to_owned()));
    serde_json::to_string(&v).unwrap()
}

#[test]
fn the_stdio_gateway_audits_and_polices_real_mcp_peers() {
    let mut s = setup();
    let url = s.server.url();
    let env = gateway_env(&s, &url);
    let marker = "BBXMCPMARK7f3a9c";

    // server-everything: calls, a 900 kB result, progress, sampling, a resource, a prompt, and
    // a call whose arguments carry an injection pattern.
    let everything = npm_bin("mcp-server-everything");
    let steps = client(
        &[
            "everything",
            "--stdio",
            &wrap_cmd("desk-1", &[&everything, "stdio"]),
            "--marker",
            marker,
        ],
        &env,
    );
    assert_eq!(steps["echo"]["text"], format!("Echo: hello {marker}"));
    assert_eq!(steps["big_echo"]["chars"], 900_006);
    assert_eq!(steps["long_running"]["progress"], 4);
    assert_eq!(steps["sampling"]["ok"], true);
    assert_eq!(
        steps["read_resource"]["chars"].as_u64().map(|n| n > 0),
        Some(true)
    );
    let refused = &steps["injection"];
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["code"], -31001, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("prompt_injection_in_tool_args"),
        "{refused}"
    );
    let refused_entry = refused["data"]["blackbox"]["entry_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // server-filesystem: a write goes through; a write with an injection never reaches it.
    let root = tempfile::tempdir().unwrap();
    let root_s = root
        .path()
        .canonicalize()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let filesystem = npm_bin("mcp-server-filesystem");
    let steps = client(
        &[
            "filesystem",
            "--stdio",
            &wrap_cmd("desk-1", &[&filesystem, &root_s]),
            "--root",
            &root_s,
            "--marker",
            marker,
        ],
        &env,
    );
    assert_eq!(steps["write_ok"]["is_error"], false, "{steps:?}");
    assert_eq!(steps["write_injection"]["code"], -31001, "{steps:?}");
    assert!(root.path().join("ok.txt").exists());
    assert!(
        !root.path().join("evil.txt").exists(),
        "server-filesystem wrote the file of a refused call"
    );
    assert_eq!(steps["read_back"]["text"], format!("fine {marker}\n"));

    // A paused agent's calls are refused until it is resumed.
    let r = run(&[
        "agents", "pause", "--server", &url, "--token", &s.admin, "desk-2", "--reason", "test",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let steps = client(
        &[
            "paused",
            "--stdio",
            &wrap_cmd("desk-2", &[&everything, "stdio"]),
        ],
        &env,
    );
    assert_eq!(steps["paused_call"]["code"], -31002, "{steps:?}");

    // A tool whose definition changes between two listings (a rug pull) raises an alert.
    let py = python().to_string_lossy().into_owned();
    let rug = script("rugpull_server.py");
    let steps = client(
        &["rugpull", "--stdio", &wrap_cmd("desk-3", &[&py, &rug])],
        &env,
    );
    assert_eq!(steps["add"]["text"], "5");
    assert_eq!(
        steps["list_after"]["tools"],
        serde_json::json!(["add", "crash", "mutate"])
    );

    // Faults: a call the client gives up on (cancelled), a server that exits under a call.
    let steps = client(
        &[
            "faults",
            "--stdio",
            &wrap_cmd("desk-4", &[&everything, "stdio"]),
        ],
        &env,
    );
    assert_eq!(steps["timeout"]["ok"], false, "{steps:?}");
    assert_eq!(steps["after_timeout"]["text"], "Echo: after");
    let steps = client(
        &["crash", "--stdio", &wrap_cmd("desk-5", &[&py, &rug])],
        &env,
    );
    assert_eq!(steps["crash"]["ok"], false, "{steps:?}");
    // The client goes away in the middle of a call: the gateway sees its input end.
    let steps = client(
        &[
            "disconnect",
            "--stdio",
            &wrap_cmd("desk-6", &[&everything, "stdio"]),
        ],
        &env,
    );
    assert!(steps.contains_key("leaving"), "{steps:?}");
    // The gateway outlives its client by the server's grace and the last records' send.
    std::thread::sleep(Duration::from_millis(2500));

    // Give the gateways' last records a moment, then read the store with the service stopped.
    std::thread::sleep(Duration::from_millis(300));
    // `agents list` says which agents go through an MCP gateway.
    let read = token(&s.dir, Some("acme"), "read");
    let r = run(&[
        "agents", "list", "--server", &url, "--token", &read, "--format", "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let agents: Value = serde_json::from_str(&r.stdout).unwrap();
    let desk1 = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_id"] == "desk-1")
        .unwrap();
    assert!(desk1["mcp_last_seen"].is_string(), "{desk1}");
    s.server.stop();
    let es = entries(&s.dir, "desk-1");
    let calls = of_type(&es, "tool_call");
    let results = of_type(&es, "tool_result");
    // everything: 5 calls; filesystem: 3.
    assert_eq!(calls.len(), 8, "{calls:?}");
    for c in &calls {
        assert_eq!(c["origin"]["via"], "mcp", "{c}");
        assert_eq!(c["payload"]["mcp"]["transport"], "stdio", "{c}");
        assert!(
            c["payload"]["args_hash"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
    }
    let blocked: Vec<_> = calls
        .iter()
        .filter(|c| c["payload"]["authorization"]["decision"] == "block")
        .collect();
    assert_eq!(blocked.len(), 2, "the two injections");
    assert!(
        blocked
            .iter()
            .any(|c| c["entry_id"] == refused_entry.as_str())
    );
    // Every allowed call has its result, linked to its decision; a refused one has none.
    let allowed = calls.len() - blocked.len();
    assert_eq!(results.len(), allowed, "{results:?}");
    let long = results
        .iter()
        .find(|r| r["payload"]["tool_name"] == "trigger-long-running-operation")
        .unwrap();
    assert_eq!(long["payload"]["progress_notifications"], 4);
    assert_eq!(long["payload"]["status"], "ok");
    for r in &results {
        let d = r["payload"]["decision_entry_id"].as_str().unwrap();
        assert!(calls.iter().any(|c| c["entry_id"] == d), "{r}");
        assert!(
            r["payload"]["result_data_hash"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
    }
    let requests = of_type(&es, "mcp_request");
    for m in [
        "tools/list",
        "sampling/createMessage",
        "resources/read",
        "prompts/get",
    ] {
        assert!(
            requests.iter().any(|r| r["payload"]["method"] == m),
            "no mcp_request for {m}"
        );
    }
    let sessions = of_type(&es, "mcp_session");
    assert!(
        sessions
            .iter()
            .any(|x| x["payload"]["phase"] == "initialized"
                && x["payload"]["server_info"]["name"] == "mcp-servers/everything")
    );
    assert!(sessions.iter().any(|x| x["payload"]["phase"] == "ended"));
    let alerts = of_type(&es, "anomaly_detected");
    assert!(
        alerts
            .iter()
            .any(|a| a["payload"]["rule"] == "prompt_injection_in_tool_args")
    );

    // `query --tool` finds a call and its result alike.
    let r = run(&[
        "query",
        "--data-dir",
        &s.dir,
        "--agent-id",
        "desk-1",
        "--tool",
        "trigger-long-running-operation",
        "--format",
        "json",
    ]);
    let by_tool: Vec<Value> = serde_json::from_str(&r.stdout).unwrap();
    let types: Vec<&str> = by_tool
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["tool_call", "tool_result"]);

    let paused = entries(&s.dir, "desk-2");
    assert!(
        of_type(&paused, "tool_call")
            .iter()
            .any(|c| c["payload"]["authorization"]["decision"] == "paused")
    );
    let rug = entries(&s.dir, "desk-3");
    let changed = of_type(&rug, "mcp_tool_changed");
    assert_eq!(changed.len(), 1, "{rug:?}");
    let what = changed[0]["payload"]["changed"].as_array().unwrap();
    assert!(what.contains(&Value::from("description")), "{what:?}");
    assert!(what.contains(&Value::from("input_schema")), "{what:?}");
    assert!(
        of_type(&rug, "anomaly_detected")
            .iter()
            .any(|a| a["payload"]["rule"] == "mcp_tool_definition_changed")
    );

    let faults = entries(&s.dir, "desk-4");
    let cancelled = of_type(&faults, "mcp_cancelled");
    assert_eq!(cancelled.len(), 1, "{faults:?}");
    assert_eq!(cancelled[0]["payload"]["by"], "client");
    assert_eq!(
        cancelled[0]["payload"]["tool_name"],
        "trigger-long-running-operation"
    );
    assert!(
        of_type(&faults, "tool_result")
            .iter()
            .any(|r| r["payload"]["tool_name"] == "echo" && r["payload"]["status"] == "ok")
    );
    let crashed = entries(&s.dir, "desk-5");
    let unanswered = of_type(&crashed, "tool_result");
    assert_eq!(unanswered.len(), 1, "{crashed:?}");
    assert_eq!(unanswered[0]["payload"]["tool_name"], "crash");
    assert_eq!(unanswered[0]["payload"]["status"], "upstream_exited");
    assert!(
        of_type(&crashed, "mcp_session").iter().any(|x| {
            x["payload"]["phase"] == "ended" && x["payload"]["detail"]["exit_code"] == 3
        })
    );

    let gone = entries(&s.dir, "desk-6");
    let unanswered = of_type(&gone, "tool_result");
    assert_eq!(unanswered.len(), 1, "{gone:?}");
    assert_eq!(unanswered[0]["payload"]["status"], "client_closed");
    assert!(
        of_type(&gone, "mcp_session")
            .iter()
            .any(|x| x["payload"]["phase"] == "ended" && x["payload"]["reason"] == "client_closed")
    );

    // Content never reached the store: the marker was in arguments and results.
    let hits = grep_dir(Path::new(&s.dir), marker.as_bytes());
    assert!(hits.is_empty(), "the marker is in {hits:?}");
    let r = run(&["verify", "--data-dir", &s.dir]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

/// server-everything over Streamable HTTP and `blackbox mcp proxy --agent-id AGENT` in front of
/// it, both killed when dropped; the gateway's port.
fn http_gateway(s: &Setup, url: &str, agent: &str) -> (Kill, Kill, u16) {
    let up_port = free_port();
    let upstream = Kill(
        Command::new(npm_bin("mcp-server-everything"))
            .arg("streamableHttp")
            .env("PORT", up_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(up_port);
    let gw_port = free_port();
    let gateway = Kill(
        Command::new(bin_path())
            .args([
                "mcp",
                "proxy",
                "--agent-id",
                agent,
                "--upstream",
                &format!("http://127.0.0.1:{up_port}/mcp"),
                "--listen",
                &format!("127.0.0.1:{gw_port}"),
            ])
            .envs(gateway_env(s, url))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    wait_for(gw_port);
    (upstream, gateway, gw_port)
}

/// Kills a child when dropped.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_http_gateway_audits_and_polices_a_streamable_http_server() {
    let mut s = setup();
    let url = s.server.url();
    let (_upstream, _gateway, gw_port) = http_gateway(&s, &url, "web-1");
    let marker = "BBXMCPHTTP51c0de";
    let steps = client(
        &[
            "everything",
            "--url",
            &format!("http://127.0.0.1:{gw_port}/mcp"),
            "--marker",
            marker,
        ],
        &[],
    );
    assert_eq!(steps["initialize"]["server"], "mcp-servers/everything");
    assert_eq!(steps["big_echo"]["chars"], 900_006);
    assert_eq!(steps["long_running"]["progress"], 4);
    assert_eq!(steps["sampling"]["ok"], true);
    assert_eq!(steps["injection"]["code"], -31001, "{steps:?}");

    let (status, metrics) = common::serve::http(
        format!("127.0.0.1:{gw_port}").parse().unwrap(),
        "GET",
        "/blackbox/metrics",
        None,
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("blackbox_mcp_tool_calls_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("blackbox_mcp_refused_total 1"),
        "{metrics}"
    );

    std::thread::sleep(Duration::from_millis(300));
    s.server.stop();
    let es = entries(&s.dir, "web-1");
    let calls = of_type(&es, "tool_call");
    assert_eq!(calls.len(), 5, "{calls:?}");
    let session = calls[0]["session_id"].as_str().unwrap();
    for c in &calls {
        assert_eq!(c["payload"]["mcp"]["transport"], "http");
        // The entries' session names the MCP session by a digest of its id (the id itself is a
        // credential of the session), the same in every entry of the session.
        let h = c["payload"]["mcp"]["session_hash"].as_str().unwrap();
        assert_eq!(h.len(), 32);
        assert_eq!(format!("mcp-{h}"), session);
    }
    assert_eq!(of_type(&es, "tool_result").len(), 4);
    assert!(
        of_type(&es, "mcp_request")
            .iter()
            .any(|r| r["payload"]["method"] == "sampling/createMessage")
    );
    assert!(
        of_type(&es, "mcp_session")
            .iter()
            .any(|x| x["payload"]["phase"] == "ended" && x["payload"]["reason"] == "client_closed")
    );
    let hits = grep_dir(Path::new(&s.dir), marker.as_bytes());
    assert!(hits.is_empty(), "the marker is in {hits:?}");
    let r = run(&["verify", "--data-dir", &s.dir]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

#[test]
fn with_the_service_away_calls_are_refused_and_recorded_once_it_is_back() {
    require_peers();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d").to_string_lossy().into_owned();
    let state = tmp.path().join("state").to_string_lossy().into_owned();
    assert_eq!(run(&["init", "--data-dir", &dir]).code, 0);
    let ingest = token(&dir, Some("acme"), "ingest");
    // Nothing listens there yet.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let env = [
        ("BLACKBOX_SERVER", url.as_str()),
        ("BLACKBOX_TOKEN", ingest.as_str()),
        ("BLACKBOX_MCP_STATE_DIR", state.as_str()),
        ("BLACKBOX_LOG", "error"),
    ];
    let everything = npm_bin("mcp-server-everything");
    let steps = client(
        &[
            "paused",
            "--stdio",
            &wrap_cmd("away-1", &[&everything, "stdio"]),
        ],
        &env,
    );
    // Fail closed: refused, the upstream never called.
    assert_eq!(steps["paused_call"]["code"], -31004, "{steps:?}");
    let spooled = std::fs::read_dir(Path::new(&state).join("spool"))
        .unwrap()
        .count();
    assert_eq!(spooled, 1, "the unsent records wait in one spool file");

    // The service comes back (on that port): the next gateway sends what was spooled first.
    let mut server = Server::start_at(&dir, port, |c| c);
    let steps = client(
        &[
            "paused",
            "--stdio",
            &wrap_cmd("away-1", &[&everything, "stdio"]),
        ],
        &env,
    );
    assert_eq!(steps["paused_call"]["ok"], true, "{steps:?}");
    std::thread::sleep(Duration::from_millis(300));
    server.stop();
    let es = entries(&dir, "away-1");
    let calls = of_type(&es, "tool_call");
    let undecided: Vec<_> = calls
        .iter()
        .filter(|c| c["payload"]["gateway"]["decision"] == "refused_undecided")
        .collect();
    assert_eq!(undecided.len(), 1, "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|c| c["payload"]["authorization"]["decision"] == "allow")
    );
    assert_eq!(
        std::fs::read_dir(Path::new(&state).join("spool"))
            .unwrap()
            .count(),
        0
    );
    let r = run(&["verify", "--data-dir", &dir]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

#[test]
fn a_gateway_goes_on_across_a_restart_of_the_service() {
    use std::io::BufRead as _;
    let mut s = setup();
    let url = s.server.url();
    let port = s.server.addr.port();
    let go = tempfile::tempdir().unwrap();
    let everything = npm_bin("mcp-server-everything");
    let mut c = Command::new(python());
    c.arg(script("client.py"))
        .args([
            "restart",
            "--stdio",
            &wrap_cmd("restart-1", &[&everything, "stdio"]),
        ])
        .args(["--root", &go.path().to_string_lossy()])
        .envs(gateway_env(&s, &url))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = c.spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["step"], "first");
    assert_eq!(first["ok"], true, "{first}");
    // The service stops (gracefully) and starts again on the same port, the gateway still up.
    s.server.stop();
    s.server = Server::start_at(&s.dir, port, |c| c);
    std::fs::write(go.path().join("go"), b"").unwrap();
    let second: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["step"], "second");
    assert_eq!(second["ok"], true, "{second}");
    assert!(child.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    s.server.stop();
    let es = entries(&s.dir, "restart-1");
    let allowed = of_type(&es, "tool_call")
        .iter()
        .filter(|c| c["payload"]["authorization"]["decision"] == "allow")
        .count();
    assert_eq!(allowed, 2, "{es:?}");
    assert_eq!(of_type(&es, "tool_result").len(), 2, "{es:?}");
    assert!(
        of_type(&es, "mcp_session")
            .iter()
            .any(|x| x["payload"]["phase"] == "ended")
    );
    let r = run(&["verify", "--data-dir", &s.dir]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

#[test]
fn with_a_data_dir_the_gateway_runs_the_service_itself() {
    require_peers();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d").to_string_lossy().into_owned();
    let state = tmp.path().join("state").to_string_lossy().into_owned();
    let rules = tmp.path().join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let rules = rules.to_string_lossy().into_owned();
    let everything = npm_bin("mcp-server-everything");
    let mut cmd = vec![
        bin_path(),
        "mcp".into(),
        "wrap".into(),
        "--agent-id".into(),
        "local-1".into(),
        "--data-dir".into(),
        dir.clone(),
        "--tenant-id".into(),
        "acme".into(),
        "--rules".into(),
        rules,
        "--".into(),
        everything,
        "stdio".into(),
    ];
    let steps = client(
        &[
            "everything",
            "--stdio",
            &serde_json::to_string(&cmd).unwrap(),
        ],
        &[("BLACKBOX_MCP_STATE_DIR", state.as_str())],
    );
    assert_eq!(steps["echo"]["ok"], true, "{steps:?}");
    assert_eq!(steps["injection"]["code"], -31001, "{steps:?}");
    let es = entries(&dir, "local-1");
    assert_eq!(of_type(&es, "tool_call").len(), 5, "{es:?}");
    assert_eq!(of_type(&es, "tool_result").len(), 4);
    assert!(es.iter().all(|e| e["tenant_id"] == "acme"));
    assert!(
        of_type(&es, "anomaly_detected")
            .iter()
            .any(|a| a["payload"]["rule"] == "prompt_injection_in_tool_args")
    );
    // The run's token is revoked at its end.
    let r = run(&["tokens", "list", "--data-dir", &dir, "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tokens: Value = serde_json::from_str(&r.stdout).unwrap();
    let t = &tokens.as_array().unwrap()[0];
    assert!(t["revoked_ms"].is_i64(), "{t}");
    // Decisions asked in-process carry the run's token as their origin, as over HTTP; the
    // records (sent over the embedded service's HTTP port) too.
    for e in of_type(&es, "tool_call") {
        assert_eq!(e["origin"]["token_id"], t["id"], "{e}");
        assert_eq!(e["origin"]["via"], "mcp", "{e}");
    }
    for e in of_type(&es, "tool_result") {
        assert_eq!(e["origin"]["token_id"], t["id"], "{e}");
        assert_eq!(e["origin"]["via"], "events", "{e}");
    }
    let r = run(&["verify", "--data-dir", &dir]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    // One writer per directory: while a service owns it, the gateway says so and stops.
    let mut server = Server::start(&dir);
    cmd.truncate(11);
    cmd.extend(["--".into(), "true".into()]);
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("BLACKBOX_MCP_STATE_DIR", &state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another writer"), "{err}");
    server.stop();
}

#[test]
fn a_client_of_the_2025_06_18_revision_is_audited_and_policed_too() {
    let mut s = setup();
    let url = s.server.url();
    let env = gateway_env(&s, &url);
    let run_old = |args: &[&str], env: &[(&str, &str)]| {
        client_of(&python_2025_06_18(), "client_2025_06_18.py", args, env)
    };
    let everything = npm_bin("mcp-server-everything");
    // stdio
    let steps = run_old(
        &["--stdio", &wrap_cmd("old-stdio", &[&everything, "stdio"])],
        &env,
    );
    assert_eq!(steps["initialize"]["protocol"], "2025-06-18", "{steps:?}");
    assert_eq!(steps["echo"]["text"], "Echo: hello");
    assert_eq!(steps["injection"]["code"], -31001, "{steps:?}");
    // Streamable HTTP
    let (_upstream, _gateway, gw_port) = http_gateway(&s, &url, "old-http");
    let steps = run_old(&["--url", &format!("http://127.0.0.1:{gw_port}/mcp")], &[]);
    assert_eq!(steps["initialize"]["protocol"], "2025-06-18", "{steps:?}");
    assert_eq!(steps["injection"]["code"], -31001, "{steps:?}");
    std::thread::sleep(Duration::from_millis(300));
    s.server.stop();
    for agent in ["old-stdio", "old-http"] {
        let es = entries(&s.dir, agent);
        let calls = of_type(&es, "tool_call");
        assert_eq!(calls.len(), 2, "{agent}: {es:?}");
        for c in calls {
            assert_eq!(c["payload"]["mcp"]["protocol_version"], "2025-06-18", "{c}");
        }
        assert_eq!(of_type(&es, "tool_result").len(), 1, "{agent}: {es:?}");
    }
    let r = run(&["verify", "--data-dir", &s.dir]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
