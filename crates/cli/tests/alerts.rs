//! Alert triage end to end, against a real `blackbox serve` and on a data directory: alerts fired
//! by rules, listed and filtered, acknowledged and resolved by admins only, agents unable to
//! write triage, resumes that name their alert, and the export's "resolved" figure.

// Helpers here panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::serve::{Server, http, token};
use common::{bin, init_store, run};
use serde_json::{Value, json};

const RULES: &str = "anomaly_detection:\n  rules:\n    - name: no_jailbreaks\n      condition: {match_patterns: [jailbreak]}\n      action: block_and_alert\n    - name: destructive\n      condition: {match_patterns: [drop table]}\n      action: alert_and_pause\n";

/// SHA-256 of the note the test gives (computed independently of Blackbox).
const NOTE: &str = "Jane Doe (jane@example.com) says the export was hers";
const NOTE_SHA256: &str = "3ffd5496c87d978ed73393613494b5519746a7a78e2493889e1508551d588941";

/// The service with `rules` as its rules file.
fn start(dir: &str, rules: &str) -> Server {
    Server::start_with(dir, |mut c| {
        c.args(["--rules", rules]);
        c
    })
}

/// (status, JSON body).
fn call(srv: &Server, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let b = body.map(|b| b.to_string());
    let (s, text) = http(srv.addr, method, path, Some(token), b.as_deref()).unwrap();
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn list_alerts(srv: &Server, token: &str, query: &str) -> Vec<Value> {
    let (s, v) = call(srv, "GET", &format!("/v1/alerts?{query}"), token, None);
    assert_eq!(s, 200, "{v}");
    v["alerts"].as_array().unwrap().clone()
}

/// A decision for `agent` with `text` in its arguments: (decision, its entry id).
fn decide(srv: &Server, ingest: &str, agent: &str, text: &str) -> (String, String) {
    let (s, v) = call(
        srv,
        "POST",
        "/v1/decide",
        ingest,
        Some(json!({"agent_id": agent, "session_id": "s", "tool_name": "t", "args": {"q": text}})),
    );
    assert_eq!(s, 200, "{v}");
    (
        v["decision"].as_str().unwrap().to_owned(),
        v["entry_id"].as_str().unwrap().to_owned(),
    )
}

/// Fires three alerts in tenant acme: no_jailbreaks for a1 and a2, destructive (which pauses)
/// for a3. Returns the alert ids in that order and the id of a plain entry.
fn fire(srv: &Server, ingest: &str, read: &str) -> ([String; 3], String) {
    assert_eq!(decide(srv, ingest, "a1", "a jailbreak").0, "block");
    assert_eq!(decide(srv, ingest, "a2", "jailbreak again").0, "block");
    assert_eq!(decide(srv, ingest, "a3", "drop table users").0, "paused");
    let (allowed, plain) = decide(srv, ingest, "a4", "hello");
    assert_eq!(allowed, "allow");
    let all = list_alerts(srv, read, "");
    let ids: Vec<String> = all
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{all:?}");
    (ids.try_into().unwrap(), plain)
}

#[test]
fn alerts_are_listed_filtered_and_triaged_only_by_admins() {
    let (tmp, dir) = init_store();
    let rules = tmp.path().join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let srv = start(&dir, rules.to_str().unwrap());
    let ingest = token(&dir, Some("acme"), "ingest");
    let read = token(&dir, Some("acme"), "read");
    let other = token(&dir, Some("globex"), "read");
    let admin = token(&dir, None, "admin");
    let ([a1, a2, a3], plain) = fire(&srv, &ingest, &read);

    // Listed open, oldest first, with what fired them; another tenant sees none of them.
    let all = list_alerts(&srv, &read, "");
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|a| a["state"] == "open"), "{all:?}");
    assert_eq!(all[0]["alert_id"], a1.as_str());
    assert_eq!(all[0]["rule"], "no_jailbreaks");
    assert_eq!(all[0]["agent_id"], "a1");
    assert_eq!(all[2]["rule"], "destructive");
    assert!(list_alerts(&srv, &other, "").is_empty());
    // Filters: rule, agent, state, time.
    assert_eq!(list_alerts(&srv, &read, "rule=no_jailbreaks").len(), 2);
    let by_agent = list_alerts(&srv, &read, "agent_id=a2");
    assert_eq!(by_agent.len(), 1);
    assert_eq!(by_agent[0]["alert_id"], a2.as_str());
    assert_eq!(list_alerts(&srv, &read, "state=open").len(), 3);
    assert!(list_alerts(&srv, &read, "since=2999-01-01").is_empty());
    assert_eq!(
        list_alerts(&srv, &read, "until=2999-01-01&since=2000-01-01").len(),
        3
    );
    let (s, v) = call(&srv, "GET", "/v1/alerts?state=closed", &read, None);
    assert_eq!(s, 400, "{v}");
    // Pages: two, then the last one.
    let (s, p1) = call(&srv, "GET", "/v1/alerts?limit=2", &read, None);
    assert_eq!(s, 200);
    assert_eq!(p1["alerts"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().unwrap();
    let (s, p2) = call(
        &srv,
        "GET",
        &format!("/v1/alerts?limit=2&cursor={cursor}"),
        &read,
        None,
    );
    assert_eq!(s, 200, "{p2}");
    assert_eq!(p2["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(p2["alerts"][0]["alert_id"], a3.as_str());
    assert_eq!(p2["next_cursor"], Value::Null);

    // Ingest and read tokens cannot triage.
    for t in [&ingest, &read] {
        let (s, v) = call(
            &srv,
            "POST",
            &format!("/v1/alerts/{a1}/ack"),
            t,
            Some(json!({})),
        );
        assert_eq!(s, 403, "{v}");
        let (s, v) = call(
            &srv,
            "POST",
            &format!("/v1/alerts/{a1}/resolve"),
            t,
            Some(json!({"resolution": "false_positive"})),
        );
        assert_eq!(s, 403, "{v}");
    }
    // Nor can an agent write triage entries through the intake.
    for t in ["alert_acknowledged", "alert_resolved"] {
        let ev = json!({"agent_id": "a1", "session_id": "s", "event_type": t,
            "payload": {"alert_id": a1, "by": "operator:x", "resolution": "false_positive"}});
        let (s, v) = call(&srv, "POST", "/v1/events", &ingest, Some(ev));
        assert_eq!(s, 422, "{t}: {v}");
        assert_eq!(v["error"]["code"], "reserved_event_type", "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(t), "{v}");
    }
    assert_eq!(
        list_alerts(&srv, &read, "state=open").len(),
        3,
        "nothing changed"
    );

    // An admin acknowledges: recorded with the token's id, the ticket and the note's digest.
    let (s, v) = call(
        &srv,
        "POST",
        &format!("/v1/alerts/{a1}/ack"),
        &admin,
        Some(json!({"ticket": "INC-1", "note": NOTE})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["alert"]["state"], "acknowledged", "{v}");
    let ack = &v["alert"]["acknowledged"];
    assert!(ack["by"].as_str().unwrap().starts_with("operator:"), "{v}");
    assert_eq!(ack["ticket"], "INC-1");
    assert_eq!(ack["note_sha256"], NOTE_SHA256);
    let (s, lines) = http(
        srv.addr,
        "GET",
        "/v1/entries?event_type=alert_acknowledged&format=jsonl&limit=10",
        Some(&read),
        None,
    )
    .unwrap();
    assert_eq!(s, 200);
    assert!(!lines.contains("Jane"), "the note is never stored: {lines}");
    let entry: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(entry["agent_id"], "a1");
    assert_eq!(entry["payload"]["alert_id"], a1.as_str());
    assert_eq!(entry["payload"]["note_sha256"], NOTE_SHA256);
    assert_eq!(entry["payload"]["by"], ack["by"]);
    // Refusals: a second ack, a resolve without (or with an unknown) resolution, a ticket with a
    // line break, an unknown alert, an entry that is not an alert.
    let post = |path: String, body: Value| call(&srv, "POST", &path, &admin, Some(body));
    let (s, v) = post(format!("/v1/alerts/{a1}/ack"), json!({}));
    assert_eq!(s, 409, "{v}");
    let (s, v) = post(format!("/v1/alerts/{a1}/resolve"), json!({}));
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resolution"),
        "{v}"
    );
    let (s, _) = post(
        format!("/v1/alerts/{a1}/resolve"),
        json!({"resolution": "fixed"}),
    );
    assert_eq!(s, 400);
    let (s, v) = post(
        format!("/v1/alerts/{a1}/resolve"),
        json!({"resolution": "false_positive", "ticket": "INC-1\nforged: line"}),
    );
    assert_eq!(s, 400, "{v}");
    let (s, _) = post(
        format!("/v1/alerts/{a1}/resolve"),
        json!({"resolution": "false_positive", "ticket": "x".repeat(201)}),
    );
    assert_eq!(s, 400);
    let (s, v) = post(
        "/v1/alerts/01900000-0000-7000-8000-000000000000/ack".to_owned(),
        json!({}),
    );
    assert_eq!(s, 404, "{v}");
    let (s, v) = post(format!("/v1/alerts/{plain}/ack"), json!({}));
    assert_eq!(s, 404, "a tool call is not an alert: {v}");
    // Resolved: final.
    let (s, v) = post(
        format!("/v1/alerts/{a1}/resolve"),
        json!({"resolution": "false_positive", "ticket": "INC-1"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["alert"]["state"], "resolved");
    assert_eq!(v["alert"]["resolution"], "false_positive");
    for (path, body) in [
        ("resolve", json!({"resolution": "true_positive"})),
        ("ack", json!({})),
    ] {
        let (s, v) = post(format!("/v1/alerts/{a1}/{path}"), body);
        assert_eq!(s, 409, "{path}: {v}");
    }
    assert_eq!(list_alerts(&srv, &read, "state=resolved").len(), 1);
    assert_eq!(list_alerts(&srv, &read, "state=open").len(), 2);
    assert!(list_alerts(&srv, &read, "state=acknowledged").is_empty());
    assert!(list_alerts(&srv, &read, "state=resolved&rule=destructive").is_empty());

    // A rule paused a3: the resume names the alert it answers, an alert of that agent.
    let resume = |body: Value| call(&srv, "POST", "/v1/agents/a3/resume", &admin, Some(body));
    let (s, v) = resume(json!({"tenant_id": "acme"}));
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "alert_id_required", "{v}");
    let (s, v) = resume(json!({"tenant_id": "acme", "alert_id": a2}));
    assert_eq!(s, 400, "an alert of another agent: {v}");
    let (s, v) =
        resume(json!({"tenant_id": "acme", "alert_id": "01900000-0000-7000-8000-000000000000"}));
    assert_eq!(s, 404, "{v}");
    let (s, v) = call(
        &srv,
        "POST",
        "/v1/agents/a3/resume",
        &read,
        Some(json!({"alert_id": a3})),
    );
    assert_eq!(s, 403, "resuming needs an admin token: {v}");
    assert_eq!(decide(&srv, &ingest, "a3", "hello").0, "paused");
    let (s, v) = resume(json!({"tenant_id": "acme", "alert_id": a3, "reason": "reviewed"}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(decide(&srv, &ingest, "a3", "hello").0, "allow");
    let (_, lines) = http(
        srv.addr,
        "GET",
        "/v1/entries?event_type=agent_resumed&format=jsonl&limit=10",
        Some(&read),
        None,
    )
    .unwrap();
    let resumed: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(resumed["payload"]["alert_id"], a3.as_str(), "{resumed}");

    // The command line against the service.
    let url = srv.url();
    let r = run(&[
        "alerts", "list", "--server", &url, "--token", &read, "--state", "open", "--format", "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let open: Vec<&str> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap())
        .collect();
    assert_eq!(open, [a2.as_str(), a3.as_str()]);
    let r = run(&[
        "alerts",
        "resolve",
        &a2,
        "--resolution",
        "true_positive",
        "--server",
        &url,
        "--token",
        &ingest,
    ]);
    assert_eq!(r.code, 2, "an ingest token cannot resolve: {}", r.stderr);
    assert!(
        r.stderr.contains("admin") || r.stderr.contains("403"),
        "{}",
        r.stderr
    );
    let r = run(&[
        "alerts",
        "resolve",
        &a2,
        "--resolution",
        "true_positive",
        "--ticket",
        "INC-2",
        "--server",
        &url,
        "--token",
        &admin,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("Resolved (true_positive) alert"),
        "{}",
        r.stdout
    );
    let r = run(&[
        "alerts",
        "list",
        "--server",
        &url,
        "--token",
        &read,
        "--agent-id",
        "a2",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("resolved (true_positive)"),
        "{}",
        r.stdout
    );
    let r = run(&[
        "alerts",
        "resolve",
        &a2,
        "--resolution",
        "nope",
        "--server",
        &url,
        "--token",
        &admin,
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("resolution"), "{}", r.stderr);
}

#[test]
fn local_triage_on_a_data_dir_and_the_export_follows_it() {
    let (tmp, dir) = init_store();
    let rules = tmp.path().join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    let mut srv = start(&dir, rules.to_str().unwrap());
    let ingest = token(&dir, Some("acme"), "ingest");
    let read = token(&dir, Some("acme"), "read");
    let ([a1, _, _], _) = fire(&srv, &ingest, &read);
    // An agent's own agent_resumed does not resolve anything.
    let ev = json!({"agent_id": "a3", "session_id": "operator", "event_type": "agent_resumed",
        "payload": {"by": "operator:x"}});
    let (s, _) = call(&srv, "POST", "/v1/events", &ingest, Some(ev));
    assert!(s == 200 || s == 400 || s == 422, "{s}");

    // While the service runs, local triage is refused (one writer per data directory).
    let r = run(&["alerts", "ack", &a1, "--data-dir", &dir]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("in use"), "{}", r.stderr);
    drop(read);
    srv.stop();

    let export = |name: &str| -> Value {
        let out = tmp.path().join(name);
        let r = run(&[
            "export",
            "--data-dir",
            &dir,
            "--standard",
            "soc2",
            "--control",
            "CC7.2",
            "--tenant-id",
            "acme",
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        serde_json::from_slice::<Value>(&std::fs::read(&out).unwrap()).unwrap()["figures"]
            ["anomalies"]
            .clone()
    };
    let cfg = run(&["export", "--print-config"]);
    std::fs::write(format!("{dir}/export.toml"), cfg.stdout).unwrap();
    let before = export("before.json");
    assert_eq!(before["total"], 3, "{before}");
    assert_eq!(
        before["resolved"], 0,
        "a blocked call, a pause and an agent's resume resolve nothing: {before}"
    );

    let r = run(&["alerts", "list", "--data-dir", &dir, "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["alerts"].as_array().unwrap().len(), 3, "{v}");
    // Local triage names the OS user.
    let triage = |args: &[&str]| {
        let out = bin()
            .args(args)
            .env("USER", "auditor")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = triage(&[
        "alerts",
        "ack",
        &a1,
        "--data-dir",
        &dir,
        "--ticket",
        "INC-9",
        "--note",
        NOTE,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["alert"]["acknowledged"]["by"], "cli:auditor", "{v}");
    assert_eq!(v["alert"]["acknowledged"]["note_sha256"], NOTE_SHA256);
    let (code, _, err) = triage(&["alerts", "ack", &a1, "--data-dir", &dir]);
    assert_eq!(code, 2, "acknowledged already: {err}");
    assert!(err.contains("acknowledged already"), "{err}");
    let (code, _, err) = triage(&[
        "alerts",
        "resolve",
        &a1,
        "--data-dir",
        &dir,
        "--resolution",
        "accepted_risk",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = triage(&[
        "alerts",
        "resolve",
        &a1,
        "--data-dir",
        &dir,
        "--resolution",
        "true_positive",
    ]);
    assert_eq!(code, 2, "resolved is final: {err}");
    let (code, _, err) = triage(&["alerts", "ack", "not-an-id", "--data-dir", &dir]);
    assert_eq!(code, 2, "{err}");
    let r = run(&[
        "alerts",
        "list",
        "--data-dir",
        &dir,
        "--state",
        "resolved",
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["alerts"][0]["alert_id"], a1.as_str(), "{v}");
    assert_eq!(v["alerts"][0]["resolved"]["by"], "cli:auditor");

    let after = export("after.json");
    assert_eq!(after["resolved"], 1, "{after}");
    let by_rule = after["by_rule"].as_array().unwrap();
    let jail = by_rule
        .iter()
        .find(|r| r["rule"] == "no_jailbreaks")
        .unwrap();
    assert_eq!(
        (jail["count"].as_u64(), jail["resolved"].as_u64()),
        (Some(2), Some(1))
    );
    // `blackbox append` refuses triage entries too: only `blackbox alerts` writes them locally.
    let forged = json!({"tenant_id": "acme", "agent_id": "a2", "session_id": "triage",
        "event_type": "alert_resolved",
        "payload": {"alert_id": a1, "by": "cli:auditor", "resolution": "false_positive"}});
    let r = common::run_stdin(
        &["append", "--data-dir", &dir],
        Some(&format!("{forged}\n")),
    );
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("reserved"), "{}", r.stderr);
    // The chain with its triage entries still verifies.
    let r = run(&["verify", "--data-dir", &dir, "--all"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
