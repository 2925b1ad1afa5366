//! The alert register of a report: every alert of the period (an `anomaly_detected` entry the
//! service wrote, by writer time) with its triggering entry, the rules version in force, the
//! action taken, its SIEM delivery (from the webhook outbox) and its triage (docs/FORMAT.md
//! §14), each alert tested against the same attributes; the rules versions in force during the
//! period; and the sample of alerts a SOC 2 CC7.2 report is tested on.
//!
//! The pass over the chain ([`crate::figures`]) feeds a collector, which then joins what it saw
//! with the rules versions and the deliveries.

use std::collections::{BTreeMap, HashMap};

use blackbox_core::alert::Triage;
use blackbox_core::entry::format_timestamp;
use blackbox_store::Store;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::ExportError;

/// Triage within this many hours unless the export settings say otherwise
/// (`[alerts] triage_within_hours`).
pub const DEFAULT_TRIAGE_HOURS: u64 = 24;
/// Entries remembered to name an alert's triggering entry (it comes right before the alert).
const RECENT: usize = 256;

/// Where the SIEM delivery records are read.
#[derive(Debug)]
pub enum DeliveryRecords<'a> {
    /// The service's webhook outbox.
    Outbox(&'a dyn blackbox_webhooks::Outbox),
    /// There is no outbox: the service never queued a webhook for this data directory.
    Missing,
    /// The outbox could not be read (why).
    Unreadable(String),
}

/// The entry that raised an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trigger {
    /// Its `entry_id` (the alert's `triggered_by[0]`).
    pub entry_id: String,
    /// Its seq in the chain, when found there.
    pub seq: Option<u64>,
    /// Its event type, when found.
    pub event_type: String,
    /// Its tool, when it is a tool call.
    pub tool: String,
}

/// Whether an alert reached the SIEM, from the webhook outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiemDelivery {
    /// `delivered` (every webhook answered 2xx), `failed` (a delivery was given up),
    /// `pending` (still being tried), `no_webhook` (the rules in force configured none),
    /// `not_recorded` (webhooks were configured and the outbox has no delivery of the alert) or
    /// `unknown` (the outbox could not be read).
    pub status: &'static str,
    /// Deliveries of the alert (one per webhook listing `anomaly_detected`).
    pub deliveries: u64,
    /// When the last of them was delivered.
    pub delivered_at: Option<String>,
    /// What the outbox says (attempts, last HTTP status or error).
    pub detail: String,
}

/// One alert of the register.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    /// The alert's id: its entry's `entry_id`.
    pub alert_id: String,
    /// Its seq.
    pub seq: u64,
    /// When the service wrote it.
    pub fired_at: String,
    /// Agent.
    pub agent_id: String,
    /// Session of the entry that raised it.
    pub session_id: String,
    /// Rule.
    pub rule: String,
    /// Severity.
    pub severity: String,
    /// The rule's action (`alert`, `alert_and_pause`, `alert_and_throttle`, `block_and_alert`).
    pub action: String,
    /// What was enforced (`none`, `blocked`, `paused`, `throttled`).
    pub enforcement: String,
    /// SHA-256 of the rules file in force (empty: the built-in rules).
    pub rules_sha256: String,
    /// The entry that raised it.
    pub trigger: Option<Trigger>,
    /// The `agent_paused` / `agent_throttled` entry that names it.
    pub enforcement_entry: Option<String>,
    /// SIEM delivery.
    pub siem: SiemDelivery,
    /// `open`, `acknowledged` or `resolved`, as of the export.
    pub state: &'static str,
    /// `true_positive`, `false_positive` or `accepted_risk` when resolved.
    pub disposition: Option<String>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When.
    pub acknowledged_at: Option<String>,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When.
    pub resolved_at: Option<String>,
    /// The ticket given at triage (the resolution's, else the acknowledgement's).
    pub ticket: Option<String>,
    /// Hours from the alert to its first triage step.
    pub hours_to_triage: Option<f64>,
    /// The attributes tested on it (see [`AlertRegister::attributes`]).
    pub tests: Vec<Test>,
}

impl AlertRow {
    /// Whether an attribute is an exception.
    #[must_use]
    pub fn has_exception(&self) -> bool {
        self.tests.iter().any(|t| t.result == EXCEPTION)
    }
}

