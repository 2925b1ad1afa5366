//! The tamper suite: build a clean, deterministic log, apply one tampering, and check that the
//! verifier reports it, with the right kind and sequence number as its *first* finding.
// Test helpers outside #[test] functions unwrap too (clippy.toml only covers the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use blackbox_core::entry::EntryView;
use blackbox_core::keys::HmacKey;
use blackbox_core::verify::{FindingKind, Report};
use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};

const T: &str = "tenant_xyz";

fn clean() -> Log {
    build(&LogSpec::default())
}

fn entry_mut(records: &mut [Record], i: usize) -> (&mut Vec<u8>, &mut Option<Vec<u8>>) {
    match &mut records[i] {
        Record::Entry { line, sidecar } => (line, sidecar),
        Record::Checkpoint { .. } => panic!("record {i} is a checkpoint"),
    }
}

/// Asserts the report is not ok and its first finding is `kind` at `seq` of `tenant`.
#[track_caller]
fn assert_first(r: &Report, tenant: &str, kind: FindingKind, seq: u64) {
    assert!(!r.ok(), "tampering not detected:\n{}", describe(r));
    let f = r.first().unwrap();
    assert_eq!(
        (f.kind, f.tenant_id.as_str(), f.seq),
        (kind, tenant, seq),
        "wrong first finding:\n{}",
        describe(r)
    );
}

#[track_caller]
fn assert_ok(r: &Report) {
    assert!(r.ok(), "clean log flagged:\n{}", describe(r));
    assert!(r.findings.is_empty());
}

/// Changes one letter inside a string of the payload so that the line still parses.
fn flip_payload_letter(line: &mut [u8]) {
    let start = find(line, b"\"payload\":{").unwrap() + 11;
    let end = find(line, b",\"prev_entry_hash\"").unwrap();
    let i = (start..end)
        .find(|&i| line[i - 1] == b'"' && line[i].is_ascii_lowercase() && line[i - 2] == b':')
        .unwrap();
    line[i] = if line[i] == b'z' { b'a' } else { line[i] + 1 };
    assert!(EntryView::parse(line).is_ok());
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Untouched logs.

#[test]
fn untouched_logs_are_never_flagged() {
    for spec in [
        LogSpec::default(),
        LogSpec {
            tenants: 3,
            entries: 90,
            seed: 7,
            ..LogSpec::default()
        },
        LogSpec {
            checkpoint_every: 0,
            final_checkpoint: false,
            ..LogSpec::default()
        },
        LogSpec {
            entries: 1,
            ..LogSpec::default()
        },
    ] {
        let log = build(&spec);
        assert_ok(&verify_full(&log, &log.records));
        assert_ok(&verify(
            &log.records,
            Some(&keyring_k1()),
            Some(note_verifier()),
            &[],
        ));
        // Without the HMAC key (public-key-only), and without any key at all.
        let r = verify(&log.records, None, Some(note_verifier()), &log.trusted());
        assert_ok(&r);
        assert!(!r.hmac_checked);
        assert_ok(&verify(&log.records, None, None, &[]));
    }
}

#[test]
fn untouched_log_with_key_rotation_is_ok() {
    let log = build(&LogSpec {
        rotate_at: Some(30),
        tenants: 2,
        entries: 60,
        ..LogSpec::default()
    });
    let r = verify_full(&log, &log.records);
    assert_ok(&r);
    assert!(r.hmac_valid_by_key["k1"] == 30 && r.hmac_valid_by_key["k2"] == 30);
    assert_eq!(r.entries, 60);
    assert!(r.chains.iter().all(|c| c.checkpoints_verified > 0));
}

#[test]
fn clean_report_counts_everything() {
    let log = clean();
    let r = verify_full(&log, &log.records);
    assert_ok(&r);
    assert!(r.hmac_checked && r.signatures_checked);
    assert!(r.not_checked.is_empty(), "{:?}", r.not_checked);
    assert_eq!(r.entries, 50);
    assert_eq!(r.chains.len(), 1);
    let c = &r.chains[0];
    assert_eq!((c.entries, c.largest_checkpoint), (50, 50));
    // 5 checkpoints in the log + the trusted one.
    assert_eq!(c.checkpoints_verified, 6);
    assert_eq!(r.checkpoints_seen, 6);
}

// ---------------------------------------------------------------------------------------------
// One tampering each.

#[test]
fn modified_payload_byte() {
    let log = clean();
    let mut recs = log.records.clone();
    flip_payload_letter(entry_mut(&mut recs, log.index_of(T, 23)).0);
    assert_first(&verify_full(&log, &recs), T, FindingKind::Modification, 23);
    // Also with only k1 and no trusted checkpoint.
    let r = verify(&recs, Some(&keyring_k1()), Some(note_verifier()), &[]);
    assert_first(&r, T, FindingKind::Modification, 23);
}

#[test]
fn modified_last_entry() {
    let log = clean();
    let mut recs = log.records.clone();
    flip_payload_letter(entry_mut(&mut recs, log.index_of(T, 50)).0);
    assert_first(&verify_full(&log, &recs), T, FindingKind::Modification, 50);
}

#[test]
fn modified_first_entry() {
    let log = clean();
    let mut recs = log.records.clone();
    flip_payload_letter(entry_mut(&mut recs, log.index_of(T, 1)).0);
    assert_first(&verify_full(&log, &recs), T, FindingKind::Modification, 1);
}

#[test]
fn public_key_only_mode_detects_modification_through_the_next_link() {
    let log = clean();
    let mut recs = log.records.clone();
    flip_payload_letter(entry_mut(&mut recs, log.index_of(T, 23)).0);
    let r = verify(&recs, None, Some(note_verifier()), &log.trusted());
    assert_first(&r, T, FindingKind::Modification, 23);
    assert!(!r.hmac_checked);
    assert!(r.hmac_valid_by_key.is_empty());
    assert!(
        r.not_checked.iter().any(|s| s.contains("HMAC")),
        "{:?}",
        r.not_checked
    );
    // Even with no public key and no checkpoint at all, the link of entry 24 catches it.
    let r = verify(&recs, None, None, &[]);
    assert_first(&r, T, FindingKind::Modification, 23);
    assert_eq!(r.not_checked.len(), 2);
}

#[test]
fn public_key_only_mode_catches_a_modified_last_entry_by_its_checkpoint() {
    // No successor links to the last entry: only a checkpoint covering it can tell.
    let log = clean();
    let mut recs = log.records.clone();
    flip_payload_letter(entry_mut(&mut recs, log.index_of(T, 50)).0);
    let r = verify(&recs, None, Some(note_verifier()), &[]);
    assert_first(&r, T, FindingKind::CheckpointMismatch, 50);
    let r = verify(&recs, None, Some(note_verifier()), &log.trusted());
    assert_first(&r, T, FindingKind::CheckpointMismatch, 50);
}

#[test]
fn modification_in_a_multi_tenant_log() {
    let log = build(&LogSpec {
        tenants: 3,
        entries: 90,
        seed: 3,
        ..LogSpec::default()
    });
    let t = log.tenants[1].clone();
    let mut recs = log.records.clone();
    flip_payload_letter(entry_mut(&mut recs, log.index_of(&t, 7)).0);
    assert_first(&verify_full(&log, &recs), &t, FindingKind::Modification, 7);
    let r = verify(&recs, None, Some(note_verifier()), &log.trusted());
    assert_first(&r, &t, FindingKind::Modification, 7);
}

#[test]
fn deleted_entry_in_the_middle() {
    let log = clean();
    let mut recs = log.records.clone();
    recs.remove(log.index_of(T, 23));
    assert_first(&verify_full(&log, &recs), T, FindingKind::Deletion, 23);
    assert_first(
        &verify(&recs, None, None, &[]),
        T,
        FindingKind::Deletion,
        23,
    );
}

#[test]
fn deleted_entry_completing_a_checkpoint() {
    // Entry 30 is the last one checkpoint 30 covers: the deletion comes first, the checkpoint
    // mismatch it causes at the same seq after it.
    let log = clean();
    let mut recs = log.records.clone();
    recs.remove(log.index_of(T, 30));
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::Deletion, 30);
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::CheckpointMismatch && f.seq == 30),
        "{}",
        describe(&r)
    );
}

