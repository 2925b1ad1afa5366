//! Forward-secure HMAC keys end to end: `init --forward-secure`, entries written across several
//! epochs, the service's own keyring checking what it can, the auditor's initial file checking
//! all, and `keys rotate --forward-secure`.
// Helpers here panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use blackbox_core::entry::{RedactionPolicy, normalize_event};
use blackbox_ledger::datadir::DataDir;
use common::{example_session, run};

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The secret hex strings of a keyring file (last field of each key line).
fn secrets(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .collect()
}

#[test]
fn forward_secure_log_across_epochs_verifies_with_the_initial_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let r = run(&[
        "init",
        "--data-dir",
        d,
        "--log-name",
        "blackbox/test",
        "--forward-secure",
        "--epoch",
        "1m",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let initial = dir.join("keys/k1.fss-initial.keys");
    let mode = std::fs::metadata(&initial).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        r.stdout.contains("forward-secure, epochs of 60 s"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("k1.fss-initial.keys")
            && r.stderr.contains("Move it offline")
            && r.stderr.contains("delete it from this server"),
        "{}",
        r.stderr
    );
    let s0 = secrets(&initial);
    assert_eq!(s0.len(), 1);
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains(&s0[0]), "the initial key was printed");
    }

    // The writer's clock is the one argument the ledger already takes: entries in epochs 0, 1,
    // 2 and 4 of the one-minute epochs, then the real `append` command (its clock is behind
    // epoch 4 now, so it signs on in epoch 4).
    // The origin init chose (the current minute), from the initial file's `k1 fss 60 <origin>`.
    let text = std::fs::read_to_string(&initial).unwrap();
    let line = text.lines().find(|l| l.starts_with("k1 fss 60 ")).unwrap();
    let origin_ms = line.split(' ').nth(3).unwrap().parse::<i64>().unwrap() * 1000;
    assert!((now_ms() - origin_ms) < 3_600_000);
    {
        let data = DataDir::new(&dir);
        let (mut store, mut writer, _) = blackbox_ledger::open::open_writer(&data).unwrap();
        for (i, e) in [0_i64, 1, 2, 4].into_iter().enumerate() {
            let events: Vec<_> = (0..3)
                .map(|k| {
                    let v = serde_json::json!({
                        "tenant_id": "tenant_xyz", "agent_id": "agent-1", "session_id": "s1",
                        "event_type": "tool_call", "tool_name": "search_kb",
                        "args": {"q": format!("{i}-{k}")},
                    });
                    normalize_event(
                        v,
                        &RedactionPolicy::default(),
                        &blackbox_core::origin::Origin::Service,
                    )
                    .unwrap()
                })
                .collect();
            writer
                .append(&mut store, &events, origin_ms + e * 60_000 + 500, true)
                .unwrap();
        }
    }
    let on_disk = secrets(&dir.join("keys/hmac.keys"));
    assert!(!on_disk.contains(&s0[0]), "S_0 is still in the keyring");
    let f = example_session();
    let r = run(&["append", "--data-dir", d, "--file", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // On the server, with its current state: OK, and the earlier epochs are named as unchecked.
    let r = run(&["verify", "--data-dir", d]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with(
            "OK — 20 entries verified (9 HMACs of earlier forward-secure epochs not checked), chain intact"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "HMACs of 9 entries in forward-secure epochs before e4 of k1: only the auditor's initial key can check them"
        ),
        "{}",
        r.stdout
    );

    // The auditor, with the exported log and the initial file: every HMAC checked.
    let log = tmp.path().join("audit.jsonl");
    let r = run(&[
        "export-log",
        "--data-dir",
        d,
        "--output",
        log.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pubkey = dir.join("checkpoint.pub");
    let r = run(&[
        "verify",
        "--log-file",
        log.to_str().unwrap(),
        "--key-file",
        initial.to_str().unwrap(),
        "--public-key",
        pubkey.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["hmac_valid_by_key"]["k1"], 20, "{v}");
    assert_eq!(v["not_checked"], serde_json::json!([]), "{v}");

    // A tampered entry of an early epoch is caught by the initial key.
    let text = std::fs::read_to_string(&log).unwrap();
    let forged = text.replacen("\"q\":\"1-0\"", "\"q\":\"1-X\"", 1);
    assert_ne!(forged, text);
    let bad = tmp.path().join("forged.jsonl");
    std::fs::write(&bad, forged).unwrap();
    let r = run(&[
        "verify",
        "--log-file",
        bad.to_str().unwrap(),
        "--key-file",
        initial.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.starts_with("TAMPERED — entry 4 "), "{}", r.stdout);
}

#[test]
fn keys_rotate_forward_secure_and_combined_key_files() {
    let (tmp, d) = common::init_store();
    let dir = Path::new(&d);
    let f = example_session();
    let r = run(&["append", "--data-dir", &d, "--file", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&[
        "keys",
        "rotate",
        "--data-dir",
        &d,
        "--forward-secure",
        "--epoch",
        "1h",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("k2 is now current (forward-secure)"),
        "{}",
        r.stdout
    );
    let initial = dir.join("keys/k2.fss-initial.keys");
    assert!(r.stderr.contains("k2.fss-initial.keys"), "{}", r.stderr);
    for s in secrets(&initial) {
        assert!(!r.stdout.contains(&s) && !r.stderr.contains(&s));
    }
    let r = run(&["append", "--data-dir", &d, "--file", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["keys", "show", "--data-dir", &d]);
    assert!(
        r.stdout
            .contains("k2 (forward-secure, epochs of 3600 s, holds epoch 0)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("current:") && r.stdout.contains("k2-e0"),
        "{}",
        r.stdout
    );

    // The auditor combines the plain k1 keyring with k2's initial file.
    let log = tmp.path().join("audit.jsonl");
    let r = run(&[
        "export-log",
        "--data-dir",
        &d,
        "--output",
        log.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let keyring = dir.join("keys/hmac.keys");
    let r = run(&[
        "verify",
        "--log-file",
        log.to_str().unwrap(),
        "--key-file",
        keyring.to_str().unwrap(),
        "--key-file",
        initial.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("k1: 8, k2: 8"), "{}", r.stdout);

    // Bad epochs are usage errors with the rule in the message.
    for (epoch, why) in [
        ("30s", "between 60 seconds"),
        ("1y", "unit s, m, h, d or w"),
        ("h", "number"),
    ] {
        let r = run(&[
            "keys",
            "rotate",
            "--data-dir",
            &d,
            "--forward-secure",
            "--epoch",
            epoch,
        ]);
        assert_eq!(r.code, 2, "{epoch}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{epoch}: {}", r.stderr);
    }
    // --epoch without --forward-secure is refused.
    let r = run(&["keys", "rotate", "--data-dir", &d, "--epoch", "1h"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// `blackbox <args>` with the writer's clock at `at_ms` (`BLACKBOX_TEST_NOW`).
fn run_at(at_ms: i64, args: &[&str], stdin: Option<&str>) -> common::Run {
    use std::io::Write as _;
    use std::process::Stdio;
    let now = blackbox_core::entry::format_timestamp(at_ms).unwrap();
    let mut c = common::bin();
    c.env("BLACKBOX_TEST_NOW", &now)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut si = child.stdin.take().unwrap();
    si.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(si);
    let out = child.wait_with_output().unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Issue 15 item 7: once the epoch of an erasure marker had passed, `blackbox verify` with the
/// service's own keyring reported an honest forward-secure log TAMPERED ("unmarked redaction"):
/// the marker's HMAC could no longer be checked, so it resolved nothing.
#[test]
fn an_erasure_in_a_passed_forward_secure_epoch_verifies_with_the_service_keyring() {
    const GONE: &str = "ds_9c1e4b7a2f6d0e8c3b5a";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    // One-minute epochs (the shortest allowed); the clock is set, so the test takes no time.
    let r = run(&[
        "init",
        "--data-dir",
        d,
        "--log-name",
        "blackbox/test",
        "--forward-secure",
        "--epoch",
        "1m",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let initial = dir.join("keys/k1.fss-initial.keys");
    let text = std::fs::read_to_string(&initial).unwrap();
    let line = text.lines().find(|l| l.starts_with("k1 fss 60 ")).unwrap();
    let origin_ms = line.split(' ').nth(3).unwrap().parse::<i64>().unwrap() * 1000;
    let minute = 60_000;

    // Epoch 0: events naming the subject (and one that does not).
    let mut events = String::new();
    for i in 0..6 {
        let subjects = if i % 2 == 0 {
            format!(r#","data_subjects":["{GONE}"]"#)
        } else {
            String::new()
        };
        events.push_str(&format!(
            r#"{{"tenant_id":"acme","agent_id":"a","session_id":"s","event_type":"tool_call","payload":{{"tool_name":"crm.lookup","n":{i}}}{subjects}}}"#
        ));
        events.push('\n');
    }
    let r = run_at(
        origin_ms + 5_000,
        &["append", "--data-dir", d],
        Some(&events),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Epoch 1: the erasure and its marker.
    let r = run_at(
        origin_ms + minute + 5_000,
        &[
            "erase",
            "--data-dir",
            d,
            "--data-subject",
            GONE,
            "--reason",
            "GDPR Art. 17",
            "--ticket",
            "DSR-7",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // Epoch 3: more entries; the keyring moves on and the keys of epochs 0-2 are gone.
    let r = run_at(
        origin_ms + 3 * minute + 5_000,
        &["append", "--data-dir", d],
        Some(&events.replace(&format!(r#","data_subjects":["{GONE}"]"#), "")),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let keyring = dir.join("keys/hmac.keys");
    let held = std::fs::read_to_string(&keyring).unwrap();
    assert!(held.contains(" 3 "), "the keyring holds epoch 3: {held}");

    // The service's keyring: OK, and it says what rests on unchecked HMACs.
    let r = run(&["verify", "--data-dir", d]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("3 entries redacted under 1 erasure marker"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "HMACs of 7 entries in forward-secure epochs before e3 of k1: only the auditor's initial key can check them"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "3 redactions under 1 erasure marker signed in forward-secure epochs before e3 of k1: taken on the chain links and checkpoints around it"
        ),
        "{}",
        r.stdout
    );

    // The exported log, with the service's keyring and with the auditor's initial key.
    let log = tmp.path().join("audit.jsonl");
    let r = run(&[
        "export-log",
        "--data-dir",
        d,
        "--output",
        log.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pubkey = dir.join("checkpoint.pub");
    for key in [&keyring, &initial] {
        let r = run(&[
            "verify",
            "--log-file",
            log.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "--public-key",
            pubkey.to_str().unwrap(),
            "--format",
            "json",
        ]);
        assert_eq!(r.code, 0, "{}: {}{}", key.display(), r.stdout, r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["redacted"], 3, "{v}");
        assert_eq!(v["erasure_markers"], 1, "{v}");
        if key == &initial {
            assert_eq!(v["not_checked"], serde_json::json!([]), "{v}");
            assert_eq!(v["hmac_valid_by_key"]["k1"], 13, "{v}");
        }
    }

    // A marker edited after signing: where its HMAC can be checked (the initial key) it resolves
    // nothing; where it cannot (the service's keyring), the next entry's link to it breaks.
    let text = std::fs::read_to_string(&log).unwrap();
    let marker = text
        .lines()
        .find(|l| l.contains(r#""event_type":"erasure""#))
        .unwrap();
    let edited = marker.replacen("GDPR Art. 17", "GDPR Art. 18", 1);
    assert_ne!(edited, marker);
    let forged = tmp.path().join("forged.jsonl");
    std::fs::write(&forged, text.replacen(marker, &edited, 1)).unwrap();
    for (key, unmarked) in [(&initial, true), (&keyring, false)] {
        let r = run(&[
            "verify",
            "--log-file",
            forged.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "--all",
        ]);
        assert_eq!(r.code, 1, "{}", r.stdout);
        assert_eq!(
            r.stdout.contains("unmarked redaction"),
            unmarked,
            "{}: {}",
            key.display(),
            r.stdout
        );
    }
}
