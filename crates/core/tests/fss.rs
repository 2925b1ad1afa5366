//! Forward-secure HMAC generations (docs/FORMAT.md §17): the derivation vectors quoted in the
//! format document, and the property the scheme exists for: whoever steals the keyring at epoch k
//! (the state `S_k`, everything on disk then) cannot produce entries of an epoch before k that
//! verify under the auditor's initial key.
// Test helpers outside #[test] functions unwrap too (clippy.toml only covers the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use blackbox_core::keys::{
    FssParams, FssState, HmacKey, KEYRING_HEADER, KeyLookup, Keyring, epoch_key_id, split_epoch_id,
};
use blackbox_core::verify::{FindingKind, Report};
use common::*;
use hmac::{KeyInit as _, Mac as _};
use serde_json::Value;

const T: &str = "tenant_xyz";
/// Epoch length of the test generation: one hour.
const HOUR: u64 = 3600;
/// Entries per epoch in the test log.
const PER_EPOCH: usize = 4;
/// Epochs in the test log.
const EPOCHS: u64 = 6;
/// The epoch at which the attacker takes the server.
const STOLEN_AT: u64 = 3;

fn params() -> FssParams {
    FssParams::starting_at(HOUR, BASE_MS).unwrap()
}

/// The auditor's keyring: `k1` forward-secure at epoch 0 with S_0 = 0x42 * 32.
fn initial_ring() -> Keyring {
    fss_initial_ring(HOUR)
}

/// The service's keyring as it is on disk during epoch `e`.
fn ring_at(e: u64) -> Keyring {
    fss_ring_at(HOUR, e)
}

/// An honest log: `PER_EPOCH` entries in each of `EPOCHS` epochs, each signed with the key the
/// writer held then, and a checkpoint after each epoch.
fn honest_log() -> Vec<Record> {
    let mut rng = Rng::new(7);
    let mut w = ChainWriter::new(T);
    // The golden file pins format version 1 (it must stay verifiable as it is).
    w.v1 = true;
    let mut out = Vec::new();
    let mut ring = initial_ring();
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
            // The event time is the agent's; the writer signs by its own clock.
            ev.as_object_mut().unwrap().remove("timestamp");
            out.push(w.append(ev, now + i as i64, &id, key, &mut rng));
            i += 1;
        }
        out.push(Record::Checkpoint {
            note_text: w.checkpoint(&note_signer(), now + 10_000),
        });
    }
    out
}

fn entries(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .filter_map(|r| r.line().map(|l| serde_json::from_slice(l).unwrap()))
        .collect()
}

fn epoch_of(v: &Value) -> u64 {
    split_epoch_id(v["key_id"].as_str().unwrap()).unwrap().1
}

/// The entries of `records` with those from entry index `from` on edited by `edit`, relinked and
/// signed by `sign(epoch named by the edited entry, value)`. Checkpoints are left out: the thief
/// holds the checkpoint key too, so the log's own checkpoints prove nothing here.
fn rewrite(
    records: &[Record],
    from: usize,
    mut edit: impl FnMut(usize, &mut Value),
    sign: &dyn Fn(u64, &mut Value) -> Vec<u8>,
) -> Vec<Record> {
    let mut out = Vec::new();
    let mut prev: Option<String> = None;
    for (i, mut v) in entries(records).into_iter().enumerate() {
        if i < from {
            let rec = records
                .iter()
                .filter(|r| r.is_entry())
                .nth(i)
                .unwrap()
                .clone();
            prev = Some(line_hash(rec.line().unwrap()).to_prefixed());
            out.push(rec);
            continue;
        }
        edit(i, &mut v);
        if let Some(p) = &prev {
            v["prev_entry_hash"] = Value::String(p.clone());
        }
        let epoch = epoch_of(&v);
        let line = sign(epoch, &mut v);
        prev = Some(line_hash(&line).to_prefixed());
        // Sidecars are dropped with the personal digest, so every forged entry stands alone.
        out.push(Record::Entry {
            line,
            sidecar: None,
        });
    }
    out
}

