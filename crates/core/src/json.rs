//! Reading JSON input: the one set of rules every JSON text Blackbox takes in is read with —
//! agent events (`blackbox append`, `POST /v1/events`) and every request body of the service.
//!
//! The rules (docs/FORMAT.md §3, "Reading JSON input"; docs/API.md, "Request bodies"):
//!
//! 1. The text is UTF-8 (no byte-order mark).
//! 2. It is one JSON value (RFC 8259), with optional whitespace around it.
//! 3. No object gives the same key twice, at any depth, keys compared after unescaping
//!    (`"a"` and `"\u0061"` are the same key). RFC 8259 §4 leaves duplicates to the reader, and
//!    readers differ (first wins, last wins): a proxy that reads the first `tenant_id` would see
//!    another tenant than the log records, so Blackbox refuses them (as I-JSON, RFC 7493 §2.3).
//! 4. Arrays and objects nest at most [`MAX_NESTING`] levels.
//! 5. A number is read exactly as an integer when it has neither fraction nor exponent and fits
//!    64 bits, otherwise as an IEEE 754 double; a number beyond the doubles (`1e400`) is refused.
//!    What an integer may be then depends on where it is: entries hold integers within
//!    ±(2^53−1) only (docs/FORMAT.md §2), so events with larger ones are refused when
//!    normalised.
//! 6. One event is at most [`MAX_EVENT_BYTES`] (callers check it before reading; a request body's
//!    limit is the service's).
//!
//! [`read`] applies them. A serde-free reader handles the common text (strings without escapes,
//! small non-negative integers) and [`Node`]'s serde `Deserialize` handles the rest; both refuse
//! what the rules refuse, and the error always comes from the second, so it is the same whichever
//! reader saw the text first.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::Error;
use crate::node::{Node, Obj, key_cmp, key_eq};

/// Deepest nesting of arrays and objects accepted (below `serde_json`'s own limit of 128, so
/// that the error is ours and names where).
pub const MAX_NESTING: usize = 100;

/// Largest input event, in bytes: an input line of `blackbox append`, an event of
/// `POST /v1/events`.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Reads a JSON text under the rules of this module.
///
/// # Errors
/// [`Error::Json`] saying which rule the text breaks and where (byte offset, or line and column,
/// and the JSON path of a duplicate key or a too deep value).
pub fn read(text: &[u8]) -> Result<Node<'_>, Error> {
    let s = std::str::from_utf8(text).map_err(|e| {
        Error::Json(format!(
            "the text is not UTF-8 (invalid byte at offset {}); send UTF-8",
            e.valid_up_to()
        ))
    })?;
    if let Some(node) = read_simple(s) {
        return Ok(node);
    }
    let mut de = serde_json::Deserializer::from_str(s);
    NodeSeed::ROOT
        .deserialize(&mut de)
        .and_then(|node| de.end().map(|()| node))
        .map_err(|e| Error::Json(with_position(&e, s)))
}

/// `serde_json`'s message, with the position said as `at column C` when the text is one line
/// (an event of NDJSON, or of `blackbox append`, whose caller names the line of the input):
/// "line 7: … at line 1 column 35" would name two different lines.
fn with_position(e: &serde_json::Error, text: &str) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&suffix) {
        Some(msg) if !text.contains('\n') => format!("{msg} at column {}", e.column()),
        _ => full,
    }
}

/// [`read`], as a `serde_json::Value`: for request bodies then deserialised into their type
/// (`serde_json::from_value`).
///
/// # Errors
/// As [`read`].
pub fn read_value(text: &[u8]) -> Result<Value, Error> {
    read(text).map(|node| node.to_value())
}