/// `pass`.
pub const PASS: &str = "pass";
/// `exception`.
pub const EXCEPTION: &str = "exception";
/// `n/a`: the attribute does not apply to this alert.
pub const NOT_APPLICABLE: &str = "n/a";

/// One attribute tested on one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Test {
    /// The attribute (see [`AlertRegister::attributes`]).
    pub attribute: &'static str,
    /// `pass`, `exception` or `n/a`.
    pub result: &'static str,
    /// What was found.
    pub detail: String,
}

/// A rules file the service recorded as loaded (`rules_loaded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulesVersion {
    /// When it took effect (writer time).
    pub loaded_at: String,
    /// The service chain holding the record.
    pub chain: String,
    /// Its seq there.
    pub seq: u64,
    /// SHA-256 of the file.
    pub rules_sha256: String,
    /// Rules in it.
    pub rules: u64,
    /// Of which enabled.
    pub enabled: u64,
    /// Webhooks it configures.
    pub webhooks: u64,
    /// The file.
    pub file: String,
    /// Loaded during the period (else: the version in force when it began).
    pub in_period: bool,
}

/// SIEM deliveries of the period's alerts, by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SiemSummary {
    /// Where the figures come from.
    pub source: String,
    /// Alerts delivered to every webhook.
    pub delivered: u64,
    /// Alerts with a delivery given up.
    pub failed: u64,
    /// Alerts still being delivered.
    pub pending: u64,
    /// Alerts raised while no webhook was configured.
    pub no_webhook: u64,
    /// Alerts without a delivery although webhooks were configured.
    pub not_recorded: u64,
    /// Alerts whose delivery could not be read.
    pub unknown: u64,
}

/// The register of the period's alerts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertRegister {
    /// Every alert of the period, oldest first.
    pub alerts: Vec<AlertRow>,
    /// The rules version in force when the period began and every version loaded during it.
    pub rules_versions: Vec<RulesVersion>,
    /// SIEM deliveries by status.
    pub siem: SiemSummary,
    /// Triage is due within this many hours.
    pub triage_within_hours: u64,
    /// Where that figure comes from (`export.toml` or the default).
    pub triage_source: String,
    /// The attributes each alert is tested on: (name, what passes).
    pub attributes: Vec<(&'static str, &'static str)>,
    /// Alerts with at least one exception.
    pub exceptions: u64,
    /// Alerts still open or acknowledged as of the export.
    pub unresolved: u64,
    /// The alerts sampled for testing (ids, in sample order: by rank).
    pub sample: Vec<String>,
    /// How the sample was drawn.
    pub sample_method: String,
}

/// The attributes every alert is tested on.
pub const ATTRIBUTES: [(&str, &str); 5] = [
    (
        "trigger",
        "the alert names the entry that raised it and that entry is in the chain",
    ),
    (
        "rules",
        "the rules file in force (its SHA-256, written into the alert) was recorded as loaded by the service (rules_loaded) at or before the alert",
    ),
    (
        "action",
        "the rule's action is recorded: a block as enforced at /v1/decide, a pause or throttle by the agent_paused / agent_throttled entry naming the alert",
    ),
    (
        "siem",
        "every webhook configured for alerts answered 2xx (the webhook outbox's delivery record)",
    ),
    (
        "triage",
        "acknowledged or resolved by a person (an alert_acknowledged / alert_resolved entry) within the triage time",
    ),
];

struct Pending {
    row: AlertRow,
    trigger_id: Option<String>,
    fired_ms: i64,
}

/// What the pass over the chain saw of alerts.
#[derive(Default)]
pub(crate) struct Collector {
    alerts: Vec<Pending>,
    triage: HashMap<String, Triage>,
    enforced: HashMap<String, String>,
    /// The last entries: (entry id, seq, event type, tool).
    recent: Vec<(u128, u64, String, String)>,
    next: usize,
}

impl Collector {
    /// Remembers an entry of the period (to name a later alert's trigger).
    pub(crate) fn note(&mut self, entry_id: u128, seq: u64, event_type: &str, tool: &str) {
        if self.recent.len() < RECENT {
            self.recent
                .push((entry_id, seq, event_type.to_owned(), tool.to_owned()));
            return;
        }
        let slot = &mut self.recent[self.next];
        self.next = (self.next + 1) % RECENT;
        slot.0 = entry_id;
        slot.1 = seq;
        slot.2.clear();
        slot.2.push_str(event_type);
        slot.3.clear();
        slot.3.push_str(tool);
    }

