//! Anchor records: `Anchor::parse` on arbitrary bytes must never panic; what parses must print
//! as a line that parses back to the same anchor, and the verifier must take any anchor line as
//! a finding or a chain start, never a panic.
#![no_main]

use blackbox_core::anchor::Anchor;
use blackbox_core::note::NoteSigner;
use blackbox_core::verify::LogVerifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Anchor::parse(data) {
        let line = a.to_line();
        assert_eq!(Anchor::parse(line.as_bytes()).ok(), Some(a.clone()));
        let _ = a.check();
        if let Ok(signer) = NoteSigner::new("blackbox/fuzz", [7; 32]) {
            let _ = a.verify(&signer.verifier());
        }
    }
    let mut lv = LogVerifier::new(false, None);
    lv.add_anchor_line(1, data);
    lv.add_anchor_line(2, data);
    let _ = lv.finish();
});
