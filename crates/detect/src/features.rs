//! What the detector reads from an event: a few numbers and flags from its payload, and which
//! pattern rules its raw content matches.
//!
//! Extraction runs on the payload *before* raw content is replaced by hashes (in the request
//! handler, in memory); only the numbers and the rule indices leave this module, never the
//! content.

use blackbox_core::event::{Node, Obj};

use crate::patterns::{Hits, PatternIndex};

/// Payload members whose strings are scanned by pattern rules: tool arguments and prompts.
pub const SCANNED_FIELDS: [&str; 8] = [
    "args",
    "args_raw",
    "arguments",
    "prompt",
    "messages",
    "query",
    "content",
    "input",
];

/// [`SCANNED_FIELDS`] as JSON Pointers, the roots of the locations reported.
const SCANNED_POINTERS: [&str; 8] = [
    "/args",
    "/args_raw",
    "/arguments",
    "/prompt",
    "/messages",
    "/query",
    "/content",
    "/input",
];

/// The index of `key` in [`SCANNED_FIELDS`].
fn scanned_field(key: &str) -> Option<usize> {
    Some(match key {
        "args" => 0,
        "args_raw" => 1,
        "arguments" => 2,
        "prompt" => 3,
        "messages" => 4,
        "query" => 5,
        "content" => 6,
        "input" => 7,
        _ => return None,
    })
}

/// What the detector knows of one event besides its envelope.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// `payload.agent_role`, else `payload.authorization.rbac_role`.
    pub role: Option<String>,
    /// `token_count_in + token_count_out`.
    pub tokens: u64,
    /// `result.rows_returned`.
    pub rows: u64,
    /// The event reports an error: `error` present (not null/false), `status` or
    /// `result.status` of `error`/`failed`/`failure`, `result.error` present, or the event type
    /// `error`.
    pub error: bool,
    /// `authorization.allowed` is `false`.
    pub denied: bool,
    /// Pattern rules matched by raw content.
    pub hits: Hits,
    /// The external classifier's score for the call (0 to 1), when one was asked
    /// (`/v1/decide` only); a failed request counts as 1 under `fail_closed`.
    pub classifier_score: Option<f64>,
}

fn get<'n, 'a>(o: &'n Obj<'a>, key: &str) -> Option<&'n Node<'a>> {
    o.binary_search_by(|(k, _)| k.as_ref().cmp(key))
        .ok()
        .and_then(|i| o.get(i))
        .map(|(_, v)| v)
}

fn obj<'n, 'a>(o: &'n Obj<'a>, key: &str) -> Option<&'n Obj<'a>> {
    match get(o, key) {
        Some(Node::Obj(m)) => Some(m),
        _ => None,
    }
}

fn count(o: &Obj<'_>, key: &str) -> u64 {
    match get(o, key) {
        Some(Node::Pos(n)) => *n,
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(Node::Float(f)) if f.is_finite() && *f >= 0.0 => *f as u64,
        _ => 0,
    }
}

fn is_failure(v: Option<&Node<'_>>) -> bool {
    matches!(v, Some(Node::Str(s)) if matches!(s.as_ref(), "error" | "failed" | "failure"))
}

fn present(v: Option<&Node<'_>>) -> bool {
    !matches!(v, None | Some(Node::Null | Node::Bool(false)))
}

impl Features {
    /// Reads the features of an event from its payload (as sent: before redaction), scanning raw
    /// content with `patterns` when it has any.
    #[must_use]
    pub fn extract(event_type: &str, payload: &Obj<'_>, patterns: &PatternIndex) -> Self {
        let mut f = Self::default();
        f.fill(event_type, payload, patterns);
        f
    }

    /// As [`Features::extract`], into `self` (reusing its allocations).
    pub fn fill(&mut self, event_type: &str, payload: &Obj<'_>, patterns: &PatternIndex) {
        self.hits.clear();
        self.classifier_score = None;
        let auth = obj(payload, "authorization");
        let result = obj(payload, "result");
        self.role = match get(payload, "agent_role") {
            Some(Node::Str(s)) => Some(s.to_string()),
            _ => match auth.and_then(|a| get(a, "rbac_role")) {
                Some(Node::Str(s)) => Some(s.to_string()),
                _ => None,
            },
        };
        self.tokens =
            count(payload, "token_count_in").saturating_add(count(payload, "token_count_out"));
        self.rows = result.map_or(0, |r| count(r, "rows_returned"));
        self.error = event_type == "error"
            || present(get(payload, "error"))
            || is_failure(get(payload, "status"))
            || result.is_some_and(|r| present(get(r, "error")) || is_failure(get(r, "status")));
        self.denied = matches!(
            auth.and_then(|a| get(a, "allowed")),
            Some(Node::Bool(false))
        );
        if !patterns.is_empty() {
            // Every scanned member of the payload (and of each of its `tool_calls`), as the
            // arguments of one call: each string alone, then all of them joined.
            let mut prefixes: Vec<std::borrow::Cow<'static, str>> = Vec::new();
            let mut values: Vec<&Node<'_>> = Vec::new();
            // One pass over the payload's members (a lookup per scanned name cost more).
            let mut scanned: [Option<&Node<'_>>; SCANNED_FIELDS.len()] = Default::default();
            for (key, v) in payload {
                if let Some(slot) = scanned_field(key).and_then(|i| scanned.get_mut(i)) {
                    *slot = Some(v);
                }
            }
            for (v, pointer) in scanned.into_iter().zip(SCANNED_POINTERS) {
                if let Some(v) = v {
                    prefixes.push(pointer.into());
                    values.push(v);
                }
            }
            if let Some(Node::Arr(calls)) = get(payload, "tool_calls") {
                for (i, c) in calls.iter().enumerate() {
                    if let Node::Obj(c) = c {
                        for key in SCANNED_FIELDS {
                            if let Some(v) = get(c, key) {
                                prefixes.push(format!("/tool_calls/{i}/{key}").into());
                                values.push(v);
                            }
                        }
                    }
                }
            }
            let roots: Vec<(&str, &Node<'_>)> = prefixes
                .iter()
                .map(AsRef::as_ref)
                .zip(values.iter().copied())
                .collect();
            let tool = match get(payload, "tool_name") {
                Some(Node::Str(t)) => Some(t.as_ref()),
                _ => None,
            };
            patterns.scan_fields(&roots, tool, &mut self.hits);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scanned_field_is_found_at_its_place() {
        for (i, key) in SCANNED_FIELDS.iter().enumerate() {
            assert_eq!(scanned_field(key), Some(i), "{key}");
            assert_eq!(SCANNED_POINTERS.get(i), Some(&format!("/{key}").as_str()));
        }
        assert_eq!(scanned_field("tool_name"), None);
    }
}
