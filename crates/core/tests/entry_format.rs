//! Entry format v1: `normalize_event` (validation, redaction, personal data), `seal` (the exact
//! bytes, HMAC, entry hash), `next_entry_id`, and parsers that must never panic.
// Test helpers outside #[test] functions unwrap too (clippy.toml only covers the tests).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use blackbox_core::Error;
use blackbox_core::Hash;
use blackbox_core::checkpoint::{Checkpoint, SignedCheckpoint};
use blackbox_core::entry::{
    EntryView, GENESIS_HASH, HmacStatus, NormalizedEvent, RedactionPolicy, SealParams, check_hmac,
    content_hash, make_sidecar, next_entry_id, normalize_event, seal, split_line, uuid_millis,
};
use blackbox_core::ids::{KeyId, MAX_SAFE_INTEGER, TenantId};
use blackbox_core::keys::{HmacKey, Keyring};
use blackbox_core::note::NoteVerifier;
use blackbox_core::verify::check_entry;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

const RAW_FIELDS: [&str; 7] = [
    "prompt",
    "completion",
    "messages",
    "query",
    "content",
    "result_data",
    "args_raw",
];

fn norm(ev: Value) -> Result<NormalizedEvent, Error> {
    normalize_event(
        ev,
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
}

fn event(event_type: &str, payload: Value) -> Value {
    json!({
        "agent_id": "moltbot-agent-prod-01",
        "session_id": "sess_abc123",
        "event_type": event_type,
        "payload": payload,
    })
}

fn payload_of(ev: &NormalizedEvent) -> Value {
    serde_json::from_slice(&ev.payload_jcs).unwrap()
}

/// The field named by a `Field` error.
#[track_caller]
fn field_error(r: Result<NormalizedEvent, Error>) -> String {
    match r {
        Err(Error::Field(fe)) => fe.field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

/// The documented rule, computed here independently of the crate: SHA-256 of the UTF-8 text for
/// strings, of the RFC 8785 bytes for any other value.
fn expected_hash(v: &Value) -> String {
    let digest = match v {
        Value::String(s) => Sha256::digest(s.as_bytes()),
        other => Sha256::digest(serde_json_canonicalizer::to_vec(other).unwrap()),
    };
    format!("sha256:{}", hex::encode(digest))
}

// ---------------------------------------------------------------------------------------------
// normalize_event: redaction.

#[test]
fn known_sha256_value_for_a_redacted_prompt() {
    let ev = norm(event("custom", json!({"prompt": "hello"}))).unwrap();
    assert_eq!(
        payload_of(&ev),
        // SHA-256("hello"), a well-known value.
        json!({"prompt_hash": "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"})
    );
    // A non-string value: the hash of its RFC 8785 form, key order and spacing do not matter.
    let ev = norm(event(
        "custom",
        json!({"args_raw": {"b": [1, 2.50], "a": "x"}}),
    ))
    .unwrap();
    let want = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(br#"{"a":"x","b":[1,2.5]}"#))
    );
    assert_eq!(payload_of(&ev)["args_raw_hash"], json!(want));
}

#[test]
fn every_raw_field_is_redacted_at_any_depth() {
    let values = [
        json!("Summarise the orders of Jane Doe \u{1F600}\n"),
        json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]),
        json!({"q": "orders", "top_k": 5, "nested": {"x": null}}),
        json!(42),
        json!(true),
        json!(null),
    ];
    for field in RAW_FIELDS {
        for value in &values {
            let want = expected_hash(value);
            assert_eq!(content_hash(value).unwrap().to_prefixed(), want);
            let hashed = format!("{field}_hash");
            // Top level of the payload, nested in an object, in an array, three levels deep.
            let payloads = [
                (json!({ field: value }), vec![]),
                (json!({"outer": { field: value }}), vec!["outer"]),
                (json!({"list": [{ field: value }]}), vec!["list", "0"]),
                (
                    json!({"a": {"b": [{"c": { field: value, "keep": 1 }}]}}),
                    vec!["a", "b", "0", "c"],
                ),
            ];
            for (payload, path) in payloads {
                let ev = norm(event("custom", payload.clone())).unwrap();
                let mut p = payload_of(&ev);
                for step in &path {
                    p = match step.parse::<usize>() {
                        Ok(i) => p[i].clone(),
                        Err(_) => p[*step].clone(),
                    };
                }
                assert!(p.get(field).is_none(), "{field} kept in {payload}");
                assert_eq!(p[&hashed], json!(want), "{field} in {payload}");
                // Nothing of a raw string value is left anywhere in the bytes.
                if let Value::String(s) = value {
                    let text = String::from_utf8(ev.payload_jcs.clone()).unwrap();
                    assert!(!text.contains("Jane Doe"), "{text}");
                    assert!(!text.contains(&s[..5]), "{text}");
                }
            }
        }
    }
}

#[test]
fn raw_fields_at_the_top_level_of_the_event_are_moved_and_redacted() {
    let mut ev = event("custom", json!({}));
    ev["prompt"] = json!("secret prompt");
    let n = norm(ev).unwrap();
    assert_eq!(
        payload_of(&n),
        json!({"prompt_hash": expected_hash(&json!("secret prompt"))})
    );
}

#[test]
fn raw_field_inside_a_raw_field_is_hashed_with_its_parent() {
    // `messages` is replaced as a whole: the inner `content` is part of what is hashed.
    let messages = json!([{"role": "user", "content": "hi"}]);
    let n = norm(event("custom", json!({ "messages": messages }))).unwrap();
    assert_eq!(
        payload_of(&n),
        json!({"messages_hash": expected_hash(&messages)})
    );
}

#[test]
fn custom_policy_is_honoured() {
    let policy = RedactionPolicy {
        raw_fields: ["secret".to_owned()].into_iter().collect(),
        personal_fields: ["email".to_owned()].into_iter().collect(),
    };
    let mut ev = event(
        "custom",
        json!({"secret": "s", "prompt": "kept", "email": "a@b"}),
    );
    ev["email"] = json!("top@b");
    let n = normalize_event(ev, &policy, &blackbox_core::origin::Origin::Service).unwrap();
    assert_eq!(
        payload_of(&n),
        json!({"prompt": "kept", "secret_hash": expected_hash(&json!("s"))})
    );
    let personal = n.personal.unwrap();
    assert_eq!(personal["email"], json!("top@b"));
    assert_eq!(personal["payload.email"], json!("a@b"));
    assert!(n.subject_ids.is_empty());
}

#[test]
fn already_hashed_values_are_kept() {
    let h = Hash::digest(b"some prompt").to_prefixed();
    let n = norm(event(
        "custom",
        json!({"prompt": h, "nested": {"content": h}}),
    ))
    .unwrap();
    assert_eq!(
        payload_of(&n),
        json!({"prompt_hash": h, "nested": {"content_hash": h}})
    );
    // The same digest given both ways is not a conflict.
    let n = norm(event(
        "custom",
        json!({"prompt": "abc", "prompt_hash": Hash::digest(b"abc").to_prefixed()}),
    ))
    .unwrap();
    assert_eq!(
        payload_of(&n),
        json!({"prompt_hash": Hash::digest(b"abc").to_prefixed()})
    );
    // A `_hash` field alone is left as sent.
    let n = norm(event("custom", json!({"completion_hash": h}))).unwrap();
    assert_eq!(payload_of(&n), json!({"completion_hash": h}));
    // Upper-case hex is not a digest in the documented form: it is hashed like any string.
    let upper = h.to_uppercase().replacen("SHA256", "sha256", 1);
    let n = norm(event("custom", json!({"prompt": upper}))).unwrap();
    assert_eq!(
        payload_of(&n)["prompt_hash"],
        json!(expected_hash(&json!(upper)))
    );
}

#[test]
fn raw_and_hash_that_differ_are_a_conflict() {
    let other = Hash::digest(b"something else").to_prefixed();
    let r = norm(event(
        "custom",
        json!({"prompt": "abc", "prompt_hash": other}),
    ));
    assert_eq!(field_error(r), "payload.prompt_hash");
    let r = norm(event(
        "custom",
        json!({"deep": [{"query": "q", "query_hash": other}]}),
    ));
    assert_eq!(field_error(r), "payload.deep[0].query_hash");
    let r = norm(event(
        "custom",
        json!({"args_raw": "x", "args_raw_hash": 5}),
    ));
    assert!(matches!(r, Err(Error::Field(_))), "{r:?}");
}

#[test]
fn a_raw_name_ending_in_hash_is_hashed_once_and_conflicts_are_still_found() {
    // `secret_hash` is itself raw content here: `secret` becomes `secret_hash` (compared with
    // the given `secret_hash`, which becomes `secret_hash_hash`).
    let policy = RedactionPolicy {
        raw_fields: ["secret".to_owned(), "secret_hash".to_owned()]
            .into_iter()
            .collect(),
        personal_fields: std::collections::BTreeSet::new(),
    };
    let origin = blackbox_core::origin::Origin::Service;
    let n = normalize_event(
        event("custom", json!({"secret_hash": "x"})),
        &policy,
        &origin,
    )
    .unwrap();
    assert_eq!(
        payload_of(&n),
        json!({"secret_hash_hash": expected_hash(&json!("x"))})
    );
    let r = normalize_event(
        event("custom", json!({"secret": "s", "secret_hash": "t"})),
        &policy,
        &origin,
    );
    assert_eq!(field_error(r), "payload.secret_hash");
}

// ---------------------------------------------------------------------------------------------
// normalize_event: personal data.

#[test]
fn personal_fields_move_to_the_sidecar_and_subject_ids_are_extracted() {
    let mut ev = event("custom", json!({"x": 1, "data_subjects": ["inner"]}));
    ev["data_subjects"] = json!([
        {"id": "ds_7f3a", "category": "customer", "content": "raw note"},
        "ds_0001",
    ]);
    let n = norm(ev).unwrap();
    assert_eq!(
        n.subject_ids,
        vec!["ds_7f3a".to_owned(), "ds_0001".to_owned()]
    );
    let text = String::from_utf8(n.payload_jcs.clone()).unwrap();
    assert_eq!(text, r#"{"x":1}"#);
    let personal = n.personal.clone().unwrap();
    assert_eq!(
        personal["data_subjects"],
        // Raw content is redacted in the sidecar too.
        json!([
            {"id": "ds_7f3a", "category": "customer", "content_hash": expected_hash(&json!("raw note"))},
            "ds_0001",
        ])
    );
    assert_eq!(personal["payload.data_subjects"], json!(["inner"]));

    // The sidecar and the digest the entry commits to.
    let sc = make_sidecar(&personal, [7; 32]).unwrap();
    let mut want = Map::new();
    want.insert("fields".into(), Value::Object(personal));
    want.insert("salt".into(), json!(hex::encode([7u8; 32])));
    assert_eq!(
        sc.bytes,
        serde_json_canonicalizer::to_vec(&Value::Object(want)).unwrap()
    );
    assert_eq!(sc.digest.0, <[u8; 32]>::from(Sha256::digest(&sc.bytes)));
    // A different salt gives a different digest for the same data.
    let other = make_sidecar(n.personal.as_ref().unwrap(), [8; 32]).unwrap();
    assert_ne!(other.digest, sc.digest);
}

#[test]
fn malformed_data_subjects_are_refused() {
    for (subjects, field) in [
        (json!("ds_1"), "data_subjects"),
        (json!([1]), "data_subjects[0]"),
        (json!(["ok", {"category": "x"}]), "data_subjects[1].id"),
        (json!([""]), "data_subjects[0]"),
        (json!(["a\nb"]), "data_subjects[0]"),
    ] {
        let mut ev = event("custom", json!({}));
        ev["data_subjects"] = subjects;
        assert_eq!(field_error(norm(ev)), field);
    }
}

#[test]
fn no_personal_data_means_no_sidecar() {
    let n = norm(event("custom", json!({"a": 1}))).unwrap();
    assert!(n.personal.is_none());
    assert!(n.subject_ids.is_empty());
}

// ---------------------------------------------------------------------------------------------
// normalize_event: shapes, refusals, typed payloads.

#[test]
fn seed_flat_tool_call_shape_moves_into_payload() {
    let line = r#"{"tenant_id":"tenant_xyz","agent_id":"moltbot-analyst-07","session_id":"sess_def456","client_seq":1,"timestamp":"2026-04-14T18:01:23.456Z","event_type":"tool_call","tool_name":"query_database","agent_role":"analyst","invocation_id":"inv_xyz789","args":{"query":"SELECT * FROM customer_orders WHERE customer_id = 4411 LIMIT 100","table":"customer_orders","limit":100},"authorization":{"rbac_role":"analyst","allowed":true,"policy_matched":"analyst-read-orders"},"result":{"rows_returned":100,"result_hash":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","data_classification":"internal"},"duration_ms":45,"data_subjects":["ds_7f3a"]}"#;
    let n = norm(serde_json::from_str(line).unwrap()).unwrap();
    assert_eq!(
        n.tenant_id.as_ref().map(TenantId::as_str),
        Some("tenant_xyz")
    );
    assert_eq!(n.agent_id.as_str(), "moltbot-analyst-07");
    assert_eq!(n.session_id.as_str(), "sess_def456");
    assert_eq!(n.event_type.as_str(), "tool_call");
    assert_eq!(n.client_seq, Some(1));
    assert_eq!(n.timestamp_ms, Some(1_776_189_683_456));
    assert_eq!(n.tool.as_deref(), Some("query_database"));
    assert_eq!(n.subject_ids, vec!["ds_7f3a".to_owned()]);
    let q = "SELECT * FROM customer_orders WHERE customer_id = 4411 LIMIT 100";
    assert_eq!(
        payload_of(&n),
        json!({
            "tool_name": "query_database",
            "agent_role": "analyst",
            "invocation_id": "inv_xyz789",
            "args": {"query_hash": expected_hash(&json!(q)), "table": "customer_orders", "limit": 100},
            "authorization": {"rbac_role": "analyst", "allowed": true, "policy_matched": "analyst-read-orders"},
            "result": {"rows_returned": 100, "result_hash": "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "data_classification": "internal"},
            "duration_ms": 45,
        })
    );
    // The same event with an explicit payload object gives the same bytes.
    let nested = json!({
        "tenant_id": "tenant_xyz", "agent_id": "moltbot-analyst-07", "session_id": "sess_def456",
        "client_seq": 1, "timestamp": "2026-04-14T18:01:23.456Z", "event_type": "tool_call",
        "data_subjects": ["ds_7f3a"],
        "payload": serde_json::from_str::<Value>(line).unwrap().as_object().unwrap().iter()
            .filter(|(k, _)| !["tenant_id", "agent_id", "session_id", "client_seq", "timestamp", "event_type", "data_subjects"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone())).collect::<Map<_, _>>(),
    });
    assert_eq!(norm(nested).unwrap(), n);
    // A field both flat and in the payload is ambiguous.
    let mut both = event("tool_call", json!({"tool_name": "a"}));
    both["tool_name"] = json!("b");
    assert_eq!(field_error(norm(both)), "tool_name");
}

#[test]
fn fields_the_log_assigns_are_refused() {
    for f in [
        "seq",
        "entry_id",
        "prev_entry_hash",
        "hmac_sha256",
        "key_id",
        "v",
        "personal_digest",
    ] {
        let mut ev = event("custom", json!({}));
        ev[f] = json!(1);
        assert_eq!(field_error(norm(ev)), f);
        // Inside the payload they are ordinary data.
        assert!(norm(event("custom", json!({ f: 1 }))).is_ok(), "{f}");
    }
}

#[test]
fn integers_beyond_2_pow_53_are_refused() {
    let max = MAX_SAFE_INTEGER;
    assert!(norm(event("custom", json!({"n": max}))).is_ok());
    assert!(norm(event("custom", json!({"n": -i64::try_from(max).unwrap()}))).is_ok());
    for bad in [
        json!(max + 1),
        json!(-i64::try_from(max).unwrap() - 1),
        json!(u64::MAX),
        json!(i64::MIN),
    ] {
        assert_eq!(
            field_error(norm(event("custom", json!({"n": bad})))),
            "payload.n"
        );
        assert_eq!(
            field_error(norm(event("custom", json!({"a": [{"b": bad}]})))),
            "payload.a[0].b"
        );
    }
    // Floats are not integers: they are kept (and serialised the ECMAScript way).
    let n = norm(event(
        "custom",
        json!({"f": 1e300, "g": 9007199254740993.0}),
    ))
    .unwrap();
    assert_eq!(
        String::from_utf8(n.payload_jcs).unwrap(),
        r#"{"f":1e+300,"g":9007199254740992}"#
    );
    // The same rule applies to client_seq.
    let mut ev = event("custom", json!({}));
    ev["client_seq"] = json!(max + 1);
    assert_eq!(field_error(norm(ev)), "client_seq");
    let mut ev = event("custom", json!({}));
    ev["client_seq"] = json!(-1);
    assert_eq!(field_error(norm(ev)), "client_seq");
}

#[test]
fn missing_envelope_fields_are_named() {
    for f in ["agent_id", "session_id", "event_type"] {
        let mut ev = event("custom", json!({}));
        ev.as_object_mut().unwrap().remove(f);
        assert_eq!(field_error(norm(ev)), f);
        let mut ev = event("custom", json!({}));
        ev[f] = json!(7);
        assert_eq!(field_error(norm(ev)), f);
        let mut ev = event("custom", json!({}));
        ev[f] = json!("");
        assert_eq!(field_error(norm(ev)), f);
    }
    let mut ev = event("custom", json!({}));
    ev["tenant_id"] = json!("a/b");
    assert_eq!(field_error(norm(ev)), "tenant_id");
    let mut ev = event("custom", json!({}));
    ev["timestamp"] = json!("yesterday");
    assert_eq!(field_error(norm(ev)), "timestamp");
    assert_eq!(field_error(norm(event("custom", json!([1])))), "payload");
    assert!(matches!(norm(json!([1])), Err(Error::Json(_))));
    // Null means absent for optional fields.
    let mut ev = event("custom", Value::Null);
    ev["tenant_id"] = Value::Null;
    let n = norm(ev).unwrap();
    assert!(n.tenant_id.is_none());
    assert_eq!(n.payload_jcs, b"{}");
}

#[test]
fn typed_payload_errors_name_the_json_path() {
    let cases = [
        ("llm_request", json!({}), "payload.model"),
        ("llm_request", json!({"model": 4}), "payload.model"),
        (
            "llm_request",
            json!({"model": "m", "token_count_in": -1}),
            "payload.token_count_in",
        ),
        (
            "llm_request",
            json!({"model": "m", "token_count_out": 1.5}),
            "payload.token_count_out",
        ),
        (
            "llm_request",
            json!({"model": "m", "latency_ms": -3}),
            "payload.latency_ms",
        ),
        (
            "llm_request",
            json!({"model": "m", "prompt_hash": "abc"}),
            "payload.prompt_hash",
        ),
        (
            "llm_request",
            json!({"model": "m", "tool_calls": {}}),
            "payload.tool_calls",
        ),
        (
            "llm_request",
            json!({"model": "m", "tool_calls": [1]}),
            "payload.tool_calls[0]",
        ),
        (
            "llm_request",
            json!({"model": "m", "tool_calls": [{"name": "a"}, {}]}),
            "payload.tool_calls[1].name",
        ),
        (
            "llm_request",
            json!({"model": "m", "tool_calls": [{"name": "a", "result_hash": "sha256:00"}]}),
            "payload.tool_calls[0].result_hash",
        ),
        ("tool_call", json!({}), "payload.tool_name"),
        (
            "tool_call",
            json!({"tool_name": "t", "authorization": {"allowed": "yes"}}),
            "payload.authorization.allowed",
        ),
        (
            "tool_call",
            json!({"tool_name": "t", "authorization": true}),
            "payload.authorization",
        ),
        (
            "tool_call",
            json!({"tool_name": "t", "result": {"rows_returned": "5"}}),
            "payload.result.rows_returned",
        ),
        (
            "tool_call",
            json!({"tool_name": "t", "args": []}),
            "payload.args",
        ),
        (
            "tool_call",
            json!({"tool_name": "t", "duration_ms": "fast"}),
            "payload.duration_ms",
        ),
    ];
    for (ty, payload, field) in cases {
        let r = norm(event(ty, payload.clone()));
        match r {
            Err(Error::Field(fe)) => {
                assert_eq!(fe.field, field, "{ty} {payload}");
                assert!(fe.to_string().contains(field));
            }
            other => panic!("{ty} {payload}: {other:?}"),
        }
    }
    // Raw content is redacted before the typed checks: `prompt` satisfies `prompt_hash`.
    let n = norm(event(
        "llm_request",
        json!({"model": "m", "prompt": "p", "tool_calls": [{"name": "a", "args_raw": {"q": 1}}]}),
    ))
    .unwrap();
    assert_eq!(
        payload_of(&n)["tool_calls"][0]["args_raw_hash"],
        json!(expected_hash(&json!({"q": 1})))
    );
    // Other event types are free-form.
    assert!(norm(event("decision", json!({"model": 4, "tool_name": 5}))).is_ok());
}

#[test]
fn too_deep_payloads_are_refused() {
    let mut v = json!(1);
    for _ in 0..70 {
        v = json!({ "d": v });
    }
    assert!(matches!(norm(event("custom", v)), Err(Error::Field(_))));
    let mut v = json!(1);
    for _ in 0..20 {
        v = json!([v]);
    }
    assert!(norm(event("custom", json!({ "a": v }))).is_ok());
}

// ---------------------------------------------------------------------------------------------
// seal().

fn key() -> HmacKey {
    HmacKey::from_bytes(common::K1)
}

fn keyring() -> Keyring {
    common::keyring_k1()
}

fn sealed(ev: &NormalizedEvent, seq: u64, prev: Hash, personal: Option<Hash>) -> Vec<u8> {
    let tenant = ev
        .tenant_id
        .clone()
        .unwrap_or_else(|| TenantId::parse("default").unwrap());
    seal(
        ev,
        &SealParams {
            tenant_id: &tenant,
            seq,
            entry_id: next_entry_id(None, 1_776_189_600_123, [9; 10]),
            timestamp_ms: ev.timestamp_ms.unwrap_or(1_776_189_600_123),
            key_id: &KeyId::parse("k1").unwrap(),
            key: &key(),
            prev_entry_hash: prev,
            personal_digest: personal,
            clock_skew_ms: None,
        },
    )
    .unwrap()
    .line
}

/// What the lean scanner accepts, the full parser accepts with the same values.
fn scan_agrees(line: &[u8]) -> Result<(), TestCaseError> {
    let Some(sc) = blackbox_core::line_scan::scan(line) else {
        return Ok(());
    };
    let view = EntryView::parse(line);
    prop_assert!(
        view.is_ok(),
        "the lean scanner accepted a line the full parser refuses ({:?}): {}",
        view.err(),
        String::from_utf8_lossy(line)
    );
    let view = view.unwrap();
    prop_assert_eq!(sc.seq, view.seq);
    prop_assert_eq!(sc.entry_id, view.entry_id.as_u128());
    prop_assert_eq!(sc.tenant_id, &*view.tenant_id);
    prop_assert_eq!(sc.agent_id, &*view.agent_id);
    prop_assert_eq!(sc.session_id, &*view.session_id);
    prop_assert_eq!(sc.event_type, &*view.event_type);
    prop_assert_eq!(sc.key_id, &*view.key_id);
    prop_assert_eq!(sc.client_seq, view.client_seq);
    prop_assert_eq!(sc.timestamp_ms, view.timestamp_ms);
    prop_assert_eq!(sc.prev_entry_hash, view.prev_entry_hash);
    prop_assert_eq!(sc.personal_digest, view.personal_digest);
    prop_assert_eq!(sc.hmac, view.hmac);
    Ok(())
}

/// On a line the writer produced, the payload-skipping reader gives the full parser's values
/// (it returns `None` only for an agent id with escapes, which sends the verifier the long way).
fn envelope_agrees(line: &[u8]) -> Result<(), TestCaseError> {
    let view = EntryView::parse(line).unwrap();
    let Some(e) = blackbox_core::line_scan::scan_envelope(line) else {
        prop_assert!(
            view.agent_id.contains(['"', '\\']),
            "the envelope reader refused a sealed line: {}",
            String::from_utf8_lossy(line)
        );
        return Ok(());
    };
    prop_assert_eq!(e.seq, view.seq);
    prop_assert_eq!(e.entry_id, view.entry_id.as_u128());
    prop_assert_eq!(e.tenant_id, &*view.tenant_id);
    prop_assert_eq!(e.event_type, &*view.event_type);
    prop_assert_eq!(e.key_id, &*view.key_id);
    prop_assert_eq!(e.prev_entry_hash, view.prev_entry_hash);
    prop_assert_eq!(e.personal_digest, view.personal_digest);
    prop_assert_eq!(e.hmac, view.hmac);
    Ok(())
}

/// Checks every documented property of a sealed line.
fn check_sealed_line(line: &[u8]) -> Result<(), TestCaseError> {
    let (body, mac) = split_line(line).unwrap();
    // body = RFC 8785 of the entry object without hmac_sha256.
    let mut v: Value = serde_json::from_slice(line).unwrap();
    let obj = v.as_object_mut().unwrap();
    let hmac_hex = obj.remove("hmac_sha256").unwrap();
    prop_assert_eq!(hmac_hex.as_str().unwrap(), hex::encode(mac));
    let jcs = serde_json_canonicalizer::to_vec(&v).unwrap();
    prop_assert_eq!(
        &body,
        &jcs,
        "\n{}\n{}",
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&jcs)
    );
    // line = body with its closing brace replaced by the MAC member.
    prop_assert_eq!(&line[..body.len() - 1], &body[..body.len() - 1]);
    let suffix = format!(",\"hmac_sha256\":\"{}\"}}", hex::encode(mac));
    prop_assert!(line.ends_with(suffix.as_bytes()));
    prop_assert!(!line.contains(&b'\n'));
    // It parses back, and its MAC is HMAC-SHA256(k1, body).
    let view = EntryView::parse(line).unwrap();
    prop_assert_eq!(view.hmac, mac);
    prop_assert_eq!(mac, key().sign(&Sha256::digest(&body)));
    prop_assert_eq!(check_hmac(line, &view, Some(&keyring())), HmacStatus::Valid);
    prop_assert_eq!(
        check_hmac(line, &view, Some(&common::wrong_keyring())),
        HmacStatus::Invalid
    );
    prop_assert_eq!(check_hmac(line, &view, None), HmacStatus::NotChecked);
    let mut other = Keyring::new();
    other
        .push(KeyId::parse("k7").unwrap(), HmacKey::from_bytes([1; 32]))
        .unwrap();
    prop_assert_eq!(
        check_hmac(line, &view, Some(&other)),
        HmacStatus::UnknownKey
    );
    // Entry hash = SHA-256(line).
    scan_agrees(line)?;
    envelope_agrees(line)?;
    let c = check_entry(1, line, None, Some(&keyring()));
    prop_assert_eq!(c.entry_hash.0, <[u8; 32]>::from(Sha256::digest(line)));
    prop_assert_eq!(c.hmac, HmacStatus::Valid);
    Ok(())
}

#[test]
fn sealed_line_layout() {
    let ev = norm(json!({
        "tenant_id": "tenant_xyz", "agent_id": "a\"gent\\01", "session_id": "s\u{e9}ss",
        "event_type": "custom", "client_seq": 3, "timestamp": "2026-04-14T18:00:00.123Z",
        "payload": {"z": 1, "a": "\u{1}\t\u{7f}\u{2028}/"},
    }))
    .unwrap();
    let mut ev = ev;
    ev.origin = Some(blackbox_core::origin::Origin::local("append", "r\"oot\u{e9}").unwrap());
    let prev = Hash::digest(b"prev");
    let d = Hash::digest(b"personal");
    let line = sealed(&ev, 7, prev, Some(d));
    check_sealed_line(&line).unwrap();
    let text = String::from_utf8(line.clone()).unwrap();
    let id = next_entry_id(None, 1_776_189_600_123, [9; 10]);
    let expected_prefix = format!(
        "{{\"agent_id\":\"a\\\"gent\\\\01\",\"client_seq\":3,\"entry_id\":\"{id}\",\"event_type\":\"custom\",\"key_id\":\"k1\",\"origin\":{{\"command\":\"append\",\"kind\":\"local\",\"user\":\"r\\\"oot\u{e9}\"}},\"payload\":{{\"a\":\"\\u0001\\t\u{7f}\u{2028}/\",\"z\":1}},\"personal_digest\":\"{}\",\"prev_entry_hash\":\"{}\",\"seq\":7,\"session_id\":\"s\u{e9}ss\",\"tenant_id\":\"tenant_xyz\",\"timestamp\":\"2026-04-14T18:00:00.123Z\",\"v\":2,\"written_at\":\"2026-04-14T18:00:00.123Z\",\"hmac_sha256\":\"",
        d.to_prefixed(),
        prev.to_prefixed()
    );
    assert!(
        text.starts_with(&expected_prefix),
        "{text}\n{expected_prefix}"
    );
    let view = EntryView::parse(&line).unwrap();
    assert_eq!(view.seq, 7);
    assert_eq!(view.entry_id, id);
    assert_eq!(view.agent_id, "a\"gent\\01");
    assert_eq!(view.personal_digest, Some(d));
    assert_eq!(view.prev_entry_hash, prev);
    assert_eq!(view.timestamp_ms, 1_776_189_600_123);
    assert_eq!(
        view.payload.get(),
        r#"{"a":"\u0001\t"#.to_owned() + "\u{7f}\u{2028}/\",\"z\":1}"
    );
    // Genesis, no personal digest, no client_seq.
    let ev = norm(event("custom", json!({}))).unwrap();
    let line = sealed(&ev, 1, GENESIS_HASH, None);
    check_sealed_line(&line).unwrap();
    let text = String::from_utf8(line).unwrap();
    assert!(text.contains(&format!(
        "\"prev_entry_hash\":\"sha256:{}\"",
        "0".repeat(64)
    )));
    assert!(!text.contains("personal_digest") && !text.contains("client_seq"));
}

#[test]
fn one_changed_byte_breaks_the_hmac_or_the_parse() {
    let ev = norm(event("custom", json!({"k": "value"}))).unwrap();
    let line = sealed(&ev, 1, GENESIS_HASH, None);
    for i in 0..line.len() {
        let mut m = line.clone();
        m[i] ^= 0x01;
        if let Ok(view) = EntryView::parse(&m) {
            assert_ne!(
                check_hmac(&m, &view, Some(&keyring())),
                HmacStatus::Valid,
                "byte {i}: {}",
                String::from_utf8_lossy(&m)
            );
        }
    }
}

#[test]
fn seal_refuses_timestamps_out_of_range() {
    let ev = norm(event("custom", json!({}))).unwrap();
    let r = seal(
        &ev,
        &SealParams {
            tenant_id: &TenantId::parse("t").unwrap(),
            seq: 1,
            entry_id: next_entry_id(None, 0, [0; 10]),
            timestamp_ms: i64::MAX,
            key_id: &KeyId::parse("k1").unwrap(),
            key: &key(),
            prev_entry_hash: GENESIS_HASH,
            personal_digest: None,
            clock_skew_ms: None,
        },
    );
    assert!(matches!(r, Err(Error::Field(_))), "{r:?}");
}

#[test]
fn split_line_rejects_bad_suffixes() {
    let ev = norm(event("custom", json!({}))).unwrap();
    let line = sealed(&ev, 1, GENESIS_HASH, None);
    assert!(split_line(&line).is_ok());
    let upper = {
        let mut l = line.clone();
        let n = l.len();
        l[n - 66..n - 2].make_ascii_uppercase();
        l
    };
    for bad in [
        b"".to_vec(),
        b"{}".to_vec(),
        line[..line.len() - 1].to_vec(),
        [&line[..], b"\n"].concat(),
        [b" ", &line[..]].concat(),
        upper,
    ] {
        assert!(
            split_line(&bad).is_err(),
            "{}",
            String::from_utf8_lossy(&bad)
        );
    }
}

/// JSON values: unicode and escapes in strings and keys, floats, safe integers, nesting.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(MAX_SAFE_INTEGER as i64)..=(MAX_SAFE_INTEGER as i64)).prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop_oneof![
            Just(0.1),
            Just(1e21),
            Just(1e-7),
            Just(-0.0),
            Just(5e-324),
            Just(1e300)
        ]
        .prop_map(|f: f64| json!(f)),
        any::<String>().prop_map(Value::String),
        "[\"\\\\/\u{0}-\u{1f}\u{7f}\u{80}\u{2028}\u{e9}\u{20ac}\u{1F600}a-z]{0,12}"
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                // No `m` or `q`: no key can be a raw field name (`prompt`, `query`).
                "[a-ln-pr-z\"\\\\\u{0}-\u{1f}\u{e9}\u{20ac}\u{1F600}\u{ff61}]{0,6}",
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn free_text() -> impl Strategy<Value = String> {
    // Agent and session ids are free text without control characters.
    "[a-zA-Z0-9 \"\\\\/\u{e9}\u{20ac}\u{1F600}\u{2028}-]{1,40}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn sealed_body_is_the_jcs_of_the_entry(
        payload in prop::collection::btree_map("[a-z_\u{e9}\u{1F600}\"]{1,8}", json_value(), 0..6),
        agent in free_text(),
        session in free_text(),
        event_type in "[a-z][a-z_.-]{0,20}",
        client_seq in prop::option::of(0..=MAX_SAFE_INTEGER),
        seq in 1..=MAX_SAFE_INTEGER,
        ts in 0i64..253_402_300_799_999,
        prev in any::<[u8; 32]>(),
        personal in prop::option::of(any::<[u8; 32]>()),
        random in any::<[u8; 10]>(),
        origin in arb_origin(),
        skew in prop::option::of(-MAX_SAFE_INTEGER_I..=MAX_SAFE_INTEGER_I),
    ) {
        prop_assume!(event_type != "llm_request" && event_type != "tool_call");
        let mut ev = json!({
            "agent_id": agent, "session_id": session, "event_type": event_type,
            "payload": Value::Object(payload.into_iter().collect()),
        });
        if let Some(cs) = client_seq {
            ev["client_seq"] = json!(cs);
        }
        let mut n = norm(ev).unwrap();
        n.origin = origin.clone();
        let skew = skew.filter(|_| origin.is_some());
        let line = seal(&n, &SealParams {
            tenant_id: &TenantId::parse("tenant_xyz").unwrap(),
            seq,
            entry_id: next_entry_id(None, u64::try_from(ts).unwrap(), random),
            timestamp_ms: ts,
            key_id: &KeyId::parse("k1").unwrap(),
            key: &key(),
            prev_entry_hash: Hash(prev),
            personal_digest: personal.map(Hash),
            clock_skew_ms: skew,
        }).unwrap().line;
        check_sealed_line(&line)?;
        let view = EntryView::parse(&line).unwrap();
        prop_assert_eq!(&view.origin, &origin);
        prop_assert_eq!(view.clock_skew_ms, skew);
        prop_assert_eq!(view.version, if origin.is_some() { 2 } else { 1 });
        prop_assert_eq!(view.seq, seq);
        prop_assert_eq!(view.timestamp_ms, ts);
        prop_assert_eq!(view.client_seq, client_seq);
        prop_assert_eq!(view.payload.get().as_bytes(), &n.payload_jcs[..]);
        prop_assert_eq!(view.agent_id.as_ref(), n.agent_id.as_str());
        prop_assert_eq!(view.prev_entry_hash, Hash(prev));
        prop_assert_eq!(view.personal_digest, personal.map(Hash));
    }

    #[test]
    fn payload_jcs_is_rfc8785(payload in prop::collection::btree_map("[a-z\u{1F600}\u{ff61}]{1,4}", json_value(), 0..8)) {
        let p = Value::Object(payload.into_iter().collect());
        let n = norm(event("custom", p.clone())).unwrap();
        let reparsed: Value = serde_json::from_slice(&n.payload_jcs).unwrap();
        prop_assert_eq!(&serde_json_canonicalizer::to_vec(&reparsed).unwrap(), &n.payload_jcs);
        // No raw field in these keys: the payload is kept as is, only canonicalised.
        prop_assert_eq!(serde_json_canonicalizer::to_vec(&p).unwrap(), n.payload_jcs);
    }
}

