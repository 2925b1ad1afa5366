//! One JSON-RPC message of MCP, read strictly: the gateway decides on what it reads, so a
//! message whose meaning another reader could take differently (duplicate keys, invalid UTF-8)
//! is refused rather than forwarded under a different reading.

use serde_json::Value;

/// What a message is (JSON-RPC 2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request: `method` and `id`.
    Request,
    /// A notification: `method`, no `id`.
    Notification,
    /// A response: `id` and `result` or `error`.
    Response,
}

/// A message, parsed.
#[derive(Debug, Clone)]
pub struct Message {
    /// What it is.
    pub kind: Kind,
    /// The id as JSON text (`1` and `"1"` are different ids); `None` for a notification.
    pub id: Option<String>,
    /// The method of a request or notification.
    pub method: Option<String>,
    /// The whole message.
    pub value: Value,
}

impl Message {
    /// `params`, or null.
    #[must_use]
    pub fn params(&self) -> &Value {
        self.value.get("params").unwrap_or(&Value::Null)
    }

    /// `result` of a response.
    #[must_use]
    pub fn result(&self) -> Option<&Value> {
        self.value.get("result")
    }

    /// `error` of a response.
    #[must_use]
    pub fn error(&self) -> Option<&Value> {
        self.value.get("error")
    }
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON under Blackbox's rules (UTF-8, no key twice, nesting at most 100).
    #[error("not a JSON-RPC message: {0}")]
    Json(String),
    /// JSON, but not a JSON-RPC 2.0 message.
    #[error("not a JSON-RPC 2.0 message: {0}")]
    Shape(String),
    /// A batch (an array): MCP removed batching in 2025-06-18.
    #[error("a JSON-RPC batch; MCP since 2025-06-18 sends one message at a time")]
    Batch,
}

/// Reads one message.
///
/// # Errors
/// [`ParseError`].
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    let node = blackbox_core::json::read(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
    let value = node.to_value();
    let Value::Object(obj) = &value else {
        return Err(if value.is_array() {
            ParseError::Batch
        } else {
            ParseError::Shape("not an object".into())
        });
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(ParseError::Shape("`jsonrpc` is not \"2.0\"".into()));
    }
    let id = match obj.get("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.to_string()),
        Some(Value::Null) => Some("null".into()),
        Some(_) => {
            return Err(ParseError::Shape(
                "`id` must be a string or a number".into(),
            ));
        }
    };
    let method = match obj.get("method") {
        None => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(ParseError::Shape("`method` must be a string".into())),
    };
    let kind = match (&method, &id) {
        (Some(_), Some(_)) => Kind::Request,
        (Some(_), None) => Kind::Notification,
        (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => {
            Kind::Response
        }
        _ => {
            return Err(ParseError::Shape(
                "neither a request, a notification nor a response".into(),
            ));
        }
    };
    Ok(Message {
        kind,
        id,
        method,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_ids_and_refusals() {
        let m = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#);
        let m = m.ok();
        assert_eq!(m.as_ref().map(|m| m.kind), Some(Kind::Request));
        assert_eq!(m.as_ref().and_then(|m| m.id.clone()).as_deref(), Some("1"));
        let s = parse(br#"{"jsonrpc":"2.0","id":"1","result":{}}"#).ok();
        assert_eq!(
            s.as_ref().and_then(|m| m.id.clone()).as_deref(),
            Some("\"1\"")
        );
        assert_eq!(s.map(|m| m.kind), Some(Kind::Response));
        let n = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).ok();
        assert_eq!(n.map(|m| m.kind), Some(Kind::Notification));
        // A tool name given twice: which one the server takes is unknown.
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#),
            Err(ParseError::Json(_))
        ));
        assert_eq!(parse(b"[]").err(), Some(ParseError::Batch));
        assert!(matches!(
            parse(br#"{"id":1,"method":"x"}"#),
            Err(ParseError::Shape(_))
        ));
        assert!(matches!(parse(b"not json"), Err(ParseError::Json(_))));
    }
}
