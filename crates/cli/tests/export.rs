//! `blackbox export`: figures checked against a log built with known gaps, anomalies and ages;
//! the PDF checked with external tools; the manifest with the public key alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{init_store, run};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_735_689_600_000; // 2025-01-01T00:00:00Z

fn ts(ms: i64) -> String {
    blackbox_core::entry::format_timestamp(ms).unwrap()
}

/// The known log: an entry 400 days before the period's end, then in January 2025 two agents;
/// session `a/s1` misses client_seq 4–5, session `b/s2` has a heartbeat saying 12 were sent but
/// only 10 arrived; three anomalies (one pause later resumed, one block, one alert).
fn known_log() -> String {
    let mut lines = Vec::new();
    lines.push(
        json!({"agent_id": "old", "session_id": "o", "event_type": "decision",
        "timestamp": ts(T0 + 29 * DAY - 400 * DAY), "payload": {"decision": "start"}}),
    );
    for i in 1..=10u64 {
        if i == 4 || i == 5 {
            continue;
        }
        lines.push(
            json!({"agent_id": "a", "session_id": "s1", "client_seq": i, "event_type": "tool_call",
            "tool_name": "query_database", "timestamp": ts(T0 + i as i64 * 60_000),
            "result": {"rows_returned": 1, "data_classification": "confidential"},
            "data_subjects": [{"id": format!("cust-{}", i % 3), "category": "customer"}]}),
        );
    }
    for i in 1..=10u64 {
        lines.push(json!({"agent_id": "b", "session_id": "s2", "client_seq": i, "event_type": "llm_request",
            "model": "m", "timestamp": ts(T0 + DAY + i as i64 * 60_000)}));
    }
    lines.push(
        json!({"agent_id": "b", "session_id": "s2", "event_type": "heartbeat",
        "timestamp": ts(T0 + DAY + 3_600_000), "payload": {"last_client_seq": 12}}),
    );
    let alert = |agent: &str, rule: &str, action: &str, enforcement: &str, t: i64| {
        json!({"agent_id": agent, "session_id": "x", "event_type": "anomaly_detected", "timestamp": ts(t),
            "payload": {"rule": rule, "action": action, "severity": "high", "enforcement": enforcement}})
    };
    lines.push(alert(
        "a",
        "excessive_tool_calls",
        "alert_and_pause",
        "paused",
        T0 + 2 * DAY,
    ));
    lines.push(
        json!({"agent_id": "a", "session_id": "operator", "event_type": "agent_paused",
        "timestamp": ts(T0 + 2 * DAY), "payload": {"by": "rule:excessive_tool_calls"}}),
    );
    lines.push(
        json!({"agent_id": "a", "session_id": "operator", "event_type": "agent_resumed",
        "timestamp": ts(T0 + 3 * DAY), "payload": {"by": "operator:x"}}),
    );
    lines.push(alert(
        "b",
        "prompt_injection_in_tool_args",
        "block_and_alert",
        "blocked",
        T0 + 4 * DAY,
    ));
    lines.push(alert(
        "b",
        "off_hours_data_access",
        "alert",
        "none",
        T0 + 5 * DAY,
    ));
    lines.iter().map(|l| l.to_string() + "\n").collect()
}

/// Writes the known log as it would have been recorded: each entry at its time by the writer's
/// clock, the agents' events as theirs and the detection entries (reserved types, which no
/// client may write) as the service's own, through the ledger writer the service uses.
fn write_known_log(dir: &str) {
    use blackbox_core::origin::{Origin, is_reserved};
    let d = blackbox_ledger::datadir::DataDir::new(dir);
    let (mut store, mut writer, config) = blackbox_ledger::open::open_writer(&d).unwrap();
    let agent = Origin::local("append", "test").unwrap();
    let log = known_log();
    let n = log.lines().count();
    for (i, line) in log.lines().enumerate() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        v["tenant_id"] = json!("acme");
        let at = blackbox_core::entry::parse_timestamp(v["timestamp"].as_str().unwrap()).unwrap();
        let et = v["event_type"].as_str().unwrap().to_owned();
        let origin = if is_reserved(&et) {
            &Origin::Service
        } else {
            &agent
        };
        let ev = blackbox_core::event::normalize_json(
            v.to_string().as_bytes(),
            &config.redaction,
            origin,
        )
        .unwrap();
        writer.append(&mut store, &[ev], at, i + 1 == n).unwrap();
    }
}