#[test]
fn deletion_in_a_multi_tenant_log() {
    let log = build(&LogSpec {
        tenants: 2,
        entries: 60,
        seed: 11,
        ..LogSpec::default()
    });
    let t = log.tenants[1].clone();
    let mut recs = log.records.clone();
    recs.remove(log.index_of(&t, 5));
    let r = verify_full(&log, &recs);
    assert_first(&r, &t, FindingKind::Deletion, 5);
    // The other chain is untouched.
    assert!(
        r.findings.iter().all(|f| f.tenant_id == t),
        "{}",
        describe(&r)
    );
}

#[test]
fn deleted_range() {
    let log = clean();
    let mut recs = log.records.clone();
    let (a, b) = (log.index_of(T, 23), log.index_of(T, 27));
    recs.drain(a..=b);
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::Deletion, 23);
    assert!(
        r.first().unwrap().message.contains("5 entries"),
        "{}",
        describe(&r)
    );
    assert_first(
        &verify(&recs, None, None, &[]),
        T,
        FindingKind::Deletion,
        23,
    );
}

#[test]
fn deleted_first_entry() {
    let log = clean();
    let mut recs = log.records.clone();
    recs.remove(log.index_of(T, 1));
    assert_first(&verify_full(&log, &recs), T, FindingKind::Deletion, 1);
}

#[test]
fn deleted_then_renumbered_entries() {
    // An attacker without the key deletes entry 23 and renumbers the rest (24 -> 23, ...):
    // every renumbered entry breaks its HMAC, and the first one does not link to entry 22.
    let log = clean();
    let mut recs = log.records.clone();
    recs.remove(log.index_of(T, 23));
    for r in recs.iter_mut() {
        if let Record::Entry { line, .. } = r {
            let mut v: Value = serde_json::from_slice(line).unwrap();
            let s = v["seq"].as_u64().unwrap();
            if s > 23 {
                v["seq"] = json!(s - 1);
                let mac = v["hmac_sha256"].as_str().unwrap().to_owned();
                // Keep the old MAC: the attacker cannot compute a new one.
                let mut l = sign_value(&v, &HmacKey::from_bytes(FORGER));
                let n = l.len();
                l[n - 66..n - 2].copy_from_slice(mac.as_bytes());
                *line = l;
            }
        }
    }
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::Deletion, 23);
}

