//! Operator actions on agents and rules (pause, resume, rules loaded, triage, retention steps),
//! recorded in the chain where they change state.

use std::sync::Arc;

use blackbox_core::ids::TenantId;
use blackbox_detect::Detector;
use blackbox_detect::rules::RuleSet;
use blackbox_ledger::LedgerError;
use blackbox_ledger::writer::{AppendSink, Appended};
use serde_json::{Value, json};

use blackbox_ledger::appender::{Appender, Subject};

use crate::detection;

/// Operator actions on agents and rules.
#[derive(Debug)]
pub enum Control {
    /// Pause an agent.
    Pause {
        /// Tenant.
        tenant: TenantId,
        /// Agent.
        agent: String,
        /// `operator:<token id>`.
        by: String,
        /// Why.
        reason: String,
    },
    /// Resume an agent.
    Resume {
        /// Tenant.
        tenant: TenantId,
        /// Agent.
        agent: String,
        /// `operator:<token id>`.
        by: String,
        /// Why.
        reason: String,
        /// The alert this resume answers (checked by the caller: an alert of this agent).
        alert_id: Option<String>,
    },
    /// Record an alert's triage step (checked by the caller against the chain, under the
    /// service's triage lock).
    Triage(
        Box<blackbox_ledger::alerts::Alert>,
        blackbox_core::alert::TriageRequest,
    ),
    /// Put new rules in force.
    Rules(Arc<RuleSet>, String),
    /// List agents.
    List(Option<String>),
    /// A retention step (archive a segment, or record an expiry), committed with the group.
    Retention(Box<blackbox_archive::run::Staged>),
    /// Sign a checkpoint now for each of these chains whose latest one does not cover its
    /// last entry (an auditor's bundle, `POST /v1/checkpoints`).
    SignCheckpoints(Vec<String>),
    /// Store witnesses' cosignatures (verified by the caller) on a stored checkpoint: `note` is
    /// its note with their lines added.
    Cosigned {
        /// The chain.
        tenant: String,
        /// The checkpoint's size.
        size: u64,
        /// The note with the cosignature lines.
        note: String,
    },
    /// A witness refused a checkpoint, or answered what an honest witness cannot: the built-in
    /// `witness_refused` alert, in the service's chain (payload given, FORMAT.md §14).
    WitnessAlert(Value),
}

/// What a [`Control`] did.
#[derive(Debug)]
pub enum ControlReply {
    /// The state changed (and the entry recording it), or `None` when it was already so.
    Changed(Option<Appended>),
    /// Agents.
    Agents(Vec<blackbox_detect::detector::AgentInfo>),
    /// Refused, nothing written: why.
    Refused(String),
    /// Checkpoints signed.
    Signed(usize),
}

pub(super) fn control(
    sink: &mut AppendSink<'_>,
    det: &mut Detector,
    appender: &mut Appender,
    c: Control,
    now: i64,
    system_tenant: &str,
) -> Result<ControlReply, LedgerError> {
    let record = |sink: &mut AppendSink<'_>,
                  tenant: &TenantId,
                  agent: &str,
                  t: &'static str,
                  payload: Value,
                  appender: &mut Appender| {
        let who = Subject {
            tenant: tenant.as_str(),
            agent,
            session: "operator",
        };
        appender.add_system(sink, who, (t, None), payload, now)
    };
    Ok(match c {
        Control::Pause {
            tenant,
            agent,
            by,
            reason,
        } => {
            if det.pause(tenant.as_str(), &agent, now, &by) {
                let a = record(
                    sink,
                    &tenant,
                    &agent,
                    "agent_paused",
                    json!({"by": by, "reason": reason}),
                    appender,
                )?;
                ControlReply::Changed(Some(a))
            } else {
                ControlReply::Changed(None)
            }
        }
        Control::Resume {
            tenant,
            agent,
            by,
            reason,
            alert_id,
        } => {
            // An agent a rule paused or throttled is resumed in answer to an alert: the resume
            // names it (an operator's own pause may be lifted without one).
            let by_rule = det
                .agents(Some(tenant.as_str()), now)
                .into_iter()
                .find(|a| a.agent_id == agent)
                .is_some_and(|a| {
                    a.paused.as_ref().is_some_and(|p| p.by.starts_with("rule:"))
                        || a.throttle
                            .as_ref()
                            .is_some_and(|t| t.by.starts_with("rule:"))
                });
            if by_rule && alert_id.is_none() {
                return Ok(ControlReply::Refused(format!(
                    "agent `{agent}` was paused or throttled by a rule: say which alert this resume answers with {{\"alert_id\": …}} (`blackbox alerts list --agent-id {agent}` shows its alerts)"
                )));
            }
            if det.resume(tenant.as_str(), &agent) {
                let mut payload = json!({"by": by, "reason": reason});
                if let Some(id) = alert_id {
                    payload["alert_id"] = id.into();
                }
                let a = record(sink, &tenant, &agent, "agent_resumed", payload, appender)?;
                ControlReply::Changed(Some(a))
            } else {
                ControlReply::Changed(None)
            }
        }
        Control::Rules(set, file) => {
            let payload = json!({
                "rules_sha256": set.source_sha256,
                "rules": set.rules.len(),
                "enabled": set.rules.iter().filter(|r| r.enabled).count(),
                "webhooks": set.webhooks.len(),
                "file": file,
            });
            det.set_rules(set);
            let tenant = TenantId::parse(system_tenant)
                .map_err(|e| detection::core_err(blackbox_core::Error::Field(e)))?;
            let a = record(
                sink,
                &tenant,
                "blackbox-server",
                "rules_loaded",
                payload,
                appender,
            )?;
            ControlReply::Changed(Some(a))
        }
        Control::Triage(alert, req) => ControlReply::Changed(Some(
            blackbox_ledger::alerts::append(sink, &alert, &req, now)?,
        )),
        Control::List(tenant) => ControlReply::Agents(det.agents(tenant.as_deref(), now)),
        Control::Retention(staged) => ControlReply::Changed(staged.apply(sink, now)?),
        Control::Cosigned { tenant, size, note } => {
            sink.add_signatures(&tenant, size, note)?;
            ControlReply::Changed(None)
        }
        Control::WitnessAlert(payload) => {
            let who = Subject {
                tenant: system_tenant,
                agent: "blackbox-server",
                session: "witness",
            };
            let kind = ("anomaly_detected", Some(crate::witnessing::RULE));
            ControlReply::Changed(Some(appender.add_system(sink, who, kind, payload, now)?))
        }
        Control::SignCheckpoints(tenants) => {
            for t in &tenants {
                sink.track(t)?;
            }
            ControlReply::Signed(sink.close(now)?)
        }
    })
}
