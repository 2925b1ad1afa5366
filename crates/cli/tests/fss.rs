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
