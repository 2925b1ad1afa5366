//! Anomaly detection in the service: the rules in force (shared with the request handlers, which
//! scan raw content before it is hashed), what the writer appends when a rule fires, the replay
//! of recent history on start, and the reload of the rules file.
//!
//! The detector itself ([`blackbox_detect::Detector`]) lives in the writer thread: every event is
//! counted and evaluated there, in commit order, and what fires is appended in the same group
//! commit as the event that fired it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use blackbox_core::entry::{EntryView, NormalizedEvent, RedactionPolicy};
use blackbox_core::event::Node;
use blackbox_detect::rules::{Action, Kind, RuleSet};
use blackbox_detect::{Detector, Features, Firing, Observation};
use blackbox_ledger::LedgerError;
use blackbox_ledger::writer::{AppendSink, Appended};
use blackbox_store::{Query, Store};
use serde_json::{Value, json};

use crate::ServerError;

/// Event types the detector writes (never fed back into it).
pub const DETECTION_EVENTS: [&str; 5] = [
    "anomaly_detected",
    "agent_paused",
    "agent_resumed",
    "agent_throttled",
    "rules_loaded",
];

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

/// Normalises one event and reads what the detector needs from it (raw content is scanned here,
/// before it is hashed, and nothing of it is kept).
///
/// # Errors
/// As [`blackbox_core::event::normalize`].
pub fn normalize_with_features(
    text: &[u8],
    policy: &RedactionPolicy,
    rules: &RuleSet,
    origin: &blackbox_core::origin::Origin,
) -> Result<(NormalizedEvent, Features), blackbox_core::Error> {
    let node: Node<'_> = blackbox_core::json::read(text)?;
    let mut features = Features::default();
    let ev = blackbox_core::event::normalize_inspect(
        node,
        policy,
        origin,
        &mut |event_type, payload| {
            features.fill(event_type, payload, &rules.patterns);
        },
    )?;
    Ok((ev, features))
}

use crate::now_ms;

/// An entry the detector appended, for webhooks and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Chain.
    pub tenant: String,
    /// Its seq.
    pub seq: u64,
    /// Event type.
    pub event_type: &'static str,
    /// Rule, for anomalies.
    pub rule: Option<String>,
}

/// Appends an entry the service writes itself (detection, operator actions) and notes it for
/// webhooks and metrics.
///
/// # Errors
/// The sink failed.
pub fn append_system(
    sink: &mut AppendSink<'_>,
    who: Subject<'_>,
    (event_type, rule): (&'static str, Option<&str>),
    payload: Value,
    now: i64,
    written: &mut Vec<Written>,
) -> Result<Appended, LedgerError> {
    let ev = json!({
        "tenant_id": who.tenant,
        "agent_id": who.agent,
        "session_id": who.session,
        "event_type": event_type,
        "payload": payload,
    });
    let ev = blackbox_core::event::normalize_json(
        ev.to_string().as_bytes(),
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .map_err(core_err)?;
    let a = sink.add(&ev, now)?;
    written.push(Written {
        tenant: who.tenant.to_owned(),
        seq: a.seq,
        event_type,
        rule: rule.map(str::to_owned),
    });
    Ok(a)
}

/// The envelope of an event being evaluated.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Agent.
    pub agent: &'a str,
    /// Session.
    pub session: &'a str,
}

/// The entry that fired rules.
#[derive(Debug, Clone, Copy)]
pub struct Trigger<'a> {
    /// Its envelope.
    pub who: Subject<'a>,
    /// Its id.
    pub entry: uuid::Uuid,
    /// It is a call decided at `/v1/decide` (so a block was enforced).
    pub at_decide: bool,
}