fn setup() -> (tempfile::TempDir, String) {
    let (tmp, dir) = init_store();
    write_known_log(&dir);
    // A person resolves the block's alert (the only thing that resolves an alert); the resume
    // and the enforced block resolve nothing by themselves.
    let r = run(&[
        "query",
        "--data-dir",
        &dir,
        "--event-type",
        "anomaly_detected",
        "--format",
        "jsonl",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let block = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["payload"]["rule"] == "prompt_injection_in_tool_args")
        .unwrap();
    let r = run(&[
        "alerts",
        "resolve",
        block["entry_id"].as_str().unwrap(),
        "--resolution",
        "true_positive",
        "--data-dir",
        &dir,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["export", "--print-config"]);
    std::fs::write(format!("{dir}/export.toml"), r.stdout).unwrap();
    (tmp, dir)
}

#[test]
fn figures_match_the_known_log() {
    let (tmp, dir) = setup();
    let out = tmp.path().join("soc2.json");
    let out_s = out.to_str().unwrap();
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "soc2",
        "--control",
        "CC7.2",
        "--period",
        "2025-01-01/2025-01-30",
        "--output",
        out_s,
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let f = &v["figures"];
    // 8 + 10 + heartbeat + 3 alerts + pause + resume = 24 in the period (the old entry is not).
    assert_eq!(f["population"]["entries"], 24, "{}", f["population"]);
    let c = &f["completeness"];
    assert_eq!(
        c["session_missing"], 4,
        "2 missing in a/s1, 2 after the heartbeat in b/s2: {c}"
    );
    assert_eq!(c["chain_missing"], 0);
    assert_eq!(c["expected"], 28);
    assert_eq!(c["percent"], 85.7143);
    let gaps: Vec<(String, u64, u64)> = c["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["session_id"].as_str().unwrap().to_owned(),
                g["from"].as_u64().unwrap(),
                g["to"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(gaps, [("s1".to_owned(), 4, 5), ("s2".to_owned(), 11, 12)]);
    let a = &f["anomalies"];
    assert_eq!(a["total"], 3);
    assert_eq!(
        a["resolved"], 1,
        "one alert was resolved by a person; a resume or an enforced block resolves nothing: {a}"
    );
    assert_eq!(f["retention"]["oldest_age_days"], 400);
    assert_eq!(f["retention"]["required_days"], 365);
    assert_eq!(f["retention"]["met"], true);
    assert_eq!(f["integrity"]["status"], "ok");
    assert_eq!(f["daily"].as_array().unwrap().len(), 30);
    assert_eq!(f["daily"][0]["entries"], 8);
    assert_eq!(
        f["sample"].as_array().unwrap().len(),
        24,
        "the sample holds at most the population"
    );

    // Same data, same bytes.
    let again = tmp.path().join("again.json");
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "soc2",
        "--control",
        "CC7.2",
        "--period",
        "2025-01-01/2025-01-30",
        "--output",
        again.to_str().unwrap(),
        "--sample-size",
        "5",
    ]);
    assert_eq!(r.code, 0);
    let r2 = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "soc2",
        "--control",
        "CC7.2",
        "--period",
        "2025-01-01/2025-01-30",
        "--output",
        out_s,
        "--sample-size",
        "5",
    ]);
    assert_eq!(r2.code, 0);
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&out).unwrap(),
        "byte-identical JSON"
    );

    // The manifest checks with the public key alone; any change is caught.
    let pubkey = format!("{dir}/checkpoint.pub");
    let manifest = format!("{out_s}.manifest");
    let ok = run(&["export", "verify", &manifest, "--public-key", &pubkey]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout.starts_with("OK — manifest signed by"),
        "{}",
        ok.stdout
    );
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&out, &bytes).unwrap();
    let bad = run(&["export", "verify", &manifest, "--public-key", &pubkey]);
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    assert!(bad.stdout.contains("SHA-256 differs"), "{}", bad.stdout);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("2025-01-30", "2025-01-31")).unwrap();
    let forged = run(&["export", "verify", &manifest, "--public-key", &pubkey]);
    assert_eq!(forged.code, 1, "{}", forged.stdout);
    assert!(forged.stdout.starts_with("FAILED — "), "{}", forged.stdout);

    // GDPR: the record joined with what was observed; data subjects counted, never shown.
    let gdpr = tmp.path().join("ropa.json");
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "gdpr",
        "--article",
        "art30",
        "--include-data-subjects",
        "true",
        "--output",
        gdpr.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(&gdpr).unwrap();
    let g: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(g["figures"]["data_subjects"][0]["category"], "customer");
    assert_eq!(g["figures"]["data_subjects"][0]["subjects"], 3);
    assert_eq!(
        g["figures"]["touches"][0]["data_classification"],
        "confidential"
    );
    assert!(
        !text.contains("cust-1"),
        "no data-subject id in the evidence"
    );
    assert_eq!(g["record_of_processing"]["controller"]["name"], "Acme Corp");

    // CSV: the population tables, all in the manifest.
    let csv = tmp.path().join("iso.csv");
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "iso27001",
        "--control",
        "A.8.15",
        "--period",
        "2025-01-01/2025-01-30",
        "--output",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        std::fs::read_to_string(&csv)
            .unwrap()
            .starts_with("date,entries,anomalies\n2025-01-01,8,0\n")
    );
    assert!(tmp.path().join("iso.sample.csv").exists());
    let r = run(&[
        "export",
        "verify",
        &format!("{}.manifest", csv.display()),
        "--public-key",
        &pubkey,
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("iso.gaps.csv"), "{}", r.stdout);
}

