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

// ---- cosignatures (C2SP tlog-cosignature) and the witness protocol (C2SP tlog-witness) ----

/// Ed25519 `cosignature/v1` written in this test from the specification's text alone, plugged
/// into Cloudflare's note machinery through its `Verifier` / `Signer` traits: their parser reads
/// the notes, their `key_id` (over `0x04 || public key`) names the lines, and their
/// `Note::verify` / `Note::add_sigs` decide which line is checked or written.
struct SpecCosigner {
    name: String,
    key: ed25519_dalek::SigningKey,
    time: u64,
}

fn spec_message(time: u64, text: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {time}\n").into_bytes();
    m.extend_from_slice(text);
    m
}

impl signed_note::Verifier for SpecCosigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        let mut k = vec![0x04];
        k.extend_from_slice(self.key.verifying_key().as_bytes());
        signed_note::key_id(&self.name, &k)
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((t, s)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let Ok(s) = ed25519_dalek::Signature::from_slice(s) else {
            return false;
        };
        self.key
            .verifying_key()
            .verify_strict(&spec_message(u64::from_be_bytes(*t), msg), &s)
            .is_ok()
    }
}

impl signed_note::Signer for SpecCosigner {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        signed_note::Verifier::key_id(self)
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        use ed25519_dalek::Signer as _;
        let mut out = self.time.to_be_bytes().to_vec();
        out.extend_from_slice(&self.key.sign(&spec_message(self.time, msg)).to_bytes());
        Ok(out)
    }
}

fn our_checkpoint(size: u64) -> (NoteSigner, SignedCheckpoint) {
    let signer = NoteSigner::new("blackbox/interop", [21; 32]).unwrap();
    let cp = blackbox_core::checkpoint::Checkpoint {
        origin: "blackbox/interop/acme".into(),
        size,
        root: Hash::digest(b"some root"),
        extensions: vec!["timestamp 2026-12-07T00:00:00.000Z".into()],
    };
    let sc = SignedCheckpoint::sign(cp, &signer).unwrap();
    (signer, sc)
}

/// Our witness's cosignature on our checkpoint, checked by their note verification with the
/// specification's cosignature verifier; their key ID is ours.
#[test]
fn their_note_verification_accepts_our_cosignatures() {
    use blackbox_core::cosignature::Cosigner;
    let (signer, sc) = our_checkpoint(1234);
    let w = Cosigner::new("witness.example.com/w1", [33; 32]).unwrap();
    let sig = w.cosign(&sc.note.text, 1_700_000_000).unwrap();
    let mut note = sc.note.clone();
    blackbox_core::cosignature::add_signatures(&mut note, &[sig]);
    let text = note.to_string();

    let spec = SpecCosigner {
        name: "witness.example.com/w1".into(),
        key: ed25519_dalek::SigningKey::from_bytes(&[33; 32]),
        time: 0,
    };
    assert_eq!(
        signed_note::Verifier::key_id(&spec).to_be_bytes(),
        w.key().key_id(),
        "their key ID over 0x04 || key is ours"
    );
    let n = Note::from_bytes(text.as_bytes()).unwrap();
    let log = StandardVerifier::new(&signer.verifier().to_vkey()).unwrap();
    let both = VerifierList::new(vec![Box::new(log), Box::new(spec)]);
    let (verified, unverified) = n.verify(&both).unwrap();
    assert_eq!((verified.len(), unverified.len()), (2, 0));
    // Only the log's key: the cosignature is an unknown line, ignored, as the spec requires.
    let log_only = VerifierList::new(vec![Box::new(
        StandardVerifier::new(&signer.verifier().to_vkey()).unwrap(),
    )]);
    let (verified, unverified) = n.verify(&log_only).unwrap();
    assert_eq!((verified.len(), unverified.len()), (1, 1));
}

/// A cosignature their note machinery writes (through the specification's signer) is accepted
/// by our witness policy; one over another time or text is not.
#[test]
fn our_witness_policy_accepts_cosignatures_they_write() {
    use blackbox_core::cosignature::{CosignerKey, WitnessMark, WitnessPolicy};
    let (_, sc) = our_checkpoint(99);
    let spec = SpecCosigner {
        name: "witness.example.com/w2".into(),
        key: ed25519_dalek::SigningKey::from_bytes(&[44; 32]),
        time: 1_679_315_147,
    };
    let mut n = Note::from_bytes(sc.note_text().as_bytes()).unwrap();
    n.add_sigs(&[&spec]).unwrap();
    let cosigned = String::from_utf8(n.to_bytes()).unwrap();
    let parsed = SignedNote::parse(&cosigned).unwrap();
    let key = CosignerKey::new(
        "witness.example.com/w2",
        ed25519_dalek::SigningKey::from_bytes(&[44; 32]).verifying_key(),
    )
    .unwrap();
    let check = WitnessPolicy::new(vec![key.clone()], 1)
        .unwrap()
        .check(&parsed);
    assert_eq!(
        check.witnesses,
        [(
            "witness.example.com/w2".to_owned(),
            WitnessMark::Cosigned(1_679_315_147)
        )]
    );
    // The same line on another checkpoint does not verify.
    let (_, other) = our_checkpoint(100);
    let mut moved = other.note.clone();
    moved.signatures.push(parsed.signatures[1].clone());
    let c = WitnessPolicy::new(vec![key], 1).unwrap().check(&moved);
    assert!(c.has_invalid() && !c.met());
}

/// The specification's own examples: the cosigned checkpoint of C2SP tlog-cosignature (its
/// witness line carries the timestamp of the spec's signed-message example) and the request and
/// response bodies of C2SP tlog-witness.
#[test]
fn c2sp_examples_parse() {
    let cosigned = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
    let note = SignedNote::parse(cosigned).unwrap();
    assert_eq!(
        note.to_string(),
        cosigned,
        "read and written back byte for byte"
    );
    let w = &note.signatures[1];
    assert_eq!(w.name, "witness.example.com/w1");
    assert_eq!(hex::encode(w.key_hash), "8d66cf3f");
    assert_eq!(
        w.signature.len(),
        72,
        "u64 timestamp and a 64-byte Ed25519 signature"
    );
    let t = u64::from_be_bytes(w.signature[..8].try_into().unwrap());
    assert_eq!(
        t, 1_679_315_147,
        "the time of the spec's signed-message example"
    );
    // Their parser reads it too.
    let n = Note::from_bytes(cosigned.as_bytes()).unwrap();
    assert_eq!(n.text(), note.text.as_bytes());

    let request = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";
    let req = blackbox_core::witness::AddCheckpoint::parse(request).unwrap();
    assert_eq!(req.old_size, 20_852_014);
    assert_eq!(req.proof.len(), 4);
    assert_eq!(req.checkpoint.checkpoint.size, 20_852_163);
    assert_eq!(req.checkpoint.note.signatures.len(), 2);
    assert_eq!(req.to_text(), request, "written back byte for byte");

    let response = "\u{2014} witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n\u{2014} witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==\n\u{2014} witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n";
    let with = SignedNote::parse(&format!("{}\n{response}", req.checkpoint.note.text)).unwrap();
    assert_eq!(with.signatures.len(), 3);
    assert!(with.signatures.iter().all(|s| s.signature.len() == 72));
}
