//! Inclusion and consistency proof documents, log slices and C2SP tlog-proofs (core/proof.rs,
//! tlog_proof.rs: what `blackbox verify-proof` reads).
//!
//! 1. `verify_proof_document` on arbitrary text must never panic, and must accept nothing
//!    unless its checkpoints carry a valid signature of the key (the fuzz key below signs no
//!    corpus file, so for raw input it must refuse everything but documents it signed itself).
//! 2. Proofs built from the input (a tree of up to 64 leaves, an index, an old size) with the
//!    real prover must verify; the same document with one byte changed must either be refused
//!    or prove the very same statement (a change of JSON spelling only).
#![no_main]

use blackbox_core::Hash;
use blackbox_core::checkpoint::{Checkpoint, SignedCheckpoint};
use blackbox_core::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root_from_leaf_hashes,
};
use blackbox_core::note::NoteSigner;
use blackbox_core::proof::{
    CONSISTENCY_TYPE, ConsistencyProof, INCLUSION_TYPE, InclusionProof, Proven,
    verify_proof_document,
};
use libfuzzer_sys::fuzz_target;

const TENANT: &str = "acme";

/// Hash of the perfect subtree of `2^level` leaves starting at `start`.
fn subtree(leaves: &[Hash], start: u64, level: u8) -> Result<Hash, ()> {
    let n = 1usize.checked_shl(u32::from(level)).ok_or(())?;
    let s = usize::try_from(start).map_err(|_| ())?;
    let part = leaves.get(s..s.checked_add(n).ok_or(())?).ok_or(())?;
    Ok(root_from_leaf_hashes(part))
}

fn signed(signer: &NoteSigner, size: u64, root: Hash) -> Option<String> {
    let cp = Checkpoint {
        origin: format!("blackbox.example/log/{TENANT}"),
        size,
        root,
        extensions: Vec::new(),
    };
    SignedCheckpoint::sign(cp, signer)
        .ok()
        .map(|c| c.note_text())
}

/// What a proof binds: without the entry line, an inclusion proof's `entry_id` is only a label
/// (the leaf is the entry hash), so it is left out of the comparison.
fn unbound(p: Proven) -> Proven {
    match p {
        Proven::Inclusion {
            tenant_id,
            seq,
            tree_size,
            entry_checked: false,
            ..
        } => Proven::Inclusion {
            tenant_id,
            seq,
            entry_id: String::new(),
            tree_size,
            entry_checked: false,
        },
        other => other,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(signer) = NoteSigner::new("blackbox/fuzz-proof", [11; 32]) else {
        return;
    };
    let verifier = signer.verifier();
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(
            verify_proof_document(text, &verifier).is_err(),
            "a proof no one signed with the fuzz key verified"
        );
    }

    // Structured: a tree from the input.
    let [a, b, c, rest @ ..] = data else {
        return;
    };
    let size = u64::from(*a % 64) + 1;
    let index = u64::from(*b) % size;
    let old = u64::from(*c) % size + 1;
    let leaves: Vec<Hash> = (0..size)
        .map(|i| leaf_hash(&[&i.to_be_bytes()[..], rest].concat()))
        .collect();
    let root = root_from_leaf_hashes(&leaves);
    // The perfect-subtree callback agrees with the plain root for perfect trees.
    if size.is_power_of_two() && size > 1 {
        let half = (size / 2) as usize;
        assert_eq!(
            node_hash(
                &root_from_leaf_hashes(&leaves[..half]),
                &root_from_leaf_hashes(&leaves[half..])
            ),
            root
        );
    }
    let Some(cp_new) = signed(&signer, size, root) else {
        return;
    };
    let entry_hash = Hash::digest(&[&index.to_be_bytes()[..], rest].concat());
    let mut leaves_inc = leaves.clone();
    leaves_inc[index as usize] = leaf_hash(entry_hash.as_bytes());
    let root_inc = root_from_leaf_hashes(&leaves_inc);
    let Some(cp_inc) = signed(&signer, size, root_inc) else {
        return;
    };
    let path = inclusion_proof(index, size, |s, l| subtree(&leaves_inc, s, l)).expect("in range");
    let inclusion = InclusionProof {
        kind: INCLUSION_TYPE.to_owned(),
        tenant_id: TENANT.to_owned(),
        entry_id: "0190d5e0-0000-7000-8000-000000000000".to_owned(),
        seq: index + 1,
        entry_hash: entry_hash.to_prefixed(),
        entry: None,
        tree_size: size,
        hashes: path.iter().map(Hash::to_base64).collect(),
        checkpoint: cp_inc,
    };
    let old_root = root_from_leaf_hashes(&leaves[..old as usize]);
    let Some(cp_old) = signed(&signer, old, old_root) else {
        return;
    };
    let cons = consistency_proof(old, size, |s, l| subtree(&leaves, s, l)).expect("valid sizes");
    let consistency = ConsistencyProof {
        kind: CONSISTENCY_TYPE.to_owned(),
        tenant_id: TENANT.to_owned(),
        old_size: old,
        new_size: size,
        old_checkpoint: cp_old,
        new_checkpoint: cp_new,
        hashes: cons.iter().map(Hash::to_base64).collect(),
    };
    let docs = [
        serde_json::to_string(&inclusion).expect("serialises"),
        serde_json::to_string(&consistency).expect("serialises"),
    ];
    for doc in docs {
        let proven =
            verify_proof_document(&doc, &verifier).expect("a proof the prover made must verify");
        // One byte changed (position and value from the input).
        let mut bytes = doc.into_bytes();
        let at = usize::from(*b) * 7 % bytes.len();
        bytes[at] ^= c | 1;
        if let Ok(mutated) = std::str::from_utf8(&bytes) {
            if let Ok(other) = verify_proof_document(mutated, &verifier) {
                assert_eq!(
                    unbound(other),
                    unbound(proven.clone()),
                    "a changed proof document proved something else"
                );
            }
        }
    }
});