/// A forged entry for `seq` linking to `prev` (with an entry id just above `prev`'s, so ids keep
/// increasing), signed with the attacker's key under key id k1.
fn forged_entry(template: &Record, seq: u64, prev: &[u8]) -> Vec<u8> {
    let mut v = template.json();
    let prev_v: Value = serde_json::from_slice(prev).unwrap();
    let prev_id = uuid::Uuid::parse_str(prev_v["entry_id"].as_str().unwrap()).unwrap();
    let id = blackbox_core::entry::next_entry_id(Some(prev_id), 0, [0; 10]);
    v["entry_id"] = json!(id.to_string());
    v["seq"] = json!(seq);
    v["prev_entry_hash"] = json!(line_hash(prev).to_prefixed());
    v["payload"] = json!({"decision": "approve_refund", "amount": 10000});
    v.as_object_mut().unwrap().remove("personal_digest");
    sign_value(&v, &HmacKey::from_bytes(FORGER))
}

#[test]
fn inserted_forged_entry_with_duplicate_seq_before_the_original() {
    let log = clean();
    let i23 = log.index_of(T, 23);
    let forged = forged_entry(
        &log.records[i23],
        23,
        log.records[log.index_of(T, 22)].line().unwrap(),
    );
    let mut recs = log.records.clone();
    recs.insert(
        i23,
        Record::Entry {
            line: forged,
            sidecar: None,
        },
    );
    assert_first(&verify_full(&log, &recs), T, FindingKind::Insertion, 23);
    // Public-key-only mode cannot tell the forged entry from the original by its MAC, but the
    // duplicate sequence number gives it away.
    assert_first(
        &verify(&recs, None, Some(note_verifier()), &log.trusted()),
        T,
        FindingKind::Insertion,
        23,
    );
}

#[test]
fn inserted_forged_entry_with_duplicate_seq_after_the_original() {
    let log = clean();
    let i23 = log.index_of(T, 23);
    let forged = forged_entry(
        &log.records[i23],
        23,
        log.records[log.index_of(T, 22)].line().unwrap(),
    );
    let mut recs = log.records.clone();
    recs.insert(
        i23 + 1,
        Record::Entry {
            line: forged,
            sidecar: None,
        },
    );
    assert_first(&verify_full(&log, &recs), T, FindingKind::Insertion, 23);
    assert_first(
        &verify(&recs, None, None, &[]),
        T,
        FindingKind::Insertion,
        23,
    );
}

#[test]
fn inserted_forged_entry_with_renumbered_followers() {
    // The forged entry takes seq 23 and links to entry 22; the original 23.. are renumbered
    // 24.. (their MACs break: the attacker has no key) but still link to their old predecessors.
    let log = clean();
    let i23 = log.index_of(T, 23);
    let forged = forged_entry(
        &log.records[i23],
        23,
        log.records[log.index_of(T, 22)].line().unwrap(),
    );
    let mut recs = log.records.clone();
    for r in recs.iter_mut() {
        if let Record::Entry { line, .. } = r {
            let mut v: Value = serde_json::from_slice(line).unwrap();
            let s = v["seq"].as_u64().unwrap();
            if s >= 23 {
                v["seq"] = json!(s + 1);
                *line = sign_value(&v, &HmacKey::from_bytes(FORGER));
            }
        }
    }
    recs.insert(
        i23,
        Record::Entry {
            line: forged,
            sidecar: None,
        },
    );
    assert_first(&verify_full(&log, &recs), T, FindingKind::Insertion, 23);
    assert_first(
        &verify(&recs, None, None, &[]),
        T,
        FindingKind::Insertion,
        23,
    );
}

#[test]
fn inserted_and_rechained_without_key_is_caught_from_the_insertion_point() {
    // The attacker re-links every follower to the forged entry. Without the key each rewritten
    // MAC fails, so this looks like (and is reported as) a modification from entry 23 on; the
    // checkpoints no longer match either.
    let log = clean();
    let i23 = log.index_of(T, 23);
    let mut recs: Vec<Record> = log.records.clone();
    let forged = forged_entry(
        &log.records[i23],
        23,
        log.records[log.index_of(T, 22)].line().unwrap(),
    );
    recs.insert(
        i23,
        Record::Entry {
            line: forged.clone(),
            sidecar: None,
        },
    );
    let mut prev = forged;
    for r in recs.iter_mut().skip(i23 + 1) {
        if let Record::Entry { line, .. } = r {
            let mut v: Value = serde_json::from_slice(line).unwrap();
            v["seq"] = json!(v["seq"].as_u64().unwrap() + 1);
            v["prev_entry_hash"] = json!(line_hash(&prev).to_prefixed());
            *line = sign_value(&v, &HmacKey::from_bytes(FORGER));
            prev = line.clone();
        }
    }
    let r = verify_full(&log, &recs);
    assert!(!r.ok());
    assert_eq!(r.first().unwrap().seq, 23, "{}", describe(&r));
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::CheckpointMismatch),
        "{}",
        describe(&r)
    );
    // Public-key-only: the links all hold, only the checkpoints catch it.
    let r = verify(&recs, None, Some(note_verifier()), &log.trusted());
    assert_first(&r, T, FindingKind::CheckpointMismatch, 30);
}

