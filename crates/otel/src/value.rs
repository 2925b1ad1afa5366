//! OTLP attribute values as JSON, and lookups in attribute lists.

use std::borrow::Cow;

use base64::Engine as _;
use blackbox_core::event::{Node, Obj};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::{Map, Value};

/// Largest integer an entry holds as a number (docs/FORMAT.md §3: ±(2^53−1)); larger ones are
/// written as decimal strings.
const MAX_SAFE: i64 = (1 << 53) - 1;

/// An attribute value as JSON (docs/OTEL.md "Values"): strings, booleans and integers within
/// ±(2^53−1) as themselves; larger integers as decimal strings; doubles as numbers, NaN and the
/// infinities as the strings `NaN`, `Infinity`, `-Infinity`; bytes as standard base64; arrays
/// and key-value lists as arrays and objects; an empty value as `null`.
///
/// # Errors
/// A key-value list naming a key twice (which value counts would depend on the reader).
pub fn to_json(v: &AnyValue) -> Result<Value, String> {
    Ok(match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => {
            if (-MAX_SAFE..=MAX_SAFE).contains(i) {
                Value::from(*i)
            } else {
                Value::String(i.to_string())
            }
        }
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or_else(
            || {
                Value::String(
                    if d.is_nan() {
                        "NaN"
                    } else if *d > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    }
                    .to_owned(),
                )
            },
            Value::Number,
        ),
        Some(any_value::Value::BytesValue(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(any_value::Value::ArrayValue(a)) => Value::Array(
            a.values
                .iter()
                .map(to_json)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(any_value::Value::KvlistValue(l)) => Value::Object(kv_to_map(&l.values)?),
        // Not used by the signals this intake reads (profiles' string table).
        Some(any_value::Value::StringValueStrindex(i)) => Value::from(*i),
    })
}

/// As [`to_json`], as the normaliser's tree, borrowing the request's strings (nothing is copied
/// or escaped on the way to the normaliser).
///
/// # Errors
/// As [`to_json`].
pub fn to_node(v: &AnyValue) -> Result<Node<'_>, String> {
    Ok(match &v.value {
        None => Node::Null,
        Some(any_value::Value::StringValue(s)) => Node::Str(Cow::Borrowed(s)),
        Some(any_value::Value::BoolValue(b)) => Node::Bool(*b),
        Some(any_value::Value::IntValue(i)) => {
            if (0..=MAX_SAFE).contains(i) {
                Node::Pos(i.unsigned_abs())
            } else if (-MAX_SAFE..0).contains(i) {
                Node::Neg(*i)
            } else {
                Node::Str(Cow::Owned(i.to_string()))
            }
        }
        Some(any_value::Value::DoubleValue(d)) => {
            if d.is_finite() {
                Node::Float(*d)
            } else {
                Node::Str(Cow::Borrowed(if d.is_nan() {
                    "NaN"
                } else if *d > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                }))
            }
        }
        Some(any_value::Value::BytesValue(b)) => Node::Str(Cow::Owned(
            base64::engine::general_purpose::STANDARD.encode(b),
        )),
        Some(any_value::Value::ArrayValue(a)) => Node::Arr(
            a.values
                .iter()
                .map(to_node)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(any_value::Value::KvlistValue(l)) => kv_to_node(&l.values)?,
        Some(any_value::Value::StringValueStrindex(i)) => {
            if *i >= 0 {
                Node::Pos(i.unsigned_abs().into())
            } else {
                Node::Neg((*i).into())
            }
        }
    })
}

/// A key-value list as an object of the normaliser's tree (members sorted by key).
///
/// # Errors
/// A key given twice.
pub fn kv_to_node(kvs: &[KeyValue]) -> Result<Node<'_>, String> {
    let mut m: Obj<'_> = Vec::with_capacity(kvs.len());
    for kv in kvs {
        let v = kv.value.as_ref().map_or(Ok(Node::Null), to_node)?;
        m.push((Cow::Borrowed(kv.key.as_str()), v));
    }
    sort_unique(m).map(Node::Obj)
}

/// Sorts members by key (bytes, as the normaliser's binary searches expect).
///
/// # Errors
/// A key given twice.
pub fn sort_unique(mut m: Obj<'_>) -> Result<Obj<'_>, String> {
    if !m.windows(2).all(|w| w[0].0 < w[1].0) {
        m.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = m.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(format!(
                "key `{}` is given twice in a key-value list",
                w[0].0
            ));
        }
    }
    Ok(m)
}

/// A key-value list as a JSON object.
///
/// # Errors
/// A key given twice.
pub fn kv_to_map(kvs: &[KeyValue]) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    for kv in kvs {
        let v = kv.value.as_ref().map_or(Ok(Value::Null), to_json)?;
        if m.insert(kv.key.clone(), v).is_some() {
            return Err(format!(
                "key `{}` is given twice in a key-value list",
                kv.key
            ));
        }
    }
    Ok(m)
}

/// A list of attributes, looked up by key.
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'a>(pub &'a [KeyValue]);

/// What kind of value an attribute holds, in an error message.
fn kind(v: &AnyValue) -> &'static str {
    match &v.value {
        None => "empty",
        Some(any_value::Value::StringValue(_)) => "a string",
        Some(any_value::Value::BoolValue(_)) => "a boolean",
        Some(any_value::Value::IntValue(_)) => "an integer",
        Some(any_value::Value::DoubleValue(_)) => "a double",
        Some(any_value::Value::BytesValue(_)) => "bytes",
        Some(any_value::Value::ArrayValue(_)) => "an array",
        Some(any_value::Value::KvlistValue(_)) => "a key-value list",
        Some(any_value::Value::StringValueStrindex(_)) => "a string index",
    }
}

