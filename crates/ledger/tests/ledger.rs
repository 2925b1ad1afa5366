//! The ledger end to end in-process: write, prove from stored nodes, export, verify.
// Test helpers panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox_core::entry::{RedactionPolicy, normalize_event};
use blackbox_core::proof::{Proven, verify_proof_document};
use blackbox_ledger::datadir::{DataDir, load_keyring};
use blackbox_ledger::export::export_log;
use blackbox_ledger::open::{init, open_reader, open_writer, public_key};
use blackbox_ledger::proof::{prove_consistency, prove_inclusion};
use blackbox_ledger::verify::{StoreVerifyOptions, verify_log_file, verify_store};
use blackbox_store::Store as _;

fn event(i: usize, tenant: &str) -> blackbox_core::entry::NormalizedEvent {
    let v = serde_json::json!({
        "tenant_id": tenant, "agent_id": format!("agent-{}", i % 5), "session_id": format!("s{}", i / 40),
        "event_type": "tool_call", "tool_name": "query_database", "client_seq": i,
        "timestamp": format!("2026-04-14T10:{:02}:{:02}.000Z", (i / 60) % 60, i % 60),
        "args": {"query": format!("SELECT {i}")}, "data_subjects": if i.is_multiple_of(9) { serde_json::json!(["ds_1"]) } else { serde_json::json!([]) },
    });
    normalize_event(v, &RedactionPolicy::default()).unwrap()
}

fn setup(every: u64) -> (tempfile::TempDir, DataDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    init(&dir, "blackbox/test").unwrap();
    std::fs::write(
        dir.config_path(),
        format!("[checkpoints]\nevery_entries = {every}\n"),
    )
    .unwrap();
    (tmp, dir)
}

#[test]
fn proofs_from_stored_nodes_verify_at_every_size_boundary() {
    let (_tmp, dir) = setup(100);
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    // Several batches, so chain state is reloaded from the store between them.
    for batch in 0..7 {
        let events: Vec<_> = (batch * 100..(batch + 1) * 100)
            .map(|i| event(i, "acme"))
            .collect();
        writer
            .append(
                &mut store,
                &events,
                1_776_160_000_000 + i64::try_from(batch).unwrap(),
                true,
            )
            .unwrap();
    }
    drop(store);
    let store = open_reader(&dir).unwrap();
    let verifier = public_key(&dir).unwrap();
    let head = &store.chains().unwrap()[0];
    assert_eq!(head.size, 700);
    for seq in [1u64, 2, 255, 256, 257, 300, 511, 512, 513, 699, 700]
        .into_iter()
        .chain((3..700).step_by(37))
    {
        let mut found = None;
        store
            .scan("acme", seq, seq, &mut |e| {
                found = Some(e);
                Ok(false)
            })
            .unwrap();
        let entry = found.unwrap();
        let proof = prove_inclusion(&store, &entry, seq % 2 == 0).unwrap();
        let json = serde_json::to_string(&proof).unwrap();
        match verify_proof_document(&json, &verifier).unwrap() {
            Proven::Inclusion {
                seq: s,
                tree_size,
                entry_checked,
                ..
            } => {
                assert_eq!((s, tree_size, entry_checked), (seq, 700, seq % 2 == 0));
            }
            other => panic!("{other:?}"),
        }
        // A proof for the wrong leaf fails.
        let mut bad = proof.clone();
        bad.entry = None;
        bad.seq = if seq == 700 { 699 } else { seq + 1 };
        assert!(verify_proof_document(&serde_json::to_string(&bad).unwrap(), &verifier).is_err());
    }
    // Every stored checkpoint is consistent with the latest.
    for cp in store.checkpoints("acme").unwrap() {
        let proof = prove_consistency(&store, &cp.note).unwrap();
        let json = serde_json::to_string(&proof).unwrap();
        let proven = verify_proof_document(&json, &verifier).unwrap();
        assert!(
            matches!(proven, Proven::Consistency { new_size: 700, .. }),
            "{proven:?}"
        );
    }
}

