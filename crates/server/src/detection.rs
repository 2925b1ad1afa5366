//! Anomaly detection in the service: the rules in force (shared with the request handlers, which
//! scan raw content before it is hashed), what the writer appends when a rule fires, the replay
//! of recent history on start, and the reload of the rules file.
//!
//! The detector itself ([`blackbox_detect::Detector`]) lives in the writer thread: every event is
//! counted and evaluated there by the ledger's appender ([`blackbox_ledger::appender`]), in
//! commit order, and what fires is appended in the same group commit as the event that fired it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use blackbox_core::entry::EntryView;
use blackbox_detect::Detector;
use blackbox_detect::rules::RuleSet;
use blackbox_ledger::LedgerError;
use blackbox_store::{Query, Store};
use serde_json::Value;

use crate::ServerError;

/// Event types the detector writes (never fed back into it).
pub use blackbox_detect::record::DETECTION_EVENTS;

/// The rules in force, shared by the handlers (pattern scanning) and the reloader.
#[derive(Debug)]
pub struct Rules {
    current: RwLock<Arc<RuleSet>>,
    /// The rules file, if any.
    pub path: Option<PathBuf>,
}

impl Rules {
    /// Rules from `path` (or none).
    ///
    /// # Errors
    /// The file cannot be read or is invalid (`file:line:column: reason`).
    pub fn load(path: Option<&Path>) -> Result<Self, ServerError> {
        let set = match path {
            None => RuleSet::empty(),
            Some(p) => read_rules(p)?,
        };
        Ok(Self {
            current: RwLock::new(Arc::new(set)),
            path: path.map(Path::to_path_buf),
        })
    }

    /// The rules in force.
    #[must_use]
    pub fn get(&self) -> Arc<RuleSet> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts `set` in force for the handlers.
    pub fn set(&self, set: Arc<RuleSet>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set;
    }
}

/// Reads and checks a rules file.
///
/// # Errors
/// `file:line:column: reason`, or why the file cannot be read.
pub fn read_rules(path: &Path) -> Result<RuleSet, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ServerError::Config(format!(
            "cannot read the rules file {}: {e}",
            path.display()
        ))
    })?;
    RuleSet::parse(&text).map_err(|e| ServerError::Config(e.render(&path.display().to_string())))
}

pub use blackbox_ledger::appender::normalize_with_features;

pub use blackbox_ledger::appender::{Subject, Written};

pub use blackbox_detect::backtest::stored_features;

/// Rebuilds the detector's state from the store: counters from the entries of the longest
/// baseline window, suppressions from the alerts of the last day, and pause/throttle state from
/// the chain's `agent_paused` / `agent_resumed` / `agent_throttled` entries. Returns the entries
/// replayed.
///
/// # Errors
/// Store failures.
pub fn replay(store: &dyn Store, det: &mut Detector, now: i64) -> Result<u64, ServerError> {
    let rules = Arc::clone(det.rules());
    let mut n = 0u64;
    let history = rules
        .max_window_ms
        .max(rules.rules.iter().map(|r| r.suppress_ms).max().unwrap_or(0));
    // Counters (and the time-window counts of the current occurrence).
    let q = Query {
        start_ms: Some(now.saturating_sub(history.max(86_400_000))),
        ..Query::default()
    };
    store
        .query(&q, &mut |e| {
            let Ok(view) = EntryView::parse(&e.line) else {
                return Ok(true);
            };
            n += 1;
            observe(det, &rules, &view);
            Ok(true)
        })
        .map_err(|e| ServerError::Config(format!("replaying recent history for detection: {e}")))?;
    // Enforcement state: every pause, resume and throttle ever recorded, in chain order.
    let mut controls: Vec<(u64, i64, String, String, String, Value)> = Vec::new();
    for t in ["agent_paused", "agent_resumed", "agent_throttled"] {
        let q = Query {
            event_type: Some(t.to_owned()),
            ..Query::default()
        };
        store
            .query(&q, &mut |e| {
                // Pauses, resumes and throttles written by the service only (never an agent's).
                if let Ok(view) = EntryView::parse(&e.line)
                    && view.by_service()
                {
                    let p =
                        serde_json::from_str::<Value>(view.payload.get()).unwrap_or(Value::Null);
                    controls.push((
                        view.seq,
                        view.written_ms,
                        view.tenant_id.to_string(),
                        view.agent_id.to_string(),
                        t.to_owned(),
                        p,
                    ));
                }
                Ok(true)
            })
            .map_err(|e| ServerError::Config(format!("replaying agent states: {e}")))?;
    }
    // Chain order: per tenant by seq (agents never span tenants).
    controls.sort_by(|a, b| (&a.2, a.0).cmp(&(&b.2, b.0)));
    for (_, ts, tenant, agent, t, p) in controls {
        apply_control(det, &tenant, &agent, &t, ts, &p, now);
    }
    Ok(n)
}

