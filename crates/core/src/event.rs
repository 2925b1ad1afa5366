//! Input events: a borrowed JSON tree, and the validation, redaction and RFC 8785 serialisation
//! that turn an event into a [`NormalizedEvent`].
//!
//! Events are read into [`Node`], a tree whose strings borrow from the input and whose objects
//! are sorted vectors, rather than into `serde_json::Value` (a `BTreeMap` node and an owned
//! `String` per member): appending spends most of its time here, once per event. The rules are
//! those of docs/FORMAT.md §3–§5; [`crate::entry::normalize_event`] applies them to a `Value`
//! through the same code.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::error::{Error, FieldError};
use crate::format::{
    ASSIGNED_FIELDS, ENVELOPE_FIELDS, MAX_DEPTH, parse_timestamp, push_json_str, utf16_cmp,
};
use crate::hash::Hash;
use crate::ids::{AgentId, EventType, MAX_SAFE_INTEGER, SessionId, TenantId};
use crate::origin::Origin;

pub use crate::node::{Node, Obj};
use crate::node::{key_cmp, key_eq};

/// What the writer does with sensitive fields before anything touches disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactionPolicy {
    /// Raw-content field names: anywhere in the payload, `name: value` becomes
    /// `name_hash: "sha256:…"`.
    pub raw_fields: BTreeSet<String>,
    /// Personal-data field names (top level of the event or of its payload): moved out of the
    /// signed bytes into the erasable sidecar, committed to by a salted digest.
    pub personal_fields: BTreeSet<String>,
}

impl Default for RedactionPolicy {
    fn default() -> Self {
        let raw = [
            "prompt",
            "completion",
            "messages",
            "query",
            "content",
            "result_data",
            "args_raw",
        ];
        Self {
            raw_fields: raw.iter().map(|s| (*s).to_owned()).collect(),
            personal_fields: std::iter::once("data_subjects".to_owned()).collect(),
        }
    }
}

/// An input event after validation, redaction and canonicalisation, ready to be sequenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedEvent {
    /// Tenant named by the event, if any (the writer applies its default otherwise).
    pub tenant_id: Option<TenantId>,
    /// Agent identity.
    pub agent_id: AgentId,
    /// Agent session.
    pub session_id: SessionId,
    /// Event type.
    pub event_type: EventType,
    /// Event time given by the agent, Unix ms (the writer uses its clock when absent).
    pub timestamp_ms: Option<i64>,
    /// The agent's own per-session counter.
    pub client_seq: Option<u64>,
    /// RFC 8785 bytes of the payload object, raw content already replaced by hashes.
    pub payload_jcs: Vec<u8>,
    /// `payload.tool_name` of a `tool_call` (an index column).
    pub tool: Option<String>,
    /// Personal fields lifted out of the event (`data_subjects`, `payload.<name>`), if any.
    pub personal: Option<Map<String, Value>>,
    /// Data-subject ids found in `data_subjects` (strings, or objects' `id`).
    pub subject_ids: Vec<String>,
    /// Who supplied the event (docs/FORMAT.md §2). `None` seals a version-1 entry, which has no
    /// origin: only tests and tools that reproduce old logs do that; the writer refuses it.
    pub origin: Option<crate::origin::Origin>,
}

/// Whether `k` is one of `set` (a short list is scanned inline, lengths first).
fn in_set(set: &std::collections::BTreeSet<String>, k: &str) -> bool {
    if set.len() <= 16 {
        set.iter().any(|f| key_eq(f, k))
    } else {
        set.contains(k)
    }
}

/// The raw-content names of a policy, with the set of their lengths: most keys are refused by
/// their length alone (every object key of every event is looked up here).
struct RawNames<'p> {
    set: &'p std::collections::BTreeSet<String>,
    /// Bit `n` set when a name has `n` bytes (bit 63: 63 bytes or more).
    lens: u64,
    /// No name ends in `_hash`: renaming `name` to `name_hash` in place cannot meet another
    /// raw name (see [`replace_raw`]).
    simple: bool,
}

impl<'p> RawNames<'p> {
    fn new(policy: &'p RedactionPolicy) -> Self {
        let set = &policy.raw_fields;
        Self {
            set,
            lens: set.iter().fold(0, |m, n| m | Self::bit(n)),
            simple: !set.iter().any(|n| n.ends_with("_hash")),
        }
    }

    fn bit(k: &str) -> u64 {
        1 << k.len().min(63)
    }