    /// An `anomaly_detected` entry of the period written by the service.
    pub(crate) fn alert(
        &mut self,
        (alert_id, seq, written_ms): (&str, u64, i64),
        (agent, session): (&str, &str),
        payload: &Value,
    ) {
        let s = |k: &str| {
            payload
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let trigger_id = payload
            .get("triggered_by")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(str::to_owned);
        let trigger = trigger_id.as_deref().map(|id| {
            let found = uuid::Uuid::parse_str(id)
                .ok()
                .and_then(|u| self.recent.iter().find(|r| r.0 == u.as_u128() && r.1 < seq));
            Trigger {
                entry_id: id.to_owned(),
                seq: found.map(|r| r.1),
                event_type: found.map(|r| r.2.clone()).unwrap_or_default(),
                tool: found.map(|r| r.3.clone()).unwrap_or_default(),
            }
        });
        self.alerts.push(Pending {
            row: AlertRow {
                alert_id: alert_id.to_owned(),
                seq,
                fired_at: time(written_ms),
                agent_id: agent.to_owned(),
                session_id: session.to_owned(),
                rule: s("rule"),
                severity: s("severity"),
                action: s("action"),
                enforcement: s("enforcement"),
                rules_sha256: s("rules_sha256"),
                trigger,
                enforcement_entry: None,
                siem: SiemDelivery {
                    status: "unknown",
                    deliveries: 0,
                    delivered_at: None,
                    detail: String::new(),
                },
                state: "open",
                disposition: None,
                acknowledged_by: None,
                acknowledged_at: None,
                resolved_by: None,
                resolved_at: None,
                ticket: None,
                hours_to_triage: None,
                tests: Vec::new(),
            },
            trigger_id,
            fired_ms: written_ms,
        });
    }

    /// An `alert_acknowledged` / `alert_resolved` entry the service wrote (anywhere after the
    /// period began), in chain order.
    pub(crate) fn triage(
        &mut self,
        event_type: &str,
        payload: &Value,
        (entry_id, seq, written_ms): (&str, u64, i64),
    ) {
        if let Some(id) = payload.get("alert_id").and_then(Value::as_str) {
            self.triage
                .entry(id.to_owned())
                .or_default()
                .apply(event_type, payload, written_ms, entry_id, seq);
        }
    }

    /// An `agent_paused` / `agent_throttled` entry the service wrote.
    pub(crate) fn enforcement(&mut self, payload: &Value, entry_id: &str) {
        if let Some(id) = payload.get("anomaly_entry_id").and_then(Value::as_str) {
            self.enforced
                .entry(id.to_owned())
                .or_insert_with(|| entry_id.to_owned());
        }
    }

    /// The register: triage, enforcement and deliveries joined, every alert tested, the
    /// sample drawn (`sample_size` alerts, bottom-k of SHA-256(seed, alert id)).
    ///
    /// # Errors
    /// Store failures reading the rules versions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish(
        mut self,
        store: &dyn Store,
        tenant: &str,
        (start_ms, now_ms): (i64, i64),
        records: &DeliveryRecords<'_>,
        (triage_hours, triage_source): (u64, String),
        (seed, sample_size): (&str, usize),
        chain_ok: bool,
    ) -> Result<AlertRegister, ExportError> {
        let versions = rules_versions(store)?;
        // Deliveries of the alerts' seqs, by seq.
        let (mut by_seq, source): (BTreeMap<u64, Vec<blackbox_webhooks::DeliveryInfo>>, String) =
            match (records, self.alerts.first(), self.alerts.last()) {
                (DeliveryRecords::Outbox(o), Some(a), Some(b)) => {
                    let mut m: BTreeMap<u64, Vec<_>> = BTreeMap::new();
                    for d in o
                        .of_entries(tenant, a.row.seq, b.row.seq)
                        .map_err(|e| ExportError::Usage(format!("the webhook outbox: {e}")))?
                    {
                        if d.event_type == blackbox_core::alert::ALERT {
                            m.entry(d.seq).or_default().push(d);
                        }
                    }
                    (m, format!("the webhook outbox ({})", o.location()))
                }
                (DeliveryRecords::Outbox(o), _, _) => (
                    BTreeMap::new(),
                    format!("the webhook outbox ({})", o.location()),
                ),
                (DeliveryRecords::Missing, _, _) => (
                    BTreeMap::new(),
                    "no webhook outbox: the service never queued a webhook for this log".into(),
                ),
                (DeliveryRecords::Unreadable(why), _, _) => (
                    BTreeMap::new(),
                    format!("the webhook outbox could not be read: {why}"),
                ),
            };
        let mut reg = AlertRegister {
            triage_within_hours: triage_hours,
            triage_source,
            attributes: ATTRIBUTES.to_vec(),
            siem: SiemSummary {
                source,
                ..SiemSummary::default()
            },
            ..AlertRegister::default()
        };
        // The version in force when the period began, and those loaded during it.
        let before = versions.iter().rposition(|v| v.1 < start_ms);
        for (i, (v, at)) in versions.iter().enumerate() {
            if Some(i) == before || *at >= start_ms && *at <= now_ms {
                let mut v = v.clone();
                v.in_period = *at >= start_ms;
                reg.rules_versions.push(v);
            }
        }
        let sla_ms = i64::try_from(triage_hours)
            .unwrap_or(i64::MAX / 3_600_000)
            .saturating_mul(3_600_000);
        for p in &mut self.alerts {
            let row = &mut p.row;
            // The trigger: in the remembered entries, else by id in the store.
            if let (Some(t), Some(id)) = (&mut row.trigger, &p.trigger_id)
                && t.seq.is_none()
                && let Ok(u) = uuid::Uuid::parse_str(id)
                && let Ok(Some(e)) = store.entry_by_id(u.as_bytes())
                && e.tenant_id == tenant
            {
                t.seq = Some(e.seq);
                if let Ok(v) = blackbox_core::entry::EntryView::parse(&e.line) {
                    t.event_type = v.event_type.to_string();
                    t.tool = serde_json::from_str::<Value>(v.payload.get())
                        .ok()
                        .and_then(|pl| {
                            pl.get("tool_name")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        })
                        .unwrap_or_default();
                }
            }
            row.enforcement_entry = self.enforced.remove(&row.alert_id);
            if let Some(t) = self.triage.remove(&row.alert_id) {
                row.state = t.state().as_str();
                let first = [
                    t.acknowledged.as_ref().map(|m| m.at_ms),
                    t.resolved.as_ref().map(|(_, m)| m.at_ms),
                ]
                .into_iter()
                .flatten()
                .min();
                row.hours_to_triage = first.map(|at| hours(at - p.fired_ms));
                if let Some(m) = &t.acknowledged {
                    row.acknowledged_by = Some(m.by.clone());
                    row.acknowledged_at = Some(time(m.at_ms));
                    row.ticket.clone_from(&m.ticket);
                }
                if let Some((r, m)) = &t.resolved {
                    row.disposition = Some(r.as_str().to_owned());
                    row.resolved_by = Some(m.by.clone());
                    row.resolved_at = Some(time(m.at_ms));
                    if m.ticket.is_some() {
                        row.ticket.clone_from(&m.ticket);
                    }
                }
            }
            // The rules in force: the last version of this hash loaded at or before the alert.
            let version = versions
                .iter()
                .rev()
                .find(|(v, at)| v.rules_sha256 == row.rules_sha256 && *at <= p.fired_ms);
            row.siem = siem(
                by_seq.remove(&row.seq).unwrap_or_default(),
                records,
                version.map(|(v, _)| v.webhooks),
            );
            match row.siem.status {
                "delivered" => reg.siem.delivered += 1,
                "failed" => reg.siem.failed += 1,
                "pending" => reg.siem.pending += 1,
                "no_webhook" => reg.siem.no_webhook += 1,
                "not_recorded" => reg.siem.not_recorded += 1,
                _ => reg.siem.unknown += 1,
            }
            row.tests = tests(
                row,
                version.is_some(),
                (p.fired_ms, now_ms, sla_ms),
                chain_ok,
            );
            reg.exceptions += u64::from(row.has_exception());
            reg.unresolved += u64::from(row.state != "resolved");
        }
        // The sample: bottom-k of SHA-256(seed \n tenant \n alert id).
        let mut ranked: Vec<([u8; 32], &str)> = self
            .alerts
            .iter()
            .map(|p| {
                let mut h = Sha256::new();
                h.update(format!("{seed}\n{tenant}\n{}", p.row.alert_id).as_bytes());
                (h.finalize().into(), p.row.alert_id.as_str())
            })
            .collect();
        ranked.sort_unstable();
        reg.sample = ranked
            .iter()
            .take(sample_size)
            .map(|(_, id)| (*id).to_owned())
            .collect();
        reg.sample_method = format!(
            "the {} alerts of the period with the smallest SHA-256(seed \"\\n\" tenant \"\\n\" alert_id), seed \"{seed}\" (all alerts when there are fewer); each is tested on every attribute, and so is every other alert of the period",
            sample_size
        );
        reg.alerts = self.alerts.into_iter().map(|p| p.row).collect();
        Ok(reg)
    }
}

