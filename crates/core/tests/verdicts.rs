//! The verdict table of docs/FORMAT.md §9 ("Verdicts"): the `seq` named where the tamper suite
//! does not already pin it — a store's chain head, and two separate gaps.
// Test helpers outside #[test] functions unwrap too (clippy.toml only covers the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use blackbox_core::Hash;
use blackbox_core::verify::{FindingKind, LogVerifier, Report, check_entry};
use common::*;

const T: &str = "tenant_xyz";

/// Verifies `records` with the keyring and public key, telling the verifier the store's chain
/// head `(size, head)` of `T` first.
fn verify_with_head(records: &[Record], head: Option<(u64, Hash)>) -> Report {
    let keys = keyring_k1_k2();
    let mut v = LogVerifier::new(true, Some(note_verifier()));
    if let Some((size, h)) = head {
        v.expect_head(T, size, h);
    }
    for (i, r) in records.iter().enumerate() {
        if let Record::Entry { line, sidecar } = r {
            v.feed(check_entry(
                i as u64 + 1,
                line,
                sidecar.as_deref(),
                Some(&keys),
            ));
        }
    }
    v.finish()
}

fn entries_up_to(log: &Log, seq: u64) -> (Vec<Record>, Hash) {
    let recs: Vec<Record> = log.records[..=log.index_of(T, seq)]
        .iter()
        .filter(|r| matches!(r, Record::Entry { .. }))
        .cloned()
        .collect();
    let Some(Record::Entry { line, .. }) = recs.last() else {
        panic!("no entry")
    };
    let head = Hash::digest(line);
    (recs, head)
}

#[track_caller]
fn first(r: &Report) -> (FindingKind, u64) {
    let f = r
        .first()
        .unwrap_or_else(|| panic!("nothing found:\n{}", describe(r)));
    (f.kind, f.seq)
}

#[test]
fn a_chain_shorter_than_its_head_names_the_first_missing_entry() {
    let log = build(&LogSpec::default());
    let (recs, head) = entries_up_to(&log, 40);
    assert!(verify_with_head(&recs, Some((40, head))).ok());
    // The store's head says 43 entries: 41 is the first one missing.
    let r = verify_with_head(&recs, Some((43, head)));
    assert_eq!(first(&r), (FindingKind::Truncation, 41), "{}", describe(&r));
    // Without the head, a cut tail leaves nothing to see (hence the head and checkpoints).
    assert!(verify_with_head(&recs, None).ok());
}

#[test]
fn a_chain_ending_elsewhere_than_its_head_names_the_last_entry() {
    let log = build(&LogSpec::default());
    let (recs, _) = entries_up_to(&log, 40);
    let r = verify_with_head(&recs, Some((40, Hash::digest(b"another entry"))));
    assert_eq!(
        first(&r),
        (FindingKind::Modification, 40),
        "{}",
        describe(&r)
    );
}

#[test]
fn two_gaps_are_two_deletions_each_naming_its_first_missing_entry() {
    let log = build(&LogSpec::default());
    let (mut recs, _) = entries_up_to(&log, 40);
    // Remove 10-11 and 20 (entries are in seq order in this single-tenant log).
    let seq_of = |r: &Record| r.tenant_seq().map(|(_, s)| s);
    recs.retain(|r| !matches!(seq_of(r), Some(10 | 11 | 20)));
    let r = verify_with_head(&recs, None);
    let deletions: Vec<(u64, String)> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Deletion)
        .map(|f| (f.seq, f.message.clone()))
        .collect();
    assert_eq!(
        deletions,
        [
            (
                10,
                "hash mismatch, 2 entries missing (through entry 11)".to_owned()
            ),
            (20, "hash mismatch, 1 entry missing".to_owned()),
        ],
        "{}",
        describe(&r)
    );
    assert_eq!(first(&r), (FindingKind::Deletion, 10));
}

#[test]
fn what_could_not_be_checked_is_not_tampered() {
    let log = build(&LogSpec::default());
    let (recs, head) = entries_up_to(&log, 40);
    // No keyring and no public key: links only; HMACs and signatures are "not checked".
    let mut v = LogVerifier::new(false, None);
    v.expect_head(T, 40, head);
    for (i, r) in recs.iter().enumerate() {
        if let Record::Entry { line, sidecar } = r {
            v.feed(check_entry(i as u64 + 1, line, sidecar.as_deref(), None));
        }
    }
    let r = v.finish();
    assert!(r.ok(), "{}", describe(&r));
    assert!(!r.not_checked.is_empty());
}
