//! The worked example of docs/FORMAT.md: a fixed key, a 3-entry log and its checkpoint.
//!
//! The bytes must never change without a format version bump. The test compares the computed
//! values with `tests/data/golden/` and checks that docs/FORMAT.md quotes every one of them, so
//! the document cannot drift from the code. Regenerate (after a deliberate format change) with
//! `BLACKBOX_BLESS=1 cargo test -p blackbox-core --test golden` and update FORMAT.md.

// Test helpers panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox_core::Hash;
use blackbox_core::checkpoint::{Checkpoint, SignedCheckpoint};
use blackbox_core::entry::{
    GENESIS_HASH, RedactionPolicy, SealParams, make_sidecar, next_entry_id, normalize_event,
    parse_timestamp, seal, split_line,
};
use blackbox_core::ids::{KeyId, TenantId};
use blackbox_core::keys::{HmacKey, Keyring};
use blackbox_core::merkle::{CompactRange, leaf_hash, node_hash};
use blackbox_core::note::NoteSigner;
use blackbox_core::verify::{LogVerifier, check_entry};
use serde_json::{Value, json};

const EVENTS: [&str; 3] = [
    r#"{"tenant_id":"acme","agent_id":"agent-1","session_id":"s1","client_seq":1,"timestamp":"2026-04-14T18:00:00.123Z","event_type":"llm_request","payload":{"model":"gpt-4o","prompt":"hello","token_count_in":5,"token_count_out":2,"latency_ms":120}}"#,
    r#"{"tenant_id":"acme","agent_id":"agent-1","session_id":"s1","client_seq":2,"timestamp":"2026-04-14T18:00:01.000Z","event_type":"tool_call","tool_name":"query_database","agent_role":"analyst","args":{"query":"SELECT 1","table":"orders"},"authorization":{"rbac_role":"analyst","allowed":true,"policy_matched":"analyst-read"},"result":{"rows_returned":1,"data_classification":"internal"},"duration_ms":4,"data_subjects":[{"id":"ds_1","category":"customer"}]}"#,
    r#"{"tenant_id":"acme","agent_id":"agent-1","session_id":"s1","client_seq":3,"timestamp":"2026-04-14T18:00:02.500Z","event_type":"decision","payload":{"decision":"done"}}"#,
];

fn key_bytes() -> [u8; 32] {
    std::array::from_fn(|i| u8::try_from(i).unwrap())
}

fn seed_bytes() -> [u8; 32] {
    std::array::from_fn(|i| u8::try_from(i + 0x20).unwrap())
}

struct Example {
    values: Value,
    jsonl: String,
}