fn hmac_raw(key: &[u8], label: &[u8], n: u64) -> [u8; 32] {
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(label);
    m.update(&n.to_be_bytes());
    m.finalize().into_bytes().into()
}

/// The state S_k as the thief reads it from the keyring file.
fn stolen_state_bytes(ring: &Keyring) -> [u8; 32] {
    let text = ring.to_secret_text();
    let line = text.lines().find(|l| l.starts_with("k1 fss ")).unwrap();
    let hex_state = line.rsplit(' ').next().unwrap();
    hex::decode(hex_state).unwrap().try_into().unwrap()
}

fn report(records: &[Record], keys: &Keyring) -> Report {
    verify(records, Some(keys), Some(note_verifier()), &[])
}

/// The fixed vectors of FORMAT.md §17: S_0 = 00 01 … 1f, epochs of one day from
/// 2026-04-14T00:00:00Z. Each value is checked against the code and must appear verbatim in the
/// format document.
#[test]
fn derivation_vectors_match_the_code_and_format_md() {
    let s0: [u8; 32] = core::array::from_fn(|i| u8::try_from(i).unwrap());
    let p = FssParams::new(86_400, 1_776_124_800).unwrap();
    let vectors = [
        (
            0,
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "71030639b9d69357a855bb8d4b56e7076b05da8f6dfbf22ef5353e0d5445ce60",
        ),
        (
            1,
            "7dd4d5932ab7b45b23a69f39e5c7a11531c4289eca86611b6476477d77b00778",
            "35b431ee45b72c029ea25f855a8f4de34b63798f2a6285afb3e43d4992040bae",
        ),
        (
            2,
            "7ee345ab232dac0b690ad73fe03089b926934124f92d8865f6df9fab3d6d7f3d",
            "aebbb1d26d6b346eb0fd66394e11101e541ca9d2c6f5409e530f2cdd09e57e4c",
        ),
        (
            3,
            "e9c384f69b082902b58788d8f70ab0dc6b4a7bd615b1236be52dbe3b8e237bb6",
            "593d8d9ccb4d103d514d8e41add327587f9890aeaa2689ba208aa8f7be4c28fb",
        ),
    ];
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
        .unwrap();
    let mut state = FssState::initial(s0);
    let mut ring = Keyring::new();
    ring.push_forward_secure(key_id("k1"), p, FssState::initial(s0))
        .unwrap();
    let initial_text = ring.to_secret_text();
    for (e, s_hex, k_hex) in vectors {
        assert_eq!(state.epoch(), e);
        // S_e, as the keyring line of epoch e holds it.
        let at_e = ring_with(p, &state);
        let line = format!("k1 fss 86400 1776124800 {e} {s_hex}");
        assert!(at_e.to_secret_text().contains(&line), "epoch {e}");
        // K_e: the MAC key, checked through a MAC of the empty message.
        let k = HmacKey::from_bytes(hex::decode(k_hex).unwrap().try_into().unwrap());
        assert_eq!(state.mac_key().sign(b""), k.sign(b""), "K_{e}");
        // The initial keyring derives K_e for `k1-e<e>`.
        let derived = ring.key(&format!("k1-e{e}")).unwrap();
        assert_eq!(derived.sign(b"x"), k.sign(b"x"));
        for v in [s_hex, k_hex] {
            assert!(doc.contains(v), "FORMAT.md §17 does not quote {v}");
        }
        // The keyring lines of epochs 0 to 2 are quoted whole.
        assert!(
            e > 2 || doc.contains(&line),
            "FORMAT.md §17 does not quote {line}"
        );
        state = state.next();
    }
    // Epochs by the writer's clock: the day of 2026-04-14 is epoch 0, 04-16T23:59:59.999Z is 2.
    assert_eq!(p.epoch_at(1_776_124_800_000), 0);
    assert_eq!(p.epoch_at(1_776_297_599_999), 1);
    assert_eq!(p.epoch_at(1_776_297_600_000), 2);
    assert_eq!(p.epoch_at(1_776_124_799_999), 0, "before the origin");
    assert_eq!(p.epoch_start_ms(2), 1_776_297_600_000);
    for quoted in [
        "1776297599999",
        "1776297600000",
        initial_text.lines().nth(1).unwrap(),
    ] {
        assert!(
            doc.contains(quoted),
            "FORMAT.md §17 does not quote {quoted}"
        );
    }
}

