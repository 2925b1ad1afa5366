//! Entry lines: `split_line`, `EntryView::parse`, `line_scan::scan`, `scan_envelope`, `check_hmac` and
//! `check_entry` on arbitrary bytes must never panic, the lean scanner must never accept what
//! the full parser refuses, and the streaming verifier must digest whatever they produce.
#![no_main]

use blackbox_core::entry::{EntryView, HmacStatus, check_hmac, split_line};
use blackbox_core::ids::KeyId;
use blackbox_core::keys::{HmacKey, Keyring};
use blackbox_core::verify::{LogVerifier, check_entry};
use libfuzzer_sys::fuzz_target;

fn keyring() -> Keyring {
    let mut ring = Keyring::new();
    if let Ok(id) = KeyId::parse("k1") {
        let _ = ring.push(id, HmacKey::from_bytes([0x42; 32]));
    }
    ring
}

fuzz_target!(|data: &[u8]| {
    let ring = keyring();

    // The whole input as one line.
    if let Some(sc) = blackbox_core::line_scan::scan(data) {
        let view = EntryView::parse(data).expect("the lean scanner accepted a malformed line");
        assert_eq!(sc.seq, view.seq);
        assert_eq!(sc.entry_id, view.entry_id.as_u128());
        assert_eq!(sc.tenant_id, &*view.tenant_id);
        assert_eq!(sc.key_id, &*view.key_id);
        assert_eq!(sc.prev_entry_hash, view.prev_entry_hash);
        assert_eq!(sc.personal_digest, view.personal_digest);
        assert_eq!(sc.hmac, view.hmac);
    }
    let split = split_line(data);
    if let Ok(view) = EntryView::parse(data) {
        let status = check_hmac(data, &view, Some(&ring));
        // A MAC can only verify on a line whose suffix has the fixed layout.
        if status == HmacStatus::Valid {
            assert!(split.is_ok());
        }
        assert_eq!(check_hmac(data, &view, None), HmacStatus::NotChecked);
    }
    // With the key, an authentic line is read without its payload (`scan_envelope`); anything
    // else must be read exactly as without the key.
    let _ = blackbox_core::line_scan::scan_envelope(data);
    let with = check_entry(1, data, Some(data), Some(&ring));
    if with.hmac != HmacStatus::Valid {
        assert_eq!(with.meta, check_entry(1, data, Some(data), None).meta);
    }

    // The input as a log: one entry per line, fed in order (with and without the key).
    for keys in [Some(&ring), None] {
        let mut v = LogVerifier::new(keys.is_some(), None);
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            let sidecar = (i % 3 == 2).then_some(line);
            v.feed(check_entry(i as u64 + 1, line, sidecar, keys));
        }
        let report = v.finish();
        assert!(report.findings.len() as u64 <= report.findings_total);
    }
});
