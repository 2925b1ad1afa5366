//! Keyring text (plain and forward-secure `fss` lines, docs/FORMAT.md §11 and §17):
//! `Keyring::parse` on arbitrary text must never panic, what parses must serialise to text that
//! parses to the same keyring, and looking up any key id (epoch ids included) must never panic.
#![no_main]

use blackbox_core::keys::Keyring;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ring) = Keyring::parse(text) else {
        return;
    };
    let again = Keyring::parse(&ring.to_secret_text()).expect("a keyring's own text must parse");
    assert_eq!(again.to_secret_text(), ring.to_secret_text());
    let _ = ring.current();
    for line in text.lines() {
        for word in line.split(' ') {
            let _ = ring.lookup(word);
            let _ = ring.lookup(&format!("{word}-e7"));
        }
    }
    let mut merged = ring.clone();
    let _ = merged.merge(&again);
    let _ = ring.advanced_for(i64::MAX);
});