fn time(ms: i64) -> String {
    format_timestamp(ms).unwrap_or_else(|_| ms.to_string())
}

#[allow(clippy::cast_precision_loss)]
fn hours(ms: i64) -> f64 {
    (ms.max(0) as f64 / 360_000.0).round() / 10.0
}

/// Every `rules_loaded` entry the service wrote in its chains, oldest first, with its writer
/// time.
fn rules_versions(store: &dyn Store) -> Result<Vec<(RulesVersion, i64)>, ExportError> {
    Ok(blackbox_ledger::rules_loaded::rules_loaded(store)?
        .into_iter()
        .map(|r| {
            (
                RulesVersion {
                    loaded_at: time(r.written_ms),
                    chain: r.chain,
                    seq: r.seq,
                    rules_sha256: r.rules_sha256,
                    rules: r.rules,
                    enabled: r.enabled,
                    webhooks: r.webhooks,
                    file: r.file,
                    in_period: false,
                },
                r.written_ms,
            )
        })
        .collect())
}

/// An alert's delivery from its outbox rows (`webhooks`: how many the rules in force
/// configured, when known).
fn siem(
    rows: Vec<blackbox_webhooks::DeliveryInfo>,
    records: &DeliveryRecords<'_>,
    webhooks: Option<u64>,
) -> SiemDelivery {
    let n = rows.len() as u64;
    let mut d = SiemDelivery {
        status: "unknown",
        deliveries: n,
        delivered_at: None,
        detail: String::new(),
    };
    if rows.is_empty() {
        (d.status, d.detail) = match (records, webhooks) {
            (DeliveryRecords::Unreadable(_), _) => {
                ("unknown", "the webhook outbox could not be read".into())
            }
            (_, Some(0)) => (
                "no_webhook",
                "the rules in force configured no webhook".into(),
            ),
            (DeliveryRecords::Missing, None) => (
                "no_webhook",
                "no webhook outbox exists: no webhook was ever configured".into(),
            ),
            (_, _) => (
                "not_recorded",
                "no delivery in the webhook outbox (no webhook lists anomaly_detected, or the alert was not queued)".into(),
            ),
        };
        return d;
    }
    use blackbox_webhooks::DeliveryStatus as S;
    let delivered = rows.iter().filter(|r| r.status == S::Delivered).count() as u64;
    let dead: Vec<_> = rows.iter().filter(|r| r.status == S::Dead).collect();
    d.delivered_at = rows
        .iter()
        .filter_map(|r| r.delivered_at_ms)
        .max()
        .map(time);
    let why = |r: &blackbox_webhooks::DeliveryInfo| {
        let mut s = format!("{} after {} attempt(s)", r.url, r.attempts);
        if let Some(code) = r.last_status {
            s.push_str(&format!(", last answer HTTP {code}"));
        }
        if let Some(e) = &r.last_error {
            s.push_str(&format!(", last error: {e}"));
        }
        s
    };
    if delivered == n {
        d.status = "delivered";
        d.detail = format!("{delivered} of {n} webhook(s) answered 2xx");
    } else if let Some(r) = dead.first() {
        d.status = "failed";
        d.detail = format!("{} of {n} delivery(ies) given up: {}", dead.len(), why(r));
    } else {
        d.status = "pending";
        let r = rows
            .iter()
            .find(|r| r.status == S::Pending)
            .unwrap_or(&rows[0]);
        d.detail = format!("{delivered} of {n} delivered; still trying {}", why(r));
    }
    d
}

