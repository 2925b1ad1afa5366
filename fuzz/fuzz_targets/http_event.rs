//! Event bodies as the HTTP intake reads them (`POST /v1/events`, docs/API.md): one JSON event,
//! a JSON array of events, or NDJSON, read by `blackbox_core::json`'s strict reader and
//! normalised with a token's origin (an audited client, not the service).
//!
//! Must hold: nothing panics; a client's event is never of a reserved type (FORMAT.md §3) and
//! always carries its token's origin; what a client may send the service may also send, with
//! the same result but for the origin; every accepted event seals into a line that parses back
//! with the same envelope, payload and origin, and whose HMAC verifies.
#![no_main]

use blackbox_core::Hash;
use blackbox_core::entry::{
    EntryView, GENESIS_HASH, HmacStatus, NormalizedEvent, RedactionPolicy, SealParams, check_hmac,
    make_sidecar, next_entry_id, seal,
};
use blackbox_core::event::normalize_json;
use blackbox_core::ids::{KeyId, TenantId};
use blackbox_core::keys::{HmacKey, Keyring};
use blackbox_core::origin::{Origin, is_reserved};
use blackbox_core::verify::{SidecarStatus, check_entry};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fn check_one(text: &[u8], token: &Origin, policy: &RedactionPolicy) {
    let as_client = normalize_json(text, policy, token);
    let as_service = normalize_json(text, policy, &Origin::Service);
    let Ok(ev) = as_client else {
        return;
    };
    assert!(
        !is_reserved(ev.event_type.as_str()),
        "a client wrote the reserved type {}",
        ev.event_type.as_str()
    );
    assert_eq!(ev.origin.as_ref(), Some(token));
    let service = as_service.expect("the service must accept what a client may send");
    assert_eq!(
        NormalizedEvent {
            origin: None,
            ..ev.clone()
        },
        NormalizedEvent {
            origin: None,
            ..service
        }
    );
    seal_and_read_back(&ev);
}

fn seal_and_read_back(ev: &NormalizedEvent) {
    let (Ok(default_tenant), Ok(key_id)) = (TenantId::parse("tenant_fuzz"), KeyId::parse("k1"))
    else {
        return;
    };
    let tenant = ev.tenant_id.clone().unwrap_or(default_tenant);
    let key = HmacKey::from_bytes([0x42; 32]);
    let mut ring = Keyring::new();
    let _ = ring.push(key_id.clone(), key.clone());
    let sidecar = ev
        .personal
        .as_ref()
        .map(|fields| make_sidecar(fields, [1; 32]).expect("a sidecar always serialises"));
    let ts = ev.timestamp_ms.unwrap_or(1_776_189_600_123);
    let sealed = seal(
        ev,
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
    assert_eq!(&*view.tenant_id, tenant.as_str());
    assert_eq!(&*view.agent_id, ev.agent_id.as_str());
    assert_eq!(&*view.session_id, ev.session_id.as_str());
    assert_eq!(&*view.event_type, ev.event_type.as_str());
    assert_eq!(view.client_seq, ev.client_seq);
    assert_eq!(view.origin.as_ref(), ev.origin.as_ref());
    let sc = sidecar.as_ref().map(|s| s.bytes.as_slice());
    let checked = check_entry(1, &sealed.line, sc, Some(&ring));
    assert_eq!(checked.hmac, HmacStatus::Valid);
    assert!(checked.meta.is_ok());
    let want = if sidecar.is_some() {
        SidecarStatus::Valid
    } else {
        SidecarStatus::None
    };
    assert_eq!(checked.sidecar, want);
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = Origin::token("tok_fuzz", "ingest", "http") else {
        return;
    };
    let policy = RedactionPolicy::default();
    // application/json: one event, or an array of them.
    let trimmed = data.trim_ascii_start();
    if trimmed.first() == Some(&b'[') {
        if let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(data) {
            for item in items.iter().take(64) {
                check_one(item.get().as_bytes(), &token, &policy);
            }
        }
    } else {
        check_one(data, &token, &policy);
    }
    // application/x-ndjson: one event per line (a trailing CR is dropped, blank lines skipped).
    for line in data.split(|&b| b == b'\n').take(64) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            check_one(line, &token, &policy);
        }
    }
});