/// A keyring holding `state` as generation `k1`.
fn ring_with(p: FssParams, state: &FssState) -> Keyring {
    let mut r = Keyring::new();
    r.push_forward_secure(key_id("k1"), p, state.clone())
        .unwrap();
    r
}

#[test]
fn epoch_ids_split_only_in_canonical_form() {
    assert_eq!(split_epoch_id("k2-e412"), Some(("k2", 412)));
    assert_eq!(split_epoch_id("k2-e0"), Some(("k2", 0)));
    assert_eq!(split_epoch_id("my-key-e7"), Some(("my-key", 7)));
    for not in ["k2", "k2-e", "k2-e01", "-e4", "k2-ex", "k2-e+1", "k2-e-1"] {
        assert_eq!(split_epoch_id(not), None, "{not}");
    }
    assert_eq!(
        epoch_key_id(&key_id("k2"), 412).unwrap().as_str(),
        "k2-e412"
    );
    assert_eq!(
        epoch_key_id(&key_id("k2"), u64::MAX).unwrap().as_str(),
        "k2-e18446744073709551615"
    );
}

#[test]
fn keyring_lines_parse_and_refuse_bad_parameters() {
    let hex32 = "11".repeat(32);
    let ok = format!("{KEYRING_HEADER}\nk1 {hex32}\nk2 fss 3600 1776186000 5 {hex32}\n");
    let ring = Keyring::parse(&ok).unwrap();
    assert_eq!(ring.to_secret_text(), ok, "round trip");
    assert_eq!(ring.current().unwrap().0.as_str(), "k2-e5");
    assert_eq!(ring.current_generation().unwrap().as_str(), "k2");
    let info = ring.forward_secure("k2").unwrap();
    assert_eq!((info.params.epoch_secs(), info.epoch), (3600, 5));
    assert!(ring.forward_secure("k1").is_none());
    // Plain keys are found by their id; forward-secure ones only by an epoch id.
    assert!(ring.key("k1").is_some());
    assert!(ring.key("k2").is_none());
    assert!(ring.key("k1-e5").is_none());
    assert!(matches!(
        ring.lookup("k2-e4"),
        KeyLookup::Erased { held_epoch: 5 }
    ));
    assert!(ring.key("k2-e5").is_some());
    assert!(ring.key("k2-e900").is_some());
    // Ten years of hourly epochs ahead at most.
    assert!(ring.key(&format!("k2-e{}", 5 + 87_841)).is_none());

    for (bad, why) in [
        (format!("k1 fss 59 0 0 {hex32}"), "between 60 seconds"),
        (
            format!("k1 fss 3600 1776186001 0 {hex32}"),
            "not a multiple",
        ),
        (format!("k1 fss 3600 0 x {hex32}"), "decimal"),
        (
            format!("k12345678901 fss 3600 0 0 {hex32}"),
            "longer than 10",
        ),
        (format!("k1-e3 {hex32}"), "forward-secure"),
        (format!("k1 fss 3600 0 {hex32}"), "expected"),
    ] {
        let text = format!("{KEYRING_HEADER}\n{bad}\n");
        let e = Keyring::parse(&text).unwrap_err().to_string();
        assert!(e.contains(why) && e.contains("line 2"), "{bad}: {e}");
        assert!(!e.contains(&hex32), "{e}");
    }
}

