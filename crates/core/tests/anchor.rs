//! Anchor records: a log cut into files at anchors verifies file by file and as a set, and
//! tampering with an anchor, or across a file boundary, is detected.
// Test helpers outside #[test] functions unwrap too (clippy.toml only covers the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use blackbox_core::Hash;
use blackbox_core::anchor::Anchor;
use blackbox_core::checkpoint::SignedCheckpoint;
use blackbox_core::entry::GENESIS_HASH;
use blackbox_core::ids::TenantId;
use blackbox_core::keys::Keyring;
use blackbox_core::merkle::{CompactRange, inclusion_proof, leaf_hash, root_from_leaf_hashes};
use blackbox_core::note::{NoteSigner, NoteVerifier};
use blackbox_core::verify::{FindingKind, LogVerifier, Report, check_entry};
use common::*;
use proptest::prelude::*;
use serde_json::Value;

const T: &str = "tenant_xyz";

/// One line of a log file.
#[derive(Debug, Clone)]
enum Item {
    Rec(Record),
    Anchor(String),
}

/// The anchor of `tenant`'s chain after its first `n` entries in `records`, signed by `signer`.
fn anchor_for(records: &[Record], tenant: &str, n: u64, signer: &NoteSigner) -> Anchor {
    let hashes: Vec<Hash> = records
        .iter()
        .filter(|r| r.tenant_seq().is_some_and(|(t, s)| t == tenant && s <= n))
        .map(|r| line_hash(r.line().unwrap()))
        .collect();
    assert_eq!(hashes.len() as u64, n);
    let leaves: Vec<Hash> = hashes.iter().map(|h| leaf_hash(h.as_bytes())).collect();
    let mut range = CompactRange::new();
    for l in &leaves {
        range.append(*l);
    }
    let proof = if n == 0 {
        Vec::new()
    } else {
        inclusion_proof(n - 1, n, |start, level| {
            let (a, b) = (start as usize, (start + (1 << level)) as usize);
            Ok::<_, ()>(root_from_leaf_hashes(&leaves[a..b]))
        })
        .unwrap()
    };
    let text = checkpoint_text(tenant, n, range.root(), BASE_MS, signer);
    let cp = SignedCheckpoint::parse(&text).unwrap();
    let head = hashes.last().copied().unwrap_or(GENESIS_HASH);
    Anchor::new(TenantId::parse(tenant).unwrap(), range, head, proof, cp).unwrap()
}

/// Splits `log` before record `at`: the second part starts with an anchor for every tenant.
fn split(log: &Log, at: usize) -> (Vec<Item>, Vec<Item>) {
    let (a, b) = log.records.split_at(at);
    let mut second = Vec::new();
    for t in &log.tenants {
        let n = a
            .iter()
            .filter(|r| r.tenant_seq().is_some_and(|(tt, _)| tt == *t))
            .count() as u64;
        second.push(Item::Anchor(anchor_for(a, t, n, &note_signer()).to_line()));
    }
    second.extend(b.iter().cloned().map(Item::Rec));
    (a.iter().cloned().map(Item::Rec).collect(), second)
}

/// Verifies `files` in order as one stream, every record in log order.
fn run(files: &[&[Item]], keys: Option<&Keyring>, verifier: Option<NoteVerifier>) -> Report {
    let mut v = LogVerifier::new(keys.is_some(), verifier);
    let mut pos = 0u64;
    for file in files {
        for item in *file {
            pos += 1;
            match item {
                Item::Rec(Record::Entry { line, sidecar }) => {
                    v.feed(check_entry(pos, line, sidecar.as_deref(), keys));
                }
                Item::Rec(Record::Checkpoint { note_text }) => {
                    v.add_checkpoint(pos, note_text, false)
                }
                Item::Anchor(line) => v.add_anchor_line(pos, line.as_bytes()),
            }
        }
    }
    v.finish()
}

fn full(files: &[&[Item]]) -> Report {
    run(files, Some(&keyring_k1()), Some(note_verifier()))
}

#[track_caller]
fn assert_ok(r: &Report) {
    assert!(r.ok(), "clean log flagged:\n{}", describe(r));
}

