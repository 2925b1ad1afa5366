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

/// `blackbox export --data-dir DIR --standard soc2 --control CC7.2` and `extra`, with the clock
/// fixed at `now_ms` when given (the report's date comes from the clock: two runs compared byte
/// for byte must not straddle midnight).
fn export_soc2_at(dir: &str, extra: &[&str], now_ms: Option<i64>) -> common::Run {
    let mut cmd = common::bin();
    if let Some(ms) = now_ms {
        cmd.env("BLACKBOX_TEST_NOW", ts(ms));
    }
    let out = cmd
        .args([
            "export",
            "--data-dir",
            dir,
            "--standard",
            "soc2",
            "--control",
            "CC7.2",
        ])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`export_soc2_at`] on the real clock.
fn export_soc2(dir: &str, extra: &[&str]) -> common::Run {
    export_soc2_at(dir, extra, None)
}

/// The SOC 2 export of January 2025 with the clock at 2025-02-05 (`flag`: `--output` or
/// `--bundle`), which must succeed.
fn export_on_day_35(dir: &str, flag: &str, to: &std::path::Path) {
    let r = export_soc2_at(
        dir,
        &[
            "--period",
            "2025-01-01/2025-01-31",
            flag,
            to.to_str().unwrap(),
        ],
        Some(T0 + 35 * DAY),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
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
    let r = export_soc2(
        &dir,
        &["--period", "2025-01-01/2025-01-30", "--output", out_s],
    );
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
    // From 2023-12-27 (400 days before the period's last day) to 2025-01-30, both counted.
    assert_eq!(f["retention"]["oldest_age_days"], 401);
    assert_eq!(f["retention"]["as_of"], "2025-01-30");
    assert_eq!(f["retention"]["required_days"], 365);
    assert_eq!(f["retention"]["met"], true);
    assert_eq!(f["integrity"]["status"], "ok");
    // What the latest checkpoint leaves uncovered is said, not hidden.
    let i = &f["integrity"];
    let covered = i["checkpoint"]["size"].as_u64().unwrap_or(0);
    assert!(i["chain_size"].as_u64().unwrap() >= 25, "{i}");
    assert_eq!(
        i["after_checkpoint"].as_u64().unwrap(),
        i["chain_size"].as_u64().unwrap() - covered,
        "{i}"
    );
    assert_eq!(f["daily"].as_array().unwrap().len(), 30);
    assert_eq!(f["daily"][0]["entries"], 8);
    assert_eq!(
        f["sample"].as_array().unwrap().len(),
        24,
        "the sample holds at most the population"
    );

    // Same data, same bytes.
    let again = tmp.path().join("again.json");
    let r = export_soc2(
        &dir,
        &[
            "--period",
            "2025-01-01/2025-01-30",
            "--output",
            again.to_str().unwrap(),
            "--sample-size",
            "5",
        ],
    );
    assert_eq!(r.code, 0);
    let r2 = export_soc2(
        &dir,
        &[
            "--period",
            "2025-01-01/2025-01-30",
            "--output",
            out_s,
            "--sample-size",
            "5",
        ],
    );
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
    // Entries and mentions apart (one subject per entry here), and the record reconciled with
    // what was observed: the example's activity covers moltbot-* agents only.
    assert_eq!(g["figures"]["data_subjects"][0]["entries"], 8);
    assert_eq!(g["figures"]["data_subjects"][0]["mentions"], 8);
    let findings = &g["gdpr_findings"];
    assert_eq!(
        findings["storage_limitation"][0]["result"], "no personal data kept",
        "{findings}"
    );
    let exceptions = findings["exceptions"].to_string();
    for want in [
        "Agent a holds personal data (8 entries",
        "Agent a called tools in the period but no declared activity covers it.",
    ] {
        assert!(exceptions.contains(want), "{want} not in {exceptions}");
    }

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
    let r = export_soc2_at(
        &dir,
        &[
            "--period",
            "2025-01-01/2025-01-30",
            "--output",
            out.to_str().unwrap(),
        ],
        Some(T0 + 35 * DAY),
    );
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
        "the log reaches back 401 days as of 2025-01-30",
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
    // PDF/A-3a with the report's JSON and CSV inside, checked by an independent reader.
    check_pdfa(
        &out,
        &[
            "soc2_cc7.2_evidence.json",
            "soc2_cc7.2_evidence.alerts.csv",
            "soc2_cc7.2_evidence.alert-tests.csv",
        ],
    );
    check_pdfa(&iso, &["iso27001_A.8.15_evidence.json"]);
    // The JSON inside is the one `--output x.json` writes.
    let json = tmp.path().join("soc2_cc7.2_evidence.json");
    let r = export_soc2_at(
        &dir,
        &[
            "--period",
            "2025-01-01/2025-01-30",
            "--output",
            json.to_str().unwrap(),
        ],
        Some(T0 + 35 * DAY),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let detached = tmp.path().join("detached.json");
    let d = std::process::Command::new("pdfdetach")
        .args(["-savefile", "soc2_cc7.2_evidence.json", "-o"])
        .arg(&detached)
        .arg(&out)
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    assert_eq!(
        std::fs::read(&detached).unwrap(),
        std::fs::read(&json).unwrap(),
        "the JSON embedded in the PDF is the report's JSON"
    );
}

/// tools/check_pdfa.py (pikepdf, independent of the writer) on an evidence PDF: PDF/A-3a
/// declared, tagged, language, fonts, associated files (`attachments` among them).
fn check_pdfa(pdf: &std::path::Path, attachments: &[&str]) {
    let have = std::process::Command::new("python3")
        .args(["-c", "import pikepdf"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "pikepdf is needed in CI (python3 -m pip install -r tools/requirements-pdf.txt)"
        );
        eprintln!("SKIPPED: the PDF/A check needs pikepdf");
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/check_pdfa.py");
    let mut c = std::process::Command::new("python3");
    c.arg(script).arg(pdf);
    for a in attachments {
        c.args(["--attachment", a]);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn archived_entries_are_still_in_the_evidence() {
    let (tmp, dir) = setup();
    let export = |name: &str| -> Value {
        let out = tmp.path().join(name);
        let r = export_soc2(
            &dir,
            &[
                "--period",
                "2025-01-01/2025-01-30",
                "--output",
                out.to_str().unwrap(),
            ],
        );
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
    // A bundle carries the whole chain, archived segments first: it re-performs all the same.
    let bundle = tmp.path().join("bundle");
    let r = export_soc2(
        &dir,
        &[
            "--period",
            "2025-01-01/2025-01-30",
            "--bundle",
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let log = std::fs::read_to_string(bundle.join("log.jsonl")).unwrap();
    assert!(
        log.contains("{\"anchor\":"),
        "the store's part starts at its anchor"
    );
    let bundled: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("report.json")).unwrap()).unwrap();
    for part in ["population", "completeness", "anomalies", "daily"] {
        assert_eq!(
            before["figures"][part], bundled["figures"][part],
            "figures.{part} of the bundle"
        );
    }
    let r = run(&[
        "export",
        "reperform",
        bundle.to_str().unwrap(),
        "--public-key",
        &format!("{dir}/checkpoint.pub"),
        "--key-file",
        &format!("{dir}/keys/hmac.keys"),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

#[test]
fn without_export_settings_the_reports_run_and_name_what_is_not_configured() {
    let (tmp, dir) = setup();
    std::fs::remove_file(format!("{dir}/export.toml")).unwrap();
    let export = |standard: &str, control: &[&str], name: &str| -> Value {
        let out = tmp.path().join(name);
        let mut a = vec!["export", "--data-dir", &dir, "--standard", standard];
        a.extend_from_slice(control);
        a.extend_from_slice(&["--period", "2025-01-01/2025-01-30", "--output"]);
        a.push(out.to_str().unwrap());
        let r = run(&a);
        assert_eq!(r.code, 0, "{standard}: {}{}", r.stdout, r.stderr);
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
    };
    let soc2 = export("soc2", &["--control", "CC7.2"], "soc2.json");
    assert_eq!(soc2["settings_file"], false);
    let missing: Vec<&str> = soc2["not_configured"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(
        missing,
        [
            "organisation.name",
            "organisation.system",
            "organisation.contact",
            "retention.required_days or retention.standards",
            "report.preparer",
            "report.reviewer",
            "report.management_assertion",
            "alerts.triage_within_hours"
        ]
    );
    // SOC 2 sets no retention period: the report says whose number it uses.
    let req = soc2["figures"]["retention"]["requirement"]
        .as_str()
        .unwrap();
    assert!(
        req.starts_with("not configured, so the soc2 preset: 365 days, organisation-defined"),
        "{req}"
    );
    assert_eq!(soc2["figures"]["retention"]["required_days"], 365);

    // GDPR Art. 30 without a declared activity still runs, and says what the record lacks.
    let gdpr = export("gdpr", &["--article", "art30"], "gdpr.json");
    let missing = gdpr["not_configured"].to_string();
    for key in ["gdpr.controller.name", "gdpr.dpo.name", "gdpr.activities"] {
        assert!(missing.contains(key), "{key} not in {missing}");
    }
    let req = gdpr["figures"]["retention"]["requirement"]
        .as_str()
        .unwrap();
    assert!(req.contains("GDPR Art. 5(1)(e)"), "{req}");

    // The PDF says it on a page of its own and leaves the cover's blanks marked.
    let args = [
        "--standard",
        "soc2",
        "--control",
        "CC7.2",
        "--period",
        "2025-01-01/2025-01-30",
    ];
    if let Some(text) = pdf_export_text(&dir, &args, &tmp.path().join("soc2.pdf")) {
        for want in [
            "Settings not configured",
            "(not configured)",
            "organisation.name",
            "Management's assertion",
            "Report date",
            "Cross-framework mapping",
            "ISO/IEC 42001:2023",
            "2 agents: a, b",
        ] {
            assert!(text.contains(want), "`{want}` not in the PDF text:\n{text}");
        }
    }

    // A file named with --config must exist; a settings file with an unknown standard is refused.
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--config",
        &format!("{dir}/nowhere.toml"),
        "--standard",
        "soc2",
        "--control",
        "CC7.2",
        "--output",
        tmp.path().join("x.json").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("nowhere.toml"), "{}", r.stderr);
    std::fs::write(
        format!("{dir}/export.toml"),
        "[retention]\nstandards = [\"sox\"]\n",
    )
    .unwrap();
    let r = export_soc2(
        &dir,
        &["--output", tmp.path().join("y.json").to_str().unwrap()],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("unknown standard `sox`"), "{}", r.stderr);
}

#[test]
fn retention_is_counted_in_whole_days_as_of_the_export_not_a_future_period_end() {
    let (tmp, dir) = setup();
    // The export is made on 2025-01-10: a period running to the end of 2025 is counted to then.
    let out = tmp.path().join("r.json");
    let r = {
        let mut c = common::bin();
        c.env("BLACKBOX_TEST_NOW", "2025-01-10T12:00:00Z").args([
            "export",
            "--data-dir",
            &dir,
            "--standard",
            "soc2",
            "--control",
            "CC7.2",
            "--period",
            "2025-01-01/2025-12-31",
            "--output",
            out.to_str().unwrap(),
        ]);
        c.output().unwrap()
    };
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let rt = &v["figures"]["retention"];
    assert_eq!(rt["as_of"], "2025-01-10");
    // 2023-12-27 to 2025-01-10, both days counted.
    assert_eq!(rt["oldest_age_days"], 381);
    assert_eq!(rt["met"], true);
    // The chart stops at the export's day.
    let daily = v["figures"]["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 10);
    assert_eq!(daily[9]["date"], "2025-01-10");
}

#[test]
fn a_whole_log_export_counts_every_entry_by_seq() {
    let (tmp, dir) = setup();
    let out = tmp.path().join("all.json");
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "iso27001",
        "--control",
        "A.8.15",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let size = v["figures"]["integrity"]["chain_size"].as_u64().unwrap();
    assert_eq!(v["period"]["seqs"], json!([1, size]), "{}", v["period"]);
    assert_eq!(v["period"]["start"], "2023-12-27");
    assert_eq!(v["figures"]["population"]["entries"], size);
    assert_eq!(v["figures"]["completeness"]["chain_missing"], 0);
    assert!(
        v["figures"]["population"]["query"]
            .as_str()
            .unwrap()
            .contains("<= seq <="),
        "{}",
        v["figures"]["population"]
    );
}

#[test]
fn the_gdpr_record_tests_storage_limits_counts_erasures_and_raises_undeclared_processing() {
    let (tmp, dir) = setup();
    std::fs::write(
        format!("{dir}/export.toml"),
        r#"[organisation]
name = "Acme Corp"
system = "Agents"
contact = "sec@acme.example"
[retention]
required_days = 30
[report]
preparer = "Sam Ops"
reviewer = "Alex Audit"
[gdpr]
controller = { name = "Acme Corp", contact = "privacy@acme.example" }
joint_controllers = [{ name = "Partner GmbH", contact = "privacy@partner.example" }]
dpo = { name = "Dana", contact = "dpo@acme.example" }
record_version = "3"
record_date = "2025-01-15"
[[gdpr.activities]]
name = "Order lookups"
agents = ["a"]
erasure_limit_days = 10
data_classifications = ["internal"]
"#,
    )
    .unwrap();
    // One data subject erased (entries 1, 7 and 10 of agent a name cust-1).
    let r = run(&[
        "erase",
        "--data-dir",
        &dir,
        "--data-subject",
        "cust-1",
        "--reason",
        "Art. 17 request",
        "--ticket",
        "DSR-1",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let out = tmp.path().join("ropa.json");
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
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        !text.contains("cust-"),
        "no data-subject id in the evidence"
    );
    let g: Value = serde_json::from_str(&text).unwrap();
    let f = &g["figures"];
    assert_eq!(f["erasures"], json!({"erasures": 1, "entries_redacted": 3}));
    assert_eq!(
        f["data_subjects"][0]["subjects"], 2,
        "{}",
        f["data_subjects"]
    );
    assert_eq!(f["data_subjects"][0]["entries"], 5);
    let kept = &f["personal_kept"][0];
    assert_eq!(kept["agent_id"], "a");
    assert_eq!(kept["entries"], 5);
    assert_eq!(
        kept["seq"], 3,
        "the oldest entry still holding personal data: {kept}"
    );
    let limit = &g["gdpr_findings"]["storage_limitation"][0];
    assert_eq!(limit["activity"], "Order lookups");
    assert_eq!(limit["limit_days"], 10);
    assert_eq!(limit["result"], "EXCEEDS the limit", "{limit}");
    let exceptions: Vec<String> = g["gdpr_findings"]["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert!(
        exceptions[0].starts_with("Activity \"Order lookups\": personal data kept "),
        "{exceptions:?}"
    );
    assert!(
        exceptions.iter().any(|e| e.contains(
            "agent a's tool query_database returned data classified confidential (8 calls), a classification the activity does not declare"
        )),
        "{exceptions:?}"
    );
    assert!(
        !exceptions.iter().any(|e| e.starts_with("Agent a ")),
        "agent a is declared: {exceptions:?}"
    );
    // Only management's own assertion is left to write.
    let missing: Vec<&str> = g["not_configured"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(
        missing,
        ["report.management_assertion"],
        "{}",
        g["not_configured"]
    );
    assert_eq!(
        g["record_of_processing"]["joint_controllers"][0]["name"],
        "Partner GmbH"
    );

    // The PDF: the record's new fields, the tests and the exceptions with a response column.
    let args = ["--standard", "gdpr", "--article", "art30"];
    if let Some(text) = pdf_export_text(&dir, &args, &tmp.path().join("ropa.pdf")) {
        for want in [
            "Partner GmbH",
            "Record version",
            "Storage limitation",
            "EXCEEDS the limit",
            "Management response",
            "Erasures carried out in the period",
        ] {
            assert!(text.contains(want), "`{want}` not in the PDF text:\n{text}");
        }
    }
    // Data subjects, erasures and the personal data kept re-perform from a bundle too (the
    // log carries the sidecars not erased and the erasure markers).
    let bundle = tmp.path().join("ropa-bundle");
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
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&[
        "export",
        "reperform",
        bundle.to_str().unwrap(),
        "--public-key",
        &format!("{dir}/checkpoint.pub"),
        "--key-file",
        &format!("{dir}/keys/hmac.keys"),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for figure in ["data_subjects", "erasures", "personal_kept", "touches"] {
        assert!(
            r.stdout.contains(&format!(
                "match            figure {figure}: recomputed from the log"
            )),
            "{figure}: {}",
            r.stdout
        );
    }
}

/// Exports `args` (after `export --data-dir DIR`) to a PDF at `out` and returns its text by
/// pdftotext; `None` where pdftotext is missing (never in CI).
fn pdf_export_text(dir: &str, args: &[&str], out: &std::path::Path) -> Option<String> {
    if !tool("pdftotext") {
        assert!(
            std::env::var_os("CI").is_none(),
            "pdftotext (poppler-utils) is needed in CI"
        );
        return None;
    }
    let mut a = vec!["export", "--data-dir", dir];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--output", out.to_str().unwrap()]);
    let r = run(&a);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let t = std::process::Command::new("pdftotext")
        .arg(out)
        .arg("-")
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&t.stdout).into_owned())
}

/// Appends entries as the service would record them, each at its time by the writer's clock
/// (the detection and control entries as the service's own); one writer while it lives.
struct PlantedLog {
    store: Box<dyn blackbox_store::Store>,
    writer: blackbox_ledger::writer::Writer,
    config: blackbox_ledger::config::LedgerConfig,
    /// (event type, seq, entry id) of every entry written.
    written: Vec<(String, u64, String)>,
}

impl PlantedLog {
    fn open(dir: &str) -> Self {
        let d = blackbox_ledger::datadir::DataDir::new(dir);
        let (store, writer, config) = blackbox_ledger::open::open_writer(&d).unwrap();
        Self {
            store,
            writer,
            config,
            written: Vec::new(),
        }
    }

    /// Writes `v` into `tenant`'s chain at `at`; returns its seq and entry id.
    fn put(&mut self, tenant: &str, mut v: Value, at: i64) -> (u64, String) {
        use blackbox_core::origin::{Origin, is_reserved};
        v["tenant_id"] = json!(tenant);
        v["timestamp"] = json!(ts(at));
        let et = v["event_type"].as_str().unwrap().to_owned();
        let agent = Origin::local("append", "test").unwrap();
        let origin = if is_reserved(&et) || tenant == "_blackbox" {
            &Origin::Service
        } else {
            &agent
        };
        let ev = blackbox_core::event::normalize_json(
            v.to_string().as_bytes(),
            &self.config.redaction,
            origin,
        )
        .unwrap();
        self.writer
            .append(self.store.as_mut(), &[ev], at, true)
            .unwrap();
        let head = self
            .store
            .chains()
            .unwrap()
            .into_iter()
            .find(|h| h.tenant_id == tenant)
            .unwrap();
        let hex: String = head
            .last_entry_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let id = format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        );
        self.written.push((et, head.size, id.clone()));
        (head.size, id)
    }
}

/// The alert register's ground truth: the rules file loaded the day before the period (one
/// webhook); in January 2025 four alerts: a pause (its trigger recorded, acknowledged after
/// 2 h, delivered to the SIEM), a block by rules never recorded as loaded (resolved after 30 h,
/// its delivery given up), an alert naming an entry that is not in the chain (open, never
/// queued), a pause of an agent already paused (no new pause entry); one alert before the
/// period and one after it; a rules reload during the period.
#[test]
fn the_alert_register_lists_each_alert_with_its_trigger_rules_action_siem_and_triage() {
    use blackbox_webhooks::{AttemptFailure, Backoff, NewDelivery, NextStep, Outbox as _};
    let (tmp, dir) = init_store();
    let d = blackbox_ledger::datadir::DataDir::new(&dir);
    let rules_a = "a".repeat(64);
    let rules_b = "b".repeat(64);
    let rules_c = "c".repeat(64);
    let loaded = |sha: &str| {
        json!({"agent_id": "blackbox-server", "session_id": "control", "event_type": "rules_loaded",
            "payload": {"rules_sha256": sha, "rules": 3, "enabled": 2, "webhooks": 1, "file": "/etc/blackbox/rules.yaml"}})
    };
    let call = |agent: &str, tool: &str| json!({"agent_id": agent, "session_id": "s", "event_type": "tool_call", "tool_name": tool});
    let alert = |agent: &str,
                 rule: &str,
                 action: &str,
                 enforcement: &str,
                 sha: &str,
                 trigger: &str| {
        json!({"agent_id": agent, "session_id": "s", "event_type": "anomaly_detected",
                "payload": {"rule": rule, "action": action, "severity": "high", "enforcement": enforcement,
                    "rules_sha256": sha, "triggered_by": [trigger], "description": "d", "kind": "pattern"}})
    };
    // Triage by people, at known times (the writer's clock).
    let triage = |args: &[&str], at: i64| {
        let mut c = common::bin();
        c.env("BLACKBOX_TEST_NOW", ts(at))
            .args(args)
            .arg("--data-dir")
            .arg(&dir);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut ids: Vec<(String, u64, String)> = Vec::new();
    let mut log = PlantedLog::open(&dir);
    log.put("_blackbox", loaded(&rules_a), T0 - DAY);
    // Before the period.
    let (_, t) = log.put("acme", call("a", "crm.lookup"), T0 - 5 * DAY);
    log.put(
        "acme",
        alert("a", "early", "alert", "none", &rules_a, &t),
        T0 - 5 * DAY,
    );
    // 1: a pause, its trigger recorded.
    let (_, t1) = log.put("acme", call("a", "crm.export"), T0 + DAY);
    let (_, a1) = log.put(
        "acme",
        alert(
            "a",
            "bulk_export",
            "alert_and_pause",
            "paused",
            &rules_a,
            &t1,
        ),
        T0 + DAY,
    );
    log.put(
        "acme",
        json!({"agent_id": "a", "session_id": "operator", "event_type": "agent_paused",
            "payload": {"by": "rule:bulk_export", "rule": "bulk_export", "anomaly_entry_id": a1}}),
        T0 + DAY,
    );
    ids.append(&mut log.written);
    drop(log);
    triage(
        &["alerts", "ack", &a1, "--ticket", "INC-1"],
        T0 + DAY + 2 * 3_600_000,
    );
    // 2: a block, by rules never recorded as loaded.
    let mut log = PlantedLog::open(&dir);
    let (_, t2) = log.put("acme", call("b", "shell.exec"), T0 + 2 * DAY);
    let (_, a2) = log.put(
        "acme",
        alert(
            "b",
            "injection",
            "block_and_alert",
            "blocked",
            &rules_b,
            &t2,
        ),
        T0 + 2 * DAY,
    );
    ids.append(&mut log.written);
    drop(log);
    triage(
        &[
            "alerts",
            "resolve",
            &a2,
            "--resolution",
            "true_positive",
            "--ticket",
            "INC-2",
        ],
        T0 + 2 * DAY + 30 * 3_600_000,
    );
    let mut log = PlantedLog::open(&dir);
    // A reload during the period.
    log.put("_blackbox", loaded(&rules_c), T0 + 4 * DAY - 3_600_000);
    // 3: names an entry that is not in the chain.
    log.put(
        "acme",
        alert(
            "b",
            "off_hours",
            "alert",
            "none",
            &rules_c,
            "01900000-0000-7000-8000-000000000000",
        ),
        T0 + 4 * DAY,
    );
    // 4: a pause of an agent already paused (no new agent_paused entry).
    let (_, t4) = log.put("acme", call("a", "crm.export"), T0 + 5 * DAY);
    log.put(
        "acme",
        alert(
            "a",
            "bulk_export",
            "alert_and_pause",
            "paused",
            &rules_c,
            &t4,
        ),
        T0 + 5 * DAY,
    );
    // After the period.
    let (_, t) = log.put("acme", call("a", "crm.lookup"), T0 + 40 * DAY);
    log.put(
        "acme",
        alert("a", "late", "alert", "none", &rules_c, &t),
        T0 + 40 * DAY,
    );
    ids.append(&mut log.written);
    drop(log);
    let alert_ids: Vec<(u64, String)> = ids
        .iter()
        .filter(|(et, _, _)| et == "anomaly_detected")
        .map(|(_, seq, id)| (*seq, id.clone()))
        .collect();
    let [_, (s1, a1), (s2, a2), (_, a3), (_, a4), _] = alert_ids.as_slice() else {
        panic!("{alert_ids:?}");
    };
    // The SIEM: alert 1 delivered, alert 2 given up after a 503; alert 3 never queued.
    let outbox = blackbox_webhooks::SqliteOutbox::open(&d.root().join("webhooks.db")).unwrap();
    let delivery = |seq: u64, id: &str| NewDelivery {
        webhook_id: format!("msg_{id}"),
        url: "https://siem.example/hook?token=s3cret".into(),
        secret_ref: "env:SIEM".into(),
        format: blackbox_webhooks::PayloadFormat::Json,
        event_type: "anomaly_detected".into(),
        tenant: "acme".into(),
        seq,
        entry_id: id.into(),
        body: b"{}".to_vec(),
        max_attempts: 1,
        timeout: std::time::Duration::from_secs(5),
    };
    outbox
        .insert(
            &[delivery(*s1, a1), delivery(*s2, a2)],
            &[("acme", *s2)],
            T0,
        )
        .unwrap();
    let claimed = outbox
        .claim_due(T0, 10, &Backoff::default(), &Default::default())
        .unwrap();
    assert_eq!(claimed.len(), 2);
    for c in &claimed {
        if c.webhook_id == format!("msg_{a1}") {
            assert!(outbox.mark_delivered(c.id, 204, T0 + DAY).unwrap());
        } else {
            let failure = AttemptFailure {
                status: Some(503),
                error: "HTTP 503".into(),
                retry_after: None,
            };
            assert!(
                outbox
                    .mark_failed(c.id, 1, &failure, NextStep::Dead, T0 + 2 * DAY)
                    .unwrap()
            );
        }
    }
    // Delivered rows keep their record when their payload is pruned.
    assert_eq!(outbox.prune_delivered(T0 + 10 * DAY).unwrap(), 1);
    drop(outbox);

    let out = tmp.path().join("soc2.json");
    export_on_day_35(&dir, "--output", &out);
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let reg = &v["figures"]["alerts"];
    let alerts = reg["alerts"].as_array().unwrap();
    let listed: Vec<&str> = alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [a1.as_str(), a2, a3, a4],
        "only the period's alerts, in order"
    );
    let result = |a: &Value, attr: &str| -> String {
        let t = a["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["attribute"] == attr)
            .unwrap();
        format!(
            "{}: {}",
            t["result"].as_str().unwrap(),
            t["detail"].as_str().unwrap()
        )
    };
    // 1: every attribute passes.
    let x = &alerts[0];
    assert_eq!(x["trigger"]["seq"], json!(s1 - 1));
    assert_eq!(x["trigger"]["tool"], "crm.export");
    assert!(x["enforcement_entry"].as_str().is_some(), "{x}");
    assert_eq!(x["siem"]["status"], "delivered");
    assert_eq!(x["state"], "acknowledged");
    assert!(
        x["acknowledged_by"].as_str().unwrap().starts_with("cli:"),
        "{x}"
    );
    assert_eq!(x["ticket"], "INC-1");
    assert_eq!(x["hours_to_triage"], 2.0);
    for attr in ["trigger", "rules", "action", "siem", "triage"] {
        assert!(
            result(x, attr).starts_with("pass"),
            "{attr}: {}",
            result(x, attr)
        );
    }
    // 2: rules never loaded, delivery given up, triaged late.
    let x = &alerts[1];
    assert!(
        result(x, "rules").starts_with("exception"),
        "{}",
        result(x, "rules")
    );
    assert!(
        result(x, "action").starts_with("pass"),
        "{}",
        result(x, "action")
    );
    assert_eq!(x["siem"]["status"], "failed");
    assert!(
        result(x, "siem").contains("HTTP 503"),
        "{}",
        result(x, "siem")
    );
    assert!(
        !result(x, "siem").contains("s3cret"),
        "a URL's secret is never shown"
    );
    assert_eq!(x["disposition"], "true_positive");
    assert_eq!(x["hours_to_triage"], 30.0);
    assert!(
        result(x, "triage").starts_with("exception"),
        "{}",
        result(x, "triage")
    );
    // 3: the trigger is not in the chain; never queued although a webhook was configured;
    // open for 31 days at the export.
    let x = &alerts[2];
    assert!(
        result(x, "trigger").starts_with("exception: entry 01900000"),
        "{}",
        result(x, "trigger")
    );
    assert!(
        result(x, "rules").starts_with("pass"),
        "{}",
        result(x, "rules")
    );
    assert_eq!(x["siem"]["status"], "not_recorded");
    assert_eq!(x["state"], "open");
    assert!(
        result(x, "triage").starts_with("exception: open for 744 h"),
        "{}",
        result(x, "triage")
    );
    // 4: already paused: no new pause entry, which is not an exception.
    let x = &alerts[3];
    assert!(
        result(x, "action").starts_with("n/a"),
        "{}",
        result(x, "action")
    );
    assert_eq!(reg["exceptions"], 3);
    assert_eq!(reg["unresolved"], 3);
    let siem = &reg["siem"];
    assert_eq!(
        (&siem["delivered"], &siem["failed"], &siem["not_recorded"]),
        (&json!(1), &json!(1), &json!(2))
    );
    // The version in force at the start and the reload during the period.
    let versions: Vec<(&str, bool)> = reg["rules_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rules_sha256"].as_str().unwrap(),
                r["in_period"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [(rules_a.as_str(), false), (rules_c.as_str(), true)]
    );
    // The CC7.2 sample is drawn from the alerts.
    let mut sample: Vec<&str> = reg["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    sample.sort_unstable();
    let mut all = listed.clone();
    all.sort_unstable();
    assert_eq!(
        sample, all,
        "fewer alerts than the sample size: all are sampled"
    );

    // The CSV tables hold the register and every test; the PDF lists them with the exceptions.
    let csv = tmp.path().join("soc2.csv");
    export_on_day_35(&dir, "--output", &csv);
    let register = std::fs::read_to_string(tmp.path().join("soc2.alerts.csv")).unwrap();
    assert_eq!(register.lines().count(), 5, "{register}");
    assert!(
        register.lines().nth(2).unwrap().contains(",failed,"),
        "{register}"
    );
    let tests = std::fs::read_to_string(tmp.path().join("soc2.alert-tests.csv")).unwrap();
    assert_eq!(tests.lines().count(), 1 + 4 * 5, "{tests}");
    let args = [
        "--standard",
        "soc2",
        "--control",
        "CC7.2",
        "--period",
        "2025-01-01/2025-01-31",
    ];
    if let Some(text) = pdf_export_text(&dir, &args, &tmp.path().join("soc2.pdf")) {
        for want in ["Alert register", "Sample of alerts", "Management", "INC-2"] {
            assert!(text.contains(want), "`{want}` not in the PDF text:\n{text}");
        }
        // Every id is extracted whole (never broken at a hyphen, which extractors drop), and
        // so is every rules file's SHA-256 in the table of versions.
        for id in &listed {
            assert!(
                text.contains(id),
                "alert id {id} not whole in the PDF text:\n{text}"
            );
        }
        for sha in [&rules_a, &rules_c] {
            assert!(
                text.contains(sha.as_str()),
                "{sha} not whole in the PDF text:\n{text}"
            );
        }
        for s in v["figures"]["sample"].as_array().unwrap() {
            let id = s["entry_id"].as_str().unwrap();
            assert!(
                text.contains(id),
                "sampled entry {id} not whole in the PDF text:\n{text}"
            );
        }
    }
    // The register re-performs offline from a bundle: alerts, triage, rules versions (from the
    // service's chain, in the bundle's log), tests; only the SIEM column stands on the outbox.
    let bundle = tmp.path().join("bundle");
    export_on_day_35(&dir, "--bundle", &bundle);
    let r = run(&[
        "export",
        "reperform",
        bundle.to_str().unwrap(),
        "--public-key",
        &format!("{dir}/checkpoint.pub"),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("match            figure alerts: recomputed from the log"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("HMACs not checked"), "{}", r.stdout);
}

/// The fourth report: EU AI Act Art. 12 record-keeping, its retention against the six-month
/// floor of Art. 19(1) / 26(6), over the whole lifetime without `--period`.
#[test]
fn the_eu_ai_act_art12_report_evidences_logging_over_the_lifetime() {
    let (tmp, dir) = setup();
    let out = tmp.path().join("art12.json");
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "eu-ai-act",
        "--article",
        "art12",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["standard"], "eu-ai-act");
    assert_eq!(v["control"], "art12");
    let items = v["points_of_focus"].to_string();
    for want in [
        "Art. 12(1)",
        "Art. 12(2)(a)",
        "Art. 12(2)(b)",
        "Art. 12(2)(c)",
        "Art. 12(3)",
        "Art. 19(1)",
    ] {
        assert!(items.contains(want), "{want} not in {items}");
    }
    // The whole lifetime, by seq: the entry written 400 days before the rest is in it.
    assert!(v["period"]["seqs"].is_array(), "{}", v["period"]);
    // 25 entries of the known log and the resolution of an alert.
    assert_eq!(v["figures"]["population"]["entries"], 26);
    // The settings name the soc2 preset only: the Regulation's own floor applies.
    let rt = &v["figures"]["retention"];
    assert_eq!(
        rt["required_days"], 365,
        "the strictest configured preset wins: {rt}"
    );
    std::fs::write(format!("{dir}/export.toml"), "").unwrap();
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "eu-ai-act",
        "--article",
        "art12",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let rt = &v["figures"]["retention"];
    assert_eq!(rt["required_days"], 183, "{rt}");
    assert!(
        rt["requirement"]
            .as_str()
            .unwrap()
            .contains("Art. 19(1) and 26(6)"),
        "{rt}"
    );
    assert_eq!(rt["met"], true, "{rt}");
    let args = ["--standard", "eu-ai-act", "--article", "art12"];
    if let Some(text) = pdf_export_text(&dir, &args, &tmp.path().join("art12.pdf")) {
        check_pdfa(&tmp.path().join("art12.pdf"), &["art12.json"]);
        for want in [
            "EU AI Act Article 12 record-keeping evidence",
            "What the log evidences",
            "Alert register",
        ] {
            assert!(text.contains(want), "`{want}` not in the PDF text:\n{text}");
        }
    }
    // An unknown pair names the four reports.
    let r = run(&[
        "export",
        "--data-dir",
        &dir,
        "--standard",
        "eu-ai-act",
        "--article",
        "art13",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--standard eu-ai-act --article art12"),
        "{}",
        r.stderr
    );
}

/// A re-performable bundle: every figure recomputed offline from it matches; an edited figure,
/// a removed proof or a changed entry is named.
#[test]
fn a_bundle_is_reperformed_offline_and_names_what_was_changed() {
    let (tmp, dir) = setup();
    let bundle = tmp.path().join("bundle");
    let r = export_soc2(
        &dir,
        &[
            "--period",
            "2025-01-01/2025-01-30",
            "--bundle",
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let params: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(params["format"], "blackbox.bundle.v1");
    // The auditor's own copy of the public key, and the HMAC keys to check every entry.
    let public = format!("{dir}/checkpoint.pub");
    let keys = format!("{dir}/keys/hmac.keys");
    let reperform = |b: &std::path::Path| {
        run(&[
            "export",
            "reperform",
            b.to_str().unwrap(),
            "--public-key",
            &public,
            "--key-file",
            &keys,
            "--format",
            "json",
        ])
    };
    let r = reperform(&bundle);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let result = |what: &str| -> String {
        checks
            .iter()
            .find(|c| c["what"] == what)
            .map(|c| c["result"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no check {what}: {}", r.stdout))
    };
    for what in [
        "manifest",
        "log",
        "figure population",
        "figure completeness",
        "figure integrity",
        "figure anomalies",
        "figure retention",
        "figure sample",
        "figure daily",
        "figure alerts",
    ] {
        assert_eq!(result(what), "match", "{what}: {}", r.stdout);
    }
    assert_eq!(result("figure alerts: SIEM delivery"), "not re-performed");
    // A proof for every sampled entry and every alert of the period, each checked.
    let report: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("report.json")).unwrap()).unwrap();
    let mut ids: Vec<&str> = report["figures"]["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["entry_id"].as_str().unwrap())
        .chain(
            report["figures"]["alerts"]["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["alert_id"].as_str().unwrap()),
        )
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert!(ids.len() >= 3, "{ids:?}");
    for id in &ids {
        assert_eq!(result(&format!("proof {id}")), "match");
    }

    let copy = |name: &str| {
        let to = tmp.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(&bundle).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
        to
    };
    let mismatches = |r: &common::Run| -> Vec<(String, String)> {
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["result"] == "mismatch")
            .map(|c| {
                (
                    c["what"].as_str().unwrap().to_owned(),
                    c["detail"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // An edited figure in the JSON: the file and the figure are named.
    let edited = copy("edited");
    let text = std::fs::read_to_string(edited.join("report.json")).unwrap();
    let entries = report["figures"]["population"]["entries"].as_u64().unwrap();
    let text = text.replacen(
        &format!("\"entries\": {entries},"),
        &format!("\"entries\": {},", entries + 1),
        1,
    );
    std::fs::write(edited.join("report.json"), text).unwrap();
    let r = reperform(&edited);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let m = mismatches(&r);
    assert!(m.iter().any(|(w, _)| w == "file report.json"), "{m:?}");
    assert!(
        m.iter().any(|(w, d)| w == "figure population"
            && d.contains(&format!(
                "population.entries: the report says {}, recomputed {entries}",
                entries + 1
            ))),
        "{m:?}"
    );
    // A removed proof.
    let removed = copy("removed");
    std::fs::remove_file(removed.join(format!("proof-{}.json", ids[0]))).unwrap();
    let r = reperform(&removed);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let m = mismatches(&r);
    assert!(
        m.iter()
            .any(|(w, d)| *w == format!("proof {}", ids[0]) && d.contains("missing")),
        "{m:?}"
    );
    // A changed entry in the log: the log no longer verifies, and the file is named.
    let changed = copy("changed");
    let log = std::fs::read_to_string(changed.join("log.jsonl")).unwrap();
    let log = log.replacen("\"rows_returned\":1", "\"rows_returned\":7", 1);
    std::fs::write(changed.join("log.jsonl"), log).unwrap();
    let r = reperform(&changed);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let m = mismatches(&r);
    assert!(m.iter().any(|(w, _)| w == "file log.jsonl"), "{m:?}");
    assert!(m.iter().any(|(w, _)| w == "log"), "{m:?}");
    // While another process holds the writer (the service), the bundle is made from the log as
    // it stands, its proofs against the latest checkpoint, and it re-performs all the same.
    let live = tmp.path().join("live");
    {
        let d = blackbox_ledger::datadir::DataDir::new(&dir);
        let _writer = blackbox_ledger::open::open_writer(&d).unwrap();
        let r = export_soc2(
            &dir,
            &[
                "--period",
                "2025-01-01/2025-01-30",
                "--bundle",
                live.to_str().unwrap(),
            ],
        );
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("latest checkpoint"), "{}", r.stderr);
    }
    let r = reperform(&live);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // A bundle goes into a new directory.
    let r = export_soc2(&dir, &["--bundle", bundle.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not empty"), "{}", r.stderr);
}

/// A bundle of a log larger than one block of Merkle nodes (256 entries): its proofs read
/// subtrees the exported log must compute from its entries (it keeps no nodes).
#[test]
fn a_bundle_of_a_thousand_entries_proves_every_sample() {
    let (tmp, dir) = init_store();
    let r = common::run_stdin(
        &["append", "--data-dir", &dir],
        Some(&common::events(1000, "acme")),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bundle = tmp.path().join("bundle");
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
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let names: Vec<String> = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let count = |ext: &str| {
        names
            .iter()
            .filter(|n| n.starts_with("proof-") && n.ends_with(ext))
            .count()
    };
    assert_eq!(
        count(".json"),
        25,
        "a proof for each of the 25 sampled entries"
    );
    assert_eq!(count(".tlog-proof"), 25, "and each as a C2SP tlog-proof");
    let r = run(&[
        "export",
        "reperform",
        bundle.to_str().unwrap(),
        "--public-key",
        &format!("{dir}/checkpoint.pub"),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