/// Appends what `firings` call for after the entry that fired them: an
/// `anomaly_detected` entry per alert not suppressed, then `agent_paused` / `agent_throttled`
/// when the agent's state changes.
///
/// # Errors
/// The sink failed.
pub fn record_firings(
    sink: &mut AppendSink<'_>,
    det: &mut Detector,
    trigger: Trigger<'_>,
    firings: &[Firing],
    now: i64,
    written: &mut Vec<Written>,
) -> Result<(), LedgerError> {
    let Trigger {
        who,
        entry: trigger,
        at_decide,
    } = trigger;
    let rules = Arc::clone(det.rules());
    for f in firings {
        let Some(rule) = rules.rules.get(f.rule) else {
            continue;
        };
        let mut anomaly_id = None;
        if !f.suppressed {
            let mut triggered: Vec<String> = vec![trigger.to_string()];
            triggered.extend(f.earlier.iter().map(ToString::to_string));
            let enforcement = match rule.action {
                Action::Alert => "none",
                Action::AlertAndPause => "paused",
                Action::AlertAndThrottle => "throttled",
                // An ingested event reports a call that already happened: only /v1/decide can
                // refuse one.
                Action::BlockAndAlert if at_decide => "blocked",
                Action::BlockAndAlert => "none",
            };
            let mut payload = json!({
                "rule": rule.name,
                "description": rule.description,
                "severity": rule.severity.as_str(),
                "action": rule.action.as_str(),
                "kind": rule.kind.name(),
                "triggered_by": triggered,
                "enforcement": enforcement,
                "rules_sha256": rules.source_sha256,
            });
            match &rule.kind {
                Kind::Metric { metric, .. } => {
                    payload["metric"] = metric.as_str().into();
                    payload["observed"] = json!(f.observed);
                    payload["baseline"] = json!(f.baseline.map(|b| (b * 1000.0).round() / 1000.0));
                    payload["threshold"] =
                        json!(f.threshold.map(|b| (b * 1000.0).round() / 1000.0));
                }
                Kind::TimeWindow { window, min_count } => {
                    payload["time_window"] = window.to_string().into();
                    payload["time_zone"] = rules.time_zone_name.clone().into();
                    payload["observed"] = json!(f.observed);
                    payload["min_count"] = (*min_count).into();
                    if let Some(s) = f.window_start_ms
                        && let Ok(t) = blackbox_core::entry::format_timestamp(s)
                    {
                        payload["window_start"] = t.into();
                    }
                }
                Kind::Pattern { .. } => {
                    payload["matched"] = json!(f.matched);
                }
            }
            let kind = ("anomaly_detected", Some(rule.name.as_str()));
            let a = append_system(sink, who, kind, payload, now, written)?;
            anomaly_id = Some(a.entry_id);
        }
        let by = format!("rule:{}", rule.name);
        match rule.action {
            Action::AlertAndPause => {
                if det.pause(who.tenant, who.agent, now, &by) {
                    let payload = json!({
                        "by": by,
                        "rule": rule.name,
                        "anomaly_entry_id": anomaly_id.map(|i| i.to_string()),
                        "reason": format!("rule `{}` fired ({})", rule.name, rule.description),
                    });
                    let kind = ("agent_paused", Some(rule.name.as_str()));
                    append_system(sink, who, kind, payload, now, written)?;
                }
            }
            Action::AlertAndThrottle => {
                let until = now.saturating_add(rule.throttle_ms);
                if det.throttle(
                    who.tenant,
                    who.agent,
                    now,
                    rule.throttle_per_minute,
                    until,
                    &by,
                ) {
                    let payload = json!({
                        "by": by,
                        "rule": rule.name,
                        "anomaly_entry_id": anomaly_id.map(|i| i.to_string()),
                        "rate_per_minute": rule.throttle_per_minute,
                        "until": blackbox_core::entry::format_timestamp(until).unwrap_or_default(),
                    });
                    let kind = ("agent_throttled", Some(rule.name.as_str()));
                    append_system(sink, who, kind, payload, now, written)?;
                }
            }
            Action::Alert | Action::BlockAndAlert => {}
        }
    }
    Ok(())
}

/// Appends one event and evaluates it: counts it, appends it, then what it fired.
///
/// # Errors
/// The sink failed.
pub fn add_evaluated(
    sink: &mut AppendSink<'_>,
    det: &mut Detector,
    ev: &NormalizedEvent,
    features: Option<&Features>,
    now: i64,
    firings: &mut Vec<Firing>,
    written: &mut Vec<Written>,
) -> Result<Appended, LedgerError> {
    let tenant = ev.tenant_id.as_ref().map_or("", |t| t.as_str());
    let ts = ev
        .timestamp_ms
        .unwrap_or(now)
        .min(now.saturating_add(60_000));
    firings.clear();
    let skip = DETECTION_EVENTS.contains(&ev.event_type.as_str());
    if let (Some(f), false) = (features, skip) {
        let ob = Observation {
            tenant,
            agent: ev.agent_id.as_str(),
            session: ev.session_id.as_str(),
            event_type: ev.event_type.as_str(),
            tool: ev.tool.as_deref(),
            ts_ms: ts,
            features: f,
        };
        det.observe(&ob, firings);
    }
    let a = sink.add(ev, now)?;
    if skip {
        return Ok(a);
    }
    det.note_entry(tenant, ev.agent_id.as_str(), ts, a.entry_id);
    clock_skew_alert(sink, det, ev, &a, now, written)?;
    if !firings.is_empty() {
        let who = Subject {
            tenant,
            agent: ev.agent_id.as_str(),
            session: ev.session_id.as_str(),
        };
        let t = Trigger {
            who,
            entry: a.entry_id,
            at_decide: false,
        };
        record_firings(sink, det, t, firings, now, written)?;
    }
    Ok(a)
}