/// The attributes of [`ATTRIBUTES`], tested on one alert.
fn tests(
    row: &AlertRow,
    rules_recorded: bool,
    (fired_ms, now_ms, sla_ms): (i64, i64, i64),
    chain_ok: bool,
) -> Vec<Test> {
    let t = |attribute, result, detail: String| Test {
        attribute,
        result,
        detail,
    };
    let mut out = Vec::with_capacity(ATTRIBUTES.len());
    out.push(match &row.trigger {
        Some(Trigger {
            entry_id,
            seq: Some(seq),
            event_type,
            tool,
        }) => t(
            "trigger",
            PASS,
            format!(
                "entry {entry_id} (seq {seq}, {event_type}{}{tool})",
                if tool.is_empty() { "" } else { " " }
            ),
        ),
        Some(tr) => t(
            "trigger",
            EXCEPTION,
            format!("entry {} is not in the chain", tr.entry_id),
        ),
        None => t("trigger", EXCEPTION, "the alert names no entry".into()),
    });
    out.push(if row.rules_sha256.is_empty() {
        t(
            "rules",
            NOT_APPLICABLE,
            "built-in rules (no rules file)".into(),
        )
    } else if rules_recorded {
        t(
            "rules",
            PASS,
            format!("rules file {} recorded as loaded", row.rules_sha256),
        )
    } else {
        t(
            "rules",
            EXCEPTION,
            format!(
                "no rules_loaded entry of rules file {} at or before the alert",
                row.rules_sha256
            ),
        )
    });
    out.push(match (row.action.as_str(), &row.enforcement_entry) {
        ("alert", _) => t("action", PASS, "alert only".into()),
        ("block_and_alert", _) if row.enforcement == "blocked" => t(
            "action",
            PASS,
            "the call was refused at /v1/decide before it ran".into(),
        ),
        ("block_and_alert", _) => t(
            "action",
            NOT_APPLICABLE,
            "reported after the call ran (ingested, not decided): only /v1/decide can refuse a call".into(),
        ),
        ("alert_and_pause" | "alert_and_throttle", Some(e)) => {
            t("action", PASS, format!("{} recorded in entry {e}", row.enforcement))
        }
        ("alert_and_pause" | "alert_and_throttle", None) => t(
            "action",
            NOT_APPLICABLE,
            "no new pause or throttle entry names the alert: the agent was already paused or throttled".into(),
        ),
        (other, _) => t(
            "action",
            EXCEPTION,
            format!("unknown action `{other}`"),
        ),
    });
    out.push(match row.siem.status {
        "delivered" => t("siem", PASS, row.siem.detail.clone()),
        "no_webhook" | "unknown" => t("siem", NOT_APPLICABLE, row.siem.detail.clone()),
        _ => t(
            "siem",
            EXCEPTION,
            format!("{}: {}", row.siem.status, row.siem.detail),
        ),
    });
    let sla_h = sla_ms / 3_600_000;
    out.push(match row.hours_to_triage {
        Some(h) if h * 3_600_000.0 <= sla_ms as f64 => t(
            "triage",
            PASS,
            format!("{} after {h} h (within {sla_h} h)", row.state),
        ),
        Some(h) => t(
            "triage",
            EXCEPTION,
            format!("first triaged after {h} h (due within {sla_h} h)"),
        ),
        None if now_ms - fired_ms > sla_ms => t(
            "triage",
            EXCEPTION,
            format!(
                "open for {} h at the export (due within {sla_h} h)",
                hours(now_ms - fired_ms)
            ),
        ),
        None => t(
            "triage",
            NOT_APPLICABLE,
            format!("open for {} h, within {sla_h} h", hours(now_ms - fired_ms)),
        ),
    });
    if !chain_ok {
        out.push(t(
            "chain",
            EXCEPTION,
            "the chain did not verify: the alert's entry cannot be relied on".into(),
        ));
    }
    out
}
