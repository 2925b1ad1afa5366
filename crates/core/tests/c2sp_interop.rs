//! Interoperability with an independent C2SP implementation: Cloudflare's `signed_note` and
//! `tlog_tiles` (the azul project, from crates.io) check Blackbox's checkpoints, signed notes,
//! inclusion and consistency proofs and tlog-proof files, and Blackbox checks theirs.

// Test helpers panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use blackbox_core::Hash;
use blackbox_core::checkpoint::SignedCheckpoint;
use blackbox_core::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root_from_leaf_hashes, verify_consistency,
    verify_inclusion,
};
use blackbox_core::note::{NoteSigner, NoteVerifier, SignedNote};
use serde_json::Value;
use signed_note::{Note, Signer as _, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::{HashReader, check_record, check_tree, prove_record, prove_tree, record_hash};

fn golden(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/golden")
            .join(name),
    )
    .unwrap()
}

fn theirs(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(*h.as_bytes())
}

fn ours(h: &tlog_tiles::Hash) -> Hash {
    Hash(h.0)
}

/// The worked example's checkpoint (docs/FORMAT.md §13) and its entry 2's tlog-proof, read and
/// checked by the independent implementation; the tlog-proof is read here by hand, line by line
/// as C2SP tlog-proof says, not with Blackbox's parser.
#[test]
fn their_verifier_accepts_our_checkpoint_and_tlog_proof() {
    let ex: Value = serde_json::from_str(&golden("example.json")).unwrap();
    let vkey = ex["vkey"].as_str().unwrap();
    let note = ex["checkpoint_note"].as_str().unwrap();
    let verifiers = VerifierList::new(vec![Box::new(StandardVerifier::new(vkey).unwrap())]);
    let n = Note::from_bytes(note.as_bytes()).unwrap();
    let (verified, unverified) = n.verify(&verifiers).unwrap();
    assert_eq!((verified.len(), unverified.len()), (1, 0));
    let cp = tlog_tiles::Checkpoint::from_bytes(n.text()).unwrap();
    assert_eq!(cp.origin(), "blackbox/example/acme");
    assert_eq!(cp.size(), 3);
    assert_eq!(
        hex::encode(cp.hash().0),
        ex["root_hex"].as_str().unwrap(),
        "the root they read is ours"
    );
    assert_eq!(cp.extension(), "timestamp 2026-04-14T18:00:03.000Z\n");

    let text = golden("example.tlog-proof");
    let mut lines = text.split('\n');
    assert_eq!(lines.next(), Some("c2sp.org/tlog-proof@v1"));
    let extra = base64::engine::general_purpose::STANDARD
        .decode(lines.next().unwrap().strip_prefix("extra ").unwrap())
        .unwrap();
    let index: u64 = lines
        .next()
        .unwrap()
        .strip_prefix("index ")
        .unwrap()
        .parse()
        .unwrap();
    let mut proof = Vec::new();
    for l in lines.by_ref() {
        if l.is_empty() {
            break;
        }
        proof.push(tlog_tiles::Hash::parse_hash(l).unwrap());
    }
    let rest: Vec<&str> = lines.collect();
    let checkpoint = rest.join("\n");
    let n = Note::from_bytes(checkpoint.as_bytes()).unwrap();
    n.verify(&verifiers).unwrap();
    let cp = tlog_tiles::Checkpoint::from_bytes(n.text()).unwrap();
    // The record is the entry's hash (SHA-256 of the entry line, the extra data).
    let record = record_hash(Hash::digest(&extra).as_bytes());
    check_record(&proof, cp.size(), *cp.hash(), index, record).unwrap();
    assert!(check_record(&proof, cp.size(), *cp.hash(), index + 1, record).is_err());
    let other = record_hash(Hash::digest(b"another entry").as_bytes());
    assert!(check_record(&proof, cp.size(), *cp.hash(), index, other).is_err());
}

/// A log of records kept as tlog-tiles' stored hashes.
#[derive(Default)]
struct Stored(Vec<tlog_tiles::Hash>);

