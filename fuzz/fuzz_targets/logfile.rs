//! Exported JSONL logs read as a store (export/logfile.rs, `LogFileStore::parse`): what
//! `blackbox export reperform` reads from an auditor's bundle, which anyone may have edited.
//!
//! Must hold: nothing panics; a log that loads keeps each chain's entries in seq order without
//! gaps from where it starts (genesis or an anchor), its head is its last entry, every entry is
//! found by its id (ids are unique), and scanning from any seq gives the entries from there in
//! order.
#![no_main]

use blackbox_export::logfile::LogFileStore;
use blackbox_store::Store;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(log) = LogFileStore::parse(data) else {
        return;
    };
    for head in log.chains().unwrap() {
        let t = head.tenant_id.as_str();
        let start = log.anchor(t).unwrap().map_or(0, |a| a.size);
        let mut expected = start + 1;
        let mut last = None;
        log.scan(t, 1, u64::MAX, &mut |e| {
            assert_eq!(e.seq, expected, "entries in seq order without gaps");
            expected += 1;
            let id = blackbox_core::entry::EntryView::parse(&e.line)
                .unwrap()
                .entry_id;
            let found = log.entry_by_id(id.as_bytes()).unwrap();
            assert!(found.is_some_and(|f| f.line == e.line), "entry ids are unique");
            last = Some(e.entry_hash);
            Ok(true)
        })
        .unwrap();
        assert_eq!(head.size, expected - 1);
        if let Some(h) = last {
            assert_eq!(head.head_hash, h);
        }
        let mid = start + (head.size - start) / 2 + 1;
        let mut first = None;
        log.scan(t, mid, u64::MAX, &mut |e| {
            first.get_or_insert(e.seq);
            Ok(true)
        })
        .unwrap();
        assert!(first.is_none_or(|s| s == mid), "a scan from {mid} starts at {first:?}");
    }
});
