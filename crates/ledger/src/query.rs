//! Flattening entries into rows a spreadsheet can use (CSV and the table view).

use blackbox_core::Hash;
use serde_json::Value;

/// CSV columns, in order. Stable: scripts depend on them.
pub const COLUMNS: [&str; 30] = [
    "tenant_id",
    "seq",
    "entry_id",
    "timestamp",
    "agent_id",
    "session_id",
    "event_type",
    "client_seq",
    "tool_name",
    "agent_role",
    "invocation_id",
    "rbac_role",
    "allowed",
    "policy_matched",
    "rows_returned",
    "result_hash",
    "data_classification",
    "duration_ms",
    "model",
    "prompt_hash",
    "token_count_in",
    "token_count_out",
    "latency_ms",
    "args",
    "payload",
    "key_id",
    "entry_hash",
    "written_at",
    "origin",
    "clock_skew_ms",
];

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// One entry as a row of [`COLUMNS`]. Lines that are not valid JSON give a row with only the
/// entry hash (query output never fails on a damaged entry; `verify` reports it).
#[must_use]
pub fn flatten(tenant: &str, seq: u64, line: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    let p = v.get("payload");
    let pget = |k: &str| p.and_then(|p| p.get(k));
    let auth = |k: &str| pget("authorization").and_then(|a| a.get(k));
    let res = |k: &str| pget("result").and_then(|a| a.get(k));
    vec![
        tenant.to_owned(),
        seq.to_string(),
        text(v.get("entry_id")),
        text(v.get("timestamp")),
        text(v.get("agent_id")),
        text(v.get("session_id")),
        text(v.get("event_type")),
        text(v.get("client_seq")),
        text(pget("tool_name")),
        text(pget("agent_role")),
        text(pget("invocation_id")),
        text(auth("rbac_role")),
        text(auth("allowed")),
        text(auth("policy_matched")),
        text(res("rows_returned")),
        text(res("result_hash")),
        text(res("data_classification")),
        text(pget("duration_ms")),
        text(pget("model")),
        text(pget("prompt_hash")),
        text(pget("token_count_in")),
        text(pget("token_count_out")),
        text(pget("latency_ms")),
        text(pget("args")),
        text(p),
        text(v.get("key_id")),
        Hash::digest(line).to_prefixed(),
        text(v.get("written_at")),
        origin_text(v.get("origin")),
        text(v.get("clock_skew_ms")),
    ]
}

/// The origin as people read it (`service`, `token:<id> (<scope>, via <via>)`,
/// `local:<user> (<command>)`); empty for version-1 entries, which have none.
#[must_use]
pub fn origin_text(v: Option<&Value>) -> String {
    v.map(Value::to_string)
        .and_then(|t| blackbox_core::origin::Origin::from_json(&t).ok())
        .map_or_else(String::new, |o| o.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_the_seed_tool_call() {
        let line = br#"{"agent_id":"moltbot-analyst-07","entry_id":"x","event_type":"tool_call","payload":{"args":{"limit":100,"table":"customer_orders"},"authorization":{"allowed":true,"policy_matched":"analyst-read-orders","rbac_role":"analyst"},"result":{"rows_returned":100},"tool_name":"query_database"},"session_id":"s"}"#;
        let row = flatten("t", 3, line);
        assert_eq!(row.len(), COLUMNS.len());
        let col = |name: &str| row[COLUMNS.iter().position(|c| *c == name).unwrap()].clone();
        assert_eq!(col("tool_name"), "query_database");
        assert_eq!(col("allowed"), "true");
        assert_eq!(col("rows_returned"), "100");
        assert_eq!(col("args"), r#"{"limit":100,"table":"customer_orders"}"#);
        assert_eq!(col("seq"), "3");
    }
}

/// Filters a store's indexes do not apply, read from each entry line: who wrote it (its
/// origin), when the service wrote it, and the trace it belongs to. `blackbox query` and
/// `GET /v1/entries` apply them the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostFilter {
    /// `service`, `token`, `local`, `token:<id>` or `local:<user>` ([`check_origin_filter`]).
    pub origin: Option<String>,
    /// Bounds on the writer's time (`written_at`), Unix ms, both included.
    pub written: Option<(i64, i64)>,
    /// `payload.trace_id`.
    pub trace_id: Option<String>,
}

impl PostFilter {
    /// Whether any filter is set.
    #[must_use]
    pub fn active(&self) -> bool {
        self.origin.is_some() || self.written.is_some() || self.trace_id.is_some()
    }

    /// Whether an entry line passes. A line that is not an entry passes nothing.
    #[must_use]
    pub fn keep(&self, line: &[u8]) -> bool {
        if !self.active() {
            return true;
        }
        let Ok(v) = blackbox_core::entry::EntryView::parse(line) else {
            return false;
        };
        if let Some((a, b)) = self.written
            && (v.written_ms < a || v.written_ms > b)
        {
            return false;
        }
        if let Some(t) = &self.trace_id
            && blackbox_core::proof::payload_trace_id(&v).as_deref() != Some(t.as_str())
        {
            return false;
        }
        match &self.origin {
            None => true,
            Some(f) => v.origin.as_ref().is_some_and(|o| o.matches(f)),
        }
    }
}

/// Checks an origin filter: `service`, `token`, `local`, `token:<id>` or `local:<user>`.
///
/// # Errors
/// Not one of the accepted forms, saying which are.
pub fn check_origin_filter(f: &str) -> Result<(), String> {
    let ok = match f.split_once(':') {
        None => matches!(f, "service" | "token" | "local"),
        Some(("token" | "local", rest)) => !rest.is_empty(),
        Some(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{f:?}: use service, token, local, token:<token id> or local:<user>"
        ))
    }
}
