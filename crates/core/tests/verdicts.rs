//! Verdicts the tamper suite did not pin down, found by mutation testing (docs/TESTING.md): the
//! store's chain head, the entry a truncation names, separate deletion gaps, an entry that
//! arrives before its predecessor, the machine names of finding kinds, and time bounds.
// Test helpers outside #[test] functions unwrap too (clippy.toml only covers the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use blackbox_core::Hash;
use blackbox_core::entry::parse_time_bound;
use blackbox_core::verify::{FindingKind, LogVerifier, Report, check_entry};
use common::*;

const T: &str = "tenant_xyz";

/// 50 entries of one chain, no checkpoints: only what a test does to it can be reported.
fn plain() -> Log {
    build(&LogSpec {
        checkpoint_every: 0,
        final_checkpoint: false,
        ..LogSpec::default()
    })
}

/// (kind, seq, message) of every finding.
fn findings(r: &Report) -> Vec<(FindingKind, u64, String)> {
    r.findings
        .iter()
        .map(|f| (f.kind, f.seq, f.message.clone()))
        .collect()
}

/// Verifies the entries of `records` with the keyring, after telling the verifier that the
/// store's chain head records `head` (size and hash).
fn verify_with_head(records: &[Record], head: (u64, Hash)) -> Report {
    let keys = keyring_k1();
    let mut v = LogVerifier::new(true, None);
    v.expect_head(T, head.0, head.1);
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

fn hash_of(log: &Log, seq: u64) -> Hash {
    line_hash(log.records[log.index_of(T, seq)].line().unwrap())
}

#[test]
fn a_tail_cut_after_the_store_head_is_a_truncation_naming_the_first_missing_entry() {
    let log = plain();
    // The store's head says 50 entries; entries 47-50 are gone from the rows.
    let mut recs = log.records.clone();
    recs.truncate(log.index_of(T, 47));
    let r = verify_with_head(&recs, (50, hash_of(&log, 50)));
    assert_eq!(
        findings(&r),
        vec![(
            FindingKind::Truncation,
            47,
            "and later are missing: the store's chain head records 50 entries but 46 are present"
                .to_owned()
        )],
        "{}",
        describe(&r)
    );
    // The head matches what is read: nothing to report.
    let r = verify_with_head(&log.records, (50, hash_of(&log, 50)));
    assert!(r.ok(), "{}", describe(&r));
}

#[test]
fn a_last_entry_other_than_the_store_head_is_a_modification() {
    let log = plain();
    let wrong = hash_of(&log, 49);
    let r = verify_with_head(&log.records, (50, wrong));
    assert_eq!(r.findings_total, 1, "{}", describe(&r));
    let f = r.first().unwrap();
    assert_eq!((f.kind, f.seq), (FindingKind::Modification, 50));
    assert_eq!(
        (f.expected, f.actual),
        (Some(wrong), Some(hash_of(&log, 50)))
    );
}

#[test]
fn separate_deletion_gaps_are_separate_findings() {
    let log = plain();
    let mut recs = log.records.clone();
    // Entries 10, 20 and 30-32 deleted (highest index first, so the others do not move).
    for seq in [32, 31, 30, 20, 10] {
        recs.remove(log.index_of(T, seq));
    }
    let r = verify(&recs, Some(&keyring_k1()), None, &[]);
    assert_eq!(
        findings(&r),
        vec![
            (
                FindingKind::Deletion,
                10,
                "hash mismatch, 1 entry missing".to_owned()
            ),
            (
                FindingKind::Deletion,
                20,
                "hash mismatch, 1 entry missing".to_owned()
            ),
            (
                FindingKind::Deletion,
                30,
                "hash mismatch, 3 entries missing (through entry 32)".to_owned()
            ),
        ],
        "{}",
        describe(&r)
    );
}

#[test]
fn an_entry_arriving_before_its_predecessor_is_checked_against_it_when_it_comes() {
    let log = plain();
    let mut recs = log.records.clone();
    let (a, b) = (log.index_of(T, 23), log.index_of(T, 24));
    recs.swap(a, b);
    // Honest entries out of order: the reordering, and nothing else (entry 24's link to 23 is
    // checked when 23 arrives, and holds).
    for keys in [Some(keyring_k1()), None] {
        let r = verify(&recs, keys.as_ref(), None, &[]);
        assert_eq!(
            findings(&r)
                .into_iter()
                .map(|(k, s, _)| (k, s))
                .collect::<Vec<_>>(),
            vec![(FindingKind::Reordering, 23)],
            "{}",
            describe(&r)
        );
    }
    // Entry 23 changed as well, read without the HMAC key: only entry 24's link, checked when
    // 23 arrives after it, tells.
    let line = recs[b].line().unwrap().to_vec();
    let text = String::from_utf8(line).unwrap();
    let edited = text.replacen("\"client_seq\":23", "\"client_seq\":99", 1);
    assert_ne!(edited, text);
    recs[b] = Record::Entry {
        line: edited.into_bytes(),
        sidecar: match &recs[b] {
            Record::Entry { sidecar, .. } => sidecar.clone(),
            Record::Checkpoint { .. } => unreachable!(),
        },
    };
    let r = verify(&recs, None, None, &[]);
    let got: Vec<(FindingKind, u64)> = findings(&r).into_iter().map(|(k, s, _)| (k, s)).collect();
    assert_eq!(
        got,
        vec![
            (FindingKind::Modification, 23),
            (FindingKind::Reordering, 23)
        ],
        "{}",
        describe(&r)
    );
}

#[test]
fn finding_kinds_have_their_documented_machine_names() {
    let table = [
        (
            FindingKind::Modification,
            "modification",
            "modification detected",
        ),
        (FindingKind::Deletion, "deletion", "deletion detected"),
        (FindingKind::Insertion, "insertion", "insertion detected"),
        (FindingKind::Reordering, "reordering", "reordering detected"),
        (FindingKind::Replay, "replay", "replayed entry detected"),
        (FindingKind::Truncation, "truncation", "truncation detected"),
        (FindingKind::WrongKey, "wrong_key", "wrong key"),
        (FindingKind::UnknownKey, "unknown_key", "unknown key"),
        (
            FindingKind::BadCheckpointSignature,
            "bad_checkpoint_signature",
            "bad checkpoint signature",
        ),
        (
            FindingKind::CheckpointMismatch,
            "checkpoint_mismatch",
            "checkpoint inconsistent with entries",
        ),
        (FindingKind::Malformed, "malformed", "malformed entry"),
        (
            FindingKind::UnmarkedRedaction,
            "unmarked_redaction",
            "unmarked redaction",
        ),
        (
            FindingKind::IdNotIncreasing,
            "id_not_increasing",
            "clock manipulation or reordering detected",
        ),
        (
            FindingKind::ErasureIncomplete,
            "erasure_incomplete",
            "erasure marker does not match the entries",
        ),
        (
            FindingKind::EpochNotIncreasing,
            "epoch_not_increasing",
            "forward-secure epoch went back",
        ),
    ];
    let format_md = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/FORMAT.md"),
    )
    .unwrap();
    for (kind, name, detected) in table {
        assert_eq!(kind.as_str(), name);
        assert_eq!(kind.to_string(), name);
        assert_eq!(kind.detected(), detected);
        assert!(
            format_md.contains(&format!("`{name}`")),
            "`{name}` is not in docs/FORMAT.md"
        );
    }
}