const MAX_SAFE_INTEGER_I: i64 = 9_007_199_254_740_991;

/// Any origin (or none: a version-1 entry), with names that need JSON escapes.
fn arb_origin() -> impl Strategy<Value = Option<blackbox_core::origin::Origin>> {
    use blackbox_core::origin::Origin;
    prop_oneof![
        Just(None),
        Just(Some(Origin::Service)),
        (
            "[0-9a-f]{16}",
            "(admin|ingest|read|ingest,read)",
            "(events|decide|mcp)"
        )
            .prop_map(|(i, s, v)| Some(Origin::token(&i, &s, &v).unwrap())),
        ("[a-z]{1,8}", "[a-z\"\\\\\u{e9} ]{1,12}")
            .prop_map(|(c, u)| Some(Origin::local(&c, &u).unwrap())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Who wrote an entry and when the writer sequenced it are covered by the HMAC: any other
    /// origin, written_at or clock mark under the same MAC is reported (HMAC mismatch, or a
    /// line that no longer parses).
    #[test]
    fn provenance_and_writer_time_are_covered_by_the_hmac(
        origin in arb_origin(),
        other in arb_origin(),
        ms in 0u64..253_402_300_799_999,
        shift in 1u64..1_000_000,
        skew in prop::option::of(-1_000_000i64..1_000_000),
        which in 0u8..3,
    ) {
        prop_assume!(origin.is_some());
        let mut n = norm(json!({"agent_id": "a", "session_id": "s", "event_type": "note"})).unwrap();
        n.origin = origin.clone();
        let id = next_entry_id(None, ms, [3; 10]);
        let line = seal(&n, &SealParams {
            tenant_id: &TenantId::parse("t").unwrap(),
            seq: 1,
            entry_id: id,
            timestamp_ms: 0,
            key_id: &KeyId::parse("k1").unwrap(),
            key: &key(),
            prev_entry_hash: blackbox_core::entry::GENESIS_HASH,
            personal_digest: None,
            clock_skew_ms: skew,
        }).unwrap().line;
        prop_assert_eq!(check_entry(1, &line, None, Some(&keyring())).hmac, HmacStatus::Valid);
        let mut v: Value = serde_json::from_slice(&line).unwrap();
        let o = v.as_object_mut().unwrap();
        match which {
            0 => {
                prop_assume!(other.is_some() && other != origin);
                let text = other.unwrap().to_jcs();
                o.insert("origin".into(), serde_json::from_str(&text).unwrap());
            }
            1 => {
                let later = blackbox_core::entry::format_timestamp(
                    i64::try_from(ms + shift).unwrap(),
                ).unwrap();
                o.insert("written_at".into(), json!(later));
            }
            _ => {
                match skew {
                    Some(k) => o.insert("clock_skew_ms".into(), json!(k + 1)),
                    None => o.insert("clock_skew_ms".into(), json!(1)),
                };
            }
        }
        let mac = o.remove("hmac_sha256").unwrap();
        let mut edited = serde_json_canonicalizer::to_vec(&v).unwrap();
        edited.pop();
        edited.extend_from_slice(format!(",\"hmac_sha256\":{mac}}}").as_bytes());
        let c = check_entry(1, &edited, None, Some(&keyring()));
        prop_assert!(
            c.hmac != HmacStatus::Valid,
            "an edited line kept its MAC: {}",
            String::from_utf8_lossy(&edited)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// next_entry_id.

fn is_v7(id: &uuid::Uuid) -> bool {
    id.get_version_num() == 7 && id.get_variant() == uuid::Variant::RFC4122
}

#[test]
fn entry_ids_from_a_forward_clock_carry_the_time() {
    let a = next_entry_id(None, 1_776_189_600_123, [0x11; 10]);
    assert!(is_v7(&a));
    assert_eq!(uuid_millis(&a), 1_776_189_600_123);
    let b = next_entry_id(Some(a), 1_776_189_600_124, [0x00; 10]);
    assert!(b > a && is_v7(&b));
    assert_eq!(uuid_millis(&b), 1_776_189_600_124);
}

#[test]
fn entry_ids_increase_in_the_same_millisecond_and_when_the_clock_goes_back() {
    let a = next_entry_id(None, 5_000_000, [0x80; 10]);
    // Same millisecond, smaller random bits: last + 1.
    let b = next_entry_id(Some(a), 5_000_000, [0x00; 10]);
    assert!(b > a && is_v7(&b));
    assert_eq!(uuid_millis(&b), 5_000_000);
    assert_eq!(b.as_u128() - a.as_u128(), 1);
    // Same millisecond, same random bits.
    let c = next_entry_id(Some(b), 5_000_000, [0x80; 10]);
    assert!(c > b && is_v7(&c));
    // The clock steps back an hour: still increasing, the time stays at the last one.
    let d = next_entry_id(Some(c), 5_000_000 - 3_600_000, [0xff; 10]);
    assert!(d > c && is_v7(&d));
    assert_eq!(uuid_millis(&d), 5_000_000);
}

#[test]
fn entry_id_counter_overflow_carries_into_the_millisecond() {
    let a = next_entry_id(None, 7_000, [0xff; 10]);
    assert!(is_v7(&a));
    let b = next_entry_id(Some(a), 7_000, [0xff; 10]);
    assert!(b > a && is_v7(&b), "{a} {b}");
    assert_eq!(uuid_millis(&b), 7_001);
    // The 74 counter bits restart at zero.
    assert_eq!(b.as_u128() & 0x0fff_3fff_ffff_ffff_ffff, 0, "{b}");
    let c = next_entry_id(Some(b), 6_000, [0xff; 10]);
    assert!(c > b && is_v7(&c));
    assert_eq!(uuid_millis(&c), 7_001);
}

proptest! {
    #[test]
    fn entry_ids_are_strictly_increasing_whatever_the_clock(
        start in 0u64..(1 << 47),
        steps in prop::collection::vec((-5_000i64..5_000, any::<[u8; 10]>(), any::<bool>()), 1..200),
    ) {
        let mut last: Option<uuid::Uuid> = None;
        let mut now = start;
        for (delta, mut random, saturate) in steps {
            now = now.saturating_add_signed(delta);
            if saturate {
                random = [0xff; 10];
            }
            let id = next_entry_id(last, now, random);
            prop_assert!(is_v7(&id), "{}", id);
            if let Some(l) = last {
                prop_assert!(id > l, "{} <= {}", id, l);
                prop_assert!(uuid_millis(&id) >= uuid_millis(&l));
            } else {
                prop_assert_eq!(uuid_millis(&id), now);
            }
            last = Some(id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers never panic (the fuzz targets, exercised on stable).

fn sample_line() -> Vec<u8> {
    let log = common::build(&common::LogSpec {
        entries: 3,
        ..common::LogSpec::default()
    });
    log.records[1].line().unwrap().to_vec()
}

fn sample_checkpoint() -> String {
    common::checkpoint_text(
        "tenant_xyz",
        12,
        Hash::digest(b"root"),
        common::BASE_MS,
        &common::note_signer(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn entry_parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = EntryView::parse(&bytes);
        scan_agrees(&bytes)?;
        let _ = split_line(&bytes);
        let _ = check_entry(1, &bytes, Some(&bytes), Some(&keyring()));
        let _ = check_entry(1, &bytes, None, None);
    }

    #[test]
    fn entry_parsers_never_panic_on_mutated_lines(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let original = sample_line();
        let mut line = original.clone();
        for (i, b) in edits {
            let at = i.index(line.len());
            line[at] = b;
        }
        scan_agrees(&line)?;
        let c = check_entry(1, &line, None, Some(&keyring()));
        if line != original {
            prop_assert_ne!(c.hmac, HmacStatus::Valid);
        }
        if let Ok(view) = EntryView::parse(&line) {
            let _ = check_hmac(&line, &view, Some(&keyring()));
        }
        line.truncate(cut.index(line.len()));
        let _ = check_entry(1, &line, Some(b"{}"), Some(&keyring()));
    }

    #[test]
    fn checkpoint_parsers_never_panic(text in any::<String>()) {
        let _ = SignedCheckpoint::parse(&text);
        let _ = Checkpoint::parse_text(&text);
        let _ = NoteVerifier::from_vkey(&text);
    }

    #[test]
    fn checkpoint_parsers_never_panic_on_mutated_notes(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..4),
    ) {
        let mut chars: Vec<char> = sample_checkpoint().chars().collect();
        for (i, c) in edits {
            let at = i.index(chars.len());
            chars[at] = c;
        }
        let text: String = chars.into_iter().collect();
        if let Ok(sc) = SignedCheckpoint::parse(&text) {
            let _ = sc.verify(&common::note_verifier());
        }
        let vkey = common::note_verifier().to_vkey();
        let _ = NoteVerifier::from_vkey(&vkey);
        let _ = NoteVerifier::from_vkey(&text);
    }
}

#[test]
fn sample_inputs_are_valid() {
    // The mutation tests above start from valid inputs.
    let line = sample_line();
    let c = check_entry(1, &line, None, Some(&keyring()));
    assert_eq!(c.hmac, HmacStatus::Valid);
    // ... and on the lean scanner's path, so its mutations exercise it.
    assert!(blackbox_core::line_scan::scan(&line).is_some());
    let sc = SignedCheckpoint::parse(&sample_checkpoint()).unwrap();
    sc.verify(&common::note_verifier()).unwrap();
    let vkey = common::note_verifier().to_vkey();
    assert_eq!(
        NoteVerifier::from_vkey(&vkey).unwrap(),
        common::note_verifier()
    );
}

#[test]
fn lean_scanner_never_accepts_what_the_full_parser_refuses() {
    // Every position of a valid line, replaced by each byte that matters to JSON's grammar; once
    // for the sample line (it holds an emoji) and once for its all-ASCII variant.
    let line = sample_line();
    let ascii: Vec<u8> = String::from_utf8(line.clone())
        .unwrap()
        .replace('\u{1f600}', "\\u00e9")
        .into_bytes();
    assert!(ascii.is_ascii() && blackbox_core::line_scan::scan(&ascii).is_some());
    for line in [line, ascii] {
        mutate_every_byte(&line);
    }
}

fn mutate_every_byte(line: &[u8]) {
    let bytes = b"\"\\{}[],:09afAF-.eE+ \t\x00\x1f\x7f\x80\xc3\xffnul";
    let ring = keyring();
    // A changed line never verifies, so what the verifier reads from it with the key (where an
    // authentic line takes the payload-skipping path) is what it reads without (the full path).
    let same_reading = |m: &[u8]| {
        let with = check_entry(1, m, None, Some(&ring));
        let without = check_entry(1, m, None, None);
        assert_ne!(
            with.hmac,
            HmacStatus::Valid,
            "{}",
            String::from_utf8_lossy(m)
        );
        assert_eq!(with.meta, without.meta, "{}", String::from_utf8_lossy(m));
    };
    for i in 0..line.len() {
        for &b in bytes {
            let mut m = line.to_vec();
            m[i] = b;
            scan_agrees(&m).unwrap();
            if m != line {
                same_reading(&m);
            }
            m.insert(i, b);
            scan_agrees(&m).unwrap();
            same_reading(&m);
        }
        let mut m = line.to_vec();
        m.remove(i);
        scan_agrees(&m).unwrap();
        same_reading(&m);
    }
}

#[test]
fn the_envelope_reader_is_not_fooled_by_member_names_inside_strings() {
    // Payload strings and keys, and the session id, spelling the members the reader looks for.
    let prev = Hash::digest(b"prev");
    let fake = format!("sha256:{}", "ab".repeat(32));
    let ev = norm(json!({
        "tenant_id": "t1", "agent_id": "agent", "event_type": "custom",
        "session_id": format!("s\",\"prev_entry_hash\":\"{fake}\",\"seq\":9,\"session_id\":\"x\",\"tenant_id\":\"evil"),
        "payload": {
            "prev_entry_hash": fake, "personal_digest": fake,
            "x": format!(",\"prev_entry_hash\":\"{fake}\",\"seq\":5,\"session_id\":\""),
            "y": "\",\"tenant_id\":\"evil\",\"timestamp\":\"2026-04-14T18:00:00.123Z\",\"v\":1,",
            "z": "}",
        },
    }))
    .unwrap();
    for personal in [None, Some(Hash::digest(b"personal"))] {
        let line = sealed(&ev, 3, prev, personal);
        check_sealed_line(&line).unwrap();
        let e = blackbox_core::line_scan::scan_envelope(&line).unwrap();
        assert_eq!((e.seq, e.tenant_id, e.prev_entry_hash), (3, "t1", prev));
        assert_eq!(e.personal_digest, personal);
    }
}

// normalize_json: reading an event's text directly gives what normalize_event gives its Value.

fn arb_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z \\\\\"\u{e9}\u{1f600}]{0,12}".prop_map(Value::String),
        Just(Value::String(format!("sha256:{}", "ab".repeat(32)))),
    ]
}

fn arb_event() -> impl Strategy<Value = Value> {
    let tree = arb_leaf().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("query".to_owned()),
                    Just("prompt".to_owned()),
                    Just("query_hash".to_owned()),
                    Just("content".to_owned()),
                    "[a-z_]{1,6}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let member = prop_oneof![
        Just("tenant_id"),
        Just("agent_id"),
        Just("session_id"),
        Just("event_type"),
        Just("timestamp"),
        Just("client_seq"),
        Just("payload"),
        Just("data_subjects"),
        Just("tool_name"),
        Just("model"),
        Just("args"),
        Just("prompt"),
        Just("seq"),
        Just("extra"),
    ];
    (
        prop::collection::btree_map(member, tree, 0..6),
        prop_oneof![
            Just("tool_call"),
            Just("llm_request"),
            Just("custom"),
            Just("bad type!")
        ],
        any::<bool>(),
    )
        .prop_map(|(members, event_type, with_envelope)| {
            let mut m: Map<String, Value> = members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            if with_envelope {
                m.insert("agent_id".into(), json!("agent-7"));
                m.insert("session_id".into(), json!("s1"));
                m.insert("event_type".into(), json!(event_type));
                m.insert("tool_name".into(), json!("query_database"));
                m.insert("model".into(), json!("gpt-4o"));
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn normalize_json_agrees_with_normalize_event(ev in arb_event(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_vec_pretty(&ev).unwrap()
        } else {
            serde_json::to_vec(&ev).unwrap()
        };
        let policy = RedactionPolicy::default();
        let from_text = blackbox_core::event::normalize_json(&text, &policy, &blackbox_core::origin::Origin::Service);
        let from_value = normalize_event(ev, &policy, &blackbox_core::origin::Origin::Service);
        match (from_text, from_value) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "text: {:?}\nvalue: {:?}", a, b),
        }
    }
}

#[test]
fn normalize_json_refuses_duplicate_members_and_reads_escapes() {
    // A reader that keeps the first `agent_id` would see another agent than the log records.
    let text =
        br#"{"agent_id":"first","agent_id":"a\u0067ent","session_id":"s","event_type":"custom"}"#;
    let err = blackbox_core::event::normalize_json(
        text,
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("not valid JSON: duplicate key \"agent_id\" in the object at $:"),
        "{err}"
    );
    let text =
        br#"{"agent_id":"agent","session_id":"s","event_type":"custom","payload":{"k":1,"k":2}}"#;
    let err = blackbox_core::event::normalize_json(
        text,
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("not valid JSON: duplicate key \"k\" in the object at $.payload:"),
        "{err}"
    );
    let text = br#"{"agent_id":"a\u0067ent","session_id":"s","event_type":"custom","payload":{"k":2,"q\u0075ery":"x"}}"#;
    let n = blackbox_core::event::normalize_json(
        text,
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .unwrap();
    assert_eq!(n.agent_id.as_str(), "agent");
    let payload = String::from_utf8(n.payload_jcs).unwrap();
    assert_eq!(
        payload,
        format!(
            r#"{{"k":2,"query_hash":"{}"}}"#,
            Hash::digest(b"x").to_prefixed()
        )
    );
    let err = blackbox_core::event::normalize_json(
        b"[1]",
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "not valid JSON: an event must be a JSON object, not an array"
    );
    let err = blackbox_core::event::normalize_json(
        b"{\"a\":",
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("not valid JSON: EOF while parsing"),
        "{err}"
    );
}

#[test]
fn client_side_hashing_gives_the_service_the_same_entry() {
    let policy = RedactionPolicy::default();
    let raw = json!({"agent_id":"a","session_id":"s","event_type":"tool_call","tool_name":"q",
        "args":{"query":"SELECT * FROM users","table":"users"},"prompt":"hello",
        "payload":{"content":[1,2,{"x":"y"}]}});
    let mut hashed = raw.clone();
    blackbox_core::event::hash_raw_content(&mut hashed, &policy).unwrap();
    let text = hashed.to_string();
    assert!(
        !text.contains("SELECT") && !text.contains("hello"),
        "{text}"
    );
    assert!(
        text.contains("query_hash")
            && text.contains("prompt_hash")
            && text.contains("content_hash")
    );
    assert_eq!(norm(hashed).unwrap(), norm(raw).unwrap());
}

#[test]
fn format_md_lists_exactly_the_reserved_event_types() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/FORMAT.md"))
        .unwrap();
    let start = doc.find("**Reserved event types.**").unwrap();
    let para = &doc[start..start + doc[start..].find("\n\n").unwrap()];
    let list = &para[para.find("They are").unwrap()..para.find("beginning with").unwrap()];
    let listed: Vec<&str> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    let mut want: Vec<&str> = blackbox_core::origin::RESERVED_EVENT_TYPES.to_vec();
    want.sort_unstable();
    let mut got = listed.clone();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got, want, "FORMAT.md §3 and RESERVED_EVENT_TYPES differ");
    assert!(para.contains(blackbox_core::origin::RESERVED_PREFIX));
}

#[test]
fn reserved_event_types_are_refused_unless_the_service_writes_them() {
    use blackbox_core::origin::{Origin, RESERVED_EVENT_TYPES};
    let policy = RedactionPolicy::default();
    let token = Origin::token("0123456789abcdef", "ingest", "events").unwrap();
    let local = Origin::local("append", "root").unwrap();
    for t in RESERVED_EVENT_TYPES
        .iter()
        .copied()
        .chain(["blackbox.anything"])
    {
        let ev = format!(r#"{{"agent_id":"a","session_id":"s","event_type":"{t}"}}"#);
        for o in [&token, &local] {
            let e = blackbox_core::event::normalize_json(ev.as_bytes(), &policy, o).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("reserved") && msg.contains("event_type"),
                "{t}: {msg}"
            );
        }
        let by_service =
            blackbox_core::event::normalize_json(ev.as_bytes(), &policy, &Origin::Service);
        // The service writes them (erasure markers are built by the erasure code itself).
        assert_eq!(by_service.is_ok(), t != "erasure", "{t}");
    }
    let ok = br#"{"agent_id":"a","session_id":"s","event_type":"heartbeat"}"#;
    assert!(blackbox_core::event::normalize_json(ok, &policy, &token).is_ok());
}