#[test]
fn bad_requests_get_clear_errors() {
    let (tmp, dir) = setup();
    let out = tmp.path().join("x.pdf");
    let o = out.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--standard", "soc2", "--control", "A.8.15", "--output", o],
            "no report for --standard soc2",
        ),
        (
            &[
                "--standard",
                "soc2",
                "--control",
                "CC7.2",
                "--period",
                "2025-13-01/2025-12-31",
                "--output",
                o,
            ],
            "is not a date",
        ),
        (
            &[
                "--standard",
                "soc2",
                "--control",
                "CC7.2",
                "--period",
                "2025-02-01/2025-01-01",
                "--output",
                o,
            ],
            "the end is before the start",
        ),
        (
            &[
                "--standard",
                "soc2",
                "--control",
                "CC7.2",
                "--period",
                "2020-01-01/2020-12-31",
                "--output",
                o,
            ],
            "no entries between",
        ),
        (
            &[
                "--standard",
                "soc2",
                "--control",
                "CC7.2",
                "--output",
                &o.replace(".pdf", ".docx"),
            ],
            "the format follows the extension",
        ),
    ];
    for (args, want) in cases {
        let mut a = vec!["export", "--data-dir", &dir];
        a.extend_from_slice(args);
        let r = run(&a);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
    }
}

fn tool(name: &str) -> bool {
    std::process::Command::new(name).arg("-v").output().is_ok()
}

#[test]
fn the_pdf_passes_qpdf_and_pdftotext_finds_the_figures() {
    if !(tool("qpdf") && tool("pdftotext")) {
        assert!(
            std::env::var_os("CI").is_none(),
            "qpdf and poppler-utils are required in CI"
        );
        eprintln!(
            "SKIPPED: qpdf or pdftotext is not installed (apt-get install qpdf poppler-utils)"
        );
        return;
    }
    let (tmp, dir) = setup();
    let out = tmp.path().join("soc2_cc7.2_evidence.pdf");
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "soc2",
        "--control",
        "CC7.2",
        "--period",
        "2025-01-01/2025-01-30",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let q = std::process::Command::new("qpdf")
        .arg("--check")
        .arg(&out)
        .output()
        .unwrap();
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stdout));
    let t = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&out)
        .arg("-")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&t.stdout);
    for want in [
        "SOC 2 CC7.2 evidence",
        "Acme Corp",
        "85.7143% of expected entries present",
        "28",
        "3 events flagged for review, 1 resolved",
        "oldest log = 400 days (required: 365 days)",
        "Implements filters to analyse anomalies",
        "blackbox verify --data-dir",
        "Page 2 of",
    ] {
        assert!(text.contains(want), "`{want}` not in the PDF text:\n{text}");
    }
    let iso = tmp.path().join("iso27001_A.8.15_evidence.pdf");
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "iso27001",
        "--control",
        "A.8.15",
        "--period",
        "2025-01-01/2025-01-30",
        "--output",
        iso.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let t = std::process::Command::new("pdftotext")
        .arg(&iso)
        .arg("-")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&t.stdout);
    for want in [
        "ISO/IEC 27001:2022 A.8.15 evidence",
        "What each entry records",
        "Where",
    ] {
        assert!(text.contains(want), "`{want}` not in the ISO PDF");
    }
}

#[test]
fn archived_entries_are_still_in_the_evidence() {
    let (tmp, dir) = setup();
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
            "--period",
            "2025-01-01/2025-01-30",
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
    };
    let before = export("before.json");
    // Two years on, every entry leaves the store for the archive.
    let r = common::bin()
        .env("BLACKBOX_TEST_NOW", "2028-12-31T00:00:00Z")
        .args(["retention", "run", "--data-dir", &dir])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let hot = run(&[
        "query",
        "--data-dir",
        &dir,
        "--start",
        "2025-01-01",
        "--end",
        "2025-01-30",
        "--format",
        "jsonl",
    ]);
    assert_eq!(
        hot.stdout.lines().count(),
        0,
        "the period's entries are archived"
    );
    let after = export("after.json");
    for part in ["population", "completeness", "anomalies", "gdpr", "daily"] {
        assert_eq!(
            before["figures"][part], after["figures"][part],
            "figures.{part} changed when the entries moved to the archive"
        );
    }
    assert_eq!(
        after["figures"]["integrity"]["status"], "ok",
        "{}",
        after["figures"]["integrity"]
    );
}