/// What one stored entry tells the detector's counters and suppressions (the entries of the
/// baseline window, in any order): an agent's activity is learnt, the service's alerts restore
/// their suppressions; pauses, resumes and throttles are [`apply_control`]'s.
fn observe(det: &mut Detector, rules: &RuleSet, view: &EntryView<'_>) {
    match view.event_type.as_ref() {
        // Only the service's own alerts count: anything else of a detection type is an old
        // (version 1) entry or, had it got past the intake, an agent's forgery.
        t if DETECTION_EVENTS.contains(&t) && !view.by_service() => {}
        "anomaly_detected" => {
            if let Ok(Value::Object(p)) = serde_json::from_str::<Value>(view.payload.get())
                && let Some(Value::String(rule)) = p.get("rule")
            {
                if rule == blackbox_detect::detector::CLOCK_SKEW_RULE {
                    // Restores its suppression (the return value is not needed here).
                    let _ = det.clock_skew_due(&view.tenant_id, &view.agent_id, view.written_ms);
                }
                det.note_alert(
                    rule,
                    &view.tenant_id,
                    &view.agent_id,
                    &view.session_id,
                    view.timestamp_ms,
                );
            }
        }
        // Triage entries are people's acts, not the agent's.
        t if DETECTION_EVENTS.contains(&t)
            || blackbox_core::alert::TRIAGE_EVENT_TYPES.contains(&t) => {}
        _ => {
            blackbox_detect::backtest::with_stored_observation(view, rules, |ob| det.learn(ob));
            det.note_entry(
                &view.tenant_id,
                &view.agent_id,
                view.timestamp_ms,
                view.entry_id,
            );
        }
    }
}

/// Applies one of the service's `agent_paused` / `agent_resumed` / `agent_throttled` entries
/// (`t`, written at `ts`, with payload `p`) to the detector's enforcement state.
fn apply_control(
    det: &mut Detector,
    tenant: &str,
    agent: &str,
    t: &str,
    ts: i64,
    p: &Value,
    now: i64,
) {
    let by = p.get("by").and_then(Value::as_str).unwrap_or("unknown");
    match t {
        "agent_paused" => {
            det.pause(tenant, agent, ts, by);
        }
        "agent_resumed" => {
            det.resume(tenant, agent);
        }
        _ => {
            let until = p
                .get("until")
                .and_then(Value::as_str)
                .and_then(|u| blackbox_core::entry::parse_timestamp(u).ok())
                .unwrap_or(ts);
            let rate = p
                .get("rate_per_minute")
                .and_then(Value::as_u64)
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(1);
            if until > now {
                det.throttle(tenant, agent, now, rate, until, by);
            }
        }
    }
}

/// Chains' sizes as one instance last knows them (what it committed itself or followed).
pub type Known = std::collections::BTreeMap<String, u64>;

/// Brings the detector up to date with entries other instances sharing the store (several
/// services on one PostgreSQL database) committed since `known`: read in chain order, each
/// learnt as [`replay`] learns history, pauses, resumes and throttles applied as they come, so
/// an agent paused through one instance is refused by all. `known` is advanced to the store's
/// sizes; the service's detection entries read are added to `alerts` (for the webhook outbox).
/// Returns the entries read.
///
/// # Errors
/// Store failures.
pub fn follow(
    store: &dyn Store,
    det: &mut Detector,
    known: &mut Known,
    now: i64,
    alerts: &mut Vec<Written>,
) -> Result<u64, ServerError> {
    let rules = Arc::clone(det.rules());
    let mut n = 0u64;
    let heads = store
        .chains()
        .map_err(|e| ServerError::Config(format!("reading the chains' heads: {e}")))?;
    for h in heads {
        let from = known.get(&h.tenant_id).copied().unwrap_or(0);
        if h.size <= from {
            continue;
        }
        store
            .scan(&h.tenant_id, from + 1, h.size, &mut |e| {
                let Ok(view) = EntryView::parse(&e.line) else {
                    return Ok(true);
                };
                n += 1;
                let t = view.event_type.as_ref();
                // The service's detection entries go to the webhook outbox again (an instance
                // killed between its commit and its enqueue would otherwise never send them;
                // the outbox ignores a delivery it holds already).
                if view.by_service()
                    && let Some(kind) = DETECTION_EVENTS.iter().find(|k| **k == t)
                {
                    alerts.push(Written {
                        tenant: view.tenant_id.to_string(),
                        seq: view.seq,
                        event_type: kind,
                        rule: None,
                    });
                }
                if matches!(t, "agent_paused" | "agent_resumed" | "agent_throttled") {
                    if view.by_service() {
                        let p = serde_json::from_str::<Value>(view.payload.get())
                            .unwrap_or(Value::Null);
                        apply_control(
                            det,
                            &view.tenant_id,
                            &view.agent_id,
                            t,
                            view.written_ms,
                            &p,
                            now,
                        );
                    }
                } else {
                    observe(det, &rules, &view);
                }
                Ok(true)
            })
            .map_err(|e| {
                ServerError::Config(format!("following the chain of {}: {e}", h.tenant_id))
            })?;
        known.insert(h.tenant_id, h.size);
    }
    Ok(n)
}

/// An event the service builds itself turned out invalid (a bug, not bad input).
pub(crate) fn core_err(e: blackbox_core::Error) -> LedgerError {
    LedgerError::Event { line: 0, source: e }
}

// The webhook side of detection lives in crate::webhooks (the wiring of blackbox-webhooks).
pub use crate::webhooks::{Webhooks, feed_webhooks, targets_of};
