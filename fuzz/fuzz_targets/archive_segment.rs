//! Archive segments read back (archive/segment.rs, docs/FORMAT.md §8): a zstd frame of JSONL
//! that must verify on its own. The input is taken as the object's bytes when it starts with
//! the zstd magic number, otherwise as the JSONL inside (compressed here), so mutations reach
//! both the decompressor and the verifier. Keys are the golden example's (crates/core/tests/
//! data/golden/example.json), so golden lines in the corpus verify.
//!
//! Must hold: nothing panics; a segment accepted with the HMAC keys is also accepted without
//! them (the keyless check is weaker, never stricter); bytes that do not hash to the recorded
//! SHA-256 are refused; and an accepted segment claimed for one more entry is refused.
#![no_main]

use blackbox_archive::segment::{check, compress, entry_written_ms, object_name, tenant_dir};
use blackbox_core::Hash;
use blackbox_core::entry::EntryView;
use blackbox_core::ids::KeyId;
use blackbox_core::keys::{HmacKey, Keyring};
use blackbox_core::note::NoteVerifier;
use libfuzzer_sys::fuzz_target;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GOLDEN_VKEY: &str = "blackbox/example+87bcb260+ASmsuuFBvMrwsi4alNNNC8c2HlJtC/4SyJeUvJMilm3X";

fn golden_keys() -> Option<(Keyring, NoteVerifier)> {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut ring = Keyring::new();
    ring.push(KeyId::parse("k1").ok()?, HmacKey::from_bytes(key))
        .ok()?;
    Some((ring, NoteVerifier::from_vkey(GOLDEN_VKEY).ok()?))
}

fuzz_target!(|data: &[u8]| {
    let Some((ring, verifier)) = golden_keys() else {
        return;
    };
    let (object, jsonl) = if data.starts_with(&ZSTD_MAGIC) {
        (data.to_vec(), None)
    } else {
        let Ok(z) = compress(data) else {
            return;
        };
        (z, Some(data))
    };
    // What the segment claims to hold: the tenant and seq range of the entries in it.
    let mut tenant = String::from("acme");
    let (mut first, mut last) = (u64::MAX, 0u64);
    if let Some(text) = jsonl {
        for line in text.split(|&b| b == b'\n') {
            let _ = entry_written_ms(line);
            if let Ok(v) = EntryView::parse(line) {
                if first == u64::MAX {
                    tenant = v.tenant_id.to_string();
                }
                first = first.min(v.seq);
                last = last.max(v.seq);
            }
        }
    }
    if first == u64::MAX || first == 0 || last < first {
        (first, last) = (1, 1);
    }
    let dir = tenant_dir(&tenant);
    assert!(
        dir.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-~".contains(&b))
    );
    let name = object_name(&tenant, first, last);
    let sha = Hash::digest(&object);
    let keyed = check(
        &name,
        object.clone(),
        &sha,
        &tenant,
        first,
        last,
        Some(&ring),
        &verifier,
    );
    let keyless = check(
        &name,
        object.clone(),
        &sha,
        &tenant,
        first,
        last,
        None,
        &verifier,
    );
    if keyed.is_ok() {
        assert!(
            keyless.is_ok(),
            "accepted with the keys, refused without: {keyless:?}"
        );
        let other = Hash::digest(b"another object");
        assert!(
            check(
                &name,
                object.clone(),
                &other,
                &tenant,
                first,
                last,
                None,
                &verifier
            )
            .is_err()
        );
        if let Some(more) = last.checked_add(1) {
            assert!(check(&name, object, &sha, &tenant, first, more, None, &verifier).is_err());
        }
    }
});