/// Where a value is in a document, as a JSON path (`$.payload.args[0]`), built only for errors.
#[derive(Clone, Copy)]
enum At<'p> {
    Root,
    Key(&'p At<'p>, &'p str),
    Index(&'p At<'p>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Root => f.write_str("$"),
            Self::Key(parent, k) => {
                parent.fmt(f)?;
                let plain = !k.is_empty()
                    && k.len() <= 64
                    && k.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
                if plain {
                    write!(f, ".{k}")
                } else {
                    write!(f, "[{}]", quoted(k))
                }
            }
            Self::Index(parent, i) => {
                parent.fmt(f)?;
                write!(f, "[{i}]")
            }
        }
    }
}

/// A key as a JSON string, cut after 64 characters (a key is the client's own text, shown back
/// to it; never a secret of the service).
fn quoted(k: &str) -> String {
    let cut: String = k.chars().take(64).collect();
    let mut s = serde_json::to_string(&cut).unwrap_or_default();
    if cut.len() < k.len() {
        s.push('…');
    }
    s
}

fn duplicate_key(key: &str, at: At<'_>) -> String {
    format!(
        "duplicate key {} in the object at {at}: each key may appear once in an object; remove the repeated member",
        quoted(key)
    )
}

fn too_deep(at: At<'_>) -> String {
    format!(
        "the value at {at} nests deeper than {MAX_NESTING} arrays and objects; send a flatter document"
    )
}

/// Sorts freshly read members by key; `Err` with the key given twice.
pub(crate) fn sort_members(mut m: Obj<'_>) -> Result<Obj<'_>, Cow<'_, str>> {
    // Most objects arrive sorted or nearly so: one pass says whether there is anything to do, and
    // in a strictly increasing sequence no key repeats.
    if m.windows(2).all(|w| key_cmp(&w[0].0, &w[1].0).is_lt()) {
        return Ok(m);
    }
    m.sort_by(|a, b| key_cmp(&a.0, &b.0));
    if let Some(w) = m.windows(2).find(|w| key_eq(&w[0].0, &w[1].0)) {
        return Err(w[0].0.clone());
    }
    Ok(m)
}

// ---- serde -------------------------------------------------------------------------------------

impl<'de> Deserialize<'de> for Node<'de> {
    /// Reads any JSON value under the rules of this module (no duplicate keys, nesting).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        NodeSeed::ROOT.deserialize(d)
    }
}

/// Reads a value knowing where it is (for errors) and how deep (`depth`: the level it has if it
/// is an array or object, 1 at the top).
#[derive(Clone, Copy)]
struct NodeSeed<'p> {
    at: At<'p>,
    depth: usize,
}