#[track_caller]
fn assert_first(r: &Report, kind: FindingKind, seq: u64) {
    assert!(!r.ok(), "not detected");
    let f = r.first().unwrap();
    assert_eq!((f.kind, f.seq), (kind, seq), "{}", describe(r));
}

/// Index of the record right after entry `seq` of `T` (a checkpoint of size `seq` goes to the
/// second file, after the anchor).
fn after_entry(log: &Log, seq: u64) -> usize {
    log.index_of(T, seq) + 1
}

/// Index of the first entry line in `items`.
fn first_entry(items: &[Item]) -> usize {
    items
        .iter()
        .position(|i| matches!(i, Item::Rec(r) if r.is_entry()))
        .unwrap()
}

/// Rewrites the anchor line (the first item) with `f` applied to its JSON.
fn tamper_anchor(items: &[Item], f: impl FnOnce(&mut Value)) -> Vec<Item> {
    let mut out = items.to_vec();
    let Item::Anchor(line) = &out[0] else {
        panic!("no anchor first")
    };
    let mut v: Value = serde_json::from_str(line).unwrap();
    f(&mut v["anchor"]);
    out[0] = Item::Anchor(v.to_string());
    out
}

#[test]
fn a_log_split_at_an_anchor_verifies_as_a_set_and_file_by_file() {
    let log = build(&LogSpec::default()); // 50 entries, checkpoints every 10
    let whole = full(&[&log
        .records
        .iter()
        .cloned()
        .map(Item::Rec)
        .collect::<Vec<_>>()]);
    assert_ok(&whole);
    for n in [1u64, 10, 17, 32, 49, 50] {
        let (a, b) = split(&log, after_entry(&log, n));
        let set = full(&[&a, &b]);
        assert_ok(&set);
        let (c, w) = (&set.chains[0], &whole.chains[0]);
        assert_eq!((c.entries, c.start, c.size), (50, 0, 50));
        assert_eq!((c.head, c.root), (w.head, w.root));
        // The anchor matched the state reached: it counts as one more verified checkpoint.
        assert_eq!(c.checkpoints_verified, w.checkpoints_verified + 1);

        let first = full(&[&a]);
        assert_ok(&first);
        assert_eq!(first.chains[0].size, n);

        let second = full(&[&b]);
        assert_ok(&second);
        let c = &second.chains[0];
        assert_eq!((c.entries, c.start, c.size), (50 - n, n, 50), "n = {n}");
        assert_eq!((c.head, c.root), (w.head, w.root));
        assert_eq!(second.entries, 50 - n);
        assert!(c.checkpoints_verified >= 1);
        assert_eq!(c.largest_checkpoint, 50);
        // HMACs only: the anchor cannot be authenticated, which the report says.
        let no_pk = run(&[&b], Some(&keyring_k1()), None);
        assert_ok(&no_pk);
        assert!(
            no_pk
                .not_checked
                .iter()
                .any(|s| s.contains("anchor") && s.contains("not authenticated")),
            "{:?}",
            no_pk.not_checked
        );
    }
}

#[test]
fn an_anchor_of_size_zero_and_several_tenants() {
    let log = build(&LogSpec {
        entries: 60,
        tenants: 3,
        checkpoint_every: 7,
        ..LogSpec::default()
    });
    for at in [0, 1, 5, 20, 33, log.records.len()] {
        let (a, b) = split(&log, at);
        assert_ok(&full(&[&a, &b]));
        assert_ok(&full(&[&b]));
        assert_ok(&full(&[&a]));
    }
}

