//! A JSON value whose strings borrow from the input ([`Node`]): what [`crate::json`] reads
//! and [`crate::event`] normalises. Below both, so neither needs the other's internals.

use std::borrow::Cow;

use serde_json::Value;

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
    /// An object: members sorted by key (bytes), keys unique (text with a duplicate key is
    /// refused by [`crate::json::read`]).
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

    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Pos(_) | Self::Neg(_) | Self::Float(_) => "a number",
            Self::Str(_) => "a string",
            Self::Arr(_) => "an array",
            Self::Obj(_) => "an object",
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
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
    pub(crate) fn is_empty(&self) -> bool {
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
pub(crate) fn key_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

#[inline]
pub(crate) fn key_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && key_cmp(a, b).is_eq()
}