#[test]
fn reordered_adjacent_entries() {
    let log = clean();
    let mut recs = log.records.clone();
    let (a, b) = (log.index_of(T, 23), log.index_of(T, 24));
    recs.swap(a, b);
    assert_first(&verify_full(&log, &recs), T, FindingKind::Reordering, 23);
    assert_first(
        &verify(&recs, None, None, &[]),
        T,
        FindingKind::Reordering,
        23,
    );
}

#[test]
fn reordered_across_a_checkpoint() {
    // Entries 30 and 31 swapped: checkpoint 30 (between them in the file) now sees 31 at its
    // last leaf. The reordering is reported first.
    let log = clean();
    let mut recs = log.records.clone();
    let (a, b) = (log.index_of(T, 30), log.index_of(T, 31));
    recs.swap(a, b);
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::Reordering, 30);
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::CheckpointMismatch),
        "{}",
        describe(&r)
    );
}

#[test]
fn reordered_distant_entries() {
    let log = clean();
    let mut recs = log.records.clone();
    let (a, b) = (log.index_of(T, 23), log.index_of(T, 27));
    recs.swap(a, b);
    let r = verify_full(&log, &recs);
    assert!(!r.ok());
    assert!(
        r.findings.iter().any(|f| f.kind == FindingKind::Reordering),
        "{}",
        describe(&r)
    );
    assert_eq!(r.first().unwrap().seq, 23, "{}", describe(&r));
}

#[test]
fn replayed_entry() {
    let log = clean();
    let mut recs = log.records.clone();
    let copy = recs[log.index_of(T, 12)].clone();
    recs.insert(log.index_of(T, 30) + 1, copy);
    assert_first(&verify_full(&log, &recs), T, FindingKind::Replay, 12);
    assert_first(&verify(&recs, None, None, &[]), T, FindingKind::Replay, 12);
}

#[test]
fn replayed_last_entry() {
    let log = clean();
    let mut recs = log.records.clone();
    let copy = recs[log.index_of(T, 50)].clone();
    recs.push(copy);
    assert_first(&verify_full(&log, &recs), T, FindingKind::Replay, 50);
    assert_first(&verify(&recs, None, None, &[]), T, FindingKind::Replay, 50);
}

#[test]
fn duplicated_adjacent_entry() {
    let log = clean();
    let mut recs = log.records.clone();
    let i = log.index_of(T, 12);
    let copy = recs[i].clone();
    recs.insert(i + 1, copy);
    assert_first(&verify_full(&log, &recs), T, FindingKind::Replay, 12);
}

#[test]
fn truncated_tail_with_trusted_checkpoint() {
    let log = clean();
    let mut recs = log.records.clone();
    recs.truncate(log.index_of(T, 46));
    // The attacker also removed the stored final checkpoint; the auditor's copy catches it.
    assert!(recs.iter().all(Record::is_entry) || recs.last().unwrap().is_entry());
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::Truncation, 46);
}

#[test]
fn truncated_tail_caught_by_the_stored_final_checkpoint() {
    let log = clean();
    let mut recs = log.records.clone();
    let cp = recs.pop().unwrap();
    assert!(!cp.is_entry());
    recs.truncate(log.index_of(T, 46));
    recs.push(cp); // the final checkpoint (size 50) is still in the log
    let r = verify(&recs, Some(&keyring_k1()), Some(note_verifier()), &[]);
    assert_first(&r, T, FindingKind::Truncation, 46);
}

#[test]
fn truncated_tail_without_any_checkpoint_beyond_is_not_detectable() {
    // Documented limitation: with the final checkpoint removed too and no trusted checkpoint,
    // a truncated log is a valid shorter log.
    let log = clean();
    let mut recs = log.records.clone();
    recs.truncate(log.index_of(T, 46));
    assert_ok(&verify(
        &recs,
        Some(&keyring_k1()),
        Some(note_verifier()),
        &[],
    ));
    // Cut right after checkpoint 40 as well.
    let mut recs = log.records.clone();
    recs.truncate(log.checkpoint_index(T, 40) + 1);
    assert_ok(&verify(
        &recs,
        Some(&keyring_k1()),
        Some(note_verifier()),
        &[],
    ));
    // But the auditor's trusted checkpoint catches both.
    assert_first(&verify_full(&log, &recs), T, FindingKind::Truncation, 41);
}

#[test]
fn wrong_hmac_key() {
    let log = clean();
    let r = verify(
        &log.records,
        Some(&wrong_keyring()),
        Some(note_verifier()),
        &log.trusted(),
    );
    assert_first(&r, T, FindingKind::WrongKey, 1);
    assert_eq!(r.findings.len(), 1, "{}", describe(&r));
    // Without any checkpoint either.
    let r = verify(&log.records, Some(&wrong_keyring()), None, &[]);
    assert_first(&r, T, FindingKind::WrongKey, 1);
    // A multi-tenant log: one finding per key id, at the first entry signed with it.
    let log = build(&LogSpec {
        tenants: 2,
        rotate_at: Some(20),
        entries: 40,
        ..LogSpec::default()
    });
    let r = verify(
        &log.records,
        Some(&wrong_keyring()),
        Some(note_verifier()),
        &[],
    );
    assert!(!r.ok());
    assert!(
        r.findings.iter().all(|f| f.kind == FindingKind::WrongKey),
        "{}",
        describe(&r)
    );
    // k1 signed entry 1 of the first tenant, k2 a later entry of the second one.
    assert_eq!(r.findings.len(), 2, "{}", describe(&r));
    assert!(
        r.findings
            .iter()
            .any(|f| f.tenant_id == log.tenants[0] && f.seq == 1),
        "{}",
        describe(&r)
    );
}