#[test]
fn the_writer_keyring_advances_and_forgets_earlier_states() {
    let ring = initial_ring();
    let s0 = hex::encode(stolen_state_bytes(&ring));
    // Within epoch 0 nothing changes; a clock stepping back never goes back an epoch.
    assert!(ring.advanced_for(BASE_MS + 1000).is_none());
    assert!(ring.advanced_for(0).is_none());
    // Nor does a clock centuries ahead.
    assert!(ring.advanced_for(i64::MAX).is_none());
    assert_eq!(ring.next_epoch_at_ms(), Some(params().epoch_start_ms(1)));
    let later = ring_at(STOLEN_AT);
    assert_eq!(later.current().unwrap().0.as_str(), "k1-e3");
    let text = later.to_secret_text();
    // No earlier state is left in the text written to disk.
    let mut s = FssState::initial(K1);
    for j in 0..STOLEN_AT {
        let sj = hex::encode(stolen_state_bytes(&ring_with(params(), &s)));
        assert!(!text.contains(&sj), "S_{j} is still in the keyring");
        s = s.next();
    }
    assert!(!text.contains(&s0));
    assert!(later.advanced_for(params().epoch_start_ms(2)).is_none());
}

#[test]
fn an_honest_log_verifies_with_the_initial_key_and_partly_with_the_current_state() {
    let log = honest_log();
    let r = report(&log, &initial_ring());
    assert!(r.ok(), "{}", describe(&r));
    assert_eq!(r.hmac_valid_by_key["k1"], EPOCHS * PER_EPOCH as u64);
    assert!(r.not_checked.is_empty(), "{:?}", r.not_checked);

    // The service holds S_3: epochs 0-2 cannot be checked, and that is said plainly.
    let r = report(&log, &ring_at(STOLEN_AT));
    assert!(r.ok(), "{}", describe(&r));
    let checked = (EPOCHS - STOLEN_AT) * PER_EPOCH as u64;
    assert_eq!(r.hmac_valid_by_key["k1"], checked);
    assert_eq!(
        r.not_checked,
        vec![format!(
            "HMACs of {} entries in forward-secure epochs before e{STOLEN_AT} of k1: only the auditor's initial key can check them",
            STOLEN_AT * PER_EPOCH as u64
        )]
    );
}

/// A key the thief uses to sign an entry of epoch `j`.
type ThiefKey = Box<dyn Fn(u64) -> HmacKey>;

/// Every key a thief can compute from S_k, used to forge entries of epochs before k.
fn thief_keys(stolen: &Keyring) -> Vec<(&'static str, ThiefKey)> {
    let sk = stolen_state_bytes(stolen);
    let k_now = stolen.current().unwrap().1.clone();
    let later = stolen.key("k1-e5").unwrap().clone();
    let next_state = hmac_raw(&sk, b"blackbox fss v1 evolve", STOLEN_AT + 1);
    vec![
        ("K_k", Box::new(move |_| k_now.clone())),
        ("K_k+2", Box::new(move |_| later.clone())),
        ("S_k as a key", Box::new(move |_| HmacKey::from_bytes(sk))),
        (
            "S_k+1 as a key",
            Box::new(move |_| HmacKey::from_bytes(next_state)),
        ),
        (
            "HMAC(S_k, mac label, j)",
            Box::new(move |j| HmacKey::from_bytes(hmac_raw(&sk, b"blackbox fss v1 mac", j))),
        ),
        (
            "HMAC(S_k, evolve label, j)",
            Box::new(move |j| HmacKey::from_bytes(hmac_raw(&sk, b"blackbox fss v1 evolve", j))),
        ),
    ]
}

