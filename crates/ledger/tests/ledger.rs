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
    normalize_event(
        v,
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .unwrap()
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

/// Verifies the store with the HMAC keys and the public key.
fn verify_with_keys(dir: &DataDir) -> blackbox_core::verify::Report {
    let keys = load_keyring(&dir.hmac_keys_path()).unwrap();
    verify_store(
        &dir.store_path(),
        Some(&keys),
        Some(public_key(dir).unwrap()),
        &StoreVerifyOptions::default(),
        &|_| {},
    )
    .unwrap()
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

    let report = verify_with_keys(&dir);
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.entries, 120);
    assert_eq!(report.chains.len(), 2);

    let store = open_reader(&dir).unwrap();
    let path = tmp.path().join("audit.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    let counts = export_log(&store, None, &mut f).unwrap();
    assert_eq!((counts.chains, counts.entries), (2, 120));
    let keys = load_keyring(&dir.hmac_keys_path()).unwrap();
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
fn a_failed_pipelined_commit_takes_the_batches_sequenced_after_it_down_and_the_sink_recovers() {
    let (_tmp, dir) = setup(1000);
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    let now = 1_776_160_000_000;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    writer
        .stream(&mut store, |sink| {
            for i in 0..5 {
                sink.add(&event(i, "acme"), now)?;
            }
            // The store thread is held inside this batch's callback until the two batches
            // below are handed over, so neither can learn of the failure early.
            let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
            let tx = done_tx.clone();
            sink.commit_then(now, false, move |r| {
                tx.send((0, r.is_ok())).unwrap();
                let _ = gate_rx.recv_timeout(std::time::Duration::from_secs(30));
            })?;
            // A batch the store refuses (an archive anchor past the chain's end)...
            for i in 5..8 {
                sink.add(&event(i, "acme"), now)?;
            }
            sink.archive_prefix(blackbox_store::StoredAnchor {
                tenant_id: "acme".to_owned(),
                size: 1_000_000,
                record: b"{}".to_vec(),
                tail_hashes: Vec::new(),
            })?;
            let tx = done_tx.clone();
            let first = sink.commit_then(now, false, move |r| tx.send((1, r.is_ok())).unwrap())?;
            assert_eq!(first.chains["acme"], (6, 8));
            // ...and one sequenced on top of it before its failure is known.
            let next = sink.add(&event(8, "acme"), now)?;
            assert_eq!(next.seq, 9);
            let tx = done_tx.clone();
            sink.commit_then(now, false, move |r| tx.send((2, r.is_ok())).unwrap())?;
            gate_tx.send(()).unwrap();
            let results: Vec<_> = (0..3).map(|_| done_rx.recv().unwrap()).collect();
            assert_eq!(
                results,
                vec![(0, true), (1, false), (2, false)],
                "the first commits; the failed one and the one sequenced on top of it fail, in order"
            );
            // The sink reports the failure once, then starts again from the store's head.
            let err = sink.add(&event(9, "acme"), now).unwrap_err();
            assert!(err.to_string().contains("earlier batch failed"), "{err}");
            let again = sink.add(&event(9, "acme"), now)?;
            assert_eq!(again.seq, 6, "seqs continue from what was committed");
            let tx = done_tx.clone();
            let last = sink.commit_then(now, true, move |r| tx.send((3, r.is_ok())).unwrap())?;
            assert_eq!(last.chains["acme"], (6, 6));
            assert_eq!(done_rx.recv().unwrap(), (3, true));
            Ok(())
        })
        .unwrap();
    assert_eq!(store.chains().unwrap()[0].size, 6);
    drop(store);
    let report = verify_with_keys(&dir);
    assert!(report.ok(), "{:?}", report.findings);
    assert_eq!(report.entries, 6);
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
            normalize_event(v, &RedactionPolicy::default(), &blackbox_core::origin::Origin::Service).unwrap()
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

#[test]
fn a_log_split_at_an_anchor_verifies_file_by_file_and_as_a_set() {
    use blackbox_ledger::anchor::{anchor_at_head, anchor_now};
    use blackbox_ledger::verify::verify_log_files;

    let (tmp, dir) = setup(50);
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    let first: Vec<_> = (0..70).map(|i| event(i, "acme")).collect();
    writer
        .append(&mut store, &first, 1_776_160_000_000, true)
        .unwrap();
    // The closing checkpoint is at the head (70): the anchor is built there.
    let anchor = anchor_now(&store, "acme").unwrap();
    assert_eq!(anchor.size(), 70);
    let verifier = public_key(&dir).unwrap();
    anchor.verify(&verifier).unwrap();
    // A checkpoint of another size is refused.
    let head = store.chains().unwrap().remove(0);
    let cp50 = store
        .checkpoints("acme")
        .unwrap()
        .into_iter()
        .find(|c| c.size == 50)
        .unwrap();
    assert!(matches!(
        anchor_at_head(&store, &head, &cp50),
        Err(blackbox_ledger::LedgerError::AnchorSize {
            head_size: 70,
            checkpoint_size: 50,
            ..
        })
    ));
    let second: Vec<_> = (70..130).map(|i| event(i, "acme")).collect();
    writer
        .append(&mut store, &second, 1_776_160_100_000, true)
        .unwrap();
    drop(store);

    let store = open_reader(&dir).unwrap();
    let whole = tmp.path().join("whole.jsonl");
    export_log(&store, None, &mut std::fs::File::create(&whole).unwrap()).unwrap();
    let text = std::fs::read_to_string(&whole).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Cut after the checkpoint record that follows entry 70.
    let e70 = lines
        .iter()
        .position(|l| l.starts_with("{\"agent_id\"") && l.contains(",\"seq\":70,"))
        .unwrap();
    assert!(lines[e70 + 1].starts_with("{\"checkpoint\":"));
    let cut = e70 + 2;
    let write = |name: &str, ls: &[&str]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, ls.join("\n") + "\n").unwrap();
        p
    };
    let a = write("a.jsonl", &lines[..cut]);
    let anchor_line = anchor.to_line();
    let b = write(
        "b.jsonl",
        &[&[anchor_line.as_str()][..], &lines[cut..]].concat(),
    );

    let keys = load_keyring(&dir.hmac_keys_path()).unwrap();
    let check = |paths: &[std::path::PathBuf]| {
        verify_log_files(paths, Some(&keys), Some(verifier.clone()), &[], &|_| {}).unwrap()
    };
    let all = check(std::slice::from_ref(&whole));
    assert!(all.ok(), "{:?}", all.findings);
    let set = check(&[a.clone(), b.clone()]);
    assert!(set.ok(), "{:?}", set.findings);
    let (s, w) = (&set.chains[0], &all.chains[0]);
    assert_eq!((s.entries, s.start, s.size), (130, 0, 130));
    assert_eq!((s.head, s.root), (w.head, w.root));
    assert_eq!(set.entries, 130);

    let ra = check(std::slice::from_ref(&a));
    assert!(ra.ok(), "{:?}", ra.findings);
    assert_eq!(ra.chains[0].size, 70);
    let rb = verify_log_file(&b, Some(&keys), Some(verifier.clone()), &[], &|_| {}).unwrap();
    assert!(rb.ok(), "{:?}", rb.findings);
    let c = &rb.chains[0];
    assert_eq!((c.entries, c.start, c.size), (60, 70, 130));
    assert_eq!((c.head, c.root), (w.head, w.root));
    assert_eq!(c.largest_checkpoint, 130);

    // The last entry of the first file deleted: found at the anchor, named by file and line.
    let mut short: Vec<&str> = lines[..cut].to_vec();
    short.remove(e70);
    let a2 = write("a2.jsonl", &short);
    let r = check(&[a2.clone(), b.clone()]);
    assert!(!r.ok());
    let f = r.first().unwrap();
    assert_eq!(
        (f.kind, f.seq),
        (blackbox_core::verify::FindingKind::Deletion, 70)
    );
    let src = f.source.as_ref().unwrap();
    assert_eq!((src.file.as_str(), src.line), (b.to_str().unwrap(), 1));
    // Files in the wrong order: the first file's entries come after the anchor at 70.
    let r = check(&[b.clone(), a.clone()]);
    assert!(!r.ok());
}

#[test]
fn a_slice_proves_each_entry_of_an_agent_with_the_paths_single_proofs_give() {
    use blackbox_core::proof::SliceSelection;
    use blackbox_ledger::proof::prove_slice;
    let (_tmp, dir) = setup(100);
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    let events: Vec<_> = (0..700).map(|i| event(i, "acme")).collect();
    writer
        .append(&mut store, &events, 1_776_160_000_000, true)
        .unwrap();
    // 30 more after the last checkpoint (700): not covered yet.
    let later: Vec<_> = (700..730).map(|i| event(i, "acme")).collect();
    writer
        .append(&mut store, &later, 1_776_160_000_001, false)
        .unwrap();
    drop(store);
    let store = open_reader(&dir).unwrap();
    let verifier = public_key(&dir).unwrap();
    let selection = SliceSelection {
        agent_id: Some("agent-3".into()),
        ..SliceSelection::default()
    };
    let slice = prove_slice(&store, "acme", &selection, 1000).unwrap();
    assert_eq!(slice.tree_size, 700);
    assert_eq!(slice.entries.len(), 140);
    assert_eq!(slice.not_covered, 6);
    assert!(slice.complete);
    // Every path equals the one a single inclusion proof gives (the shared subtrees are
    // computed once for the whole slice).
    for e in &slice.entries {
        let mut found = None;
        store
            .scan("acme", e.seq, e.seq, &mut |s| {
                found = Some(s);
                Ok(false)
            })
            .unwrap();
        let single = prove_inclusion(&store, &found.unwrap(), false).unwrap();
        assert_eq!(single.hashes, e.hashes, "seq {}", e.seq);
    }
    let json = serde_json::to_string(&slice).unwrap();
    match verify_proof_document(&json, &verifier).unwrap() {
        Proven::Slice {
            entries,
            tree_size,
            not_covered,
            ..
        } => assert_eq!((entries, tree_size, not_covered), (140, 700, 6)),
        other => panic!("{other:?}"),
    }
    // A window and a limit: the slice stops and says so.
    let window = SliceSelection {
        agent_id: Some("agent-3".into()),
        start: Some("2026-04-14T10:01:00.000Z".into()),
        end: Some("2026-04-14T10:01:59.999Z".into()),
        ..SliceSelection::default()
    };
    let all = prove_slice(&store, "acme", &window, 1000).unwrap();
    assert!(!all.entries.is_empty() && all.complete);
    let cut = prove_slice(&store, "acme", &window, 2).unwrap();
    assert_eq!(cut.entries.len(), 2);
    assert!(!cut.complete);
    let json = serde_json::to_string(&cut).unwrap();
    let text = verify_proof_document(&json, &verifier).unwrap().to_string();
    assert!(text.contains("the slice stopped at its limit"), "{text}");
}

/// Checks that the store holds every journalled entry (none left to apply), closes it and
/// verifies the data directory (the report is asserted OK and returned).
fn journal_applied_then_verify(
    dir: &DataDir,
    store: Box<dyn blackbox_store::Store>,
    writer: blackbox_ledger::writer::Writer,
) -> blackbox_core::verify::Report {
    assert_eq!(
        blackbox_ledger::journal::unapplied_entries(&dir.commit_journal_path(), store.as_ref())
            .unwrap(),
        0
    );
    drop(store);
    drop(writer);
    let report = verify_with_keys(dir);
    assert!(report.ok(), "{:?}", report.findings);
    report
}

/// Journalled batches handed over back to back may share one store commit (the store thread
/// keeps the first one's transaction open for a few milliseconds): each is still reported
/// committed, in order, the store holds every entry, and the journal holds none the store lacks.
/// A plain batch behind them commits them with it.
#[test]
fn journalled_batches_merged_into_one_store_commit_are_each_reported_in_order() {
    let (_tmp, dir) = setup(1000);
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    let now = 1_776_160_000_000;
    writer
        .stream(&mut store, |sink| {
            let (tx, rx) = std::sync::mpsc::channel();
            // (No personal sidecar: such a batch is never journalled.)
            for i in [1, 2, 3, 4, 5, 6, 7, 8, 10, 11] {
                sink.add(&event(i, "acme"), now)?;
                let tx = tx.clone();
                let (outcome, journal) =
                    sink.commit_journaled(now, move |r| tx.send((i, r.is_ok())).unwrap())?;
                assert!(matches!(journal, Some(Ok(()))), "{i}: {journal:?}");
                assert_eq!(outcome.count, 1);
            }
            sink.add(&event(12, "acme"), now)?;
            let tx2 = tx.clone();
            sink.commit_then(now, false, move |r| tx2.send((12, r.is_ok())).unwrap())?;
            let got: Vec<(usize, bool)> = (0..11).map(|_| rx.recv().unwrap()).collect();
            assert_eq!(
                got,
                [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12].map(|i| (i, true)),
                "reported out of order or failed"
            );
            Ok(())
        })
        .unwrap();
    let heads = store.chains().unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].size, 11);
    journal_applied_then_verify(&dir, store, writer);
}