    fn contains(&self, k: &str) -> bool {
        self.lens & Self::bit(k) != 0 && in_set(self.set, k)
    }
}

/// Whether `k` is an envelope member of an input event.
fn is_envelope(k: &str) -> bool {
    ENVELOPE_FIELDS.iter().any(|f| key_eq(f, k))
}

fn find(obj: &Obj<'_>, key: &str) -> Result<usize, usize> {
    obj.binary_search_by(|(k, _)| key_cmp(k, key))
}

fn get<'n, 'a>(obj: &'n Obj<'a>, key: &str) -> Option<&'n Node<'a>> {
    find(obj, key).ok().map(|i| &obj[i].1)
}

fn remove<'a>(obj: &mut Obj<'a>, key: &str) -> Option<Node<'a>> {
    find(obj, key).ok().map(|i| obj.remove(i).1)
}

/// Inserts or replaces `key`.
fn insert<'a>(obj: &mut Obj<'a>, key: Cow<'a, str>, v: Node<'a>) {
    match find(obj, &key) {
        Ok(i) => obj[i].1 = v,
        Err(i) => obj.insert(i, (key, v)),
    }
}

// ---- RFC 8785 ----------------------------------------------------------------------------------

/// Appends the RFC 8785 serialisation of `node`: integers as plain decimals, other numbers in
/// ECMAScript form (`ryu-js`, as the reference canonicaliser), strings escaped per §3.2.2.2,
/// members sorted by UTF-16 code units (§3.2.3).
pub(crate) fn write_jcs(node: &Node<'_>, out: &mut Vec<u8>) {
    match node {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(true) => out.extend_from_slice(b"true"),
        Node::Bool(false) => out.extend_from_slice(b"false"),
        Node::Pos(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
        Node::Neg(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        // JSON text cannot hold NaN or infinities, so every parsed float is finite.
        Node::Float(f) => out.extend_from_slice(ryu_js::Buffer::new().format_finite(*f).as_bytes()),
        Node::Str(s) => push_json_str(out, s),
        Node::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_jcs(item, out);
            }
            out.push(b']');
        }
        Node::Obj(members) => {
            out.push(b'{');
            // Members are sorted by UTF-8 bytes; UTF-16 order differs only for keys with
            // characters at or above U+E000 (UTF-8 lead bytes 0xEE and up), so re-sort only then.
            if members
                .windows(2)
                .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes())
                && !members.iter().any(|(k, _)| k.bytes().any(|b| b >= 0xEE))
            {
                write_members(members.iter(), out);
            } else {
                let mut sorted: Vec<&(Cow<'_, str>, Node<'_>)> = members.iter().collect();
                sorted.sort_by(|a, b| utf16_cmp(&a.0, &b.0));
                write_members(sorted.into_iter(), out);
            }
            out.push(b'}');
        }
    }
}

fn write_members<'n, 'a: 'n>(
    members: impl Iterator<Item = &'n (Cow<'a, str>, Node<'a>)>,
    out: &mut Vec<u8>,
) {
    for (i, (k, v)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, k);
        out.push(b':');
        write_jcs(v, out);
    }
}

/// The hash raw content is replaced with: SHA-256 of the UTF-8 text for strings, of the RFC 8785
/// form for any other value.
fn content_hash(v: &Node<'_>) -> Hash {
    match v {
        Node::Str(s) => Hash::digest(s.as_bytes()),
        other => {
            let mut buf = Vec::with_capacity(256);
            write_jcs(other, &mut buf);
            Hash::digest(&buf)
        }
    }
}

fn is_prefixed_hash(v: &Node<'_>) -> bool {
    v.as_str().is_some_and(|s| {
        s.strip_prefix(crate::hash::SHA256_PREFIX)
            .is_some_and(|h| crate::hash::decode_hex32(h.as_bytes()).is_some())
    })
}

// ---- validation and redaction --------------------------------------------------------------------

