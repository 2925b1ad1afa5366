//! The witness protocol and cosignatures (core/witness.rs, cosignature.rs: what `blackbox witness
//! serve` reads from any log on the network, and what verifiers read from checkpoints).
//!
//! 1. `AddCheckpoint::parse` on arbitrary text never panics, and what parses prints back to the
//!    same text; `check_add_checkpoint` on it, against no record and against a real record, never
//!    panics and accepts nothing signed by a key other than the trusted one.
//! 2. `CosignerKey::from_vkey` never panics; a key that parses prints back to the same string.
//! 3. Cosignature lines from the input never verify for the fuzz witness (they were not made with
//!    its key); the fuzz witness's own cosignature of the input's checkpoint text always does, and
//!    stops doing so when one byte of the text changes.
#![no_main]

use blackbox_core::Hash;
use blackbox_core::checkpoint::{Checkpoint, SignedCheckpoint};
use blackbox_core::cosignature::{Cosigner, CosignerKey, WitnessMark, WitnessPolicy};
use blackbox_core::note::{NoteSigner, SignedNote};
use blackbox_core::witness::{AddCheckpoint, WitnessRecord, check_add_checkpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (Ok(log), Ok(witness)) = (
        NoteSigner::new("blackbox/fuzz", [7; 32]),
        Cosigner::new("witness.example/w1", [9; 32]),
    ) else {
        return;
    };
    let trusted = vec![log.verifier()];
    if let Ok(req) = AddCheckpoint::parse(text) {
        assert_eq!(req.to_text(), text, "a parsed request must print back as it was");
        // Nothing in the input is signed by the fuzz log key (it signs no corpus file).
        let signed_by_log = req.checkpoint.verify(&log.verifier()).is_ok();
        for record in [
            None,
            Some(WitnessRecord {
                size: 3,
                root: Hash::digest(b"three"),
            }),
        ] {
            let r = check_add_checkpoint(&req, &trusted, record.as_ref());
            if !signed_by_log {
                assert!(r.is_err(), "accepted a checkpoint the trusted key did not sign");
            }
        }
    }
    if let Ok(k) = CosignerKey::from_vkey(text) {
        assert_eq!(k.to_vkey(), text.trim());
    }
    // The input as a note: none of its lines is the fuzz witness's cosignature.
    if let Ok(note) = SignedNote::parse(text) {
        let policy = WitnessPolicy::new(vec![witness.key().clone()], 1).expect("one witness");
        let c = policy.check(&note);
        assert!(
            !matches!(c.witnesses[0].1, WitnessMark::Cosigned(_)),
            "a line of the input verified as the fuzz witness's cosignature"
        );
    }
    // The input as the extension line of a checkpoint the fuzz log signs and the witness cosigns.
    let line: String = text.chars().filter(|c| *c >= ' ').take(200).collect();
    if line.is_empty() {
        return;
    }
    let cp = Checkpoint {
        origin: "blackbox/fuzz/acme".into(),
        size: 9,
        root: Hash::digest(data),
        extensions: vec![line],
    };
    let Ok(sc) = SignedCheckpoint::sign(cp, &log) else {
        return;
    };
    let time = u64::from(data.first().copied().unwrap_or(0)) << 24;
    let sig = witness.cosign(&sc.note.text, time).expect("checkpoint text ends in a newline");
    assert_eq!(witness.key().verify(&sc.note.text, &sig), Ok(time));
    let mut altered = sc.note.text.clone().into_bytes();
    let at = usize::from(data.get(1).copied().unwrap_or(0)) % altered.len();
    altered[at] ^= 1;
    if let Ok(altered) = String::from_utf8(altered) {
        assert!(witness.key().verify(&altered, &sig).is_err(), "a cosignature verified over another text");
    }
});