#[test]
fn wrong_key_for_the_second_generation_only() {
    let log = build(&LogSpec {
        rotate_at: Some(30),
        ..LogSpec::default()
    });
    let mut ring = keyring_k1();
    ring.push(key_id("k2"), HmacKey::from_bytes([0x99; 32]))
        .unwrap();
    let r = verify(&log.records, Some(&ring), Some(note_verifier()), &[]);
    assert_first(&r, T, FindingKind::WrongKey, 31);
    assert_eq!(r.findings.len(), 1, "{}", describe(&r));
}

#[test]
fn unknown_key_id() {
    let log = build(&LogSpec {
        rotate_at: Some(30),
        ..LogSpec::default()
    });
    // The auditor was given the keyring from before the rotation.
    let r = verify(
        &log.records,
        Some(&keyring_k1()),
        Some(note_verifier()),
        &log.trusted(),
    );
    assert_first(&r, T, FindingKind::UnknownKey, 31);
    // An entry naming a key id nobody has (forged).
    let log = clean();
    let mut recs = log.records.clone();
    let (line, _) = entry_mut(&mut recs, log.index_of(T, 23));
    let mut v: Value = serde_json::from_slice(line).unwrap();
    v["key_id"] = json!("k9");
    *line = sign_value(&v, &HmacKey::from_bytes(FORGER));
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::UnknownKey, 23);
    // Entry 24 no longer links to it either.
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::Modification && f.seq == 23),
        "{}",
        describe(&r)
    );
}

#[test]
fn checkpoint_signed_by_another_key() {
    let log = clean();
    let mut recs = log.records.clone();
    let i = log.checkpoint_index(T, 20);
    let cp = blackbox_core::checkpoint::SignedCheckpoint::parse(match &recs[i] {
        Record::Checkpoint { note_text } => note_text,
        Record::Entry { .. } => unreachable!(),
    })
    .unwrap();
    recs[i] = Record::Checkpoint {
        note_text: checkpoint_text(
            T,
            20,
            cp.checkpoint.root,
            BASE_MS + 20_000,
            &other_note_signer(),
        ),
    };
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::BadCheckpointSignature, 20);
    assert_eq!(r.findings.len(), 1, "{}", describe(&r));
    // Without the public key the signature cannot be checked, and the root is right.
    let r = verify(&recs, Some(&keyring_k1()), None, &[]);
    assert_ok(&r);
    assert!(!r.signatures_checked);
}

#[test]
fn checkpoint_with_a_tampered_text() {
    let log = clean();
    let mut recs = log.records.clone();
    let i = log.checkpoint_index(T, 20);
    if let Record::Checkpoint { note_text } = &mut recs[i] {
        *note_text = note_text.replacen("\n20\n", "\n21\n", 1);
    }
    let r = verify_full(&log, &recs);
    assert!(!r.ok());
    assert_eq!(
        r.first().unwrap().kind,
        FindingKind::BadCheckpointSignature,
        "{}",
        describe(&r)
    );
}

#[test]
fn checkpoint_root_inconsistent_with_entries() {
    let log = clean();
    let mut recs = log.records.clone();
    let i = log.checkpoint_index(T, 20);
    recs[i] = Record::Checkpoint {
        note_text: checkpoint_text(
            T,
            20,
            blackbox_core::Hash::digest(b"rewritten history"),
            BASE_MS + 20_000,
            &note_signer(),
        ),
    };
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::CheckpointMismatch, 20);
    assert_eq!(r.findings.len(), 1, "{}", describe(&r));
    // Also caught without the public key (the root is still compared).
    assert_first(
        &verify(&recs, Some(&keyring_k1()), None, &[]),
        T,
        FindingKind::CheckpointMismatch,
        20,
    );
}

#[test]
fn deleting_a_checkpoint_loses_nothing() {
    // Checkpoints are witnesses: without one, the entries are still all there and verify.
    let log = clean();
    let mut recs = log.records.clone();
    recs.remove(log.checkpoint_index(T, 20));
    assert_ok(&verify_full(&log, &recs));
}

#[test]
fn malformed_checkpoint() {
    let log = clean();
    let mut recs = log.records.clone();
    let i = log.checkpoint_index(T, 20);
    recs[i] = Record::Checkpoint {
        note_text: "not a checkpoint\n".into(),
    };
    let r = verify_full(&log, &recs);
    assert_first(&r, "", FindingKind::Malformed, 0);
}

/// Index of the first entry of `log` that has a personal sidecar, and its seq.
fn first_with_sidecar(log: &Log) -> (usize, u64) {
    let i = log
        .records
        .iter()
        .position(|r| {
            matches!(
                r,
                Record::Entry {
                    sidecar: Some(_),
                    ..
                }
            )
        })
        .unwrap();
    (i, log.records[i].tenant_seq().unwrap().1)
}

