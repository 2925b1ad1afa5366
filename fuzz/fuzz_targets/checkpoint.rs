//! Checkpoints and verifier keys: `SignedCheckpoint::parse`, `Checkpoint::parse_text` and
//! `NoteVerifier::from_vkey` on arbitrary UTF-8 must never panic; what parses must print back
//! to the same text.
#![no_main]

use blackbox_core::checkpoint::{Checkpoint, SignedCheckpoint};
use blackbox_core::note::{NoteSigner, NoteVerifier};
use blackbox_core::verify::LogVerifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cp) = Checkpoint::parse_text(text) {
        assert_eq!(cp.to_text(), text);
    }
    if let Ok(sc) = SignedCheckpoint::parse(text) {
        assert_eq!(sc.note_text(), text);
        if let Ok(signer) = NoteSigner::new("blackbox/fuzz", [7; 32]) {
            let _ = sc.verify(&signer.verifier());
        }
    }
    if let Ok(v) = NoteVerifier::from_vkey(text) {
        let _ = v.to_vkey();
        let _ = v.fingerprint();
    }
    // The verifier must take any checkpoint text as a finding, never a panic.
    let mut lv = LogVerifier::new(false, None);
    lv.add_checkpoint(1, text, false);
    lv.add_checkpoint(2, text, true);
    let _ = lv.finish();
});