#[test]
fn three_files_verify_as_one_log() {
    let log = build(&LogSpec {
        entries: 90,
        ..LogSpec::default()
    });
    let (a, rest) = split(&log, after_entry(&log, 30));
    // Split the rest again at entry 61: build its anchor from the whole log.
    let cut = log.index_of(T, 61);
    let anchor = anchor_for(&log.records[..cut], T, 60, &note_signer());
    let k = rest
        .iter()
        .position(|i| matches!(i, Item::Rec(r) if r.tenant_seq() == Some((T.to_owned(), 61))))
        .unwrap();
    let b = rest[..k].to_vec();
    let mut c = vec![Item::Anchor(anchor.to_line())];
    c.extend_from_slice(&rest[k..]);
    let r = full(&[&a, &b, &c]);
    assert_ok(&r);
    assert_eq!((r.chains[0].entries, r.chains[0].size), (90, 90));
    assert_ok(&full(&[&c]));
    assert_ok(&full(&[&b, &c]));
    // A middle file missing: entries 31..60 are reported missing at the second anchor.
    let r = full(&[&a, &c]);
    assert_first(&r, FindingKind::Deletion, 31);
    let c = &r.chains[0];
    assert_eq!(
        (c.entries, c.start, c.size),
        (60, 0, 90),
        "read vs chain size"
    );
    assert!(
        r.first().unwrap().message.contains("to 60 are missing"),
        "{}",
        describe(&r)
    );
}

#[test]
fn tampered_anchors_are_detected() {
    let log = build(&LogSpec::default());
    let (a, b) = split(&log, after_entry(&log, 23));
    let flip = |s: &Value| {
        let mut h = Hash::from_base64(s.as_str().unwrap()).unwrap();
        h.0[0] ^= 1;
        Value::from(h.to_base64())
    };
    let cases: Vec<(&str, Vec<Item>, FindingKind)> = vec![
        (
            "frontier",
            tamper_anchor(&b, |v| v["frontier"][1] = flip(&v["frontier"][1])),
            FindingKind::CheckpointMismatch,
        ),
        (
            "head",
            tamper_anchor(&b, |v| {
                v["head"] = Value::from(Hash::digest(b"x").to_prefixed());
            }),
            FindingKind::CheckpointMismatch,
        ),
        (
            "head_proof",
            tamper_anchor(&b, |v| v["head_proof"][0] = flip(&v["head_proof"][0])),
            FindingKind::CheckpointMismatch,
        ),
        (
            "checkpoint signature",
            tamper_anchor(&b, |v| {
                let text = v["checkpoint"].as_str().unwrap().to_owned();
                let cp = SignedCheckpoint::parse(&text).unwrap();
                let forged = SignedCheckpoint::sign(cp.checkpoint, &other_note_signer()).unwrap();
                v["checkpoint"] = Value::from(forged.note_text());
            }),
            FindingKind::BadCheckpointSignature,
        ),
        (
            "tenant",
            tamper_anchor(&b, |v| v["tenant_id"] = Value::from("tenant_abc")),
            FindingKind::CheckpointMismatch,
        ),
    ];
    for (what, b2, kind) in cases {
        // Alone, and after the first file.
        let r = full(&[&b2]);
        assert!(!r.ok(), "{what}: not detected alone");
        assert!(
            r.findings.iter().any(|f| f.kind == kind && f.seq == 23),
            "{what}: {}",
            describe(&r)
        );
        let r = full(&[&a, &b2]);
        assert!(!r.ok(), "{what}: not detected in the set");
        // Without the public key, only a forged signature passes (self-consistent record);
        // the report then says the anchor is not authenticated.
        let r = run(&[&b2], Some(&keyring_k1()), None);
        if kind == FindingKind::BadCheckpointSignature {
            assert!(r.ok(), "{}", describe(&r));
        } else {
            assert!(!r.ok(), "{what}: not detected without the public key");
        }
    }
    // A malformed anchor is a finding; the file then starts mid-chain without one.
    let b2 = tamper_anchor(&b, |v| {
        v["frontier"].as_array_mut().unwrap().pop();
    });
    let r = full(&[&b2]);
    assert!(r.findings.iter().any(|f| f.kind == FindingKind::Malformed));
    assert!(r.findings.iter().any(|f| f.kind == FindingKind::Deletion));
}

