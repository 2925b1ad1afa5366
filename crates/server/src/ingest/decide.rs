//! `POST /v1/decide`: decide on a tool call from the rules and the agent's state, and record it.

use std::sync::Arc;
use std::time::Instant;

use blackbox_core::ids::TenantId;
use blackbox_detect::rules::Action;
use blackbox_detect::{Detector, Features, Gate, Observation};
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
    let has = |a: Action| firings.iter().any(|f| f.action == a);
    let mut retry_after_ms = None;
    let decision = if has(Action::BlockAndAlert) {
        "block"
    } else if gate == Gate::Paused || has(Action::AlertAndPause) {
        "paused"
    } else if has(Action::AlertAndThrottle) {
        let per_minute = firings
            .iter()
            .filter(|f| f.action == Action::AlertAndThrottle)
            .filter_map(|f| rules.rules.get(f.rule))
            .map(|r| r.throttle_per_minute)
            .min()
            .unwrap_or(1);
        retry_after_ms = Some(60_000 / i64::from(per_minute.max(1)));
        "throttle"
    } else if let Gate::Throttled { retry_after_ms: w } = gate {
        retry_after_ms = Some(w);
        "throttle"
    } else {
        "allow"
    };
    metrics
        .decide_eval_seconds
        .observe(started.elapsed().as_secs_f64());
    let hits: Vec<RuleHit> = firings
        .iter()
        .filter_map(|f| rules.rules.get(f.rule))
        .map(|r| RuleHit {
            name: r.name.clone(),
            action: r.action.as_str(),
            severity: r.severity.as_str(),
        })
        .collect();
    let mut payload = req.payload;
    let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
    payload.insert(
        "authorization".into(),
        json!({
            "allowed": decision == "allow",
            "decision": decision,
            "decided_by": "blackbox",
            "rules": names,
        }),
    );
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