fn build() -> Example {
    let key = HmacKey::from_bytes(key_bytes());
    let key_id = KeyId::parse("k1").unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let signer = NoteSigner::new("blackbox/example", seed_bytes()).unwrap();
    let policy = RedactionPolicy::default();
    let mut prev = GENESIS_HASH;
    let mut last_id = None;
    let mut tree = CompactRange::new();
    let mut entries = Vec::new();
    let mut jsonl = String::new();
    let mut leaves = Vec::new();
    for (i, raw) in EVENTS.iter().enumerate() {
        let mut ev = normalize_event(
            serde_json::from_str(raw).unwrap(),
            &policy,
            &blackbox_core::origin::Origin::Service,
        )
        .unwrap();
        // The worked example of FORMAT.md §13 is pinned in version 1 (origin-less); version 2
        // is pinned by `golden_v2` below.
        ev.origin = None;
        let ms = ev.timestamp_ms.unwrap();
        let random = [u8::try_from(0x11 * (i + 1)).unwrap(); 10];
        let id = next_entry_id(last_id, u64::try_from(ms).unwrap(), random);
        last_id = Some(id);
        let salt = [0xa5u8; 32];
        let sidecar = ev.personal.as_ref().map(|f| make_sidecar(f, salt).unwrap());
        let sealed = seal(
            &ev,
            &SealParams {
                tenant_id: &tenant,
                seq: u64::try_from(i + 1).unwrap(),
                entry_id: id,
                timestamp_ms: ms,
                key_id: &key_id,
                key: &key,
                prev_entry_hash: prev,
                personal_digest: sidecar.as_ref().map(|s| s.digest),
                clock_skew_ms: None,
            },
        )
        .unwrap();
        let (body, mac) = split_line(&sealed.line).unwrap();
        let leaf = leaf_hash(sealed.entry_hash.as_bytes());
        leaves.push(leaf);
        tree.append(leaf);
        if let Some(sc) = &sidecar {
            jsonl.push_str(&format!(
                "{{\"personal\":{{\"seq\":{},\"sidecar\":{},\"tenant_id\":\"acme\"}}}}\n",
                i + 1,
                String::from_utf8(sc.bytes.clone()).unwrap()
            ));
        }
        jsonl.push_str(std::str::from_utf8(&sealed.line).unwrap());
        jsonl.push('\n');
        entries.push(json!({
            "seq": i + 1,
            "input": raw,
            "payload_jcs": String::from_utf8(ev.payload_jcs.clone()).unwrap(),
            "sidecar": sidecar.as_ref().map(|s| String::from_utf8(s.bytes.clone()).unwrap()),
            "personal_digest": sidecar.as_ref().map(|s| s.digest.to_prefixed()),
            "body_digest": Hash::digest(&body).to_hex(),
            "body": String::from_utf8(body).unwrap(),
            "hmac_sha256": hex::encode(mac),
            "line": String::from_utf8(sealed.line.clone()).unwrap(),
            "entry_hash": sealed.entry_hash.to_prefixed(),
            "leaf_hash": leaf.to_hex(),
        }));
        prev = sealed.entry_hash;
    }
    let n01 = node_hash(&leaves[0], &leaves[1]);
    let root = node_hash(&n01, &leaves[2]);
    assert_eq!(root, tree.root());
    let ts = "2026-04-14T18:00:03.000Z";
    let cp = Checkpoint {
        origin: "blackbox/example/acme".to_owned(),
        size: 3,
        root,
        extensions: vec![format!("timestamp {ts}")],
    };
    let body = cp.to_text();
    let signed = SignedCheckpoint::sign(cp, &signer).unwrap();
    let note = signed.note_text();
    jsonl.push_str(&serde_json::json!({ "checkpoint": note }).to_string());
    jsonl.push('\n');
    let v = signer.verifier();
    let values = json!({
        "hmac_key_hex": hex::encode(key_bytes()),
        "ed25519_seed_hex": hex::encode(seed_bytes()),
        "vkey": v.to_vkey(),
        "key_hash_hex": hex::encode(v.key_hash()),
        "fingerprint": v.fingerprint(),
        "salt_hex": hex::encode([0xa5u8; 32]),
        "entries": entries,
        "node_0_1": n01.to_hex(),
        "root_hex": root.to_hex(),
        "root_base64": root.to_base64(),
        "checkpoint_body": body,
        "checkpoint_note": note,
    });
    Example { values, jsonl }
}

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name)
}

#[test]
fn worked_example_matches_golden_files_and_format_md() {
    let ex = build();
    let pretty = serde_json::to_string_pretty(&ex.values).unwrap() + "\n";
    if std::env::var_os("BLACKBOX_BLESS").is_some() {
        std::fs::write(data("example.json"), &pretty).unwrap();
        std::fs::write(data("example.jsonl"), &ex.jsonl).unwrap();
    }
    let golden = std::fs::read_to_string(data("example.json")).unwrap();
    // Compared as JSON values: member order in the file depends on serde_json's
    // `preserve_order` feature, which another crate of the workspace turns on.
    let golden: serde_json::Value = serde_json::from_str(&golden).unwrap();
    assert_eq!(
        serde_json::to_value(&ex.values).unwrap(),
        golden,
        "the worked example changed: that is a format change"
    );
    assert_eq!(
        ex.jsonl,
        std::fs::read_to_string(data("example.jsonl")).unwrap()
    );

    // Every value of the worked example appears verbatim in docs/FORMAT.md.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
        .unwrap();
    let mut must: Vec<String> = vec![];
    for k in [
        "hmac_key_hex",
        "ed25519_seed_hex",
        "vkey",
        "key_hash_hex",
        "fingerprint",
        "salt_hex",
        "node_0_1",
        "root_hex",
        "root_base64",
    ] {
        must.push(ex.values[k].as_str().unwrap().to_owned());
    }
    for line in ex.values["checkpoint_note"].as_str().unwrap().lines() {
        must.push(line.to_owned());
    }
    for e in ex.values["entries"].as_array().unwrap() {
        for k in [
            "payload_jcs",
            "body",
            "body_digest",
            "hmac_sha256",
            "line",
            "entry_hash",
            "leaf_hash",
            "sidecar",
            "personal_digest",
            "input",
        ] {
            if let Some(s) = e[k].as_str() {
                must.push(s.to_owned());
            }
        }
    }
    for m in must {
        assert!(
            doc.contains(&m),
            "docs/FORMAT.md does not quote this worked-example value:\n{m}"
        );
    }
}