impl NodeSeed<'_> {
    const ROOT: NodeSeed<'static> = NodeSeed {
        at: At::Root,
        depth: 1,
    };
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_> {
    type Value = Node<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

/// Members past which a duplicate is looked up in a set rather than by comparing with every
/// earlier key.
const LINEAR_KEYS: usize = 16;

impl<'de> Visitor<'de> for NodeSeed<'_> {
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
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        if self.depth > MAX_NESTING {
            return Err(de::Error::custom(too_deep(self.at)));
        }
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let seed = NodeSeed {
                at: At::Index(&self.at, out.len()),
                depth: self.depth + 1,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => return Ok(Node::Arr(out)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        if self.depth > MAX_NESTING {
            return Err(de::Error::custom(too_deep(self.at)));
        }
        let mut out: Obj<'de> = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        // Checked as each key is read, so that the error's position is the repeated key's.
        let mut seen: Option<std::collections::HashSet<Cow<'de, str>>> = None;
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            let repeated = match &mut seen {
                Some(set) => !set.insert(k.clone()),
                None => out.iter().any(|(p, _)| key_eq(p, &k)),
            };
            if repeated {
                return Err(de::Error::custom(duplicate_key(&k, self.at)));
            }
            if seen.is_none() && out.len() == LINEAR_KEYS {
                let mut set: std::collections::HashSet<Cow<'de, str>> =
                    out.iter().map(|(p, _)| p.clone()).collect();
                set.insert(k.clone());
                seen = Some(set);
            }
            let seed = NodeSeed {
                at: At::Key(&self.at, &k),
                depth: self.depth + 1,
            };
            let v = map.next_value_seed(seed)?;
            out.push((k, v));
        }
        sort_members(out)
            .map(Node::Obj)
            .map_err(|k| de::Error::custom(duplicate_key(&k, self.at)))
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

// ---- the fast reader ---------------------------------------------------------------------------

/// Reads `s` into the [`Node`] the serde reader would give, without serde, when the text is
/// simple: strings without escapes and non-negative integers of at most 18 digits (any other
/// number is read by `serde_json` itself, so it comes out exactly as there). `None` for anything
/// else — invalid JSON, a duplicate key or too deep a nesting included: the caller then reads the
/// text with serde, whose error is the one reported. Most events are simple, and serde's visitor
/// machinery was a sixth of `append`.
///
/// Duplicate keys cost nothing extra here: members are sorted anyway (a `Node` object is sorted),
/// and two equal keys end up side by side.
fn read_simple(s: &str) -> Option<Node<'_>> {
    let mut r = SimpleJson { s, i: 0 };
    r.ws();
    let v = r.value(0)?;
    r.ws();
    (r.i == s.len()).then_some(v)
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
        let end = start + crate::format::skip_plain(&self.s.as_bytes()[start..]);
        self.i = end;
        self.eat(b'"')?;
        self.s.get(start..end)
    }

    /// A value; `depth` arrays and objects enclose it.
    fn value(&mut self, depth: usize) -> Option<Node<'a>> {
        match self.peek()? {
            b'{' => {
                if depth >= MAX_NESTING {
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
                        return sort_members(out).ok().map(Node::Obj);
                    }
                }
            }
            b'[' => {
                if depth >= MAX_NESTING {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rules, once: input text, and `Ok(())` or the start of the error. Every input path
    /// (events of `blackbox append` and `POST /v1/events`, every request body of the service)
    /// reads its text with [`read`], so this table is the rule for all of them.
    const RULES: &[(&str, &[u8], Result<(), &str>)] = &[
        ("an object", br#"{"a":1,"b":[true,null,"x"]}"#, Ok(())),
        ("whitespace around", b" \t\r\n{}\n ", Ok(())),
        ("any value at the top", b"[1,2]", Ok(())),
        ("escaped keys that differ", br#"{"a":1,"\u0062":2}"#, Ok(())),
        (
            "the same key in sibling objects",
            br#"[{"a":1},{"a":2}]"#,
            Ok(()),
        ),
        ("the same key at two depths", br#"{"a":{"a":1}}"#, Ok(())),
        // UTF-8
        (
            "invalid UTF-8",
            b"{\"a\":\"\xff\"}",
            Err("not valid JSON: the text is not UTF-8 (invalid byte at offset 6); send UTF-8"),
        ),
        (
            "a byte-order mark",
            b"\xef\xbb\xbf{}",
            Err("not valid JSON: expected value at column 1"),
        ),
        (
            "a lone surrogate escape",
            br#"{"a":"\ud800"}"#,
            Err("not valid JSON: unexpected end of hex escape"),
        ),
        // One value
        (
            "trailing text",
            br#"{"a":1} x"#,
            Err("not valid JSON: trailing characters at column 9"),
        ),
        (
            "two values",
            b"{} {}",
            Err("not valid JSON: trailing characters"),
        ),
        (
            "a position in a text of several lines",
            b"{\n\"a\": 1,\n\"a\": 2}",
            Err(
                "not valid JSON: duplicate key \"a\" in the object at $: each key may appear once in an object; remove the repeated member at line 3 column 3",
            ),
        ),
        (
            "empty text",
            b"",
            Err("not valid JSON: EOF while parsing a value"),
        ),
        (
            "a trailing comma",
            br#"{"a":1,}"#,
            Err("not valid JSON: trailing comma"),
        ),
        // Duplicate keys, at any depth
        (
            "a duplicate key at the top",
            br#"{"tenant_id":"b","tenant_id":"a"}"#,
            Err(
                "not valid JSON: duplicate key \"tenant_id\" in the object at $: each key may appear once in an object; remove the repeated member at column 28",
            ),
        ),
        (
            "a duplicate key in a nested object",
            br#"{"payload":{"args":{"q":1,"q":2}}}"#,
            Err("not valid JSON: duplicate key \"q\" in the object at $.payload.args:"),
        ),
        (
            "a duplicate key inside an array",
            br#"{"a":[{},{"x":1,"y":2,"x":3}]}"#,
            Err("not valid JSON: duplicate key \"x\" in the object at $.a[1]:"),
        ),
        (
            "a duplicate key spelled with an escape",
            br#"{"a":1,"\u0061":2}"#,
            Err("not valid JSON: duplicate key \"a\" in the object at $:"),
        ),
        (
            "a duplicate key with an odd name",
            br#"{"x y":{"k":1,"k":1}}"#,
            Err("not valid JSON: duplicate key \"k\" in the object at $[\"x y\"]:"),
        ),
        (
            "equal values do not make a duplicate acceptable",
            br#"{"a":1,"a":1}"#,
            Err("not valid JSON: duplicate key \"a\""),
        ),
        // Numbers
        (
            "integers and doubles",
            b"[0,-0,1.5,-2e3,18446744073709551615,1e300]",
            Ok(()),
        ),
        (
            "an integer beyond 64 bits is a double",
            b"123456789012345678901234",
            Ok(()),
        ),
        (
            "a number beyond the doubles",
            b"[1e400]",
            Err("not valid JSON: number out of range"),
        ),
        (
            "a leading zero",
            b"[01]",
            Err("not valid JSON: invalid number"),
        ),
        ("NaN", b"[NaN]", Err("not valid JSON: expected value")),
    ];

    #[test]
    fn the_rules_of_reading_json_input() {
        for (what, text, want) in RULES {
            let got = read(text).map(|_| ()).map_err(|e| e.to_string());
            match (want, &got) {
                (Ok(()), Ok(())) => {}
                (Err(prefix), Err(e)) => assert!(e.starts_with(prefix), "{what}: {e}"),
                _ => panic!("{what}: expected {want:?}, got {got:?}"),
            }
            // Whichever reader read it, the answer is the same.
            if want.is_err() {
                assert!(
                    std::str::from_utf8(text).map_or(true, |s| read_simple(s).is_none()),
                    "{what}: the fast reader accepted it"
                );
            }
        }
        // Nesting: MAX_NESTING levels are read, one more is refused, by both readers.
        let ok = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(read_simple(&ok).is_some());
        assert!(read(ok.as_bytes()).is_ok());
        let escaped = format!(
            "{}\"\\u0061\"{}",
            "[".repeat(MAX_NESTING),
            "]".repeat(MAX_NESTING)
        );
        assert!(read_simple(&escaped).is_none());
        assert!(read(escaped.as_bytes()).is_ok());
        let deep = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_NESTING),
            "]".repeat(MAX_NESTING)
        );
        assert!(read_simple(&deep).is_none());
        let err = read(deep.as_bytes()).unwrap_err().to_string();
        let path = format!("$.a{}", "[0]".repeat(MAX_NESTING - 1));
        assert!(
            err.starts_with(&format!(
                "not valid JSON: the value at {path} nests deeper than {MAX_NESTING} arrays and objects"
            )),
            "{err}"
        );
        // Many members: past the linear scan, the set finds the duplicate.
        let mut many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        many.push_str("\"k3\":0");
        let many = format!("{{{many}}}");
        let err = read(many.as_bytes()).unwrap_err().to_string();
        assert!(
            err.starts_with("not valid JSON: duplicate key \"k3\" in the object at $:"),
            "{err}"
        );
        // A long key is cut in the message.
        let long = "k".repeat(100);
        let text = format!("{{\"{long}\":1,\"{long}\":2}}");
        let err = read(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(&format!("\"{}\"…", "k".repeat(64))), "{err}");
    }

    /// What the fast reader gives is what the serde reader gives; what it refuses, serde decides.
    fn agrees(text: &[u8]) -> Result<(), TestCaseError> {
        let Ok(s) = std::str::from_utf8(text) else {
            return Ok(());
        };
        if let Some(fast) = read_simple(s) {
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

    /// `v`'s text with its `at`-th member (counting every object's members) written twice: the
    /// second time with another value, and its key's first character as a `\u` escape when
    /// `escape`. `None` when `v` has fewer members.
    fn with_duplicate(v: &Value, at: usize, escape: bool) -> Option<String> {
        fn walk(v: &Value, n: &mut usize, at: usize, escape: bool, out: &mut String) -> bool {
            let mut done = false;
            match v {
                Value::Object(m) => {
                    out.push('{');
                    for (i, (k, val)) in m.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&serde_json::to_string(k).unwrap());
                        out.push(':');
                        done |= walk(val, n, at, escape, out);
                        if *n == at && !done {
                            // Keys are ASCII here: the first character as a `\u` escape.
                            let again = match k.chars().next() {
                                Some(first) if escape => {
                                    let rest =
                                        serde_json::to_string(&k[first.len_utf8()..]).unwrap();
                                    format!("\"\\u{:04x}{}", u32::from(first), &rest[1..])
                                }
                                _ => serde_json::to_string(k).unwrap(),
                            };
                            out.push_str(&format!(",{again}:[0]"));
                            done = true;
                        }
                        *n += 1;
                    }
                    out.push('}');
                }
                Value::Array(a) => {
                    out.push('[');
                    for (i, val) in a.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        done |= walk(val, n, at, escape, out);
                    }
                    out.push(']');
                }
                other => out.push_str(&serde_json::to_string(other).unwrap()),
            }
            done
        }
        let mut out = String::new();
        let mut n = 0;
        walk(v, &mut n, at, escape, &mut out).then_some(out)
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

        /// A document with one key given twice, anywhere, is refused by both readers, and the
        /// error names the key.
        #[test]
        fn both_readers_refuse_a_duplicate_key_anywhere(v in json(), at in 0usize..8, escape in any::<bool>()) {
            if let Some(text) = with_duplicate(&v, at, escape) {
                prop_assert!(read_simple(&text).is_none(), "fast reader accepted {text}");
                let serde = serde_json::from_str::<Node<'_>>(&text);
                prop_assert!(serde.is_err(), "serde reader accepted {text}");
                let err = read(text.as_bytes()).unwrap_err().to_string();
                prop_assert!(err.contains("duplicate key"), "{err} for {text}");
                // Without the duplicate, the same document reads.
                let plain = serde_json::to_string(&v).unwrap();
                prop_assert!(read(plain.as_bytes()).is_ok(), "{plain}");
            }
        }
    }

    #[test]
    fn simple_reader_handles_the_common_event_and_leaves_the_rest_to_serde() {
        let ev = br#" {"agent_id":"a","n":[1,2.5,-3,0,123456789012345678,1234567890123456789,-0,1e2],"p":{"k":true,"l":null},"a":"x"} "#;
        let fast = read_simple(std::str::from_utf8(ev).unwrap()).unwrap();
        assert_eq!(fast, serde_json::from_slice::<Node<'_>>(ev).unwrap());
        for other in [
            r#"{"a":"\u00e9"}"#,
            r#"{"a":"x\"y"}"#,
            "{\"a\":\"\x01\"}",
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1} x"#,
            r#"{"a"}"#,
            r#"{"a":"x","a":"y"}"#,
            "",
            "\u{feff}{}",
        ] {
            assert!(read_simple(other).is_none(), "{other}");
        }
    }
}
