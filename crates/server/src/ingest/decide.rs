//! `POST /v1/decide`: decide on a tool call from the rules and the agent's state, and record it.

use std::sync::Arc;
use std::time::Instant;

use blackbox_core::ids::TenantId;
use blackbox_detect::rules::Action;
use blackbox_detect::{Detector, Features, Observation};
use blackbox_ledger::LedgerError;
use blackbox_ledger::writer::{AppendSink, Appended};
use serde_json::{Value, json};

use crate::metrics::Metrics;
use blackbox_ledger::appender::{Appender, Subject, Trigger};

/// A tool call an agent asks permission for (`POST /v1/decide`).
#[derive(Debug)]
pub struct DecideRequest {
    /// Tenant (from the token).
    pub tenant: TenantId,
    /// Agent.
    pub agent_id: String,
    /// Session.
    pub session_id: String,
    /// The `tool_call` payload to record, raw content already hashed, without `authorization`.
    pub payload: serde_json::Map<String, Value>,
    /// The agent's per-session counter.
    pub client_seq: Option<u64>,
    /// Features of the call (pattern hits on the raw arguments).
    pub features: Features,
    /// Who asked: the token, through `decide` (the record's origin).
    pub origin: blackbox_core::origin::Origin,
    /// The external classifier's verdict, recorded with the decision (its score is in
    /// `features`).
    pub classifier: Option<Value>,
}

/// A rule that decided.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleHit {
    /// Rule name.
    pub name: String,
    /// Its action.
    pub action: &'static str,
    /// Its severity.
    pub severity: &'static str,
}

/// The answer to a [`DecideRequest`].
#[derive(Debug, Clone)]
pub struct Decision {
    /// `allow`, `block`, `throttle` or `paused`.
    pub decision: &'static str,
    /// For `throttle`: when to retry.
    pub retry_after_ms: Option<i64>,
    /// Rules that fired on the call.
    pub rules: Vec<RuleHit>,
    /// The recorded `tool_call` entry.
    pub entry: Appended,
    /// Whether the record was durably committed before this answer (see [`DecideAnswer`]).
    pub durable: bool,
}

/// When `POST /v1/decide` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecideAnswer {
    /// Once the record of the attempted call is durably committed (the default).
    #[default]
    Durable,
    /// Once the record is sequenced and signed, before its commit: no fsync on the agent's
    /// path. Should the commit then fail (or the service crash first), the record is lost; the
    /// service writes a `decisions_unrecorded` entry naming the lost entry ids when it can.
    Sequenced,
}

pub(super) fn count_decision(m: &Metrics, decision: &str) {
    m.decisions
        .get_or_create(&crate::metrics::DecisionLabel {
            decision: decision.to_owned(),
        })
        .inc();
}

pub(super) fn decide(
    sink: &mut AppendSink<'_>,
    det: &mut Detector,
    appender: &mut Appender,
    metrics: &Metrics,
    req: DecideRequest,
    now: i64,
) -> Result<Result<Decision, String>, LedgerError> {
    let started = Instant::now();
    let rules = Arc::clone(det.rules());
    let tenant = req.tenant.as_str().to_owned();
    let gate = det.gate(&tenant, &req.agent_id, now);
    let tool = req
        .payload
        .get("tool_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let ob = Observation {
        tenant: &tenant,
        agent: &req.agent_id,
        session: &req.session_id,
        event_type: "tool_call",
        tool: tool.as_deref(),
        ts_ms: now,
        features: &req.features,
    };
    let firings = appender.evaluate(det, &ob);
    let verdict = blackbox_detect::verdict::decide(&rules, firings, &gate);
    let (decision, retry_after_ms) = (verdict.as_str(), verdict.retry_after_ms());
    let named = blackbox_detect::verdict::names(&rules, firings);
    metrics
        .decide_eval_seconds
        .observe(started.elapsed().as_secs_f64());
    // The agent learns which rules decided (blocked, paused, throttled), never the rules that
    // only alerted, the shadow rules or the signals: it must not be able to probe them.
    let hits: Vec<RuleHit> = firings
        .iter()
        .filter_map(|f| rules.rules.get(f.rule))
        .filter(|r| {
            matches!(
                r.action,
                Action::BlockAndAlert | Action::AlertAndPause | Action::AlertAndThrottle
            )
        })
        .map(|r| RuleHit {
            name: r.name.clone(),
            action: r.action.as_str(),
            severity: r.severity.as_str(),
        })
        .collect();
    let mut payload = req.payload;
    let names = &named.acting;
    let mut authorization = json!({
        "allowed": decision == "allow",
        "decision": decision,
        "decided_by": "blackbox",
        "rules": names,
    });
    // What else was seen, by name only (never the matched text): signals and their score,
    // shadow rules, the classifier's verdict.
    if !named.signals.is_empty() {
        authorization["signals"] = json!(named.signals);
        authorization["score"] = json!((named.score * 1000.0).round() / 1000.0);
    }
    if !named.shadow.is_empty() {
        authorization["shadow_rules"] = json!(named.shadow);
    }
    if let Some(c) = req.classifier {
        authorization["classifier"] = c;
    }
    payload.insert("authorization".into(), authorization);
    // `policy_matched` names what decided, when something other than "no rule objected" did.
    let policy = names.first().map_or_else(
        || match decision {
            "paused" => Some("agent paused".to_owned()),
            "throttle" => Some("agent throttled".to_owned()),
            _ => None,
        },
        |n| Some(format!("rule:{n}")),
    );
    if let (Some(p), Some(Value::Object(a))) = (policy, payload.get_mut("authorization")) {
        a.insert("policy_matched".into(), p.into());
    }
    let mut ev = json!({
        "tenant_id": tenant,
        "agent_id": req.agent_id,
        "session_id": req.session_id,
        "event_type": "tool_call",
        "payload": payload,
    });
    if let Some(c) = req.client_seq {
        ev["client_seq"] = c.into();
    }
    let ev = match blackbox_core::event::normalize_json(
        ev.to_string().as_bytes(),
        &blackbox_core::entry::RedactionPolicy::default(),
        &req.origin,
    ) {
        Ok(ev) => ev,
        // The handler checked the request; should the record still be invalid, only this call
        // fails, not the group.
        Err(e) => return Ok(Err(e.to_string())),
    };
    let entry = appender.add(sink, None, &ev, None, now)?;
    det.note_entry(&tenant, ev.agent_id.as_str(), now, entry.entry_id);
    if !appender.firings().is_empty() {
        let who = Subject {
            tenant: &tenant,
            agent: ev.agent_id.as_str(),
            session: ev.session_id.as_str(),
        };
        let t = Trigger {
            who,
            entry: entry.entry_id,
            at_decide: true,
        };
        appender.record_firings(sink, det, t, now)?;
    }
    Ok(Ok(Decision {
        decision,
        retry_after_ms,
        rules: hits,
        entry,
        durable: true,
    }))
}