#[test]
fn worked_example_verifies_and_timestamps_parse() {
    let ex = build();
    let mut ring = Keyring::new();
    ring.push(
        KeyId::parse("k1").unwrap(),
        HmacKey::from_bytes(key_bytes()),
    )
    .unwrap();
    let signer = NoteSigner::new("blackbox/example", seed_bytes()).unwrap();
    let mut v = LogVerifier::new(true, Some(signer.verifier()));
    v.add_checkpoint(5, ex.values["checkpoint_note"].as_str().unwrap(), false);
    let mut pending_sidecar = None;
    for (i, line) in ex.jsonl.lines().enumerate() {
        if line.starts_with("{\"personal\":") {
            let val: Value = serde_json::from_str(line).unwrap();
            pending_sidecar = Some(serde_json::to_vec(&val["personal"]["sidecar"]).unwrap());
        } else if !line.starts_with("{\"checkpoint\":") {
            let pos = u64::try_from(i + 1).unwrap();
            v.feed(check_entry(
                pos,
                line.as_bytes(),
                pending_sidecar.take().as_deref(),
                Some(&ring),
            ));
        }
    }
    let r = v.finish();
    assert!(r.ok(), "{:?}", r.findings);
    assert_eq!(r.entries, 3);
    assert_eq!(r.chains[0].checkpoints_verified, 1);
    assert_eq!(
        parse_timestamp("2026-04-14T18:00:00.123Z").unwrap(),
        1_776_189_600_123
    );
    assert_eq!(
        Hash::digest(b"").to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

/// The worked example's last entry in a file of its own: an anchor at size 2, entry 3, and the
/// checkpoint at 3 (`tests/data/golden/example-anchored.jsonl`, quoted in docs/FORMAT.md §13).
#[test]
fn worked_example_anchor_matches_golden_file_and_format_md() {
    use blackbox_core::anchor::Anchor;
    let ex = build();
    let entries = ex.values["entries"].as_array().unwrap();
    let hash = |i: usize| Hash::from_prefixed(entries[i]["entry_hash"].as_str().unwrap()).unwrap();
    let (l1, l2) = (leaf_hash(hash(0).as_bytes()), leaf_hash(hash(1).as_bytes()));
    let mut range = CompactRange::new();
    range.append(l1);
    range.append(l2);
    let signer = NoteSigner::new("blackbox/example", seed_bytes()).unwrap();
    let cp = Checkpoint {
        origin: "blackbox/example/acme".to_owned(),
        size: 2,
        root: range.root(),
        extensions: vec!["timestamp 2026-04-14T18:00:01.500Z".to_owned()],
    };
    let cp = SignedCheckpoint::sign(cp, &signer).unwrap();
    // The inclusion proof of leaf 1 in a tree of 2 is its sibling, leaf 0.
    let anchor = Anchor::new(
        TenantId::parse("acme").unwrap(),
        range,
        hash(1),
        vec![l1],
        cp,
    )
    .unwrap();
    anchor.verify(&signer.verifier()).unwrap();
    let line = anchor.to_line();
    let jsonl = format!(
        "{line}\n{}\n{}\n",
        entries[2]["line"].as_str().unwrap(),
        serde_json::json!({ "checkpoint": ex.values["checkpoint_note"] })
    );
    if std::env::var_os("BLACKBOX_BLESS").is_some() {
        std::fs::write(data("example-anchored.jsonl"), &jsonl).unwrap();
    }
    assert_eq!(
        jsonl,
        std::fs::read_to_string(data("example-anchored.jsonl")).unwrap(),
        "the anchored example changed: that is a format change"
    );
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
        .unwrap();
    assert!(
        doc.contains(&line),
        "docs/FORMAT.md does not quote the anchor record:\n{line}"
    );

    // The file verifies on its own: entry 3 continues from the anchor, and checkpoint 3 matches.
    let mut ring = Keyring::new();
    ring.push(
        KeyId::parse("k1").unwrap(),
        HmacKey::from_bytes(key_bytes()),
    )
    .unwrap();
    let mut v = LogVerifier::new(true, Some(signer.verifier()));
    for (i, l) in jsonl.lines().enumerate() {
        let pos = u64::try_from(i + 1).unwrap();
        if l.starts_with("{\"anchor\":") {
            v.add_anchor_line(pos, l.as_bytes());
        } else if l.starts_with("{\"checkpoint\":") {
            let val: Value = serde_json::from_str(l).unwrap();
            v.add_checkpoint(pos, val["checkpoint"].as_str().unwrap(), false);
        } else {
            v.feed(check_entry(pos, l.as_bytes(), None, Some(&ring)));
        }
    }
    let r = v.finish();
    assert!(r.ok(), "{:?}", r.findings);
    let c = &r.chains[0];
    assert_eq!((c.entries, c.start, c.size), (1, 2, 3));
    assert_eq!(c.checkpoints_verified, 2);
}

/// A log slice of the worked example (docs/FORMAT.md §10): agent-1's entries from
/// 18:00:01.000, entries 2 and 3, each with its audit path in the tree of 3
/// (`tests/data/golden/example-slice.json`).
#[test]
fn worked_example_slice_matches_golden_file_and_verifies() {
    use blackbox_core::proof::{
        LogSlice, ProofError, Proven, SLICE_TYPE, SliceEntry, SliceSelection, verify_proof_document,
    };
    let ex = build();
    let entries = ex.values["entries"].as_array().unwrap();
    let hash = |i: usize| Hash::from_prefixed(entries[i]["entry_hash"].as_str().unwrap()).unwrap();
    let leaves: Vec<Hash> = (0..3).map(|i| leaf_hash(hash(i).as_bytes())).collect();
    let entry = |i: usize| {
        let path = blackbox_core::merkle::inclusion_proof::<std::convert::Infallible>(
            u64::try_from(i).unwrap(),
            3,
            |start, level| {
                let (s, n) = (usize::try_from(start).unwrap(), 1usize << level);
                let mut level_hashes = leaves[s..s + n].to_vec();
                while level_hashes.len() > 1 {
                    level_hashes = level_hashes
                        .chunks(2)
                        .map(|p| node_hash(&p[0], &p[1]))
                        .collect();
                }
                Ok(level_hashes[0])
            },
        )
        .unwrap();
        let line = entries[i]["line"].as_str().unwrap().to_owned();
        let view = blackbox_core::entry::EntryView::parse(line.as_bytes()).unwrap();
        SliceEntry {
            seq: u64::try_from(i + 1).unwrap(),
            entry_id: view.entry_id.to_string(),
            entry_hash: hash(i).to_prefixed(),
            entry: line,
            hashes: path.iter().map(Hash::to_base64).collect(),
        }
    };
    let slice = LogSlice {
        kind: SLICE_TYPE.to_owned(),
        tenant_id: "acme".to_owned(),
        tree_size: 3,
        checkpoint: ex.values["checkpoint_note"].as_str().unwrap().to_owned(),
        selection: SliceSelection {
            agent_id: Some("agent-1".to_owned()),
            start: Some("2026-04-14T18:00:01.000Z".to_owned()),
            ..SliceSelection::default()
        },
        entries: vec![entry(1), entry(2)],
        complete: true,
        not_covered: 0,
    };
    let text = serde_json::to_string_pretty(&slice).unwrap() + "\n";
    if std::env::var_os("BLACKBOX_BLESS").is_some() {
        std::fs::write(data("example-slice.json"), &text).unwrap();
    }
    assert_eq!(
        text,
        std::fs::read_to_string(data("example-slice.json")).unwrap(),
        "the slice example changed: that is a format change"
    );
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
        .unwrap();
    assert!(
        doc.contains("tests/data/golden/example-slice.json") && doc.contains(SLICE_TYPE),
        "docs/FORMAT.md §10 does not describe the slice example"
    );

    let signer = NoteSigner::new("blackbox/example", seed_bytes()).unwrap();
    let vk = signer.verifier();
    let proven = verify_proof_document(&text, &vk).unwrap();
    assert_eq!(
        proven,
        Proven::Slice {
            tenant_id: "acme".into(),
            entries: 2,
            tree_size: 3,
            complete: true,
            not_covered: 0
        }
    );
    assert_eq!(
        proven.to_string(),
        "OK — 2 entries of tenant acme included in the signed tree of 3 entries; entry bytes match and each is in the selection"
    );
    let check = |s: &LogSlice| verify_proof_document(&serde_json::to_string(s).unwrap(), &vk);

    // An edited entry, a path of another leaf, a repeated entry, an entry outside the
    // selection (though really in the log) and a narrowed selection are each refused.
    let mut edited = slice.clone();
    edited.entries[0].entry = edited.entries[0].entry.replace("\"orders\"", "\"payroll\"");
    assert_ne!(edited.entries[0].entry, slice.entries[0].entry);
    assert!(matches!(
        check(&edited),
        Err(ProofError::SliceEntry {
            index: 0,
            seq: 2,
            ..
        })
    ));
    let mut swapped = slice.clone();
    swapped.entries[0].hashes = swapped.entries[1].hashes.clone();
    let e = check(&swapped).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("entry 0 of the slice (seq 2): the Merkle proof"),
        "{e}"
    );
    let mut twice = slice.clone();
    twice.entries.push(entry(2));
    assert!(matches!(
        check(&twice),
        Err(ProofError::DuplicateSeq { seq: 3 })
    ));
    let mut padded = slice.clone();
    padded.entries.insert(0, entry(0));
    assert!(matches!(
        check(&padded),
        Err(ProofError::OutsideSelection {
            index: 0,
            seq: 1,
            member: "start"
        })
    ));
    let mut other_agent = slice.clone();
    other_agent.selection.agent_id = Some("agent-2".to_owned());
    assert!(matches!(
        check(&other_agent),
        Err(ProofError::OutsideSelection {
            member: "agent_id",
            ..
        })
    ));
    let mut traced = slice.clone();
    traced.selection.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned());
    assert!(matches!(
        check(&traced),
        Err(ProofError::OutsideSelection {
            member: "trace_id",
            ..
        })
    ));
    // Another key: the checkpoint does not verify.
    let other = NoteSigner::new("blackbox/example", [7u8; 32]).unwrap();
    assert!(matches!(
        verify_proof_document(&text, &other.verifier()),
        Err(ProofError::BadSignature(_))
    ));
}