#[test]
fn time_bounds_read_dates_as_whole_days_and_rfc3339_as_given() {
    // 2026-04-14T00:00:00Z.
    let day = 1_776_124_800_000;
    assert_eq!(parse_time_bound("2026-04-14", false), Ok(day));
    assert_eq!(
        parse_time_bound("2026-04-14", true),
        Ok(day + 86_400_000 - 1)
    );
    assert_eq!(
        parse_time_bound("2026-04-14T18:00:00.123Z", false),
        Ok(BASE_MS)
    );
    assert_eq!(
        parse_time_bound("2026-04-14T18:00:00.123Z", true),
        Ok(BASE_MS)
    );
    assert_eq!(
        parse_time_bound("2026-04-14T20:00:00.123+02:00", false),
        Ok(BASE_MS)
    );
    for bad in [
        "",
        "yesterday",
        "2026-13-01",
        "2026-04-14T25:00:00Z",
        "1776124800",
    ] {
        assert!(parse_time_bound(bad, false).is_err(), "{bad:?}");
    }
}

#[test]
fn a_modified_entry_is_reported_once_not_again_by_the_link_after_it() {
    let log = plain();
    let mut recs = log.records.clone();
    let i = log.index_of(T, 17);
    let text = String::from_utf8(recs[i].line().unwrap().to_vec()).unwrap();
    let edited = text.replacen("\"client_seq\":17", "\"client_seq\":71", 1);
    assert_ne!(edited, text);
    let sidecar = match &recs[i] {
        Record::Entry { sidecar, .. } => sidecar.clone(),
        Record::Checkpoint { .. } => unreachable!(),
    };
    recs[i] = Record::Entry {
        line: edited.into_bytes(),
        sidecar,
    };
    let r = verify(&recs, Some(&keyring_k1()), None, &[]);
    assert_eq!(
        findings(&r),
        vec![(
            FindingKind::Modification,
            17,
            "HMAC mismatch: content changed after signing".to_owned()
        )],
        "{}",
        describe(&r)
    );
}

