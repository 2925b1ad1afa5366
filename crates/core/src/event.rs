//! Input events: a borrowed JSON tree, and the validation, redaction and RFC 8785 serialisation
//! that turn an event into a [`NormalizedEvent`].
//!
//! Events are read into [`Node`], a tree whose strings borrow from the input and whose objects
//! are sorted vectors, rather than into `serde_json::Value` (a `BTreeMap` node and an owned
//! `String` per member): appending spends most of its time here, once per event. The rules are
//! those of docs/FORMAT.md §3–§5; [`crate::entry::normalize_event`] applies them to a `Value`
//! through the same code.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::entry::{
    ASSIGNED_FIELDS, ENVELOPE_FIELDS, MAX_DEPTH, NormalizedEvent, RedactionPolicy, parse_timestamp,
    push_json_str, utf16_cmp,
};
use crate::error::{Error, FieldError};
use crate::hash::Hash;
use crate::ids::{AgentId, EventType, MAX_SAFE_INTEGER, SessionId, TenantId};

/// A JSON value whose strings borrow from the input where they can.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A non-negative integer.
    Pos(u64),
    /// A negative integer.
    Neg(i64),
    /// Any other number.
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// An array.
    Arr(Vec<Node<'a>>),
    /// An object: members sorted by key (bytes), keys unique (the last of duplicates wins, as in
    /// `serde_json`).
    Obj(Obj<'a>),
}

/// The members of an object, sorted by key.
pub type Obj<'a> = Vec<(Cow<'a, str>, Node<'a>)>;

impl<'a> Node<'a> {
    /// The same value, borrowing from `v`.
    #[must_use]
    pub fn from_value(v: &'a Value) -> Self {
        match v {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => n
                .as_u64()
                .map(Self::Pos)
                .or_else(|| n.as_i64().map(Self::Neg))
                .unwrap_or_else(|| Self::Float(n.as_f64().unwrap_or(0.0))),
            Value::String(s) => Self::Str(Cow::Borrowed(s)),
            Value::Array(a) => Self::Arr(a.iter().map(Self::from_value).collect()),
            // serde_json's map iterates in key order, unless a crate in the build turns on its
            // `preserve_order` feature (serde-saphyr does): sort, cheaply when already sorted.
            Value::Object(m) => {
                let mut members: Obj<'a> = m
                    .iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Self::from_value(v)))
                    .collect();
                if !members
                    .windows(2)
                    .all(|w| key_cmp(&w[0].0, &w[1].0).is_lt())
                {
                    members.sort_by(|a, b| key_cmp(&a.0, &b.0));
                }
                Self::Obj(members)
            }
        }
    }

    /// The same value as a `serde_json::Value`.
    #[must_use]
    pub fn to_value(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Pos(u) => Value::from(*u),
            Self::Neg(i) => Value::from(*i),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Self::Str(s) => Value::String(s.clone().into_owned()),
            Self::Arr(a) => Value::Array(a.iter().map(Self::to_value).collect()),
            Self::Obj(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone().into_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Pos(_) | Self::Neg(_) | Self::Float(_) => "a number",
            Self::Str(_) => "a string",
            Self::Arr(_) => "an array",
            Self::Obj(_) => "an object",
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            #[allow(clippy::cast_precision_loss)] // as serde_json's Number::as_f64 does
            Self::Pos(u) => Some(*u as f64),
            #[allow(clippy::cast_precision_loss)]
            Self::Neg(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Null, `[]` and `{}` name nobody (a personal field holding one is dropped).
    fn is_empty(&self) -> bool {
        match self {
            Self::Null => true,
            Self::Arr(a) => a.is_empty(),
            Self::Obj(o) => o.is_empty(),
            _ => false,
        }
    }
}

/// Byte-wise order of two member keys (`str`'s order), compared inline: keys are short, and a
/// call to `memcmp` per comparison was a tenth of `append`'s profile.
#[inline]
fn key_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

#[inline]
fn key_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && key_cmp(a, b).is_eq()
}

/// Whether `k` is one of `set` (a short list is scanned inline, lengths first).
fn in_set(set: &std::collections::BTreeSet<String>, k: &str) -> bool {
    if set.len() <= 16 {
        set.iter().any(|f| key_eq(f, k))
    } else {
        set.contains(k)
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

/// Sorts freshly read members by key, keeping the last of duplicates.
fn sort_members(mut m: Obj<'_>) -> Obj<'_> {
    if m.windows(2).all(|w| key_cmp(&w[0].0, &w[1].0).is_lt()) {
        return m;
    }
    // Stable: among equal keys the later stays later, and is the one kept.
    m.sort_by(|a, b| key_cmp(&a.0, &b.0));
    let mut out: Obj<'_> = Vec::with_capacity(m.len());
    for (k, v) in m {
        match out.last_mut() {
            Some(last) if key_eq(&last.0, &k) => last.1 = v,
            _ => out.push((k, v)),
        }
    }
    out
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Pos(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(u64::try_from(v).map_or(Node::Neg(v), Node::Pos))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Node::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Node::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(k) = map.next_key::<Key<'de>>()? {
            out.push((k.0, map.next_value()?));
        }
        Ok(Node::Obj(sort_members(out)))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
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
            // characters at or above U+E000, so re-sort only then.
            if members
                .windows(2)
                .all(|w| utf16_cmp(&w[0].0, &w[1].0).is_lt())
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
    policy: &RedactionPolicy,
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
            if map.iter().any(|(k, _)| in_set(&policy.raw_fields, k)) {
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

/// `name: value` becomes `name_hash: "sha256:…"` for every raw-content member of `map`.
fn replace_raw(map: &mut Obj<'_>, path: Path<'_>, policy: &RedactionPolicy) -> Result<(), Error> {
    let raw: Vec<String> = map
        .iter()
        .filter(|(k, _)| in_set(&policy.raw_fields, k))
        .map(|(k, _)| k.clone().into_owned())
        .collect();
    for key in raw {
        let Some(value) = remove(map, &key) else {
            continue;
        };
        let hashed = if is_prefixed_hash(&value) {
            value
        } else {
            let mut s = Vec::with_capacity(71);
            content_hash(&value).push_prefixed(&mut s);
            Node::Str(Cow::Owned(String::from_utf8(s).unwrap_or_default()))
        };
        let hash_key = format!("{key}_hash");
        if let Some(existing) = get(map, &hash_key)
            && existing != &hashed
        {
            let at = Path::Key(&path, &hash_key).render();
            return Err(field_err(
                &at,
                format!("is given, and so is raw `{key}`, but they do not match; send one of them"),
            ));
        }
        insert(map, Cow::Owned(hash_key), hashed);
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
/// # Errors
/// [`Error::Json`] when the text is not JSON; otherwise as [`normalize`].
pub fn normalize_json(text: &[u8], policy: &RedactionPolicy) -> Result<NormalizedEvent, Error> {
    let node: Node<'_> = match read_simple_json(text) {
        Some(node) => node,
        None => serde_json::from_slice(text).map_err(|e| Error::Json(e.to_string()))?,
    };
    normalize(node, policy)
}

/// Deepest nesting [`read_simple_json`] follows (serde_json's own limit).
const SIMPLE_JSON_DEPTH: usize = 128;

/// Reads `text` into the [`Node`] serde_json would give, without serde, when the text is simple:
/// strings without escapes and non-negative integers of at most 18 digits (any other number is
/// read by serde_json itself, so it comes out exactly as there). `None` for anything else,
/// invalid JSON included: the caller then reads the text with serde_json, whose error is the one
/// reported. Most events are simple, and serde's visitor machinery was a sixth of `append`.
fn read_simple_json(text: &[u8]) -> Option<Node<'_>> {
    let mut r = SimpleJson {
        s: std::str::from_utf8(text).ok()?,
        i: 0,
    };
    r.ws();
    let v = r.value(0)?;
    r.ws();
    (r.i == text.len()).then_some(v)
}

struct SimpleJson<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> SimpleJson<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn lit(&mut self, l: &str, v: Node<'a>) -> Option<Node<'a>> {
        self.s.get(self.i..)?.starts_with(l).then(|| {
            self.i += l.len();
            v
        })
    }

    /// After a member or element: `,` (another follows: `true`) or `close` (`false`).
    fn more(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = self.peek()?;
        self.i += 1;
        self.ws();
        match c {
            b',' => Some(true),
            _ if c == close => Some(false),
            _ => None,
        }
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = start + crate::line_scan::skip_plain(&self.s.as_bytes()[start..]);
        self.i = end;
        self.eat(b'"')?;
        self.s.get(start..end)
    }

    fn value(&mut self, depth: usize) -> Option<Node<'a>> {
        match self.peek()? {
            b'{' => {
                if depth >= SIMPLE_JSON_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                let mut out: Obj<'a> = Vec::new();
                if self.eat(b'}').is_some() {
                    return Some(Node::Obj(out));
                }
                loop {
                    let k = self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    out.push((Cow::Borrowed(k), self.value(depth + 1)?));
                    if !self.more(b'}')? {
                        return Some(Node::Obj(sort_members(out)));
                    }
                }
            }
            b'[' => {
                if depth >= SIMPLE_JSON_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                let mut out = Vec::new();
                if self.eat(b']').is_some() {
                    return Some(Node::Arr(out));
                }
                loop {
                    out.push(self.value(depth + 1)?);
                    if !self.more(b']')? {
                        return Some(Node::Arr(out));
                    }
                }
            }
            b'"' => self.string().map(|s| Node::Str(Cow::Borrowed(s))),
            b't' => self.lit("true", Node::Bool(true)),
            b'f' => self.lit("false", Node::Bool(false)),
            b'n' => self.lit("null", Node::Null),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.i += 1;
                }
                let t = self.s.get(start..self.i)?;
                let plain = t.len() <= 18
                    && t.bytes().all(|c| c.is_ascii_digit())
                    && (t.len() == 1 || !t.starts_with('0'));
                if plain {
                    t.parse().ok().map(Node::Pos)
                } else {
                    serde_json::from_str(t).ok()
                }
            }
            _ => None,
        }
    }
}

/// Validates, redacts and canonicalises one input event.
///
/// Top-level fields other than the envelope (`tenant_id agent_id session_id event_type timestamp
/// client_seq payload`) are moved into `payload`, so the seed's flat `tool_call` shape is
/// accepted as is.
///
/// # Errors
/// [`Error::Field`] naming the offending field (its JSON path) and the problem.
pub fn normalize(event: Node<'_>, policy: &RedactionPolicy) -> Result<NormalizedEvent, Error> {
    normalize_inspect(event, policy, &mut |_, _| {})
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
    if crate::alert::TRIAGE_EVENT_TYPES.contains(&event_type.as_str()) {
        return Err(field_err(
            "event_type",
            format!(
                "`{}` is reserved: alert triage is written by the service for admin tokens (POST /v1/alerts/{{alert_id}}/ack|resolve) or by `blackbox alerts`; use another event type",
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
    redact(&mut payload, Path::Root("payload"), 1, policy)?;
    let Node::Obj(payload_map) = &payload else {
        return Err(field_err("payload", "must be an object"));
    };
    let tool = check_typed_payload(event_type.as_str(), payload_map)?;
    let mut payload_jcs = Vec::with_capacity(512);
    write_jcs(&payload, &mut payload_jcs);
    let personal = if personal.is_empty() {
        None
    } else {
        let mut pv = Node::Obj(personal);
        let raw_only = RedactionPolicy {
            raw_fields: policy.raw_fields.clone(),
            personal_fields: std::collections::BTreeSet::new(),
        };
        redact(&mut pv, Path::Root(""), 1, &raw_only)?;
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
    // Envelope members are never raw content; the payload and the flat members are.
    if let Node::Obj(members) = &mut node {
        for (k, v) in members.iter_mut() {
            if is_envelope(k) && k != "payload" {
                continue;
            }
            if in_set(&policy.raw_fields, k) {
                continue; // handled below, at this level
            }
            redact(v, Path::Key(&Path::Root(""), k), 2, policy)?;
        }
        replace_raw(members, Path::Root(""), policy)?;
    }
    *event = node.to_value();
    Ok(())
}

#[cfg(test)]
mod simple_json_tests {
    use super::*;
    use proptest::prelude::*;

    /// What the simple reader gives is what serde_json gives; what it refuses, serde decides.
    fn agrees(text: &[u8]) -> Result<(), TestCaseError> {
        if let Some(fast) = read_simple_json(text) {
            let serde: Result<Node<'_>, _> = serde_json::from_slice(text);
            prop_assert!(
                serde.is_ok(),
                "accepted what serde refuses: {}",
                String::from_utf8_lossy(text)
            );
            prop_assert_eq!(fast, serde.unwrap(), "{}", String::from_utf8_lossy(text));
        }
        Ok(())
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e20f64..1e20).prop_map(Value::from),
            Just(serde_json::json!(-0.0)),
            Just(serde_json::json!(1e300)),
            "[a-z \"\\\u{1}\u{7f}\u{e9}\u{1f600}]{0,10}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-z\"]{0,4}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn simple_reader_agrees_with_serde(v in json(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3)) {
            for text in [serde_json::to_vec(&v).unwrap(), serde_json::to_vec_pretty(&v).unwrap()] {
                agrees(&text)?;
                let mut t = text.clone();
                for (i, b) in &edits {
                    let at = i.index(t.len());
                    t[at] = *b;
                }
                agrees(&t)?;
            }
        }
    }

    #[test]
    fn simple_reader_handles_the_common_event_and_leaves_the_rest_to_serde() {
        let ev = br#" {"agent_id":"a","n":[1,2.5,-3,0,123456789012345678,1234567890123456789,-0,1e2],"p":{"k":true,"l":null},"a":"x","a":"y"} "#;
        let fast = read_simple_json(ev).unwrap();
        assert_eq!(fast, serde_json::from_slice::<Node<'_>>(ev).unwrap());
        for other in [
            &br#"{"a":"\u00e9"}"#[..],
            br#"{"a":"x\"y"}"#,
            b"{\"a\":\"\x01\"}",
            br#"{"a":1,}"#,
            br#"{"a":01}"#,
            br#"{"a":1} x"#,
            br#"{"a"}"#,
            b"",
            b"\xef\xbb\xbf{}",
        ] {
            assert!(
                read_simple_json(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(read_simple_json(deep.as_bytes()).is_none());
        let ok_deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            read_simple_json(ok_deep.as_bytes()).unwrap(),
            serde_json::from_str::<Node<'_>>(&ok_deep).unwrap()
        );
    }
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