impl HashReader for Stored {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(usize::try_from(i).unwrap())
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Inclusion and consistency proofs agree both ways on trees of many sizes, across the
/// 256-leaf boundary Blackbox stores nodes at.
#[test]
fn proofs_agree_both_ways_on_trees_of_many_sizes() {
    let records: Vec<Vec<u8>> = (0..600)
        .map(|i| format!("record {i}").into_bytes())
        .collect();
    let leaves: Vec<Hash> = records.iter().map(|r| leaf_hash(r)).collect();
    let mut stored = Stored::default();
    for (i, r) in records.iter().enumerate() {
        let more = tlog_tiles::stored_hashes(i as u64, r, &stored).unwrap();
        stored.0.extend(more);
    }
    let subtree = |start: u64, level: u8| -> Result<Hash, ()> {
        let s = usize::try_from(start).unwrap();
        Ok(root_from_leaf_hashes(&leaves[s..s + (1usize << level)]))
    };
    for t in [1u64, 2, 3, 7, 8, 100, 255, 256, 257, 511, 600] {
        let root = root_from_leaf_hashes(&leaves[..usize::try_from(t).unwrap()]);
        let th = tlog_tiles::tree_hash(t, &stored).unwrap();
        assert_eq!(ours(&th), root, "tree of {t}");
        for i in [0, t / 3, t / 2, t - 1] {
            let leaf = &leaves[usize::try_from(i).unwrap()];
            let mine = inclusion_proof(i, t, subtree).unwrap();
            let mine_t: Vec<tlog_tiles::Hash> = mine.iter().map(theirs).collect();
            check_record(
                &mine_t,
                t,
                th,
                i,
                record_hash(&records[usize::try_from(i).unwrap()]),
            )
            .unwrap_or_else(|e| panic!("our proof of {i} in {t}: {e}"));
            let theirs_p: Vec<Hash> = prove_record(t, i, &stored)
                .unwrap()
                .iter()
                .map(ours)
                .collect();
            verify_inclusion(leaf, i, t, &theirs_p, &root)
                .unwrap_or_else(|e| panic!("their proof of {i} in {t}: {e}"));
        }
        for m in [1, t / 2, t - 1].into_iter().filter(|&m| m >= 1 && m < t) {
            let old = root_from_leaf_hashes(&leaves[..usize::try_from(m).unwrap()]);
            let mine = consistency_proof(m, t, subtree).unwrap();
            let mine_t: Vec<tlog_tiles::Hash> = mine.iter().map(theirs).collect();
            check_tree(&mine_t, t, th, m, theirs(&old))
                .unwrap_or_else(|e| panic!("our proof {m} → {t}: {e}"));
            let theirs_p: Vec<Hash> = prove_tree(t, m, &stored)
                .unwrap()
                .iter()
                .map(ours)
                .collect();
            verify_consistency(m, t, &theirs_p, &old, &root)
                .unwrap_or_else(|e| panic!("their proof {m} → {t}: {e}"));
        }
    }
}

/// A checkpoint signed by their signer verifies with Blackbox's verifier, and the reverse
/// (the same Ed25519 key, named the same).
#[test]
fn notes_signed_by_either_verify_with_the_other() {
    let seed = [42u8; 32];
    let ours_signer = NoteSigner::new("example.com/log", seed).unwrap();
    let vkey = ours_signer.verifier().to_vkey();
    // A signer key is the verifier key's name and hash with the seed in place of the public key.
    let hash = vkey.split('+').nth(1).unwrap();
    let mut raw = vec![1u8];
    raw.extend_from_slice(&seed);
    let skey = format!(
        "PRIVATE+KEY+example.com/log+{hash}+{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    );
    let their_signer = StandardSigner::new(&skey).unwrap();
    assert_eq!(their_signer.name(), "example.com/log");
    let text = "example.com/log\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";
    let mut n = Note::new(text.as_bytes(), &[]).unwrap();
    n.add_sigs(&[&their_signer]).unwrap();
    let signed_by_them = String::from_utf8(n.to_bytes()).unwrap();
    let verifier = NoteVerifier::from_vkey(&vkey).unwrap();
    SignedNote::parse(&signed_by_them)
        .unwrap()
        .verify(&verifier)
        .unwrap();
    let cp = SignedCheckpoint::parse(&signed_by_them).unwrap();
    cp.verify(&verifier).unwrap();
    assert_eq!(cp.checkpoint.size, 5);
    // Ed25519 signatures are deterministic: both sign the same bytes the same way.
    let signed_by_us = ours_signer.sign(text).unwrap();
    assert_eq!(signed_by_us, signed_by_them);
    let verifiers = VerifierList::new(vec![Box::new(StandardVerifier::new(&vkey).unwrap())]);
    Note::from_bytes(signed_by_us.as_bytes())
        .unwrap()
        .verify(&verifiers)
        .unwrap();
}
