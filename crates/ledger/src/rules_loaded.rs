//! The rules versions the service recorded as loaded: the `rules_loaded` entries of its own
//! chains (docs/FORMAT.md §14), read the same way by the API (`GET /v1/rules`) and the evidence
//! exports (the alert register's rules in force).

use blackbox_core::entry::EntryView;
use blackbox_store::{Query, Store};
use serde_json::Value;

use crate::error::LedgerError;

/// One `rules_loaded` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesLoaded {
    /// The service chain holding it.
    pub chain: String,
    /// Its seq there.
    pub seq: u64,
    /// Its entry id.
    pub entry_id: String,
    /// When the service wrote it (Unix ms).
    pub written_ms: i64,
    /// `sha256` hex of the rules file.
    pub rules_sha256: String,
    /// Rules in the file.
    pub rules: u64,
    /// Of which enabled.
    pub enabled: u64,
    /// Webhooks it configures.
    pub webhooks: u64,
    /// The file's path on the service's host.
    pub file: String,
}

/// Every `rules_loaded` entry the service wrote in its own chains (an entry of that type an
/// agent could have written elsewhere is not one), oldest first.
///
/// # Errors
/// Store failures.
pub fn rules_loaded(store: &dyn Store) -> Result<Vec<RulesLoaded>, LedgerError> {
    let mut out = Vec::new();
    for head in store.chains()? {
        if !blackbox_core::ids::is_service_tenant(&head.tenant_id) {
            continue;
        }
        let q = Query {
            tenant_id: Some(head.tenant_id.clone()),
            event_type: Some("rules_loaded".into()),
            ..Query::default()
        };
        store.query(&q, &mut |e| {
            let Ok(v) = EntryView::parse(&e.line) else {
                return Ok(true);
            };
            if !v.by_service() {
                return Ok(true);
            }
            let p: Value = serde_json::from_str(v.payload.get()).unwrap_or(Value::Null);
            let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            out.push(RulesLoaded {
                chain: e.tenant_id.clone(),
                seq: e.seq,
                entry_id: v.entry_id.to_string(),
                written_ms: v.written_ms,
                rules_sha256: s("rules_sha256"),
                rules: n("rules"),
                enabled: n("enabled"),
                webhooks: n("webhooks"),
                file: s("file"),
            });
            Ok(true)
        })?;
    }
    out.sort_by(|a, b| (a.written_ms, &a.chain, a.seq).cmp(&(b.written_ms, &b.chain, b.seq)));
    Ok(out)
}