impl<'a> Attrs<'a> {
    /// Refuses a list naming a key twice: which of the two a reader takes differs between
    /// readers, so an entry could say something else than the collector next to it.
    ///
    /// # Errors
    /// The first key given twice.
    pub fn check_unique(&self) -> Result<(), String> {
        if self.0.len() < 2 {
            return Ok(());
        }
        let mut keys: Vec<&str> = self.0.iter().map(|kv| kv.key.as_str()).collect();
        keys.sort_unstable();
        match keys.windows(2).find(|w| w[0] == w[1]) {
            Some(w) => Err(format!(
                "attribute `{}` is given twice; each key may appear once",
                w[0]
            )),
            None => Ok(()),
        }
    }

    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&'a AnyValue> {
        self.0
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
    }

    /// The string value of `key`; `None` when absent, empty or not a string.
    #[must_use]
    pub fn str(&self, key: &str) -> Option<&'a str> {
        match self.get(key).and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer attribute (`None` when absent).
    ///
    /// # Errors
    /// Present with another type, negative, or beyond 2^53−1.
    pub fn count(&self, key: &str) -> Result<Option<i64>, String> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match &v.value {
            Some(any_value::Value::IntValue(i)) if (0..=MAX_SAFE).contains(i) => Ok(Some(*i)),
            Some(any_value::Value::IntValue(i)) => Err(format!(
                "attribute `{key}` is {i}; it must be a non-negative integer of at most 2^53-1"
            )),
            _ => Err(format!(
                "attribute `{key}` is {}; it must be a non-negative integer",
                kind(v)
            )),
        }
    }

    /// The value of `key` as JSON (`None` when absent).
    ///
    /// # Errors
    /// As [`to_json`].
    pub fn json(&self, key: &str) -> Result<Option<Value>, String> {
        self.get(key)
            .map(|v| to_json(v).map_err(|e| format!("attribute `{key}`: {e}")))
            .transpose()
    }

    /// The value of `key` as the normaliser's tree (`None` when absent).
    ///
    /// # Errors
    /// As [`to_json`].
    pub fn node(&self, key: &str) -> Result<Option<Node<'a>>, String> {
        self.get(key)
            .map(|v| to_node(v).map_err(|e| format!("attribute `{key}`: {e}")))
            .transpose()
    }

    /// The attributes whose key starts with `prefix`: the value when there is one, an object of
    /// them when there are several (`None` when there are none).
    ///
    /// # Errors
    /// As [`to_json`].
    pub fn prefixed_node(&self, prefix: &str) -> Result<Option<Node<'a>>, String> {
        let mut m: Obj<'a> = Vec::new();
        for kv in self.0.iter().filter(|kv| kv.key.starts_with(prefix)) {
            let v = kv.value.as_ref().map_or(Ok(Node::Null), to_node)?;
            m.push((Cow::Borrowed(kv.key.as_str()), v));
        }
        Ok(match m.len() {
            0 => None,
            1 => m.pop().map(|(_, v)| v),
            _ => Some(Node::Obj(sort_unique(m)?)),
        })
    }

    /// The attributes whose key starts with `prefix`, in their order, as a JSON object (`None`
    /// when there are none).
    ///
    /// # Errors
    /// As [`to_json`].
    pub fn with_prefix(&self, prefix: &str) -> Result<Option<Map<String, Value>>, String> {
        let mut m = Map::new();
        for kv in self.0.iter().filter(|kv| kv.key.starts_with(prefix)) {
            let v = kv.value.as_ref().map_or(Ok(Value::Null), to_json)?;
            m.insert(kv.key.clone(), v);
        }
        Ok((!m.is_empty()).then_some(m))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn every_value_type_has_a_json_form() {
        use any_value::Value as V;
        let list = KeyValueList {
            values: vec![
                kv("s", V::StringValue("x".into())),
                kv("b", V::BoolValue(true)),
                kv("i", V::IntValue(-5)),
                kv("big", V::IntValue(i64::MAX)),
                kv("d", V::DoubleValue(1.5)),
                kv("nan", V::DoubleValue(f64::NAN)),
                kv("inf", V::DoubleValue(f64::NEG_INFINITY)),
                kv("bytes", V::BytesValue(vec![0, 1, 2])),
                kv(
                    "arr",
                    V::ArrayValue(ArrayValue {
                        values: vec![AnyValue { value: None }],
                    }),
                ),
            ],
        };
        let j = to_json(&AnyValue {
            value: Some(V::KvlistValue(list)),
        })
        .unwrap();
        assert_eq!(
            j,
            serde_json::json!({"s":"x","b":true,"i":-5,"big":"9223372036854775807","d":1.5,
                "nan":"NaN","inf":"-Infinity","bytes":"AAEC","arr":[null]})
        );
    }

    #[test]
    fn duplicates_and_wrong_types_are_named() {
        use any_value::Value as V;
        let attrs = [
            kv("gen_ai.usage.input_tokens", V::StringValue("5".into())),
            kv("a", V::IntValue(1)),
            kv("a", V::IntValue(2)),
        ];
        let a = Attrs(&attrs);
        assert!(a.check_unique().unwrap_err().contains("`a` is given twice"));
        assert!(
            a.count("gen_ai.usage.input_tokens")
                .unwrap_err()
                .contains("is a string")
        );
        assert_eq!(a.count("missing").unwrap(), None);
        let dup = KeyValueList {
            values: vec![kv("k", V::IntValue(1)), kv("k", V::IntValue(2))],
        };
        assert!(
            to_json(&AnyValue {
                value: Some(V::KvlistValue(dup))
            })
            .is_err()
        );
    }
}