#[test]
fn the_verifier_debug_form_shows_its_counts() {
    let log = plain();
    let keys = keyring_k1();
    let mut v = LogVerifier::new(true, None);
    for (i, r) in log.records.iter().take(3).enumerate() {
        if let Record::Entry { line, sidecar } = r {
            v.feed(check_entry(
                i as u64 + 1,
                line,
                sidecar.as_deref(),
                Some(&keys),
            ));
        }
    }
    assert_eq!(
        format!("{v:?}"),
        "LogVerifier { entries: 3, chains: 1, findings_total: 0, .. }"
    );
}

#[test]
fn split_line_needs_both_the_hmac_member_and_the_closing_brace() {
    use blackbox_core::entry::split_line;
    let log = plain();
    let line = log.records[0].line().unwrap().to_vec();
    let (body, _) = split_line(&line).unwrap();
    assert_eq!(body.last(), Some(&b'}'));
    // The right member, but not closed by `"}`.
    let mut unclosed = line.clone();
    let n = unclosed.len();
    unclosed[n - 1] = b']';
    assert!(split_line(&unclosed).is_err());
    // Closed by `"}`, but another member last.
    let text = String::from_utf8(line).unwrap();
    let renamed = text.replacen("\"hmac_sha256\":", "\"hmac_sha257\":", 1);
    assert!(split_line(renamed.as_bytes()).is_err());
}

#[test]
fn a_line_too_short_to_hold_a_member_before_the_hmac_is_refused() {
    use blackbox_core::entry::{HMAC_SUFFIX_LEN, line_digests, split_line};
    let suffix = format!(",\"hmac_sha256\":\"{}\"}}", "ab".repeat(32));
    assert_eq!(suffix.len(), HMAC_SUFFIX_LEN);
    // `{` and the suffix: no member before the MAC, not an entry (the body would be `{}`).
    let bare = format!("{{{suffix}");
    assert!(split_line(bare.as_bytes()).is_err());
    // Shorter than the suffix: an error, not a panic.
    assert!(split_line(&bare.as_bytes()[..HMAC_SUFFIX_LEN - 1]).is_err());
    // The suffix alone has no body to digest; `{` and the suffix has the body `{}`.
    assert_eq!(line_digests(suffix.as_bytes()).body_digest, None);
    assert_eq!(
        line_digests(bare.as_bytes()).body_digest,
        Some(Hash::digest(b"{}"))
    );
}