/// The worked example's entry 2 as a C2SP tlog-proof (docs/FORMAT.md §10,
/// `tests/data/golden/example.tlog-proof`).
#[test]
fn worked_example_tlog_proof_matches_golden_file_and_verifies() {
    use blackbox_core::proof::{INCLUSION_TYPE, InclusionProof, ProofError, verify_proof_document};
    use blackbox_core::tlog_proof::TlogProof;
    let ex = build();
    let entries = ex.values["entries"].as_array().unwrap();
    let hash = |i: usize| Hash::from_prefixed(entries[i]["entry_hash"].as_str().unwrap()).unwrap();
    let (l0, l2) = (leaf_hash(hash(0).as_bytes()), leaf_hash(hash(2).as_bytes()));
    let line = entries[1]["line"].as_str().unwrap();
    let view = blackbox_core::entry::EntryView::parse(line.as_bytes()).unwrap();
    // Leaf 1 of 3: its sibling (leaf 0), then the right subtree (leaf 2).
    let proof = InclusionProof {
        kind: INCLUSION_TYPE.to_owned(),
        tenant_id: "acme".to_owned(),
        entry_id: view.entry_id.to_string(),
        seq: 2,
        entry_hash: hash(1).to_prefixed(),
        entry: Some(line.to_owned()),
        tree_size: 3,
        hashes: vec![l0.to_base64(), l2.to_base64()],
        checkpoint: ex.values["checkpoint_note"].as_str().unwrap().to_owned(),
    };
    let text = TlogProof::from_inclusion(&proof).unwrap().to_text();
    if std::env::var_os("BLACKBOX_BLESS").is_some() {
        std::fs::write(data("example.tlog-proof"), &text).unwrap();
    }
    assert_eq!(
        text,
        std::fs::read_to_string(data("example.tlog-proof")).unwrap(),
        "the tlog-proof example changed: that is a format change"
    );
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
        .unwrap();
    assert!(
        doc.contains("tests/data/golden/example.tlog-proof")
            && doc.contains(text.lines().nth(3).unwrap()),
        "docs/FORMAT.md §10 does not quote the tlog-proof example"
    );
    let vk = NoteSigner::new("blackbox/example", seed_bytes())
        .unwrap()
        .verifier();
    let proven = verify_proof_document(&text, &vk).unwrap();
    assert_eq!(
        proven.to_string(),
        format!(
            "OK — entry 2 ({}) of tenant acme is included in the signed tree of 3 entries; entry bytes match",
            view.entry_id
        )
    );
    // The record a generic C2SP verifier proves is SHA-256(entry line): the leaf's input.
    let parsed = TlogProof::parse(&text).unwrap();
    assert_eq!(parsed.index, 1);
    assert_eq!(
        Hash::digest(parsed.extra.as_deref().unwrap()),
        hash(1),
        "the record is the entry hash"
    );
    // Another entry's line as extra data, a changed proof, no extra data: refused.
    let other = TlogProof {
        extra: Some(entries[2]["line"].as_str().unwrap().as_bytes().to_vec()),
        ..parsed.clone()
    };
    assert!(verify_proof_document(&other.to_text(), &vk).is_err());
    let mut swapped = parsed.clone();
    swapped.hashes.reverse();
    assert!(matches!(
        verify_proof_document(&swapped.to_text(), &vk),
        Err(ProofError::Merkle(_))
    ));
    let bare = TlogProof {
        extra: None,
        ..parsed
    };
    assert!(matches!(
        verify_proof_document(&bare.to_text(), &vk),
        Err(ProofError::TlogNoEntry)
    ));
}