#[test]
fn a_key_stolen_at_epoch_k_cannot_forge_entries_of_earlier_epochs() {
    let log = honest_log();
    let stolen = ring_at(STOLEN_AT);
    // The stolen keyring has no key for any earlier epoch.
    for j in 0..STOLEN_AT {
        assert!(matches!(
            stolen.lookup(&format!("k1-e{j}")),
            KeyLookup::Erased { .. }
        ));
    }
    let auditor = initial_ring();
    let genuine = |e: u64| auditor.key(&format!("k1-e{e}")).unwrap().clone();
    // Rewrite history from entry 6 (epoch 1) on: the forged past entries are signed with a key
    // the thief has, later ones with the genuine keys of epochs >= k (which the thief has too).
    let first_forged = PER_EPOCH + 2;
    for (name, key) in thief_keys(&stolen) {
        let forged = rewrite(
            &log,
            first_forged,
            |i, v| {
                if i == first_forged {
                    v["payload"] = serde_json::json!({"forged": true});
                }
                v.as_object_mut().unwrap().remove("personal_digest");
            },
            &|e, v| {
                let k = if e < STOLEN_AT { key(e) } else { genuine(e) };
                sign_value(v, &k)
            },
        );
        let r = report(&forged, &auditor);
        assert!(
            !r.ok(),
            "{name}: forged history verifies:\n{}",
            describe(&r)
        );
        let f = r.first().unwrap();
        assert_eq!(
            f.seq,
            first_forged as u64 + 1,
            "{name}: first finding\n{}",
            describe(&r)
        );
        assert!(
            matches!(f.kind, FindingKind::Modification | FindingKind::WrongKey),
            "{name}: {}",
            describe(&r)
        );
        // Every forged entry of an earlier epoch fails, not only the first.
        let bad_macs = r
            .findings
            .iter()
            .filter(|f| f.message.contains("HMAC") && f.seq > first_forged as u64)
            .count();
        let forged_early = STOLEN_AT as usize * PER_EPOCH - first_forged;
        assert!(
            bad_macs >= forged_early || f.kind == FindingKind::WrongKey,
            "{name}: {bad_macs} HMAC findings\n{}",
            describe(&r)
        );
    }
}

#[test]
fn relabelling_the_past_as_a_current_epoch_is_caught_by_epoch_order_or_checkpoints() {
    let log = honest_log();
    let stolen = ring_at(STOLEN_AT);
    let k_now = stolen.current().unwrap().1.clone();
    // One past entry re-signed under the current epoch: the next entry goes back an epoch.
    let i = PER_EPOCH + 1;
    let forged = rewrite(
        &log,
        i,
        |j, v| {
            if j == i {
                v["key_id"] = Value::String(format!("k1-e{STOLEN_AT}"));
                v["payload"] = serde_json::json!({"forged": true});
            }
            v.as_object_mut().unwrap().remove("personal_digest");
        },
        &|e, v| {
            let key = if e == STOLEN_AT {
                k_now.clone()
            } else {
                initial_ring().key(&format!("k1-e{e}")).unwrap().clone()
            };
            sign_value(v, &key)
        },
    );
    let r = report(&forged, &initial_ring());
    assert!(!r.ok(), "{}", describe(&r));
    assert!(
        r.findings
            .iter()
            .any(|f| f.kind == FindingKind::EpochNotIncreasing && f.seq == i as u64 + 2),
        "{}",
        describe(&r)
    );
    assert!(
        r.findings.iter().any(|f| f
            .message
            .contains("epoch 1 of key generation `k1` after an entry signed for epoch 3")),
        "{}",
        describe(&r)
    );

    // The whole tail relabelled as epochs >= k verifies its HMACs (the limit of the scheme: the
    // thief owns the present), but a checkpoint the auditor kept from before the theft catches
    // the rewrite.
    let trusted = match &log[PER_EPOCH * 2 + 1] {
        Record::Checkpoint { note_text } => note_text.clone(),
        Record::Entry { .. } => panic!("expected the checkpoint after epoch 1"),
    };
    let tail = rewrite(
        &log,
        i,
        |j, v| {
            if j == i {
                v["payload"] = serde_json::json!({"forged": true});
            }
            let e = epoch_of(v).max(STOLEN_AT);
            v["key_id"] = Value::String(format!("k1-e{e}"));
            v.as_object_mut().unwrap().remove("personal_digest");
        },
        &|e, v| sign_value(v, &stolen.key(&format!("k1-e{e}")).unwrap()),
    );
    let r = verify(
        &tail,
        Some(&initial_ring()),
        Some(note_verifier()),
        &[trusted],
    );
    assert!(!r.ok(), "{}", describe(&r));
    assert!(
        r.findings
            .iter()
            .all(|f| f.kind != FindingKind::Modification || !f.message.contains("HMAC")),
        "the relabelled entries carry valid MACs:\n{}",
        describe(&r)
    );
}