#[test]
fn removed_personal_sidecar() {
    let log = clean();
    let (i, seq) = first_with_sidecar(&log);
    let mut recs = log.records.clone();
    *entry_mut(&mut recs, i).1 = None;
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::UnmarkedRedaction, seq);
    assert_eq!(r.findings.len(), 1, "{}", describe(&r));
    // Only redactions a marker accounts for count as redacted.
    assert_eq!(r.chains[0].redacted, 0);
    // The signed bytes are untouched: public-key-only mode sees the same thing.
    assert_first(
        &verify(&recs, None, None, &[]),
        T,
        FindingKind::UnmarkedRedaction,
        seq,
    );
}

#[test]
fn modified_personal_sidecar() {
    let log = clean();
    let (i, seq) = first_with_sidecar(&log);
    let mut recs = log.records.clone();
    let sc = entry_mut(&mut recs, i).1.as_mut().unwrap();
    let text = String::from_utf8(sc.clone())
        .unwrap()
        .replacen("ds_", "ds-", 1);
    assert_ne!(text.as_bytes(), &sc[..]);
    *sc = text.into_bytes();
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::Modification, seq);
    assert_eq!(r.findings.len(), 1, "{}", describe(&r));
}

#[test]
fn sidecar_added_to_an_entry_without_personal_data() {
    let log = clean();
    let i = log
        .records
        .iter()
        .position(|r| matches!(r, Record::Entry { sidecar: None, .. }))
        .unwrap();
    let seq = log.records[i].tenant_seq().unwrap().1;
    let mut recs = log.records.clone();
    *entry_mut(&mut recs, i).1 = Some(b"{\"fields\":{},\"salt\":\"00\"}".to_vec());
    assert_first(&verify_full(&log, &recs), T, FindingKind::Modification, seq);
}

/// Rewrites one chain as an insider holding `k1` would: re-signs every entry, re-links it to
/// its predecessor and re-signs the checkpoints (every 10 and at the end). `edit` may change
/// the entry objects first.
fn insider_rewrite(log: &Log, edit: impl FnOnce(&mut [Value])) -> Vec<Record> {
    let mut values: Vec<Value> = log
        .records
        .iter()
        .filter(|r| r.is_entry())
        .map(Record::json)
        .collect();
    edit(&mut values);
    let key = HmacKey::from_bytes(K1);
    let signer = note_signer();
    let mut tree = blackbox_core::merkle::CompactRange::new();
    let mut prev = blackbox_core::entry::GENESIS_HASH;
    let mut out = Vec::new();
    let sidecars: Vec<Option<Vec<u8>>> = log
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Entry { sidecar, .. } => Some(sidecar.clone()),
            Record::Checkpoint { .. } => None,
        })
        .collect();
    for (v, sidecar) in values.iter_mut().zip(sidecars) {
        v["prev_entry_hash"] = json!(prev.to_prefixed());
        let line = sign_value(v, &key);
        prev = line_hash(&line);
        tree.append(blackbox_core::merkle::leaf_hash(prev.as_bytes()));
        out.push(Record::Entry { line, sidecar });
        if tree.size().is_multiple_of(10) {
            out.push(Record::Checkpoint {
                note_text: checkpoint_text(T, tree.size(), tree.root(), BASE_MS, &signer),
            });
        }
    }
    out
}

#[test]
fn insider_rewrite_without_changes_verifies() {
    let log = clean();
    let recs = insider_rewrite(&log, |_| {});
    let entries =
        |rs: &[Record]| -> Vec<Record> { rs.iter().filter(|r| r.is_entry()).cloned().collect() };
    assert!(entries(&recs) == entries(&log.records));
    assert_ok(&verify(
        &recs,
        Some(&keyring_k1()),
        Some(note_verifier()),
        &[],
    ));
}

#[test]
fn entry_id_going_backwards() {
    let log = clean();
    let recs = insider_rewrite(&log, |vals| {
        // Entry 23 gets an id one millisecond before entry 22's (a manipulated clock).
        let prev = uuid::Uuid::parse_str(vals[21]["entry_id"].as_str().unwrap()).unwrap();
        let ms = blackbox_core::entry::uuid_millis(&prev) - 1;
        let id = blackbox_core::entry::next_entry_id(None, ms, [7; 10]);
        assert!(id < prev);
        vals[22]["entry_id"] = json!(id.to_string());
    });
    let r = verify(&recs, Some(&keyring_k1()), Some(note_verifier()), &[]);
    assert_first(&r, T, FindingKind::IdNotIncreasing, 23);
    assert_eq!(r.findings.len(), 1, "{}", describe(&r));
    // Equal ids are refused as well.
    let recs = insider_rewrite(&log, |vals| {
        vals[22]["entry_id"] = vals[21]["entry_id"].clone();
    });
    let r = verify(&recs, Some(&keyring_k1()), Some(note_verifier()), &[]);
    assert_first(&r, T, FindingKind::IdNotIncreasing, 23);
}