#[test]
fn entries_after_an_anchor_are_checked_against_it() {
    let log = build(&LogSpec::default());
    let (_, b) = split(&log, after_entry(&log, 20));
    // The first entry after the anchor deleted.
    let mut d = b.clone();
    d.remove(first_entry(&d));
    assert_first(&full(&[&d]), FindingKind::Deletion, 21);
    // An anchor from another log (the entries do not link to its head).
    let other = build(&LogSpec {
        seed: 99,
        ..LogSpec::default()
    });
    let (_, ob) = split(&other, after_entry(&other, 20));
    let mut mixed = b.clone();
    mixed[0] = ob[0].clone();
    let r = full(&[&mixed]);
    assert!(!r.ok());
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::Modification && f.seq == 20),
        "{}",
        describe(&r)
    );
    // A modified entry after the anchor, checked without the HMAC key: its successor's link
    // and the checkpoint at 30 (whose root continues from the anchor's frontier) break.
    let mut m = b.clone();
    let i = m
        .iter()
        .position(|it| matches!(it, Item::Rec(r) if r.tenant_seq() == Some((T.to_owned(), 25))))
        .unwrap();
    if let Item::Rec(Record::Entry { line, .. }) = &mut m[i] {
        let text = String::from_utf8(line.clone()).unwrap();
        let changed = text.replacen("\"timestamp\":\"2026", "\"timestamp\":\"2027", 1);
        assert_ne!(text, changed);
        *line = changed.into_bytes();
    }
    let r = run(&[&m], None, Some(note_verifier()));
    assert!(!r.ok());
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::CheckpointMismatch && f.seq == 30),
        "{}",
        describe(&r)
    );
}

#[test]
fn deletion_across_the_file_boundary_is_detected() {
    let log = build(&LogSpec::default());
    let (a, b) = split(&log, after_entry(&log, 24));
    // The last entry of the first file.
    let mut a2 = a.clone();
    let last = a2
        .iter()
        .rposition(|i| matches!(i, Item::Rec(r) if r.is_entry()))
        .unwrap();
    a2.remove(last);
    let r = full(&[&a2, &b]);
    assert_first(&r, FindingKind::Deletion, 24);
    // The last three entries of the first file.
    let a3: Vec<Item> = a
        .iter()
        .filter(|i| !matches!(i, Item::Rec(r) if r.tenant_seq().is_some_and(|(_, s)| s >= 22)))
        .cloned()
        .collect();
    let r = full(&[&a3, &b]);
    assert_first(&r, FindingKind::Deletion, 22);
    assert!(
        r.first().unwrap().message.contains("(3 entries)"),
        "{}",
        describe(&r)
    );
    // The first entry of the second file.
    let mut b2 = b.clone();
    b2.remove(first_entry(&b2));
    assert_first(&full(&[&a, &b2]), FindingKind::Deletion, 25);
}

#[test]
fn an_anchor_inconsistent_with_the_file_before_it_is_detected() {
    let log = build(&LogSpec::default());
    let other = build(&LogSpec {
        seed: 7,
        ..LogSpec::default()
    });
    let (a, _) = split(&log, after_entry(&log, 20));
    let (_, ob) = split(&other, after_entry(&other, 20));
    // Same size, another history.
    let r = full(&[&a, &ob]);
    assert_first(&r, FindingKind::Modification, 20);
    assert!(r.first().unwrap().message.contains("history rewritten"));
    // Overlapping files: the second restarts before the end of the first.
    let (a30, _) = split(&log, after_entry(&log, 30));
    let (_, b20) = split(&log, after_entry(&log, 20));
    let r = full(&[&a30, &b20]);
    assert_first(&r, FindingKind::Replay, 21);
    assert!(
        r.first()
            .unwrap()
            .message
            .contains("already reached entry 30")
    );
    // An anchor whose Merkle state differs, with the right head and a valid signature.
    let (a, b) = split(&log, after_entry(&log, 20));
    let Item::Anchor(line) = &b[0] else { panic!() };
    let good = Anchor::parse(line.as_bytes()).unwrap();
    let mut frontier = good.range().frontier().to_vec();
    frontier[0].0[5] ^= 4;
    let range = CompactRange::from_frontier(20, frontier).unwrap();
    let text = checkpoint_text(T, 20, range.root(), BASE_MS, &note_signer());
    // (The head proof no longer fits the new root, which the anchor's own check reports too.)
    let forged = Anchor::new(
        good.tenant_id().clone(),
        range,
        good.head(),
        good.head_proof().to_vec(),
        SignedCheckpoint::parse(&text).unwrap(),
    )
    .unwrap();
    let mut b2 = b.clone();
    b2[0] = Item::Anchor(forged.to_line());
    let r = full(&[&a, &b2]);
    assert!(!r.ok());
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::CheckpointMismatch
                && f.message.contains("different Merkle state")),
        "{}",
        describe(&r)
    );
}