/// Where a value is, built only when an error needs it.
#[derive(Clone, Copy)]
enum Path<'p> {
    Root(&'p str),
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl Path<'_> {
    fn render(&self) -> String {
        match self {
            Self::Root(r) => (*r).to_owned(),
            Self::Key(parent, k) => {
                let p = parent.render();
                if p.is_empty() {
                    (*k).to_owned()
                } else {
                    format!("{p}.{k}")
                }
            }
            Self::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

fn field_err(field: &str, problem: impl Into<String>) -> Error {
    Error::Field(FieldError::new(field, problem))
}

/// Replaces raw content by hashes and checks integers and depth, recursively.
fn redact(
    v: &mut Node<'_>,
    path: Path<'_>,
    depth: usize,
    policy: &RawNames<'_>,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(field_err(
            &path.render(),
            format!("nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    match v {
        Node::Pos(u) if *u > MAX_SAFE_INTEGER => Err(beyond_safe(path)),
        Node::Neg(i) if i.unsigned_abs() > MAX_SAFE_INTEGER => Err(beyond_safe(path)),
        Node::Arr(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                redact(item, Path::Index(&path, i), depth + 1, policy)?;
            }
            Ok(())
        }
        Node::Obj(map) => {
            if map.iter().any(|(k, _)| policy.contains(k)) {
                replace_raw(map, path, policy)?;
            }
            for (k, item) in map.iter_mut() {
                redact(item, Path::Key(&path, k), depth + 1, policy)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn beyond_safe(path: Path<'_>) -> Error {
    field_err(
        &path.render(),
        "is an integer beyond ±2^53-1, which RFC 8785 cannot represent exactly; send it as a string",
    )
}

/// The `_hash` member that replaces raw member `key`, and its value: `value` itself when it is
/// already a `sha256:` digest, else the digest of the content.
fn hashed_member<'a>(key: &str, value: Node<'a>) -> (Cow<'a, str>, Node<'a>) {
    let hashed = if is_prefixed_hash(&value) {
        value
    } else {
        let mut s = Vec::with_capacity(71);
        content_hash(&value).push_prefixed(&mut s);
        Node::Str(Cow::Owned(String::from_utf8(s).unwrap_or_default()))
    };
    let mut hash_key = String::with_capacity(key.len() + 5);
    hash_key.push_str(key);
    hash_key.push_str("_hash");
    (Cow::Owned(hash_key), hashed)
}

fn conflict(path: Path<'_>, hash_key: &str) -> Error {
    let key = hash_key.strip_suffix("_hash").unwrap_or(hash_key);
    let at = Path::Key(&path, hash_key).render();
    field_err(
        &at,
        format!("is given, and so is raw `{key}`, but they do not match; send one of them"),
    )
}

/// `name: value` becomes `name_hash: "sha256:…"` for every raw-content member of `map`.
fn replace_raw(map: &mut Obj<'_>, path: Path<'_>, policy: &RawNames<'_>) -> Result<(), Error> {
    if policy.simple {
        // Renamed in place, then sorted again: a `name_hash` sent beside raw `name` is then
        // next to it, and must be the same digest.
        for member in map.iter_mut() {
            if policy.contains(&member.0) {
                let (key, value) = std::mem::replace(member, (Cow::Borrowed(""), Node::Null));
                *member = hashed_member(&key, value);
            }
        }
        map.sort_by(|a, b| key_cmp(&a.0, &b.0));
        let mut i = 1;
        while i < map.len() {
            if key_eq(&map[i - 1].0, &map[i].0) {
                if map[i - 1].1 != map[i].1 {
                    return Err(conflict(path, &map[i].0));
                }
                map.remove(i);
            } else {
                i += 1;
            }
        }
        return Ok(());
    }
    let raw: Vec<String> = map
        .iter()
        .filter(|(k, _)| policy.contains(k))
        .map(|(k, _)| k.clone().into_owned())
        .collect();
    for key in raw {
        let Some(value) = remove(map, &key) else {
            continue;
        };
        let (hash_key, hashed) = hashed_member(&key, value);
        if let Some(existing) = get(map, &hash_key)
            && existing != &hashed
        {
            return Err(conflict(path, &hash_key));
        }
        insert(map, hash_key, hashed);
    }
    Ok(())
}

/// Checks the seed's typed payloads (`llm_request`, `tool_call`); other types are free-form.
/// Returns the tool name of a `tool_call`.
fn check_typed_payload(event_type: &str, p: &Obj<'_>) -> Result<Option<String>, Error> {
    #[derive(Clone, Copy)]
    enum T {
        Str,
        Hash,
        Count,
        Number,
        Bool,
        Object,
        Array,
    }
    fn check(p: &Obj<'_>, prefix: &str, key: &str, t: T, required: bool) -> Result<(), Error> {
        let path = || format!("{prefix}{key}");
        let Some(v) = get(p, key) else {
            return if required {
                Err(field_err(&path(), "is required"))
            } else {
                Ok(())
            };
        };
        let (ok, want) = match t {
            T::Str => (matches!(v, Node::Str(_)), "a string"),
            T::Hash => (is_prefixed_hash(v), "a digest `sha256:<64 lowercase hex>`"),
            T::Count => (matches!(v, Node::Pos(_)), "a non-negative integer"),
            T::Number => (
                v.as_f64().is_some_and(|f| f >= 0.0),
                "a non-negative number",
            ),
            T::Bool => (matches!(v, Node::Bool(_)), "true or false"),
            T::Object => (matches!(v, Node::Obj(_)), "an object"),
            T::Array => (matches!(v, Node::Arr(_)), "an array"),
        };
        if ok {
            Ok(())
        } else {
            Err(field_err(
                &path(),
                format!("must be {want}, not {}", v.type_name()),
            ))
        }
    }
    match event_type {
        "llm_request" => {
            check(p, "payload.", "model", T::Str, true)?;
            check(p, "payload.", "prompt_hash", T::Hash, false)?;
            check(p, "payload.", "completion_hash", T::Hash, false)?;
            check(p, "payload.", "token_count_in", T::Count, false)?;
            check(p, "payload.", "token_count_out", T::Count, false)?;
            check(p, "payload.", "latency_ms", T::Number, false)?;
            check(p, "payload.", "tool_calls", T::Array, false)?;
            if let Some(Node::Arr(calls)) = get(p, "tool_calls") {
                for (i, c) in calls.iter().enumerate() {
                    let prefix = format!("payload.tool_calls[{i}].");
                    let Node::Obj(c) = c else {
                        return Err(field_err(
                            prefix.trim_end_matches('.'),
                            format!("must be an object, not {}", c.type_name()),
                        ));
                    };
                    check(c, &prefix, "name", T::Str, true)?;
                    check(c, &prefix, "args_hash", T::Hash, false)?;
                    check(c, &prefix, "result_hash", T::Hash, false)?;
                }
            }
            Ok(None)
        }
        "tool_call" => {
            check(p, "payload.", "tool_name", T::Str, true)?;
            for key in ["agent_role", "invocation_id"] {
                check(p, "payload.", key, T::Str, false)?;
            }
            check(p, "payload.", "args", T::Object, false)?;
            check(p, "payload.", "duration_ms", T::Number, false)?;
            check(p, "payload.", "authorization", T::Object, false)?;
            if let Some(Node::Obj(a)) = get(p, "authorization") {
                check(a, "payload.authorization.", "rbac_role", T::Str, false)?;
                check(a, "payload.authorization.", "allowed", T::Bool, false)?;
                check(a, "payload.authorization.", "policy_matched", T::Str, false)?;
            }
            check(p, "payload.", "result", T::Object, false)?;
            if let Some(Node::Obj(r)) = get(p, "result") {
                check(r, "payload.result.", "rows_returned", T::Count, false)?;
                check(r, "payload.result.", "result_hash", T::Hash, false)?;
                check(r, "payload.result.", "data_classification", T::Str, false)?;
            }
            Ok(get(p, "tool_name")
                .and_then(Node::as_str)
                .map(str::to_owned))
        }
        "tool_result" => {
            // The outcome of a call recorded apart from it (the MCP gateway, docs/MCP.md):
            // indexed by its tool like the call.
            check(p, "payload.", "tool_name", T::Str, true)?;
            for key in ["invocation_id", "decision_entry_id", "status"] {
                check(p, "payload.", key, T::Str, false)?;
            }
            check(p, "payload.", "is_error", T::Bool, false)?;
            check(p, "payload.", "duration_ms", T::Number, false)?;
            check(p, "payload.", "result_data_hash", T::Hash, false)?;
            Ok(get(p, "tool_name")
                .and_then(Node::as_str)
                .map(str::to_owned))
        }
        _ => Ok(None),
    }
}

fn take_string<'a>(obj: &mut Obj<'a>, key: &str) -> Result<Option<Cow<'a, str>>, Error> {
    match remove(obj, key) {
        None | Some(Node::Null) => Ok(None),
        Some(Node::Str(s)) => Ok(Some(s)),
        Some(other) => Err(field_err(
            key,
            format!("must be a string, not {}", other.type_name()),
        )),
    }
}

fn subject_ids(v: &Node<'_>) -> Result<Vec<String>, Error> {
    let Node::Arr(items) = v else {
        return Err(field_err(
            "data_subjects",
            format!(
                "must be an array of ids or {{\"id\":…,\"category\":…}} objects, not {}",
                v.type_name()
            ),
        ));
    };
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let id = match item {
            Node::Str(s) => s.as_ref(),
            Node::Obj(o) => get(o, "id").and_then(Node::as_str).ok_or_else(|| {
                field_err(
                    &format!("data_subjects[{i}].id"),
                    "is required and must be a string",
                )
            })?,
            other => {
                return Err(field_err(
                    &format!("data_subjects[{i}]"),
                    format!(
                        "must be a string id or an object with `id`, not {}",
                        other.type_name()
                    ),
                ));
            }
        };
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(field_err(
                &format!("data_subjects[{i}]"),
                "must be an id of 1-256 characters without control characters",
            ));
        }
        ids.push(id.to_owned());
    }
    Ok(ids)
}

/// Reads one event (a JSON object) from its text and normalises it: the fast path of
/// [`normalize`] for bytes off the wire.
///
/// The text is read by [`crate::json::read`], with the rules every input of Blackbox is read
/// with (UTF-8, one JSON value, no duplicate keys at any depth, nesting).
///
/// # Errors
/// [`Error::Json`] when the text breaks a rule of [`crate::json`]; otherwise as [`normalize`].
pub fn normalize_json(
    text: &[u8],
    policy: &RedactionPolicy,
    origin: &Origin,
) -> Result<NormalizedEvent, Error> {
    normalize(crate::json::read(text)?, policy, origin)
}

/// Validates, redacts and canonicalises one input event.
///
/// Top-level fields other than the envelope (`tenant_id agent_id session_id event_type timestamp
/// client_seq payload`) are moved into `payload`, so the seed's flat `tool_call` shape is
/// accepted as is.
///
/// # Errors
/// [`Error::Field`] naming the offending field (its JSON path) and the problem.
pub fn normalize(
    event: Node<'_>,
    policy: &RedactionPolicy,
    origin: &Origin,
) -> Result<NormalizedEvent, Error> {
    normalize_inspect(event, policy, origin, &mut |_, _| {})
}

/// As [`normalize`], showing the payload to `inspect` (with the event type) after the flat
/// members were moved into it and *before* raw content is replaced by hashes: anomaly detection
/// scans raw tool arguments there, in memory, without anything of it being kept.
///
/// # Errors
/// As [`normalize`].
pub fn normalize_inspect(
    event: Node<'_>,
    policy: &RedactionPolicy,
    origin: &Origin,
    inspect: &mut dyn FnMut(&str, &Obj<'_>),
) -> Result<NormalizedEvent, Error> {
    let Node::Obj(mut obj) = event else {
        return Err(Error::Json(format!(
            "an event must be a JSON object, not {}",
            event.type_name()
        )));
    };
    for f in ASSIGNED_FIELDS.iter().chain(&["personal_digest"]) {
        if get(&obj, f).is_some() {
            return Err(field_err(
                f,
                "is assigned by the log and must not be sent; remove it",
            ));
        }
    }
    let tenant_id = take_string(&mut obj, "tenant_id")?
        .map(|s| TenantId::parse(&s))
        .transpose()?;
    let agent_id = AgentId::parse(
        &take_string(&mut obj, "agent_id")?.ok_or_else(|| field_err("agent_id", "is required"))?,
    )?;
    let session_id = SessionId::parse(
        &take_string(&mut obj, "session_id")?
            .ok_or_else(|| field_err("session_id", "is required"))?,
    )?;
    let event_type = EventType::parse(
        &take_string(&mut obj, "event_type")?
            .ok_or_else(|| field_err("event_type", "is required"))?,
    )?;
    if event_type.as_str() == crate::erasure::EVENT_TYPE {
        return Err(field_err(
            "event_type",
            "`erasure` is reserved for the log's own erasure markers; use another event type",
        ));
    }
    if !origin.is_service() && crate::origin::is_reserved(event_type.as_str()) {
        return Err(field_err(
            "event_type",
            format!(
                "`{}` is reserved: only the Blackbox service writes it (docs/FORMAT.md §3 lists \
                 the reserved types); use another event type",
                event_type.as_str()
            ),
        ));
    }
    let timestamp_ms = take_string(&mut obj, "timestamp")?
        .map(|s| parse_timestamp(&s).map_err(|p| field_err("timestamp", p)))
        .transpose()?;
    let client_seq = match remove(&mut obj, "client_seq") {
        None | Some(Node::Null) => None,
        Some(Node::Pos(n)) if n <= MAX_SAFE_INTEGER => Some(n),
        Some(_) => {
            return Err(field_err(
                "client_seq",
                "must be a non-negative integer up to 2^53-1",
            ));
        }
    };
    let mut payload = match remove(&mut obj, "payload") {
        None | Some(Node::Null) => Obj::new(),
        Some(Node::Obj(m)) => m,
        Some(other) => {
            return Err(field_err(
                "payload",
                format!("must be an object, not {}", other.type_name()),
            ));
        }
    };

    // Personal fields: top level of the event, then top level of the payload.
    let mut personal: Obj<'_> = Obj::new();
    let mut subjects = Vec::new();
    for name in &policy.personal_fields {
        if let Some(v) = remove(&mut obj, name).filter(|v| !v.is_empty()) {
            if name == "data_subjects" {
                subjects.extend(subject_ids(&v)?);
            }
            insert(&mut personal, Cow::Owned(name.clone()), v);
        }
        if let Some(v) = remove(&mut payload, name).filter(|v| !v.is_empty()) {
            insert(&mut personal, Cow::Owned(format!("payload.{name}")), v);
        }
    }
    for (k, v) in obj {
        if is_envelope(&k) {
            continue;
        }
        if get(&payload, &k).is_some() {
            return Err(field_err(
                &k,
                "is given both at the top level and inside `payload`; send it once",
            ));
        }
        insert(&mut payload, k, v);
    }
    inspect(event_type.as_str(), &payload);
    let mut payload = Node::Obj(payload);
    redact(
        &mut payload,
        Path::Root("payload"),
        1,
        &RawNames::new(policy),
    )?;
    let Node::Obj(payload_map) = &payload else {
        return Err(field_err("payload", "must be an object"));
    };
    let tool = check_typed_payload(event_type.as_str(), payload_map)?;
    let mut payload_jcs = Vec::with_capacity(1024);
    write_jcs(&payload, &mut payload_jcs);
    let personal = if personal.is_empty() {
        None
    } else {
        let mut pv = Node::Obj(personal);
        let raw_only = RedactionPolicy {
            raw_fields: policy.raw_fields.clone(),
            personal_fields: std::collections::BTreeSet::new(),
        };
        redact(&mut pv, Path::Root(""), 1, &RawNames::new(&raw_only))?;
        match pv.to_value() {
            Value::Object(m) => Some(m),
            _ => None,
        }
    };
    Ok(NormalizedEvent {
        tenant_id,
        agent_id,
        session_id,
        event_type,
        timestamp_ms,
        client_seq,
        payload_jcs,
        tool,
        personal,
        subject_ids: subjects,
        origin: Some(origin.clone()),
    })
}

/// Replaces raw content in an event, in place, by its hash, exactly as the service would
/// (docs/FORMAT.md §4): for clients that hash before sending, so that raw prompts and query text
/// never leave the agent. Nothing else of the event changes; the service then keeps the
/// already-hashed values as they are.
///
/// # Errors
/// [`Error::Field`] when a raw field and its `_hash` are both given and disagree, an integer is
/// beyond ±2^53−1, or the event nests deeper than [`MAX_DEPTH`].
pub fn hash_raw_content(event: &mut Value, policy: &RedactionPolicy) -> Result<(), Error> {
    let mut node = Node::from_value(event);
    let raw = RawNames::new(policy);
    // Envelope members are never raw content; the payload and the flat members are.
    if let Node::Obj(members) = &mut node {
        for (k, v) in members.iter_mut() {
            if is_envelope(k) && k != "payload" {
                continue;
            }
            if raw.contains(k) {
                continue; // handled below, at this level
            }
            redact(v, Path::Key(&Path::Root(""), k), 2, &raw)?;
        }
        replace_raw(members, Path::Root(""), &raw)?;
    }
    *event = node.to_value();
    Ok(())
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn objects_from_values_are_sorted_whatever_the_map_order() {
        // With serde_json's `preserve_order` (enabled in this workspace by serde-saphyr), maps
        // keep insertion order; lookups in a Node need sorted members.
        let mut m = serde_json::Map::new();
        m.insert("zeta".into(), Value::from(1));
        m.insert("alpha".into(), Value::from(2));
        let v = Value::Object(m);
        let Node::Obj(o) = Node::from_value(&v) else {
            panic!("an object")
        };
        let keys: Vec<&str> = o.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["alpha", "zeta"]);
    }
}
