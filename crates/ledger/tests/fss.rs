//! Forward-secure HMAC keys through the ledger: the writer evolves the keyring file before it
//! signs in a new epoch, the server-side verifier checks what its current state can, and the
//! auditor's initial file checks everything, rotations included.
// Test helpers panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;

use blackbox_core::entry::{RedactionPolicy, normalize_event};
use blackbox_core::keys::{FssParams, FssState, Keyring};
use blackbox_ledger::datadir::{DataDir, load_keyring, rotate_hmac_key};
use blackbox_ledger::export::export_log;
use blackbox_ledger::open::{init_with, open_reader, open_writer, public_key};
use blackbox_ledger::verify::{StoreVerifyOptions, verify_log_file, verify_store};

/// 2026-04-14T10:00:00Z, a multiple of a minute.
const ORIGIN_MS: i64 = 1_776_160_800_000;
const MINUTE: i64 = 60_000;

fn event(i: usize) -> blackbox_core::entry::NormalizedEvent {
    let v = serde_json::json!({
        "tenant_id": "acme", "agent_id": format!("agent-{}", i % 3), "session_id": "s1",
        "event_type": "tool_call", "tool_name": "query_database", "client_seq": i,
        "args": {"query": format!("SELECT {i}")},
    });
    normalize_event(
        v,
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .unwrap()
}

fn setup() -> (tempfile::TempDir, DataDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    let params = FssParams::starting_at(60, ORIGIN_MS + 30_000).unwrap();
    let out = init_with(&dir, "blackbox/test", Some(params)).unwrap();
    assert_eq!(out.hmac_key_id, "k1");
    assert_eq!(
        out.fss_initial_file.as_deref(),
        Some(dir.fss_initial_path("k1").as_path())
    );
    (tmp, dir)
}

/// The secret states S_0 … S_n of `k1` as hex, derived from the initial file.
fn states(initial: &Keyring, n: u64) -> Vec<String> {
    let text = initial.to_secret_text();
    let line = text.lines().find(|l| l.starts_with("k1 fss ")).unwrap();
    let s0: [u8; 32] = hex::decode(line.rsplit(' ').next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let mut s = FssState::initial(s0);
    let mut out = Vec::new();
    for e in 0..=n {
        let mut r = Keyring::new();
        let p = initial.forward_secure("k1").unwrap().params;
        r.push_forward_secure(
            blackbox_core::ids::KeyId::parse("k1").unwrap(),
            p,
            s.clone(),
        )
        .unwrap();
        let t = r.to_secret_text();
        out.push(
            t.lines()
                .nth(1)
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned(),
        );
        assert_eq!(s.epoch(), e);
        s = s.next();
    }
    out
}

#[test]
fn the_writer_evolves_the_keyring_file_and_the_auditor_verifies_every_epoch() {
    let (tmp, dir) = setup();
    let initial_path = dir.fss_initial_path("k1");
    let mode = std::fs::metadata(&initial_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let initial = load_keyring(&initial_path).unwrap();
    let all_states = states(&initial, 5);
    assert!(
        std::fs::read_to_string(dir.hmac_keys_path())
            .unwrap()
            .contains(&all_states[0])
    );

    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    let mut i = 0;
    // Epochs 0, 1, 2 and 5 (nothing written in 3 and 4), a few entries each, in two batches.
    for e in [0_i64, 1, 2, 5] {
        for half in 0..2 {
            let events: Vec<_> = (0..3).map(|k| event(i + k)).collect();
            i += 3;
            writer
                .append(
                    &mut store,
                    &events,
                    ORIGIN_MS + e * MINUTE + 1_000 + half,
                    true,
                )
                .unwrap();
        }
        // Everything on disk now: only the state of epoch e.
        let on_disk = std::fs::read_to_string(dir.hmac_keys_path()).unwrap();
        let e = usize::try_from(e).unwrap();
        assert!(on_disk.contains(&all_states[e]), "epoch {e}");
        for (j, s) in all_states.iter().enumerate().take(e) {
            assert!(!on_disk.contains(s), "S_{j} is still on disk at epoch {e}");
        }
        let mode = std::fs::metadata(dir.hmac_keys_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    // A clock stepping back signs on with the latest epoch.
    writer
        .append(&mut store, &[event(i)], ORIGIN_MS + 2 * MINUTE, true)
        .unwrap();
    drop(store);
    let line_ids: Vec<String> = {
        let store = open_reader(&dir).unwrap();
        let mut ids = Vec::new();
        blackbox_store::Store::scan(&store, "acme", 1, u64::MAX, &mut |e| {
            let v: serde_json::Value = serde_json::from_slice(&e.line).unwrap();
            ids.push(v["key_id"].as_str().unwrap().to_owned());
            Ok(true)
        })
        .unwrap();
        ids
    };
    assert_eq!(line_ids.first().unwrap(), "k1-e0");
    assert_eq!(line_ids[6], "k1-e1");
    assert_eq!(line_ids.last().unwrap(), "k1-e5");

    // The service's keyring checks epoch 5 and says plainly what it cannot check.
    let keys = load_keyring(&dir.hmac_keys_path()).unwrap();
    let opts = StoreVerifyOptions::default();
    let r = verify_store(
        &dir.store_path(),
        Some(&keys),
        Some(public_key(&dir).unwrap()),
        &opts,
        &|_| {},
    )
    .unwrap();
    assert!(r.ok(), "{:?}", r.findings);
    assert_eq!(r.hmac_valid_by_key["k1"], 7);
    assert_eq!(
        r.not_checked,
        vec![
            "HMACs of 18 entries in forward-secure epochs before e5 of k1: only the auditor's initial key can check them"
                .to_owned()
        ]
    );

    // The auditor's initial file checks every entry, in the store and in the exported log.
    let r = verify_store(
        &dir.store_path(),
        Some(&initial),
        Some(public_key(&dir).unwrap()),
        &opts,
        &|_| {},
    )
    .unwrap();
    assert!(r.ok() && r.not_checked.is_empty(), "{r:?}");
    assert_eq!(r.hmac_valid_by_key["k1"], 25);
    let export = tmp.path().join("audit.jsonl");
    let mut out = std::fs::File::create(&export).unwrap();
    export_log(&open_reader(&dir).unwrap(), None, &mut out).unwrap();
    drop(out);
    let r = verify_log_file(
        &export,
        Some(&initial),
        Some(public_key(&dir).unwrap()),
        &[],
        &|_| {},
    )
    .unwrap();
    assert!(r.ok() && r.not_checked.is_empty(), "{r:?}");
    assert_eq!(r.entries, 25);
}

#[test]
fn rotating_away_from_a_forward_secure_generation_keeps_both_verifiable() {
    let (_tmp, dir) = setup();
    let initial_k1 = load_keyring(&dir.fss_initial_path("k1")).unwrap();
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    writer
        .append(&mut store, &[event(0), event(1)], ORIGIN_MS + 1_000, true)
        .unwrap();
    writer
        .append(&mut store, &[event(2)], ORIGIN_MS + 3 * MINUTE, true)
        .unwrap();
    drop((store, writer));

    // A plain generation after the forward-secure one.
    let k2 = rotate_hmac_key(&dir, None).unwrap();
    assert_eq!((k2.id.as_str(), k2.initial_file), ("k2", None));
    // Then a forward-secure one with hourly epochs.
    let p = FssParams::starting_at(3600, ORIGIN_MS + 4 * MINUTE).unwrap();
    let k3 = rotate_hmac_key(&dir, Some(p)).unwrap();
    assert_eq!(k3.id, "k3");
    assert_eq!(
        k3.initial_file.as_deref(),
        Some(dir.fss_initial_path("k3").as_path())
    );
    let ring = load_keyring(&dir.hmac_keys_path()).unwrap();
    assert_eq!(
        ring.forward_secure("k1").unwrap().epoch,
        3,
        "k1 stays at its state"
    );
    assert_eq!(ring.current().unwrap().0.as_str(), "k3-e0");

    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    writer
        .append(&mut store, &[event(3)], ORIGIN_MS + 5 * MINUTE, true)
        .unwrap();
    writer
        .append(&mut store, &[event(4)], ORIGIN_MS + 70 * MINUTE, true)
        .unwrap();
    drop(store);

    // The service's keyring: k1 before e3 and k3 before e1 cannot be checked.
    let keys = load_keyring(&dir.hmac_keys_path()).unwrap();
    assert_eq!(keys.forward_secure("k3").unwrap().epoch, 1);
    let r = verify_store(
        &dir.store_path(),
        Some(&keys),
        None,
        &Default::default(),
        &|_| {},
    )
    .unwrap();
    assert!(r.ok(), "{:?}", r.findings);
    assert_eq!(r.not_checked.len(), 3, "{:?}", r.not_checked);
    for want in [
        "HMACs of 2 entries in forward-secure epochs before e3 of k1:",
        "HMACs of 1 entry in forward-secure epochs before e1 of k3:",
        "checkpoint signatures (no public key given)",
    ] {
        assert!(
            r.not_checked.iter().any(|n| n.starts_with(want)),
            "{want}: {:?}",
            r.not_checked
        );
    }

    // The auditor merges the initial files with the keyring: every entry checks.
    let mut auditor = keys.clone();
    auditor.merge(&initial_k1).unwrap();
    auditor
        .merge(&load_keyring(&dir.fss_initial_path("k3")).unwrap())
        .unwrap();
    let r = verify_store(
        &dir.store_path(),
        Some(&auditor),
        None,
        &Default::default(),
        &|_| {},
    )
    .unwrap();
    assert!(r.ok(), "{:?}", r.findings);
    assert_eq!(
        r.not_checked,
        vec!["checkpoint signatures (no public key given)".to_owned()]
    );
    assert_eq!(
        (r.hmac_valid_by_key["k1"], r.hmac_valid_by_key["k3"]),
        (3, 2)
    );
}

#[test]
fn a_writer_without_its_keyring_file_refuses_to_enter_a_new_epoch() {
    let (_tmp, dir) = setup();
    let (mut store, writer, _) = open_writer(&dir).unwrap();
    drop(writer);
    let keys = load_keyring(&dir.hmac_keys_path()).unwrap();
    let signer = blackbox_ledger::datadir::load_signer(&dir.signing_key_path()).unwrap();
    let mut writer = blackbox_ledger::writer::Writer::new(
        keys,
        blackbox_ledger::writer::CheckpointSigner::new(signer),
        blackbox_ledger::writer::WriterSettings {
            default_tenant: blackbox_core::ids::TenantId::parse("acme").unwrap(),
            checkpoint_every_entries: 1000,
            checkpoint_every_ms: 60_000,
            clock: blackbox_core::entry::ClockBound::default(),
        },
    )
    .unwrap();
    writer
        .append(&mut store, &[event(0)], ORIGIN_MS + 1_000, true)
        .unwrap();
    let e = writer
        .append(&mut store, &[event(1)], ORIGIN_MS + MINUTE, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no keyring file"), "{e}");
    // Nothing was signed in the new epoch.
    assert_eq!(blackbox_store::Store::chains(&store).unwrap()[0].size, 1);
}
