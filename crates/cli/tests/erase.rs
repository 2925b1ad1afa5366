//! `blackbox erase` end to end: erasure keeps `verify` OK and reports it, leaves no byte of the
//! subject id in any file, and redactions without a marker (or with a forged one) are TAMPERED.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Long enough to be unique in any file's bytes.
const GONE: &str = "ds_4f1c9a7e2b5d8c3a1f6e9b0d2c4a7e5f0b1d";
const KEPT: &str = "ds_77aa0c3e9d1b2f4a6c8e0b2d4f6a8c0e2b4d";

/// Events naming `GONE` (as a string and as an object id) and `KEPT`.
fn personal_events() -> String {
    let mut s = String::new();
    for i in 0..12 {
        let subjects = match i % 3 {
            0 => format!(r#"["{GONE}"]"#),
            1 => format!(r#"[{{"id":"{GONE}","category":"customer"}},"{KEPT}"]"#),
            _ => format!(r#"["{KEPT}"]"#),
        };
        s.push_str(&format!(
            r#"{{"tenant_id":"{}","agent_id":"a","session_id":"s","event_type":"tool_call","data_subjects":{subjects},"payload":{{"tool_name":"crm.lookup","args_hash":"sha256:{}"}}}}"#,
            if i % 2 == 0 { "acme" } else { "beta" },
            "0".repeat(64)
        ));
        s.push('\n');
    }
    s
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn holds(p: &Path, needle: &str) -> bool {
    let b = std::fs::read(p).unwrap();
    b.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn verify_store(dir: &str) -> Run {
    run(&["verify", "--data-dir", dir])
}

fn setup() -> (tempfile::TempDir, String) {
    let (tmp, dir) = init_store();
    let r = run_stdin(&["append", "--data-dir", &dir], Some(&personal_events()));
    assert_eq!(r.code, 0, "{}", r.stderr);
    (tmp, dir)
}

#[test]
fn erasure_keeps_verify_ok_and_leaves_no_trace_of_the_id() {
    let (tmp, dir) = setup();
    // A mirror-like exported log (and a rotated sibling) to be scrubbed offline.
    let log = tmp.path().join("mirror.jsonl");
    let e = run(&[
        "export-log",
        "--data-dir",
        &dir,
        "--output",
        log.to_str().unwrap(),
    ]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let rotated = tmp.path().join("mirror.jsonl.1");
    std::fs::copy(&log, &rotated).unwrap();
    assert!(files_under(Path::new(&dir)).iter().any(|p| holds(p, GONE)));
    assert!(holds(&log, GONE));

    let dry = run(&[
        "erase",
        "--data-dir",
        &dir,
        "--data-subject",
        GONE,
        "--reason",
        "GDPR Art. 17",
        "--ticket",
        "DSR-1",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let v: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(
        (v["dry_run"].as_bool(), v["redacted"].as_u64()),
        (Some(true), Some(8))
    );
    assert!(holds(&log, GONE), "a dry run changes nothing");

    let r = run(&[
        "erase",
        "--data-dir",
        &dir,
        "--data-subject",
        GONE,
        "--reason",
        "GDPR Art. 17",
        "--ticket",
        "DSR-1",
        "--log-file",
        log.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains(GONE) && !r.stderr.contains(GONE));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["redacted"], 8);
    assert_eq!(v["markers"], 2, "one marker per tenant chain");
    assert_eq!(v["chains"][0]["tenant_id"], "acme");
    assert_eq!(v["chains"][0]["redacted"], 4);
    assert_eq!(v["mirror_files"].as_array().unwrap().len(), 2);

    let ok = verify_store(&dir);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout.starts_with(
            "OK — 14 entries verified, 2 chains intact; 8 entries redacted under 2 erasure markers"
        ),
        "{}",
        ok.stdout
    );
    let j = run(&["verify", "--data-dir", &dir, "--format", "json"]);
    let jv: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(
        (jv["redacted"].as_u64(), jv["erasure_markers"].as_u64()),
        (Some(8), Some(2))
    );

    // No byte of the id anywhere: database, -wal, -shm, entry lines, keys, config, mirrors.
    for p in files_under(Path::new(&dir)).iter().chain([&log, &rotated]) {
        assert!(!holds(p, GONE), "{} still holds the erased id", p.display());
    }
    // The other subject is untouched: its sidecars that did not also name GONE remain.
    assert!(files_under(Path::new(&dir)).iter().any(|p| holds(p, KEPT)));
    // The scrubbed mirror still verifies (markers are in the store's newer entries; the
    // exported file predates them, so its erased entries are verified against a new export).
    let log2 = tmp.path().join("after.jsonl");
    let e = run(&[
        "export-log",
        "--data-dir",
        &dir,
        "--output",
        log2.to_str().unwrap(),
    ]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let keys = format!("{dir}/keys/hmac.keys");
    let v = run(&[
        "verify",
        "--log-file",
        log2.to_str().unwrap(),
        "--key-file",
        &keys,
    ]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert!(
        v.stdout
            .contains("8 entries redacted under 2 erasure markers"),
        "{}",
        v.stdout
    );
    assert!(!holds(&log2, GONE));

    // Again: nothing left to erase, no marker written, exit 0.
    let again = run(&[
        "erase",
        "--data-dir",
        &dir,
        "--data-subject",
        GONE,
        "--reason",
        "r",
        "--ticket",
        "t",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("nothing erased"), "{}", again.stdout);
}

#[test]
fn a_redaction_without_a_marker_is_tampered() {
    let (_tmp, dir) = setup();
    let db = format!("{dir}/blackbox.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute(
        "DELETE FROM personal WHERE id = (SELECT min(id) FROM personal)",
        [],
    )
    .unwrap();
    drop(c);
    let v = verify_store(&dir);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stdout.starts_with("TAMPERED"), "{}", v.stdout);
    assert!(v.stdout.contains("unmarked redaction"), "{}", v.stdout);
}

#[test]
fn a_forged_marker_is_tampered() {
    let (tmp, dir) = setup();
    let r = run(&[
        "erase",
        "--data-dir",
        &dir,
        "--data-subject",
        GONE,
        "--reason",
        "r",
        "--ticket",
        "t",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Also drop a personal record of KEPT from an export and claim it in the marker, without
    // the key: the edited marker's HMAC fails and the redaction is unmarked.
    let log = tmp.path().join("audit.jsonl");
    let e = run(&[
        "export-log",
        "--data-dir",
        &dir,
        "--output",
        log.to_str().unwrap(),
    ]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let personal = lines
        .iter()
        .position(|l| l.starts_with("{\"personal\":"))
        .unwrap();
    let pv: serde_json::Value = serde_json::from_str(&lines[personal]).unwrap();
    let (tenant, seq) = (
        pv["personal"]["tenant_id"].as_str().unwrap().to_owned(),
        pv["personal"]["seq"].as_u64().unwrap(),
    );
    let entry: serde_json::Value = serde_json::from_str(&lines[personal + 1]).unwrap();
    let id = entry["entry_id"].as_str().unwrap().to_owned();
    lines.remove(personal);
    let marker = lines
        .iter()
        .position(|l| {
            l.contains("\"event_type\":\"erasure\"")
                && l.contains(&format!("\"tenant_id\":\"{tenant}\""))
        })
        .unwrap();
    let m = &lines[marker];
    let count: u64 = serde_json::from_str::<serde_json::Value>(m).unwrap()["payload"]["count"]
        .as_u64()
        .unwrap();
    let forged = m
        .replacen(
            &format!("\"count\":{count}"),
            &format!("\"count\":{}", count + 1),
            1,
        )
        .replacen(
            "\"redacted\":[",
            &format!("\"redacted\":[{{\"entry_id\":\"{id}\",\"seq\":{seq}}},"),
            1,
        );
    assert_ne!(&forged, m);
    lines[marker] = forged;
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let keys = format!("{dir}/keys/hmac.keys");
    let v = run(&[
        "verify",
        "--log-file",
        log.to_str().unwrap(),
        "--key-file",
        &keys,
        "--all",
    ]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stdout.starts_with("TAMPERED"), "{}", v.stdout);
    assert!(v.stdout.contains("unmarked redaction"), "{}", v.stdout);
}

#[test]
fn erase_refuses_empty_reasons_and_clients_cannot_write_markers() {
    let (_tmp, dir) = setup();
    let r = run(&[
        "erase",
        "--data-dir",
        &dir,
        "--data-subject",
        GONE,
        "--reason",
        " ",
        "--ticket",
        "t",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("reason"), "{}", r.stderr);
    let ev = r#"{"agent_id":"a","session_id":"s","event_type":"erasure","payload":{}}"#;
    let a = run_stdin(&["append", "--data-dir", &dir], Some(ev));
    assert_ne!(a.code, 0);
    assert!(a.stderr.contains("reserved"), "{}", a.stderr);
}