#[test]
fn malformed_entry_line() {
    let log = clean();
    for garbage in [
        b"{\"not\":\"an entry\"}".to_vec(),
        b"".to_vec(),
        b"\xff\xfe garbage".to_vec(),
    ] {
        let mut recs = log.records.clone();
        *entry_mut(&mut recs, log.index_of(T, 23)).0 = garbage;
        let r = verify_full(&log, &recs);
        assert_first(&r, "", FindingKind::Malformed, 0);
        // The gap it leaves is reported too.
        assert!(
            r.findings
                .iter()
                .any(|f| f.kind == FindingKind::Deletion && f.seq == 23),
            "{}",
            describe(&r)
        );
    }
    // A line cut in half.
    let mut recs = log.records.clone();
    let (line, _) = entry_mut(&mut recs, log.index_of(T, 23));
    line.truncate(line.len() / 2);
    assert_first(&verify_full(&log, &recs), "", FindingKind::Malformed, 0);
    // An unknown member makes the line malformed even though it is valid JSON.
    let mut recs = log.records.clone();
    let (line, _) = entry_mut(&mut recs, log.index_of(T, 23));
    let mut v: Value = serde_json::from_slice(line).unwrap();
    v["extra"] = json!(1);
    *line = sign_value(&v, &HmacKey::from_bytes(K1));
    assert_first(&verify_full(&log, &recs), "", FindingKind::Malformed, 0);
}

// ---------------------------------------------------------------------------------------------
// Random logs, one random mutation.

#[derive(Debug, Clone)]
enum Mutation {
    FlipByte {
        entry: prop::sample::Index,
        byte: prop::sample::Index,
        xor: u8,
    },
    Delete(prop::sample::Index),
    Duplicate {
        entry: prop::sample::Index,
        to: prop::sample::Index,
    },
    Swap(prop::sample::Index, prop::sample::Index),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            1..=255u8
        )
            .prop_map(|(entry, byte, xor)| Mutation::FlipByte { entry, byte, xor }),
        any::<prop::sample::Index>().prop_map(Mutation::Delete),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(entry, to)| Mutation::Duplicate { entry, to }),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Mutation::Swap(a, b)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

