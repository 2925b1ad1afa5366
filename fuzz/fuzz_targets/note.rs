//! C2SP signed notes and cosignatures (core/note.rs): `SignedNote::parse` on arbitrary text must
//! never panic and must print back exactly what it parsed (base64 is canonical, so a note has one
//! textual form); a note's text signed by a second key (a cosignature) must verify with either
//! key; an added or altered signature must never verify for a key it was not made with.
#![no_main]

use blackbox_core::note::{NoteSigner, SignedNote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (Ok(log), Ok(witness)) = (
        NoteSigner::new("blackbox/fuzz", [7; 32]),
        NoteSigner::new("witness.example/w1", [9; 32]),
    ) else {
        return;
    };
    if let Ok(note) = SignedNote::parse(text) {
        assert_eq!(
            note.to_string(),
            text,
            "a parsed note must print back as it was"
        );
        assert_eq!(
            SignedNote::parse(&note.to_string()).ok().as_ref(),
            Some(&note)
        );
        // A note signed by neither key verifies with neither.
        let _ = note.verify(&log.verifier());
        // Cosign: the same text signed by the log and then by a witness, signatures appended.
        if let (Ok(by_log), Ok(by_witness)) =
            (log.sign_note(&note.text), witness.sign_note(&note.text))
        {
            let mut cosigned = by_log.clone();
            cosigned
                .signatures
                .extend(by_witness.signatures.iter().cloned());
            let printed = cosigned.to_string();
            let again = SignedNote::parse(&printed).expect("a cosigned note must parse");
            assert!(again.verify(&log.verifier()).is_ok());
            assert!(again.verify(&witness.verifier()).is_ok());
            // The parsed note's own signatures, pretending to be the log's, must not verify.
            // (Ed25519 signing is deterministic: the log's own signature of this text is skipped.)
            let mut forged = by_log.clone();
            for sig in note
                .signatures
                .iter()
                .filter(|s| s.signature != by_log.signatures[0].signature)
            {
                let mut s = sig.clone();
                s.name = log.name().to_owned();
                s.key_hash = log.verifier().key_hash();
                forged.signatures = vec![s];
                assert!(
                    forged.verify(&log.verifier()).is_err(),
                    "a foreign signature verified"
                );
            }
        }
    }
    // Signing arbitrary text either refuses it or yields a note that parses and verifies.
    if let Ok(signed) = log.sign(text) {
        let note = SignedNote::parse(&signed).expect("a note we signed must parse");
        assert_eq!(note.text, text);
        assert!(note.verify(&log.verifier()).is_ok());
        assert!(note.verify(&witness.verifier()).is_err());
    }
});
