//! Erasure markers under forward-secure keys (docs/FORMAT.md §5 "Verifying redactions", §17
//! "Verification"): an honest marker resolves its redactions with the auditor's initial key, with
//! the service's keyring at the marker's epoch, and with the service's keyring at any later epoch
//! (its MAC is then not checked, like any other entry of an erased epoch, and the report says
//! so); a marker whose MAC can be checked and fails, or whose key id is unknown, resolves
//! nothing.
// Test helpers outside #[test] functions unwrap too (clippy.toml only covers the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use blackbox_core::ids::KeyId;
use blackbox_core::keys::{FssParams, HmacKey, Keyring};
use blackbox_core::verify::{FindingKind, Report};
use common::*;
use serde_json::{Value, json};

const T: &str = "tenant_xyz";
/// The shortest epoch length a generation may have (`MIN_EPOCH_SECS`); the writer's clock is an
/// argument, so a run spans several epochs in no time.
const EPOCH_SECS: u64 = 60;
/// Entries per epoch.
const PER_EPOCH: usize = 4;
/// Epochs in the log.
const EPOCHS: u64 = 6;
/// The epoch in which the erasure happens.
const MARKER_EPOCH: u64 = 2;

fn params() -> FssParams {
    FssParams::starting_at(EPOCH_SECS, BASE_MS).unwrap()
}

/// The auditor's keyring (`keys/k1.fss-initial.keys`): `k1` at epoch 0.
fn initial_ring() -> Keyring {
    fss_initial_ring(EPOCH_SECS)
}

/// The service's keyring as it is on disk during epoch `e`.
fn ring_at(e: u64) -> Keyring {
    fss_ring_at(EPOCH_SECS, e)
}

/// How the marker is signed, given the keyring the writer holds in the marker's epoch.
type MarkerKey = dyn Fn(&Keyring) -> (KeyId, HmacKey);

/// The writer's own key: an honest marker.
fn honest(ring: &Keyring) -> (KeyId, HmacKey) {
    let (id, key) = ring.current().unwrap();
    (id, key.clone())
}

/// A log of `PER_EPOCH` entries in each of `EPOCHS` epochs, a checkpoint after each epoch. In
/// epoch `MARKER_EPOCH` the sidecars of the first two entries with personal data are deleted
/// and an erasure marker listing them is appended, signed as `marker` says (a third entry with
/// personal data before the marker keeps its sidecar). Returns the records and the (seq, entry
/// id) of the entries erased.
fn log_with_erasure(marker: &MarkerKey) -> (Vec<Record>, Vec<(u64, String)>) {
    let mut rng = Rng::new(11);
    let mut w = ChainWriter::new(T);
    let mut out = Vec::new();
    let mut ring = initial_ring();
    let mut erased = Vec::new();
    let mut i = 0;
    for e in 0..EPOCHS {
        let now = params().epoch_start_ms(e) + 5_000;
        if let Some(next) = ring.advanced_for(now) {
            ring = next;
        }
        let (id, key) = ring.current().unwrap();
        assert_eq!(id.as_str(), format!("k1-e{e}"));
        for _ in 0..PER_EPOCH {
            let mut ev = make_event(&mut rng, T, i);
            ev.as_object_mut().unwrap().remove("timestamp");
            out.push(w.append(ev, now + i as i64, &id, key, &mut rng));
            i += 1;
        }
        if e == MARKER_EPOCH {
            for r in &mut out {
                if erased.len() < 2
                    && let Record::Entry { line, sidecar } = r
                    && sidecar.take().is_some()
                {
                    let v: Value = serde_json::from_slice(line).unwrap();
                    erased.push((
                        v["seq"].as_u64().unwrap(),
                        v["entry_id"].as_str().unwrap().to_owned(),
                    ));
                }
            }
            let (mid, mkey) = marker(&ring);
            out.push(w.append_marker(&marker_payload(&erased), now + 1_000, &mid, &mkey, &mut rng));
        }
        out.push(Record::Checkpoint {
            note_text: w.checkpoint(&note_signer(), now + 10_000),
        });
    }
    assert_eq!(
        erased.len(),
        2,
        "make_event names subjects in events 1, 5 and 9"
    );
    (out, erased)
}

fn marker_payload(listed: &[(u64, String)]) -> Value {
    let redacted: Vec<Value> = listed
        .iter()
        .map(|(s, id)| json!({"entry_id": id, "seq": s}))
        .collect();
    json!({"count": redacted.len(), "part": 1, "parts": 1, "reason": "GDPR Art. 17 request",
           "redacted": redacted, "requested_by": "cli", "ticket": "DSR-1"})
}

fn report(records: &[Record], keys: &Keyring) -> Report {
    verify(records, Some(keys), Some(note_verifier()), &[])
}

fn kinds(r: &Report) -> Vec<(FindingKind, u64)> {
    r.findings.iter().map(|f| (f.kind, f.seq)).collect()
}