#[test]
fn two_consecutive_modified_entries_are_two_findings_without_the_key() {
    let log = plain();
    let mut recs = log.records.clone();
    for seq in [10_u64, 11] {
        let i = log.index_of(T, seq);
        let text = String::from_utf8(recs[i].line().unwrap().to_vec()).unwrap();
        let edited = text.replacen(
            &format!("\"client_seq\":{seq}"),
            &format!("\"client_seq\":{}", seq + 100),
            1,
        );
        assert_ne!(edited, text);
        let sidecar = match &recs[i] {
            Record::Entry { sidecar, .. } => sidecar.clone(),
            Record::Checkpoint { .. } => unreachable!(),
        };
        recs[i] = Record::Entry {
            line: edited.into_bytes(),
            sidecar,
        };
    }
    // Only the links tell: entry 11's link to 10, and entry 12's link to 11.
    let r = verify(&recs, None, None, &[]);
    let got: Vec<(FindingKind, u64)> = findings(&r).into_iter().map(|(k, s, _)| (k, s)).collect();
    assert_eq!(
        got,
        vec![
            (FindingKind::Modification, 10),
            (FindingKind::Modification, 11)
        ],
        "{}",
        describe(&r)
    );
}

#[test]
fn a_marker_listing_an_entry_under_another_entry_id_resolves_nothing() {
    use blackbox_core::keys::HmacKey;
    let log = plain();
    let mut recs = log.records.clone();
    let i = recs
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
    let seq = recs[i].json()["seq"].as_u64().unwrap();
    if let Record::Entry { sidecar, .. } = &mut recs[i] {
        *sidecar = None;
    }
    // The seq of the erased entry, the entry_id of the one after it.
    let other = recs[i + 1].json()["entry_id"].as_str().unwrap().to_owned();
    let payload = serde_json::json!({"count": 1, "part": 1, "parts": 1, "reason": "GDPR",
        "redacted": [{"entry_id": other, "seq": seq}], "requested_by": "cli", "ticket": "DSR-2"});
    let mut w = ChainWriter::resume(T, &recs);
    recs.push(w.append_marker(
        &payload,
        BASE_MS + 3_600_000,
        &key_id("k1"),
        &HmacKey::from_bytes(K1),
        &mut Rng::new(9),
    ));
    let r = verify(&recs, Some(&keyring_k1()), None, &[]);
    let got: Vec<(FindingKind, u64)> = findings(&r).into_iter().map(|(k, s, _)| (k, s)).collect();
    assert_eq!(
        got,
        vec![
            (FindingKind::UnmarkedRedaction, seq),
            (FindingKind::ErasureIncomplete, seq)
        ],
        "{}",
        describe(&r)
    );
    assert!(
        r.findings[1].message.contains("under another entry_id"),
        "{}",
        describe(&r)
    );
    assert_eq!(r.chains[0].redacted, 0);
}

#[test]
fn a_wrong_key_is_not_assumed_when_a_link_is_broken_too() {
    // Every HMAC fails under the wrong key; with every link intact that is one `wrong_key`
    // finding. Entry 20 modified as well breaks entry 21's link: the failures are no longer
    // explained by the key alone, and every one is reported.
    let log = plain();
    let r = verify(&log.records, Some(&wrong_keyring()), None, &[]);
    assert_eq!(
        findings(&r)
            .into_iter()
            .map(|(k, s, _)| (k, s))
            .collect::<Vec<_>>(),
        vec![(FindingKind::WrongKey, 1)],
        "{}",
        describe(&r)
    );
    let mut recs = log.records.clone();
    let i = log.index_of(T, 20);
    let text = String::from_utf8(recs[i].line().unwrap().to_vec()).unwrap();
    let edited = text.replacen("\"client_seq\":20", "\"client_seq\":2000", 1);
    assert_ne!(edited, text);
    let sidecar = match &recs[i] {
        Record::Entry { sidecar, .. } => sidecar.clone(),
        Record::Checkpoint { .. } => unreachable!(),
    };
    recs[i] = Record::Entry {
        line: edited.into_bytes(),
        sidecar,
    };
    let r = verify(&recs, Some(&wrong_keyring()), None, &[]);
    assert!(
        r.findings.iter().all(|f| f.kind != FindingKind::WrongKey),
        "{}",
        describe(&r)
    );
    assert_eq!(r.findings_total, 50, "{}", describe(&r));
}