/// Raises the built-in `clock_skew` alert (FORMAT.md §14) when an agent's claimed time lay outside
/// the writer's bound (`[clock]`), at most once per agent every 5 minutes.
fn clock_skew_alert(
    sink: &mut AppendSink<'_>,
    det: &mut Detector,
    ev: &NormalizedEvent,
    a: &Appended,
    now: i64,
    written: &mut Vec<Written>,
) -> Result<(), LedgerError> {
    let bound = sink.writer().clock();
    let at = blackbox_core::entry::written_ms(a.entry_id.as_u128());
    let Some(skew) = ev.timestamp_ms.and_then(|c| bound.skew(c, at)) else {
        return Ok(());
    };
    let tenant = ev.tenant_id.as_ref().map_or("", |t| t.as_str());
    if !bound.alert
        || ev
            .origin
            .as_ref()
            .is_some_and(blackbox_core::origin::Origin::is_service)
        || !det.clock_skew_due(tenant, ev.agent_id.as_str(), at)
    {
        return Ok(());
    }
    let rules = Arc::clone(det.rules());
    let payload = json!({
        "rule": blackbox_detect::detector::CLOCK_SKEW_RULE,
        "description": "the agent's claimed event time is outside the service's clock bound ([clock])",
        "severity": "low",
        "action": "alert",
        "kind": "clock",
        "enforcement": "none",
        "triggered_by": [a.entry_id.to_string()],
        "rules_sha256": rules.source_sha256,
        "observed": skew,
        "max_ahead_ms": bound.max_ahead_ms,
        "max_behind_ms": bound.max_behind_ms,
    });
    let who = Subject {
        tenant,
        agent: ev.agent_id.as_str(),
        session: ev.session_id.as_str(),
    };
    append_system(
        sink,
        who,
        (
            "anomaly_detected",
            Some(blackbox_detect::detector::CLOCK_SKEW_RULE),
        ),
        payload,
        now,
        written,
    )?;
    Ok(())
}

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
            match view.event_type.as_ref() {
                // Only the service's own alerts count: anything else of a detection type is an
                // old (version 1) entry or, had it got past the intake, an agent's forgery.
                t if DETECTION_EVENTS.contains(&t) && !view.by_service() => {}
                "anomaly_detected" => {
                    if let Ok(Value::Object(p)) = serde_json::from_str::<Value>(view.payload.get())
                        && let Some(Value::String(rule)) = p.get("rule")
                    {
                        if rule == blackbox_detect::detector::CLOCK_SKEW_RULE {
                            // Restores its suppression (the return value is not needed here).
                            let _ = det.clock_skew_due(
                                &view.tenant_id,
                                &view.agent_id,
                                view.written_ms,
                            );
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
                    let (f, tool) = stored_features(&view, &rules);
                    let ob = Observation {
                        tenant: &view.tenant_id,
                        agent: &view.agent_id,
                        session: &view.session_id,
                        event_type: &view.event_type,
                        tool: tool.as_deref(),
                        ts_ms: view.timestamp_ms,
                        features: &f,
                    };
                    det.learn(&ob);
                    det.note_entry(
                        &view.tenant_id,
                        &view.agent_id,
                        view.timestamp_ms,
                        view.entry_id,
                    );
                }
            }
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
        let by = p.get("by").and_then(Value::as_str).unwrap_or("unknown");
        match t.as_str() {
            "agent_paused" => {
                det.pause(&tenant, &agent, ts, by);
            }
            "agent_resumed" => {
                det.resume(&tenant, &agent);
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
                    det.throttle(&tenant, &agent, now, rate, until, by);
                }
            }
        }
    }
    Ok(n)
}

/// `now` in Unix ms (for callers without a clock of their own).
#[must_use]
pub fn now() -> i64 {
    now_ms()
}

/// An event the service builds itself turned out invalid (a bug, not bad input).
pub(crate) fn core_err(e: blackbox_core::Error) -> LedgerError {
    LedgerError::Event { line: 0, source: e }
}

// The webhook side of detection lives in crate::webhooks (the wiring of blackbox-webhooks).
pub use crate::webhooks::{Webhooks, feed_webhooks, targets_of};