/// The seq of the marker: after the entries of epochs 0 ..= `MARKER_EPOCH`.
fn marker_seq() -> u64 {
    (MARKER_EPOCH + 1) * PER_EPOCH as u64 + 1
}

#[test]
fn an_honest_erasure_verifies_with_the_service_keyring_at_every_later_epoch() {
    let (log, erased) = log_with_erasure(&honest);
    let marker_note = |held: u64| {
        format!(
            "2 redactions under 1 erasure marker signed in forward-secure epochs before e{held} of k1: taken on the chain links and checkpoints around it, not on its own HMAC (only the auditor's initial key can check it)"
        )
    };
    for held in 0..EPOCHS {
        let r = report(&log, &ring_at(held));
        assert!(r.ok(), "held e{held}: {}", describe(&r));
        assert_eq!(
            (r.chains[0].redacted, r.chains[0].erasure_markers),
            (2, 1),
            "held e{held}"
        );
        if held <= MARKER_EPOCH {
            // The marker's own MAC was checked.
            assert!(
                r.not_checked.iter().all(|n| !n.contains("erasure marker")),
                "held e{held}: {:?}",
                r.not_checked
            );
        } else {
            // Entries of epochs before `held`, the marker among them.
            let unchecked = held * PER_EPOCH as u64 + 1;
            assert_eq!(
                r.not_checked,
                vec![
                    format!(
                        "HMACs of {unchecked} entries in forward-secure epochs before e{held} of k1: only the auditor's initial key can check them"
                    ),
                    marker_note(held),
                ],
                "held e{held}"
            );
        }
    }
    // The auditor's initial key checks every MAC, the marker's included.
    let r = report(&log, &initial_ring());
    assert!(r.ok(), "{}", describe(&r));
    assert!(r.not_checked.is_empty(), "{:?}", r.not_checked);
    assert_eq!(r.hmac_valid_by_key["k1"], EPOCHS * PER_EPOCH as u64 + 1);
    assert_eq!(r.chains[0].redacted, 2);
    assert_eq!(erased.len(), 2);
}

#[test]
fn a_forged_marker_resolves_nothing_where_its_hmac_can_be_checked() {
    // Signed for the marker's epoch with a key the writer never held.
    let forged = |ring: &Keyring| (ring.current().unwrap().0, HmacKey::from_bytes(FORGER));
    let (log, erased) = log_with_erasure(&forged);
    for (who, ring) in [
        ("the auditor's initial key", initial_ring()),
        (
            "the service's keyring in the marker's epoch",
            ring_at(MARKER_EPOCH),
        ),
    ] {
        let r = report(&log, &ring);
        let k = kinds(&r);
        assert!(
            k.contains(&(FindingKind::Modification, marker_seq())),
            "{who}: {}",
            describe(&r)
        );
        for (seq, _) in &erased {
            assert!(
                k.contains(&(FindingKind::UnmarkedRedaction, *seq)),
                "{who}: entry {seq}: {}",
                describe(&r)
            );
        }
        assert_eq!(
            (r.chains[0].redacted, r.chains[0].erasure_markers),
            (0, 0),
            "{who}"
        );
    }
}

#[test]
fn a_marker_under_an_unknown_key_id_resolves_nothing() {
    // A generation the keyring does not have, plain or forward-secure: in an erased epoch of a
    // generation it does not know there is nothing to be lenient about.
    for id in ["k9", "k9-e1"] {
        let unknown = |_: &Keyring| (key_id(id), HmacKey::from_bytes(FORGER));
        let (log, erased) = log_with_erasure(&unknown);
        for ring in [initial_ring(), ring_at(MARKER_EPOCH), ring_at(EPOCHS - 1)] {
            let r = report(&log, &ring);
            let k = kinds(&r);
            assert!(
                k.contains(&(FindingKind::UnknownKey, marker_seq())),
                "{id}: {}",
                describe(&r)
            );
            for (seq, _) in &erased {
                assert!(
                    k.contains(&(FindingKind::UnmarkedRedaction, *seq)),
                    "{id}: entry {seq}: {}",
                    describe(&r)
                );
            }
            assert_eq!(r.chains[0].erasure_markers, 0, "{id}");
        }
    }
}