/// Applies `m`; `None` when it would leave the log byte-for-byte unchanged.
fn apply(records: &[Record], m: &Mutation) -> Option<Vec<Record>> {
    let mut recs = records.to_vec();
    let entries: Vec<usize> = (0..recs.len()).filter(|&i| recs[i].is_entry()).collect();
    match m {
        Mutation::FlipByte { entry, byte, xor } => {
            let i = entries[entry.index(entries.len())];
            let (line, _) = entry_mut(&mut recs, i);
            let b = byte.index(line.len());
            line[b] ^= xor;
        }
        Mutation::Delete(i) => {
            // An entry: a checkpoint is a redundant witness, dropping one loses no data (the
            // `deleting_a_checkpoint_loses_nothing` test checks that it is not flagged).
            recs.remove(entries[i.index(entries.len())]);
        }
        Mutation::Duplicate { entry, to } => {
            let r = recs[entries[entry.index(entries.len())]].clone();
            recs.insert(to.index(recs.len() + 1), r);
        }
        Mutation::Swap(a, b) => {
            // Two entries of the same chain: the interleaving of different chains is not
            // committed to by anything (each chain is verified on its own).
            let a = entries[a.index(entries.len())];
            let tenant = recs[a].tenant_seq().unwrap().0;
            let same: Vec<usize> = entries
                .iter()
                .copied()
                .filter(|&i| recs[i].tenant_seq().unwrap().0 == tenant)
                .collect();
            let b = same[b.index(same.len())];
            recs.swap(a, b);
        }
        Mutation::Truncate(at) => {
            // Cut anywhere up to the last entry (dropping only trailing checkpoints removes no
            // data: the trusted checkpoint still matches).
            let last = *entries.last().unwrap();
            recs.truncate(at.index(last + 1));
        }
    }
    (recs != records).then_some(recs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_single_mutation_is_always_detected(
        entries in 2usize..80,
        tenants in 1usize..=2,
        seed in any::<u64>(),
        rotate in prop::option::of(0usize..80),
        m in mutation(),
    ) {
        let log = build(&LogSpec { entries, tenants, seed, rotate_at: rotate, ..LogSpec::default() });
        let Some(recs) = apply(&log.records, &m) else {
            return Ok(());
        };
        let r = verify_full(&log, &recs);
        prop_assert!(!r.ok(), "{:?} not detected\n{}", m, describe(&r));
    }

    #[test]
    fn random_untouched_logs_are_ok(
        entries in 2usize..80,
        tenants in 1usize..=2,
        seed in any::<u64>(),
        rotate in prop::option::of(0usize..80),
        every in 0u64..12,
    ) {
        let log = build(&LogSpec {
            entries, tenants, seed, rotate_at: rotate, checkpoint_every: every, ..LogSpec::default()
        });
        let r = verify_full(&log, &log.records);
        prop_assert!(r.ok(), "{}", describe(&r));
        let r = verify(&log.records, None, Some(note_verifier()), &log.trusted());
        prop_assert!(r.ok(), "{}", describe(&r));
    }
}

// ---- erasure markers (FORMAT.md §5) --------------------------------------------------------

/// A clean log without a final checkpoint (markers are appended after it), the record indexes
/// of its first two entries with a sidecar, and their (seq, entry id).
fn erasable() -> (Log, Vec<(usize, u64, String)>) {
    let log = build(&LogSpec {
        final_checkpoint: false,
        checkpoint_every: 0,
        ..LogSpec::default()
    });
    let picked: Vec<(usize, u64, String)> = log
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            matches!(
                r,
                Record::Entry {
                    sidecar: Some(_),
                    ..
                }
            )
        })
        .take(2)
        .map(|(i, r)| {
            let v = r.json();
            (
                i,
                v["seq"].as_u64().unwrap(),
                v["entry_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(picked.len(), 2);
    (log, picked)
}

fn marker_payload(listed: &[(usize, u64, String)]) -> Value {
    let redacted: Vec<Value> = listed
        .iter()
        .map(|(_, s, id)| json!({"entry_id": id, "seq": s}))
        .collect();
    json!({"count": redacted.len(), "part": 1, "parts": 1, "reason": "GDPR Art. 17 request",
           "redacted": redacted, "requested_by": "cli", "ticket": "DSR-1"})
}

/// Removes the sidecars of `erased` and appends a marker listing `listed`, signed with `key`.
fn with_marker(
    log: &Log,
    erased: &[(usize, u64, String)],
    listed: &[(usize, u64, String)],
    key: &HmacKey,
) -> Vec<Record> {
    let mut recs = log.records.clone();
    for (i, _, _) in erased {
        *entry_mut(&mut recs, *i).1 = None;
    }
    let mut w = ChainWriter::resume(T, &recs);
    let mut rng = common::Rng::new(7);
    recs.push(w.append_marker(
        &marker_payload(listed),
        1_900_000_000_000,
        &key_id("k1"),
        key,
        &mut rng,
    ));
    recs
}

fn k1() -> HmacKey {
    HmacKey::from_bytes(K1)
}

#[test]
fn redaction_under_a_marker_verifies() {
    let (log, picked) = erasable();
    let recs = with_marker(&log, &picked, &picked, &k1());
    let r = verify_full(&log, &recs);
    assert_ok(&r);
    assert_eq!((r.chains[0].redacted, r.chains[0].erasure_markers), (2, 1));
    // Without any key the marker still accounts for the redactions.
    let r = verify(&recs, None, None, &[]);
    assert!(r.ok(), "{}", describe(&r));
    assert_eq!(r.chains[0].redacted, 2);
}

#[test]
fn a_marker_forged_without_the_key_accounts_for_nothing() {
    let (log, picked) = erasable();
    let recs = with_marker(&log, &picked, &picked, &HmacKey::from_bytes([0x55; 32]));
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::UnmarkedRedaction, picked[0].1);
    let kinds: Vec<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
    assert!(
        kinds.contains(&FindingKind::Modification),
        "{}",
        describe(&r)
    );
    assert_eq!(r.chains[0].erasure_markers, 0);
}

#[test]
fn a_redaction_the_marker_does_not_list_is_unmarked() {
    let (log, picked) = erasable();
    let recs = with_marker(&log, &picked, &picked[..1], &k1());
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::UnmarkedRedaction, picked[1].1);
    assert_eq!(r.findings.len(), 1, "{}", describe(&r));
    assert_eq!(r.chains[0].redacted, 1);
}

#[test]
fn a_marker_listing_an_entry_whose_sidecar_is_present_is_reported() {
    let (log, picked) = erasable();
    let recs = with_marker(&log, &picked[..1], &picked, &k1());
    let r = verify_full(&log, &recs);
    assert_first(&r, T, FindingKind::ErasureIncomplete, picked[1].1);
    assert_eq!(r.findings.len(), 1, "{}", describe(&r));
}

#[test]
fn a_marker_edited_after_signing_is_a_modification() {
    let (log, picked) = erasable();
    let mut recs = with_marker(&log, &picked, &picked[..1], &k1());
    // Add the second entry to the marker's list without the key.
    let last = recs.len() - 1;
    let line = entry_mut(&mut recs, last).0;
    let text = String::from_utf8(line.clone()).unwrap();
    let (s, id) = (&picked[1].1, &picked[1].2);
    let edited = text.replacen(r#""count":1"#, r#""count":2"#, 1).replacen(
        "}],",
        &format!(r#"}},{{"entry_id":"{id}","seq":{s}}}],"#),
        1,
    );
    assert_ne!(edited, text);
    *line = edited.into_bytes();
    let r = verify_full(&log, &recs);
    let kinds: Vec<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
    assert!(
        kinds.contains(&FindingKind::UnmarkedRedaction),
        "{}",
        describe(&r)
    );
    assert!(
        kinds.contains(&FindingKind::Modification),
        "{}",
        describe(&r)
    );
}

#[test]
fn a_marker_that_cannot_be_read_is_malformed() {
    let (log, picked) = erasable();
    let mut bad = marker_payload(&picked);
    bad["count"] = json!(5);
    let mut recs = log.records.clone();
    for (i, _, _) in &picked {
        *entry_mut(&mut recs, *i).1 = None;
    }
    let mut w = ChainWriter::resume(T, &recs);
    recs.push(w.append_marker(
        &bad,
        1_900_000_000_000,
        &key_id("k1"),
        &k1(),
        &mut common::Rng::new(3),
    ));
    let r = verify_full(&log, &recs);
    let kinds: Vec<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
    assert!(kinds.contains(&FindingKind::Malformed), "{}", describe(&r));
    assert!(
        kinds.contains(&FindingKind::UnmarkedRedaction),
        "{}",
        describe(&r)
    );
}
