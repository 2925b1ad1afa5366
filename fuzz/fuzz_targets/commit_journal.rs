//! The commit journal's reader (ledger/journal.rs; docs/FORMAT.md §19): what a writer reads back
//! from `DATA_DIR/commit.journal` after a crash.
//!
//! Must hold for any bytes: `records` never panics; the records it returns lie within the bytes,
//! in increasing batch numbers, each re-encoding to exactly the bytes it was read from, the first
//! at offset 0 and each next one right after the one before; `decode` of any payload never
//! panics, and what it accepts is entries whose lines hash to their recorded hash and parse as
//! the seq, chain and entry id they are filed under. Bytes followed by garbage read as the same
//! records as without it (a cut or a stale tail never adds or removes a record before it).
#![no_main]

use blackbox_ledger::journal::{decode, encode, records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rs = records(data);
    let mut at = 0usize;
    let mut last = 0u64;
    for r in &rs {
        assert_eq!(r.offset, at, "records are contiguous from offset 0");
        assert!(r.batch > last, "batch numbers increase");
        last = r.batch;
        let rec = encode(r.batch, r.payload);
        assert_eq!(&data[at..at + rec.len()], rec.as_slice());
        at += rec.len();
        if let Ok(chains) = decode(r.payload) {
            for (tenant, entries) in chains {
                for e in entries {
                    let view = blackbox_core::entry::EntryView::parse(&e.line)
                        .expect("an accepted line parses");
                    assert_eq!(view.seq, e.seq);
                    assert_eq!(view.tenant_id, tenant);
                    assert_eq!(view.entry_id.as_bytes(), &e.entry_id);
                    assert_eq!(blackbox_core::Hash::digest(&e.line), e.entry_hash);
                    assert!(e.personal.is_none());
                }
            }
        }
    }
    // Whatever follows the records read does not change them.
    let prefix = &data[..at];
    let again = records(prefix);
    assert_eq!(again, rs);
    // Any payload: decode never panics.
    let _ = decode(data);
});
