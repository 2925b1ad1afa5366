//! Agent events: `normalize_json` and `normalize_event` on arbitrary bytes must never panic and
//! must agree, and every event that is accepted must seal into a line that parses back and
//! verifies.
#![no_main]

use blackbox_core::Hash;
use blackbox_core::entry::{
    EntryView, GENESIS_HASH, HmacStatus, RedactionPolicy, SealParams, check_hmac, make_sidecar,
    next_entry_id, normalize_event, seal,
};
use blackbox_core::ids::{KeyId, TenantId};
use blackbox_core::keys::{HmacKey, Keyring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Reading the text directly and reading it through a `Value` (with the same input rules:
    // a duplicate key is refused by both) must agree.
    let from_text = blackbox_core::event::normalize_json(
        data,
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    );
    let Ok(value) = blackbox_core::json::read_value(data) else {
        assert!(from_text.is_err());
        return;
    };
    let from_value = normalize_event(
        value,
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    );
    match (&from_text, &from_value) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("normalize_json and normalize_event disagree: {from_text:?} / {from_value:?}"),
    }
    let Ok(ev) = from_value else {
        return;
    };
    let (Ok(tenant), Ok(key_id)) = (TenantId::parse("tenant_fuzz"), KeyId::parse("k1")) else {
        return;
    };
    let tenant = ev.tenant_id.clone().unwrap_or(tenant);
    let key = HmacKey::from_bytes([0x42; 32]);
    let mut ring = Keyring::new();
    let _ = ring.push(key_id.clone(), key.clone());
    let sidecar = ev
        .personal
        .as_ref()
        .map(|fields| make_sidecar(fields, [1; 32]).expect("a sidecar always serialises"));
    let ts = ev.timestamp_ms.unwrap_or(1_776_189_600_123);
    let sealed = seal(
        &ev,
        &SealParams {
            tenant_id: &tenant,
            seq: 1,
            entry_id: next_entry_id(None, u64::try_from(ts).unwrap_or(0), [3; 10]),
            timestamp_ms: ts,
            key_id: &key_id,
            key: &key,
            prev_entry_hash: GENESIS_HASH,
            personal_digest: sidecar.as_ref().map(|s| s.digest),
            clock_skew_ms: None,
        },
    )
    // seal refuses only timestamps jiff cannot format, and parse_timestamp never yields one.
    .expect("an accepted event always seals");
    let view = EntryView::parse(&sealed.line).expect("a sealed line parses");
    assert_eq!(
        check_hmac(&sealed.line, &view, Some(&ring)),
        HmacStatus::Valid
    );
    assert_eq!(sealed.entry_hash, Hash::digest(&sealed.line));
    assert_eq!(view.payload.get().as_bytes(), &ev.payload_jcs[..]);
});