#[test]
fn findings_beyond_the_cap_are_counted_not_kept() {
    use blackbox_core::verify::MAX_FINDINGS;
    let mut v = LogVerifier::new(false, None);
    let n = MAX_FINDINGS as u64 + 2;
    for i in 1..=n {
        v.feed(check_entry(i, b"not an entry", None, None));
    }
    let r = v.finish();
    assert_eq!(r.findings.len(), MAX_FINDINGS);
    assert_eq!(r.findings_total, n);
    assert!(r.findings.iter().all(|f| f.kind == FindingKind::Malformed));
}

#[test]
fn split_line_takes_a_short_entry_with_one_member_before_the_hmac() {
    use blackbox_core::entry::split_line;
    let hex = "ab".repeat(32);
    let line = format!("{{\"a\":1,\"hmac_sha256\":\"{hex}\"}}");
    let (body, mac) = split_line(line.as_bytes()).unwrap();
    assert_eq!(body, b"{\"a\":1}");
    assert_eq!(mac, [0xab; 32]);
}

#[test]
fn entry_ids_given_by_a_person_must_be_uuid_v7() {
    use blackbox_core::entry::parse_entry_id;
    let v7 = "01a2430b-0388-791b-b469-3e289021cdd4";
    assert_eq!(
        parse_entry_id(&format!(" {v7}\n"))
            .unwrap()
            .hyphenated()
            .to_string(),
        v7
    );
    assert_eq!(
        parse_entry_id("01A2430B0388791BB4693E289021CDD4").map(|u| u.hyphenated().to_string()),
        Ok(v7.to_owned())
    );
    // A UUIDv4, and text that is no UUID.
    assert!(parse_entry_id("9f1c2a4e-7b3d-4e5f-8a6b-0c1d2e3f4a5b").is_err());
    assert!(parse_entry_id("entry 12").is_err());
}

#[test]
fn headlines_name_the_entry_and_what_was_detected() {
    let log = plain();
    let mut recs = log.records.clone();
    recs.truncate(log.index_of(T, 47));
    let r = verify_with_head(&recs, (50, hash_of(&log, 50)));
    assert_eq!(
        r.first().unwrap().headline(),
        "entry 47 and later are missing: the store's chain head records 50 entries but 46 are present (truncation detected)"
    );
    // Without a seq (a line that is no entry): the message alone.
    let mut v = LogVerifier::new(false, None);
    v.feed(check_entry(3, b"not an entry", None, None));
    let r = v.finish();
    let h = r.first().unwrap().headline();
    assert!(
        h.starts_with("line 3 is not a valid entry: ") && h.ends_with(" (malformed entry)"),
        "{h}"
    );
}

#[test]
fn an_entry_check_shows_its_tenant_and_key_id() {
    let log = plain();
    let c = check_entry(1, log.records[0].line().unwrap(), None, None);
    let meta = c.meta.unwrap();
    assert_eq!(
        (meta.tenant_id.to_string(), meta.key_id.to_string()),
        (T.to_owned(), "k1".to_owned())
    );
}