#[test]
fn a_trusted_checkpoint_older_than_the_anchor_is_listed_as_not_checked() {
    let log = build(&LogSpec::default());
    let (_, b) = split(&log, after_entry(&log, 25));
    let mut v = LogVerifier::new(true, Some(note_verifier()));
    let cp10 = &log.records[log.checkpoint_index(T, 10)];
    let Record::Checkpoint { note_text } = cp10 else {
        panic!()
    };
    v.add_checkpoint(0, note_text, true);
    for (i, item) in b.iter().enumerate() {
        let pos = i as u64 + 1;
        match item {
            Item::Rec(Record::Entry { line, sidecar }) => {
                v.feed(check_entry(
                    pos,
                    line,
                    sidecar.as_deref(),
                    Some(&keyring_k1()),
                ));
            }
            Item::Rec(Record::Checkpoint { note_text }) => v.add_checkpoint(pos, note_text, false),
            Item::Anchor(line) => v.add_anchor_line(pos, line.as_bytes()),
        }
    }
    let r = v.finish();
    assert_ok(&r);
    assert!(
        r.not_checked
            .iter()
            .any(|s| s.contains("trusted checkpoint") && s.contains("10 entries")),
        "{:?}",
        r.not_checked
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Untouched logs cut anywhere, into two or three files, always pass, as a set and alone.
    #[test]
    fn untouched_split_logs_always_pass(
        seed in any::<u64>(),
        entries in 1usize..80,
        tenants in 1usize..=3,
        cut1 in any::<prop::sample::Index>(),
        cut2 in any::<prop::sample::Index>(),
    ) {
        let log = build(&LogSpec { entries, tenants, checkpoint_every: 6, seed, ..LogSpec::default() });
        let len = log.records.len() + 1;
        let (x, y) = (cut1.index(len), cut2.index(len));
        let (lo, hi) = (x.min(y), x.max(y));
        let (a, _) = split(&log, lo);
        let (_, c) = split(&log, hi);
        let (_, b_all) = split(&log, lo);
        // b = the anchors at `lo` followed by the records up to `hi`.
        let b_len = log.tenants.len() + (hi - lo);
        let b = &b_all[..b_len];
        let r = full(&[&a, b, &c]);
        prop_assert!(r.ok(), "{}", describe(&r));
        prop_assert_eq!(r.entries as usize, entries);
        for f in [&a[..], b, &c[..]] {
            let r = full(&[f]);
            prop_assert!(r.ok(), "{}", describe(&r));
        }
    }

    /// Removing any one entry from a two-file log is detected, except when it empties the first
    /// file: the set is then the second file alone, which legitimately starts at its anchor, and
    /// the report shows the chain starting there (`start`).
    #[test]
    fn any_deleted_entry_in_a_split_log_is_detected(
        seed in any::<u64>(),
        cut in 1usize..40,
        pick in any::<prop::sample::Index>(),
    ) {
        let log = build(&LogSpec { entries: 40, seed, ..LogSpec::default() });
        let (a, b) = split(&log, after_entry(&log, cut as u64));
        let mut files = [a, b];
        let entries: Vec<(usize, usize)> = files
            .iter()
            .enumerate()
            .flat_map(|(f, items)| {
                items.iter().enumerate().filter(|(_, i)| matches!(i, Item::Rec(r) if r.is_entry())).map(move |(k, _)| (f, k))
            })
            .collect();
        let (f, k) = entries[pick.index(entries.len())];
        files[f].remove(k);
        let r = full(&[&files[0], &files[1]]);
        if cut == 1 && f == 0 {
            prop_assert!(r.ok() && r.chains[0].start == 1, "{}", describe(&r));
        } else {
            prop_assert!(!r.ok());
        }
    }
}

/// Found by mutation testing (docs/TESTING.md): an anchor is counted among the checkpoints seen,
/// and among those verified only when its signature was checked.
#[test]
fn an_anchor_is_counted_as_a_checkpoint_and_as_verified_only_when_signed() {
    let log = build(&LogSpec {
        checkpoint_every: 0,
        final_checkpoint: false,
        ..LogSpec::default()
    });
    let (a, b) = split(&log, after_entry(&log, 20));
    // The second file alone: its anchor is the one checkpoint seen.
    let r = full(&[&b]);
    assert_ok(&r);
    assert_eq!(r.checkpoints_seen, 1);
    assert_eq!(r.chains[0].checkpoints_verified, 1);
    let r = run(&[&b], Some(&keyring_k1()), None);
    assert_ok(&r);
    assert_eq!(r.checkpoints_seen, 1);
    assert_eq!(r.chains[0].checkpoints_verified, 0, "{}", describe(&r));

    // Entries 18-20 deleted before the anchor: nothing read confirms the anchor, so it counts
    // as verified only with the public key.
    let cut: Vec<Item> = a
        .iter()
        .filter(|i| !matches!(i, Item::Rec(r) if r.tenant_seq().is_some_and(|(_, s)| s >= 18)))
        .cloned()
        .collect();
    let r = full(&[&cut, &b]);
    assert_first(&r, FindingKind::Deletion, 18);
    assert_eq!(r.chains[0].checkpoints_verified, 1, "{}", describe(&r));
    let r = run(&[&cut, &b], Some(&keyring_k1()), None);
    assert_first(&r, FindingKind::Deletion, 18);
    assert_eq!(r.checkpoints_seen, 1);
    assert_eq!(r.chains[0].checkpoints_verified, 0, "{}", describe(&r));

    // Entry 12 deleted inside the first file (reported there), the anchor at 20 then matches
    // the entries read but not their Merkle state: again verified only with the public key.
    let gap: Vec<Item> = a
        .iter()
        .filter(|i| !matches!(i, Item::Rec(r) if r.tenant_seq().is_some_and(|(_, s)| s == 12)))
        .cloned()
        .collect();
    let r = full(&[&gap, &b]);
    assert_first(&r, FindingKind::Deletion, 12);
    assert_eq!(r.chains[0].checkpoints_verified, 1, "{}", describe(&r));
    let r = run(&[&gap, &b], Some(&keyring_k1()), None);
    assert_first(&r, FindingKind::Deletion, 12);
    assert_eq!(r.chains[0].checkpoints_verified, 0, "{}", describe(&r));
}

#[test]
fn an_anchor_line_that_cannot_be_read_is_counted_and_malformed() {
    let mut v = LogVerifier::new(false, None);
    v.add_anchor_line(1, b"{\"anchor\":{}}");
    let r = v.finish();
    assert_eq!(r.checkpoints_seen, 1);
    assert_eq!(r.findings_total, 1);
    assert_eq!(r.first().unwrap().kind, FindingKind::Malformed);
}

/// Found by mutation testing (docs/TESTING.md): the finding for an anchor of size N > 0 that does
/// not verify names its head entry (only an anchor of size 0, which has none, names the size).
#[test]
fn an_anchor_that_does_not_verify_is_worded_by_its_size() {
    let log = build(&LogSpec::default());
    let bad_head = |v: &mut Value| v["head"] = Value::from(Hash::digest(b"x").to_prefixed());
    let (_, b) = split(&log, after_entry(&log, 23));
    let r = full(&[&tamper_anchor(&b, bad_head)]);
    let f = r
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::CheckpointMismatch)
        .unwrap();
    assert_eq!(f.seq, 23);
    assert!(
        f.message
            .starts_with("is the head of an anchor at position 1 that does not verify: "),
        "{}",
        describe(&r)
    );
}