/// A batch answered as durable through the commit journal whose store commit never happened
/// (the process died while the store was busy with the batch before) is appended from the
/// journal, exactly as signed, when the data directory is next opened for writing; opening it
/// again appends nothing twice, and the chains verify. A batch with a personal sidecar is never
/// journalled (its bytes must be erasable from every file).
#[test]
fn a_journalled_batch_the_store_never_committed_is_appended_at_the_next_open() {
    let (_tmp, dir) = setup(1000);
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    let now = 1_776_160_000_000;
    let mut answered = Vec::new();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let crashed = writer.stream(&mut store, |sink| {
        // With a personal sidecar (event 9 names a data subject): not journalled.
        sink.add(&event(9, "acme"), now)?;
        let (plain_tx, plain_rx) = std::sync::mpsc::channel();
        let (_, journal) =
            sink.commit_journaled(now, move |r| plain_tx.send(r.is_ok()).unwrap())?;
        assert!(journal.is_none(), "a personal sidecar went to the journal");
        // (A batch is journalled only on top of what is committed or journalled.)
        assert!(plain_rx.recv().unwrap());
        for i in 1..=3 {
            sink.add(&event(i, "acme"), now)?;
        }
        // (Its head read now: the store thread is busy below.)
        sink.track("beta")?;
        // The store thread is held in this batch's callback, then dies: the process crashed
        // before the store committed the next batch. (A plain batch: a journalled one's store
        // commit may wait for the next batch and commit with it, see the merged commits below.)
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        sink.commit_then(now, false, move |r| {
            assert!(r.is_ok());
            entered_tx.send(()).unwrap();
            let _ = gate_rx.recv_timeout(std::time::Duration::from_secs(30));
            panic!("simulated crash of the store thread");
        })?;
        // Journalled only on top of what is committed.
        entered_rx.recv().unwrap();
        for i in 4..=7 {
            answered.push(("acme", sink.add(&event(i, "acme"), now)?));
        }
        answered.push(("beta", sink.add(&event(10, "beta"), now)?));
        let (outcome, journal) = sink.commit_journaled(now, |_| {})?;
        assert!(
            matches!(journal, Some(Ok(()))),
            "the batch was not journalled: {journal:?}"
        );
        assert_eq!(outcome.chains["acme"], (5, 8));
        gate_tx.send(()).unwrap();
        Ok(())
    });
    assert!(crashed.is_err(), "the store thread died");
    let sizes = |store: &dyn blackbox_store::Store| -> Vec<(String, u64)> {
        store
            .chains()
            .unwrap()
            .into_iter()
            .map(|h| (h.tenant_id, h.size))
            .collect()
    };
    assert_eq!(sizes(store.as_ref()), [("acme".to_owned(), 4)]);
    // What `verify` reports before the next writing open.
    assert_eq!(
        blackbox_ledger::journal::unapplied_entries(&dir.commit_journal_path(), store.as_ref())
            .unwrap(),
        5
    );
    drop(store);
    drop(writer);
    let journal = std::fs::read(dir.commit_journal_path()).unwrap();

    // The next open appends the journalled batch.
    let (store, writer, _) = open_writer(&dir).unwrap();
    assert_eq!(
        sizes(store.as_ref()),
        [("acme".to_owned(), 8), ("beta".to_owned(), 1)]
    );
    for (tenant, a) in &answered {
        let e = store.entry_by_id(a.entry_id.as_bytes()).unwrap().unwrap();
        assert_eq!(e.tenant_id, *tenant);
        assert_eq!((e.seq, e.entry_hash), (a.seq, a.entry_hash));
    }
    drop(store);
    drop(writer);
    let (store, writer, _) = open_writer(&dir).unwrap();
    assert_eq!(
        sizes(store.as_ref()),
        [("acme".to_owned(), 8), ("beta".to_owned(), 1)],
        "appended twice"
    );
    let report = journal_applied_then_verify(&dir, store, writer);
    assert_eq!(report.entries, 9);

    // A journal that does not continue the store (the store restored from an older copy, say):
    // the store is not opened for writing, and the error says which file and what to do.
    let mut raw = blackbox_ledger::open::open_location(&dir.store_location(), false).unwrap();
    let mut b = raw.begin().unwrap();
    b.set_meta(blackbox_ledger::journal::JOURNAL_META, "0")
        .unwrap();
    b.commit().unwrap();
    drop(raw);
    std::fs::write(dir.commit_journal_path(), &journal).unwrap();
    let err = open_writer(&dir).unwrap_err().to_string();
    assert!(
        err.contains("commit.journal") && err.contains("not the next") && err.contains("aside"),
        "{err}"
    );
}
