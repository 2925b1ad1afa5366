//! What detection writes: the payloads of the entries the service appends when a rule fires
//! (`anomaly_detected`, `agent_paused`, `agent_throttled`) and of the built-in `clock_skew` alert
//! (docs/FORMAT.md §14).
//!
//! Pure: these functions build JSON values; the ledger's appender
//! (`blackbox_ledger::appender`) decides when to append them and signs them.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::detector::{CLOCK_SKEW_RULE, Firing};
use crate::rules::{Action, Kind, Rule, RuleSet};

/// Event types the detector writes (never fed back into it): the one list, at the crate root.
pub use crate::DETECTION_EVENTS;

/// Rounds a baseline or threshold to three decimals, as recorded.
fn rounded(v: Option<f64>) -> Option<f64> {
    v.map(|b| (b * 1000.0).round() / 1000.0)
}

/// The payload of the `anomaly_detected` entry for `firing` of `rule`, raised by the entry
/// `trigger` (`at_decide`: a call decided at `/v1/decide`, so a block was enforced).
#[must_use]
pub fn anomaly(
    rules: &RuleSet,
    rule: &Rule,
    firing: &Firing,
    trigger: Uuid,
    at_decide: bool,
) -> Value {
    let mut triggered: Vec<String> = vec![trigger.to_string()];
    triggered.extend(firing.earlier.iter().map(ToString::to_string));
    let enforcement = match rule.action {
        Action::Alert => "none",
        Action::AlertAndPause => "paused",
        Action::AlertAndThrottle => "throttled",
        // An ingested event reports a call that already happened: only /v1/decide can refuse
        // one.
        Action::BlockAndAlert if at_decide => "blocked",
        Action::BlockAndAlert | Action::LogOnly | Action::Signal => "none",
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
            payload["observed"] = json!(firing.observed);
            payload["baseline"] = json!(rounded(firing.baseline));
            payload["threshold"] = json!(rounded(firing.threshold));
        }
        Kind::TimeWindow { window, min_count } => {
            payload["time_window"] = window.to_string().into();
            payload["time_zone"] = rules.time_zone_name.clone().into();
            payload["observed"] = json!(firing.observed);
            payload["min_count"] = (*min_count).into();
            if let Some(s) = firing.window_start_ms
                && let Ok(t) = blackbox_core::entry::format_timestamp(s)
            {
                payload["window_start"] = t.into();
            }
        }
        Kind::Pattern { .. } | Kind::Hidden { .. } => {
            payload["matched"] = json!(firing.matched);
        }
        Kind::Score { .. } => {
            payload["score"] = json!(rounded(firing.observed));
            payload["score_at_least"] = json!(firing.threshold);
            payload["matched"] = json!(firing.matched);
        }
        Kind::Classifier { .. } => {
            payload["classifier_score"] = json!(rounded(firing.observed));
            payload["classifier_score_at_least"] = json!(firing.threshold);
        }
    }
    payload
}

/// `rule:<name>`: who paused or throttled an agent.
#[must_use]
pub fn by_rule(rule: &Rule) -> String {
    format!("rule:{}", rule.name)
}

/// The payload of the `agent_paused` entry that follows `rule`'s alert (`anomaly`, unless
/// suppressed).
#[must_use]
pub fn paused(rule: &Rule, anomaly: Option<Uuid>) -> Value {
    json!({
        "by": by_rule(rule),
        "rule": rule.name,
        "anomaly_entry_id": anomaly.map(|i| i.to_string()),
        "reason": format!("rule `{}` fired ({})", rule.name, rule.description),
    })
}

/// The payload of the `agent_throttled` entry that follows `rule`'s alert, throttling until
/// `until_ms`.
#[must_use]
pub fn throttled(rule: &Rule, anomaly: Option<Uuid>, until_ms: i64) -> Value {
    json!({
        "by": by_rule(rule),
        "rule": rule.name,
        "anomaly_entry_id": anomaly.map(|i| i.to_string()),
        "rate_per_minute": rule.throttle_per_minute,
        "until": blackbox_core::entry::format_timestamp(until_ms).unwrap_or_default(),
    })
}

/// The payload of the built-in `clock_skew` alert for the entry `trigger`, whose claimed time
/// lay `skew_ms` from the writer's clock, outside `bound`.
#[must_use]
pub fn clock_skew(
    rules: &RuleSet,
    trigger: Uuid,
    skew_ms: i64,
    bound: &blackbox_core::entry::ClockBound,
) -> Value {
    json!({
        "rule": CLOCK_SKEW_RULE,
        "description": "the agent's claimed event time is outside the service's clock bound ([clock])",
        "severity": "low",
        "action": "alert",
        "kind": "clock",
        "enforcement": "none",
        "triggered_by": [trigger.to_string()],
        "rules_sha256": rules.source_sha256,
        "observed": skew_ms,
        "max_ahead_ms": bound.max_ahead_ms,
        "max_behind_ms": bound.max_behind_ms,
    })
}
