//! OTLP request bodies (docs/OTEL.md): protobuf and OTLP/JSON decoding of trace and log exports,
//! the GenAI mapping and gzip must never panic; every item is accounted for (appended, refused
//! or skipped); and no event the mapping builds keeps raw content once normalised with the
//! intake's redaction lists.
#![no_main]

use blackbox_core::entry::RedactionPolicy;
use blackbox_core::event::normalize_inspect;
use blackbox_otel::{
    CONTENT_FIELDS, Encoding, MapOptions, decode_logs, decode_traces, gunzip, map_logs, map_traces,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let enc = if sel & 1 == 0 {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let opts = MapOptions {
        keep_other: sel & 2 != 0,
    };
    if sel & 8 != 0 {
        if let Ok(out) = gunzip(body, 1 << 16) {
            assert!(out.len() <= 1 << 16);
        }
        return;
    }
    let (traces, logs);
    let m = if sel & 4 == 0 {
        let Ok(r) = decode_traces(body, enc) else {
            return;
        };
        traces = r;
        map_traces(&traces, opts)
    } else {
        let Ok(r) = decode_logs(body, enc) else {
            return;
        };
        logs = r;
        map_logs(&logs, opts)
    };
    assert_eq!(m.items.len() + m.rejected.len() + m.skipped, m.total);
    let mut policy = RedactionPolicy::default();
    for f in CONTENT_FIELDS {
        policy.raw_fields.insert(f.to_owned());
        policy.personal_fields.remove(f);
    }
    let origin = blackbox_core::origin::Origin::token("0123456789abcdef", "ingest", "otlp")
        .expect("a valid origin");
    for item in &m.items {
        if let Ok(ev) = normalize_inspect(item.event.clone(), &policy, &origin, &mut |_, _| {}) {
            let payload: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&ev.payload_jcs).expect("the payload is JSON");
            for f in CONTENT_FIELDS {
                assert!(!payload.contains_key(f), "raw `{f}` kept");
            }
        }
    }
});