#[test]
fn heartbeat_export_and_both_verifiers_agree() {
    let (tmp, dir) = setup(50);
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    let events: Vec<_> = (0..120)
        .map(|i| event(i, if i % 3 == 0 { "globex" } else { "acme" }))
        .collect();
    let out = writer
        .append(&mut store, &events, 1_776_160_000_000, true)
        .unwrap();
    assert_eq!(out.count, 120);
    assert_eq!(out.chains["acme"], (1, 80));
    assert_eq!(out.chains["globex"], (1, 40));
    // A heartbeat re-signs the same size later.
    let hb = writer
        .heartbeat(&mut store, 1_776_160_999_000, true)
        .unwrap();
    assert_eq!(hb.len(), 2);
    drop(store);

    let keys = load_keyring(&dir.hmac_keys_path()).unwrap();
    let report = verify_store(
        &dir.store_path(),
        Some(&keys),
        Some(public_key(&dir).unwrap()),
        &StoreVerifyOptions::default(),
        &|_| {},
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.entries, 120);
    assert_eq!(report.chains.len(), 2);

    let store = open_reader(&dir).unwrap();
    let path = tmp.path().join("audit.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let counts = export_log(&store, None, &mut f).unwrap();
    assert_eq!((counts.chains, counts.entries), (2, 120));
    let from_file = verify_log_file(
        &path,
        Some(&keys),
        Some(public_key(&dir).unwrap()),
        &[],
        &|_| {},
    )
    .unwrap();
    assert!(from_file.ok(), "{:?}", from_file.findings);
    assert_eq!(
        from_file.chains, report.chains,
        "store and file verification see the same chains"
    );
    // Personal sidecars travelled with the export.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("{\"personal\":").count(), 14);
    assert!(export_log(&store, Some("nobody"), &mut Vec::new()).is_err());
}

#[test]
fn an_interrupted_stream_leaves_nothing_behind() {
    let (_tmp, dir) = setup(1000);
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    let err = writer
        .stream(&mut store, |sink| {
            for i in 0..10 {
                sink.add(&event(i, "acme"), 1_776_160_000_000)?;
            }
            Err::<(), _>(blackbox_ledger::LedgerError::Inconsistent(
                "the input failed".to_owned(),
            ))
        })
        .unwrap_err();
    assert!(err.to_string().contains("the input failed"));
    assert!(
        store.chains().unwrap().is_empty(),
        "an uncommitted batch must roll back"
    );
    // Committed batches stay when a later one in the same stream is abandoned.
    writer
        .stream(&mut store, |sink| {
            sink.add(&event(0, "acme"), 1_776_160_000_000)?;
            sink.commit(1_776_160_000_000, true)?;
            sink.add(&event(1, "acme"), 1_776_160_000_000)?;
            Ok(())
        })
        .unwrap();
    assert_eq!(store.chains().unwrap()[0].size, 1);
}

#[test]
fn file_verification_reads_across_block_boundaries() {
    // More than one 8 MiB read block, with personal records and lines straddling the boundary.
    let (tmp, dir) = setup(1000);
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    let pad = "x".repeat(1500);
    let events: Vec<_> = (0..7000)
        .map(|i| {
            let v = serde_json::json!({
                "tenant_id": "acme", "agent_id": "a", "session_id": "s", "event_type": "note",
                "payload": {"pad": pad, "i": i},
                "data_subjects": if i % 3 == 0 { serde_json::json!(["ds_x"]) } else { serde_json::json!([]) },
            });
            normalize_event(v, &RedactionPolicy::default()).unwrap()
        })
        .collect();
    writer
        .append(&mut store, &events, 1_776_160_000_000, true)
        .unwrap();
    drop(store);
    let store = open_reader(&dir).unwrap();
    let path = tmp.path().join("big.jsonl");
    export_log(&store, None, &mut std::fs::File::create(&path).unwrap()).unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 10 << 20);
    let keys = load_keyring(&dir.hmac_keys_path()).unwrap();
    let r = verify_log_file(
        &path,
        Some(&keys),
        Some(public_key(&dir).unwrap()),
        &[],
        &|_| {},
    )
    .unwrap();
    assert!(r.ok(), "{:?}", r.findings.first());
    assert_eq!(r.entries, 7000);
    assert_eq!(r.chains[0].checkpoints_verified, 7);
    // Without the final newline the last line still counts.
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 1]).unwrap();
    let r = verify_log_file(&path, Some(&keys), None, &[], &|_| {}).unwrap();
    assert!(r.ok());
    assert_eq!(r.entries, 7000);
}