#[test]
fn key_files_merge_keeping_the_earlier_state() {
    let mut ring = ring_at(STOLEN_AT);
    ring.merge(&initial_ring()).unwrap();
    assert!(ring.key("k1-e0").is_some(), "the initial state is kept");
    assert_eq!(ring.forward_secure("k1").unwrap().epoch, 0);
    let mut auditor = initial_ring();
    auditor.merge(&ring_at(STOLEN_AT)).unwrap();
    assert_eq!(auditor.forward_secure("k1").unwrap().epoch, 0);
    // A state that does not derive from the other is refused, as is a plain key of that name.
    let mut other = Keyring::new();
    other
        .push_forward_secure(key_id("k1"), params(), FssState::at(4, [9; 32]))
        .unwrap();
    let e = initial_ring().merge(&other).unwrap_err().to_string();
    assert!(e.contains("does not derive"), "{e}");
    let e = initial_ring().merge(&keyring_k1()).unwrap_err().to_string();
    assert!(e.contains("forward-secure in one file"), "{e}");
    // Plain keys: the same key merges, another one is refused.
    let mut plain = keyring_k1();
    plain.merge(&keyring_k1_k2()).unwrap();
    assert_eq!(plain.ids().len(), 2);
    assert!(keyring_k1().merge(&wrong_keyring()).is_err());
}

#[test]
fn derivation_cache_answers_out_of_order_lookups_consistently() {
    let auditor = initial_ring();
    let mut s = FssState::initial(K1);
    let mut expect = Vec::new();
    for _ in 0..700 {
        expect.push(s.mac_key().sign(b"m"));
        s = s.next();
    }
    // Far first, then back, then in between: every answer is K_e of its own epoch.
    for e in [600_u64, 3, 599, 300, 0, 257, 256, 255, 650, 1] {
        let k = auditor.key(&format!("k1-e{e}")).unwrap();
        assert_eq!(k.sign(b"m"), expect[usize::try_from(e).unwrap()], "e{e}");
    }
}

fn golden(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name)
}

/// The honest log as an exported JSONL file, with the auditor's initial keyring and the
/// service's keyring at epoch 3 (test keys, public by design): `tools/verify_jsonl.py` is run on
/// them in CI. Regenerate with `BLACKBOX_BLESS=1 cargo test -p blackbox-core --test fss`.
#[test]
fn golden_forward_secure_log_is_stable() {
    let mut jsonl = String::new();
    for r in honest_log() {
        match r {
            Record::Entry { line, sidecar } => {
                if let Some(sc) = sidecar {
                    let v: Value = serde_json::from_slice(&line).unwrap();
                    jsonl.push_str(&format!(
                        "{{\"personal\":{{\"seq\":{},\"sidecar\":{},\"tenant_id\":\"{}\"}}}}\n",
                        v["seq"],
                        String::from_utf8(sc).unwrap(),
                        v["tenant_id"].as_str().unwrap()
                    ));
                }
                jsonl.push_str(std::str::from_utf8(&line).unwrap());
                jsonl.push('\n');
            }
            Record::Checkpoint { note_text } => {
                jsonl.push_str(&serde_json::json!({ "checkpoint": note_text }).to_string());
                jsonl.push('\n');
            }
        }
    }
    let files = [
        ("fss.jsonl", jsonl),
        ("fss-initial.keys", initial_ring().to_secret_text()),
        ("fss-e3.keys", ring_at(STOLEN_AT).to_secret_text()),
    ];
    for (name, text) in &files {
        if std::env::var_os("BLACKBOX_BLESS").is_some() {
            std::fs::write(golden(name), text).unwrap();
        }
        assert_eq!(
            *text,
            std::fs::read_to_string(golden(name)).unwrap(),
            "{name} changed: that is a format change"
        );
    }
}