#[test]
fn a_chain_longer_than_the_window_verifies() {
    use blackbox_core::verify::WINDOW;
    // Entry numbers share window slots with those WINDOW before them: a slot must answer only
    // for the number it holds.
    let log = build(&LogSpec {
        entries: WINDOW + 3,
        checkpoint_every: 0,
        final_checkpoint: false,
        ..LogSpec::default()
    });
    let r = verify(&log.records, Some(&keyring_k1()), None, &[]);
    assert!(r.ok(), "{}", describe(&r));
    assert_eq!(r.chains[0].size, WINDOW as u64 + 3);
}

#[test]
fn a_marker_skips_entries_already_missing_or_already_erased() {
    use blackbox_core::keys::HmacKey;
    let log = plain();
    let mut recs = log.records.clone();
    let with_sidecar: Vec<usize> = recs
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
        .map(|(i, _)| i)
        .take(2)
        .collect();
    let listed: Vec<(u64, String)> = with_sidecar
        .iter()
        .map(|&i| {
            let v = recs[i].json();
            (
                v["seq"].as_u64().unwrap(),
                v["entry_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let payload = |l: &[(u64, String)]| {
        let redacted: Vec<serde_json::Value> = l
            .iter()
            .map(|(s, id)| serde_json::json!({"entry_id": id, "seq": s}))
            .collect();
        serde_json::json!({"count": redacted.len(), "part": 1, "parts": 1, "reason": "GDPR",
            "redacted": redacted, "requested_by": "cli", "ticket": "DSR-3"})
    };
    // The first entry erased, the second deleted outright; two markers list both.
    if let Record::Entry { sidecar, .. } = &mut recs[with_sidecar[0]] {
        *sidecar = None;
    }
    recs.remove(with_sidecar[1]);
    let mut w = ChainWriter::resume(T, &log.records);
    let mut rng = Rng::new(4);
    for k in 0..2 {
        recs.push(w.append_marker(
            &payload(&listed),
            BASE_MS + 3_600_000 + k,
            &key_id("k1"),
            &HmacKey::from_bytes(K1),
            &mut rng,
        ));
    }
    let r = verify(&recs, Some(&keyring_k1()), None, &[]);
    let got: Vec<(FindingKind, u64)> = findings(&r).into_iter().map(|(k, s, _)| (k, s)).collect();
    assert_eq!(
        got,
        vec![(FindingKind::Deletion, listed[1].0)],
        "{}",
        describe(&r)
    );
    assert_eq!((r.chains[0].redacted, r.chains[0].erasure_markers), (1, 2));
}

#[test]
fn a_wrong_key_for_one_generation_leaves_the_other_generations_failures_alone() {
    use blackbox_core::keys::{HmacKey, Keyring};
    let log = build(&LogSpec {
        checkpoint_every: 0,
        final_checkpoint: false,
        rotate_at: Some(25),
        ..LogSpec::default()
    });
    let mut ring = Keyring::new();
    ring.push(key_id("k1"), HmacKey::from_bytes([0x99; 32]))
        .unwrap();
    ring.push(key_id("k2"), HmacKey::from_bytes(K2)).unwrap();
    let mut recs = log.records.clone();
    let i = log.index_of(T, 40);
    let text = String::from_utf8(recs[i].line().unwrap().to_vec()).unwrap();
    let edited = text.replacen("\"client_seq\":", "\"client_seq\":9", 1);
    assert_ne!(edited, text);
    let sidecar = match &recs[i] {
        Record::Entry { sidecar, .. } => sidecar.clone(),
        Record::Checkpoint { .. } => unreachable!(),
    };
    recs[i] = Record::Entry {
        line: edited.into_bytes(),
        sidecar,
    };
    let r = verify(&recs, Some(&ring), None, &[]);
    let got: Vec<(FindingKind, u64)> = findings(&r).into_iter().map(|(k, s, _)| (k, s)).collect();
    assert_eq!(
        got,
        vec![(FindingKind::WrongKey, 1), (FindingKind::Modification, 40)],
        "{}",
        describe(&r)
    );
}