#[test]
fn an_edited_marker_is_caught_whether_or_not_its_epoch_can_be_checked() {
    let (mut log, erased) = log_with_erasure(&honest);
    // Another entry's personal data removed, and the marker edited to list it.
    let victim = log
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
    let v = log[victim].json();
    let (vseq, vid) = (
        v["seq"].as_u64().unwrap(),
        v["entry_id"].as_str().unwrap().to_owned(),
    );
    if let Record::Entry { sidecar, .. } = &mut log[victim] {
        *sidecar = None;
    }
    let m = log
        .iter()
        .position(|r| r.is_entry() && r.json()["event_type"] == "erasure")
        .unwrap();
    let Record::Entry { line, .. } = &mut log[m] else {
        unreachable!()
    };
    let text = String::from_utf8(line.clone()).unwrap();
    let edited = text.replacen(r#""count":2"#, r#""count":3"#, 1).replacen(
        r#"}],"requested_by""#,
        &format!(r#"}},{{"entry_id":"{vid}","seq":{vseq}}}],"requested_by""#),
        1,
    );
    assert_ne!(edited, text);
    *line = edited.into_bytes();
    assert!(vseq < marker_seq());

    // Where the MAC can be checked the marker resolves nothing: every redaction is unmarked.
    for ring in [initial_ring(), ring_at(MARKER_EPOCH)] {
        let r = report(&log, &ring);
        let k = kinds(&r);
        assert!(
            k.contains(&(FindingKind::Modification, marker_seq())),
            "{}",
            describe(&r)
        );
        for seq in [erased[0].0, erased[1].0, vseq] {
            assert!(
                k.contains(&(FindingKind::UnmarkedRedaction, seq)),
                "entry {seq}: {}",
                describe(&r)
            );
        }
    }
    // Where it cannot, the next entry's link to it still breaks: TAMPERED at the marker.
    let r = report(&log, &ring_at(EPOCHS - 1));
    assert!(!r.ok());
    assert_eq!(
        r.first().map(|f| (f.kind, f.seq)),
        Some((FindingKind::Modification, marker_seq())),
        "{}",
        describe(&r)
    );
}

#[test]
fn a_marker_appended_at_the_end_cannot_claim_an_erased_epoch() {
    // The erasure's sidecars are deleted with no marker; a marker forged afterwards without the
    // key is appended after the last entry (no later entry links to it, no checkpoint covers it).
    let (mut log, erased) = log_with_erasure(&honest);
    let m = log
        .iter()
        .position(|r| r.is_entry() && r.json()["event_type"] == "erasure")
        .unwrap();
    // Drop the honest marker and relink the chain as the writer would have written it.
    log.remove(m);
    let mut rng = Rng::new(5);
    let mut rebuilt = Vec::new();
    let mut w = ChainWriter::new(T);
    let mut ring = initial_ring();
    for r in &log {
        let Record::Entry { line, sidecar } = r else {
            continue;
        };
        let v: Value = serde_json::from_slice(line).unwrap();
        let (_, epoch) =
            blackbox_core::keys::split_epoch_id(v["key_id"].as_str().unwrap()).unwrap();
        if let Some(next) = ring.advanced_for(params().epoch_start_ms(epoch) + 1) {
            ring = next;
        }
        let mut obj = v.clone();
        obj["seq"] = json!(w.seq + 1);
        obj["prev_entry_hash"] = json!(w.prev.to_prefixed());
        let line = sign_value(&obj, ring.current().unwrap().1);
        w.seq += 1;
        w.prev = line_hash(&line);
        w.last_id = Some(uuid::Uuid::parse_str(v["entry_id"].as_str().unwrap()).unwrap());
        rebuilt.push(Record::Entry {
            line,
            sidecar: sidecar.clone(),
        });
    }
    let base = rebuilt.clone();
    // Without any marker the removal is reported.
    let r = report(&base, &ring_at(EPOCHS - 1));
    assert!(
        kinds(&r).contains(&(FindingKind::UnmarkedRedaction, erased[0].0)),
        "{}",
        describe(&r)
    );

    let last = EPOCHS - 1;
    let now = params().epoch_start_ms(last) + 50_000;
    // Labelled with an erased epoch: behind the epoch of the entry before it.
    let mut forged = base.clone();
    let mut w2 = w.clone();
    forged.push(w2.append_marker(
        &marker_payload(&erased),
        now,
        &key_id(&format!("k1-e{MARKER_EPOCH}")),
        &HmacKey::from_bytes(FORGER),
        &mut rng,
    ));
    let r = report(&forged, &ring_at(last));
    let k = kinds(&r);
    let seq = w2.seq;
    assert!(
        k.contains(&(FindingKind::EpochNotIncreasing, seq)),
        "{}",
        describe(&r)
    );
    // Labelled with the current epoch: its MAC is checked and fails.
    let mut forged = base;
    forged.push(w.append_marker(
        &marker_payload(&erased),
        now,
        &key_id(&format!("k1-e{last}")),
        &HmacKey::from_bytes(FORGER),
        &mut rng,
    ));
    let r = report(&forged, &ring_at(last));
    let k = kinds(&r);
    for (s, _) in &erased {
        assert!(
            k.contains(&(FindingKind::UnmarkedRedaction, *s)),
            "entry {s}: {}",
            describe(&r)
        );
    }
    assert_eq!(r.chains[0].erasure_markers, 0);
}