/// The worked example's checkpoint cosigned by a witness (docs/FORMAT.md §7 "Cosignatures",
/// `tests/data/golden/example.cosigned-checkpoint`): the witness `witness.example/w1` with the
/// Ed25519 seed 0x77 × 32, at 1776189603 (2026-04-14T18:00:03Z).
#[test]
fn worked_example_cosigned_checkpoint_matches_golden_file_and_verifies() {
    use blackbox_core::cosignature::{Cosigner, WitnessMark, WitnessPolicy, add_signatures};
    use blackbox_core::note::SignedNote;
    let ex = build();
    let note_text = ex.values["checkpoint_note"].as_str().unwrap();
    let mut note = SignedNote::parse(note_text).unwrap();
    let witness = Cosigner::new("witness.example/w1", [0x77; 32]).unwrap();
    let sig = witness.cosign(&note.text, 1_776_189_603).unwrap();
    assert_eq!(add_signatures(&mut note, &[sig]), 1);
    let text = format!("{note}");
    let public = format!("{}\n", witness.key().to_vkey());
    if std::env::var_os("BLACKBOX_BLESS").is_some() {
        std::fs::write(data("example.cosigned-checkpoint"), &text).unwrap();
        std::fs::write(data("example.witness.pub"), &public).unwrap();
    }
    assert_eq!(
        text,
        std::fs::read_to_string(data("example.cosigned-checkpoint")).unwrap(),
        "the cosigned checkpoint example changed: that is a format change"
    );
    assert_eq!(
        public,
        std::fs::read_to_string(data("example.witness.pub")).unwrap()
    );
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
        .unwrap();
    assert!(
        doc.contains("tests/data/golden/example.cosigned-checkpoint")
            && doc.contains(text.lines().last().unwrap())
            && doc.contains(public.trim()),
        "docs/FORMAT.md §7 does not quote the cosigned checkpoint example"
    );
    // The log's signature still verifies; the witness's too, at its time.
    let parsed = SignedNote::parse(&text).unwrap();
    let vk = NoteSigner::new("blackbox/example", seed_bytes())
        .unwrap()
        .verifier();
    parsed.verify(&vk).unwrap();
    let check = WitnessPolicy::new(vec![witness.key().clone()], 1)
        .unwrap()
        .check(&parsed);
    assert_eq!(check.witnesses[0].1, WitnessMark::Cosigned(1_776_189_603));
}
