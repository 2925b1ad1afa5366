//! Alerts and their triage, read from the chain (docs/FORMAT.md §14): every `anomaly_detected`
//! entry is an alert; its state is folded from the `alert_acknowledged` / `alert_resolved`
//! entries that name it. Nothing is kept beside the chain: the store's event-type index finds
//! both kinds of entry.
//!
//! Used by the service (`GET /v1/alerts`, the triage routes) and by `blackbox alerts` on a data
//! directory, so both read alerts the same way.

use std::collections::HashMap;

use blackbox_core::alert::{ACKNOWLEDGED, ALERT, AlertState, RESOLVED, Triage, TriageRequest};
use blackbox_core::entry::{EntryView, format_timestamp};
use blackbox_store::{After, Query, Store, StoredEntry};
use serde_json::{Value, json};

use crate::LedgerError;
use crate::writer::{AppendSink, Appended};

/// An alert's id: the `entry_id` (UUIDv7) of its `anomaly_detected` entry.
pub type AlertId = uuid::Uuid;

/// An alert: its `anomaly_detected` entry and its triage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The alert's id: its entry's `entry_id`.
    pub alert_id: uuid::Uuid,
    /// Its chain.
    pub tenant_id: String,
    /// Its seq in the chain.
    pub seq: u64,
    /// When it fired (the entry's timestamp: the service's clock), Unix ms.
    pub fired_ms: i64,
    /// The agent it is about.
    pub agent_id: String,
    /// The session of the event that fired it.
    pub session_id: String,
    /// The rule.
    pub rule: String,
    /// Its severity.
    pub severity: String,
    /// Its action.
    pub action: String,
    /// What was enforced.
    pub enforcement: String,
    /// Its triage.
    pub triage: Triage,
}

impl Alert {
    /// Where it stands.
    #[must_use]
    pub const fn state(&self) -> AlertState {
        self.triage.state()
    }

    /// The alert as the API and `blackbox alerts --format json` show it.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let time = |ms: i64| format_timestamp(ms).ok();
        let mark = |m: &blackbox_core::alert::Mark| {
            json!({
                "by": m.by,
                "at": time(m.at_ms),
                "entry_id": m.entry_id,
                "seq": m.seq,
                "ticket": m.ticket,
                "note_sha256": m.note_sha256,
            })
        };
        json!({
            "alert_id": self.alert_id.to_string(),
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "fired_at": time(self.fired_ms),
            "agent_id": self.agent_id,
            "session_id": self.session_id,
            "rule": self.rule,
            "severity": self.severity,
            "action": self.action,
            "enforcement": self.enforcement,
            "state": self.state().as_str(),
            "resolution": self.triage.resolved.as_ref().map(|(r, _)| r.as_str()),
            "acknowledged": self.triage.acknowledged.as_ref().map(mark),
            "resolved": self.triage.resolved.as_ref().map(|(_, m)| mark(m)),
        })
    }

    fn from_entry(e: &StoredEntry, triage: Triage) -> Option<Self> {
        let view = EntryView::parse(&e.line).ok()?;
        // An alert is the service's own entry (FORMAT.md §2 "Origin"), never an agent's.
        if view.event_type != ALERT || !view.by_service() {
            return None;
        }
        let p: Value = serde_json::from_str(view.payload.get()).unwrap_or(Value::Null);
        let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        Some(Self {
            alert_id: view.entry_id,
            tenant_id: view.tenant_id.to_string(),
            seq: view.seq,
            fired_ms: view.timestamp_ms,
            agent_id: view.agent_id.to_string(),
            session_id: view.session_id.to_string(),
            rule: s("rule"),
            severity: s("severity"),
            action: s("action"),
            enforcement: s("enforcement"),
            triage,
        })
    }
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only this tenant's chain (`None`: every chain).
    pub tenant_id: Option<String>,
    /// Only alerts in this state.
    pub state: Option<AlertState>,
    /// Only alerts of this rule.
    pub rule: Option<String>,
    /// Only alerts about this agent.
    pub agent_id: Option<String>,
    /// Fired at or after, Unix ms.
    pub since_ms: Option<i64>,
    /// Fired at or before, Unix ms.
    pub until_ms: Option<i64>,
    /// At most this many (`None`: all).
    pub limit: Option<usize>,
    /// Only alerts after this position in (fired time, tenant, seq) order: a page cursor.
    pub after: Option<After>,
}

/// A page of alerts, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertPage {
    /// The alerts.
    pub alerts: Vec<Alert>,
    /// Where the next page starts, when more alerts match.
    pub next: Option<After>,
}

/// The triage of every alert in `tenant`'s chain (every chain for `None`), optionally only of
/// `agent`'s alerts (triage entries carry the alert's agent), keyed by alert id: the triage
/// entries folded in chain order.
///
/// # Errors
/// Store failures.
pub fn triage_states(
    store: &dyn Store,
    tenant: Option<&str>,
    agent: Option<&str>,
) -> Result<HashMap<uuid::Uuid, Triage>, LedgerError> {
    let mut steps: Vec<(String, u64, String, Value, i64, String)> = Vec::new();
    for t in [ACKNOWLEDGED, RESOLVED] {
        let q = Query {
            tenant_id: tenant.map(str::to_owned),
            agent_id: agent.map(str::to_owned),
            event_type: Some(t.to_owned()),
            ..Query::default()
        };
        store.query(&q, &mut |e| {
            // Triage written by the service only.
            if let Ok(view) = EntryView::parse(&e.line)
                && view.by_service()
            {
                let p: Value = serde_json::from_str(view.payload.get()).unwrap_or(Value::Null);
                steps.push((
                    e.tenant_id.clone(),
                    e.seq,
                    t.to_owned(),
                    p,
                    view.timestamp_ms,
                    view.entry_id.to_string(),
                ));
            }
            Ok(true)
        })?;
    }
    // Chain order: within a chain, seq decides which step came first.
    steps.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut out: HashMap<uuid::Uuid, Triage> = HashMap::new();
    for (_, seq, t, p, at, entry_id) in steps {
        let Some(id) = p
            .get("alert_id")
            .and_then(Value::as_str)
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
        else {
            continue;
        };
        out.entry(id).or_default().apply(&t, &p, at, &entry_id, seq);
    }
    Ok(out)
}

/// Alerts matching `f`, oldest first, with their triage. Reads the triage entries of the
/// chain(s) once, then the `anomaly_detected` entries through the store's event-type index.
///
/// # Errors
/// Store failures.
pub fn list(store: &dyn Store, f: &AlertFilter) -> Result<AlertPage, LedgerError> {
    let mut triage = triage_states(store, f.tenant_id.as_deref(), f.agent_id.as_deref())?;
    let q = Query {
        tenant_id: f.tenant_id.clone(),
        agent_id: f.agent_id.clone(),
        event_type: Some(ALERT.to_owned()),
        start_ms: f.since_ms,
        end_ms: f.until_ms,
        after: f.after.clone(),
        ..Query::default()
    };
    let mut page = AlertPage::default();
    let want = f.limit.unwrap_or(usize::MAX);
    store.query(&q, &mut |e| {
        let id = EntryView::parse(&e.line).map(|v| v.entry_id);
        let t = id
            .as_ref()
            .ok()
            .and_then(|id| triage.remove(id))
            .unwrap_or_default();
        let Some(a) = Alert::from_entry(&e, t) else {
            return Ok(true);
        };
        if f.state.is_some_and(|s| s != a.state()) || f.rule.as_ref().is_some_and(|r| *r != a.rule)
        {
            return Ok(true);
        }
        if page.alerts.len() == want {
            // One more matching alert: there is a next page, after the last one taken.
            page.next = page.alerts.last().map(|l| After {
                ts_ms: l.fired_ms,
                tenant_id: l.tenant_id.clone(),
                seq: l.seq,
            });
            return Ok(false);
        }
        page.alerts.push(a);
        Ok(true)
    })?;
    Ok(page)
}

/// Why an alert cannot be triaged as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriageRefusal {
    /// No `anomaly_detected` entry has this id (in a chain the caller may see).
    UnknownAlert(String),
    /// The alert's state does not allow the step.
    Conflict(String),
}

/// The alert with this id, with its triage, if it is an alert of a chain `visible` accepts.
///
/// # Errors
/// Store failures.
pub fn find(
    store: &dyn Store,
    alert_id: uuid::Uuid,
    visible: &dyn Fn(&str) -> bool,
) -> Result<Option<Alert>, LedgerError> {
    let Some(e) = store.entry_by_id(alert_id.as_bytes())? else {
        return Ok(None);
    };
    if !visible(&e.tenant_id) {
        return Ok(None);
    }
    let Some(a) = Alert::from_entry(&e, Triage::default()) else {
        return Ok(None);
    };
    let mut states = triage_states(store, Some(&a.tenant_id), Some(&a.agent_id))?;
    let triage = states.remove(&alert_id).unwrap_or_default();
    Ok(Some(Alert { triage, ..a }))
}

/// Checks that `req` may be applied to the alert `alert_id` now: the alert exists (and
/// `visible` accepts its chain) and its state allows the step. Returns the alert.
///
/// # Errors
/// `Ok(Err(refusal))` for an unknown alert or a refused transition; store failures.
pub fn check(
    store: &dyn Store,
    alert_id: uuid::Uuid,
    req: &TriageRequest,
    visible: &dyn Fn(&str) -> bool,
) -> Result<Result<Alert, TriageRefusal>, LedgerError> {
    let Some(a) = find(store, alert_id, visible)? else {
        return Ok(Err(TriageRefusal::UnknownAlert(format!(
            "no alert has id {alert_id}: give the entry_id of an anomaly_detected entry (`blackbox alerts list` shows them)"
        ))));
    };
    if let Err(e) = a.triage.check(req.action) {
        return Ok(Err(TriageRefusal::Conflict(e.problem)));
    }
    Ok(Ok(a))
}

/// Appends the entry recording `req` for `alert` (in the alert's chain, with its agent).
///
/// # Errors
/// The sink failed.
pub fn append(
    sink: &mut AppendSink<'_>,
    alert: &Alert,
    req: &TriageRequest,
    now_ms: i64,
) -> Result<Appended, LedgerError> {
    let ev = req
        .event(
            &alert.tenant_id,
            &alert.agent_id,
            &alert.alert_id.to_string(),
        )
        .map_err(|source| LedgerError::Event { line: 0, source })?;
    sink.add(&ev, now_ms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::datadir::DataDir;
    use crate::open::{init, open_writer};
    use blackbox_core::alert::{Action, Resolution};
    use blackbox_core::entry::{RedactionPolicy, normalize_event};

    const T: i64 = 1_780_000_000_000;

    fn alert(i: u64, tenant: &str) -> blackbox_core::entry::NormalizedEvent {
        let v = serde_json::json!({
            "tenant_id": tenant, "agent_id": format!("agent-{}", i % 3), "session_id": "s",
            "event_type": ALERT, "timestamp": format_timestamp(T + i as i64 * 1000).unwrap(),
            "payload": {"rule": if i.is_multiple_of(2) { "even" } else { "odd" }, "severity": "high",
                        "action": "alert", "enforcement": "none"},
        });
        normalize_event(
            v,
            &RedactionPolicy::default(),
            &blackbox_core::origin::Origin::Service,
        )
        .unwrap()
    }

    /// Twelve alerts in acme and two in globex; acme's alerts 0, 3, 6 and 9 acknowledged, 0 and
    /// 6 then resolved, 4 resolved directly.
    fn store() -> (
        tempfile::TempDir,
        Box<dyn blackbox_store::Store>,
        Vec<uuid::Uuid>,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        init(&dir, "blackbox/test").unwrap();
        let (mut store, mut writer, _) = open_writer(&dir).unwrap();
        let ids = writer
            .stream(&mut store, |sink| {
                let mut ids = Vec::new();
                for i in 0..12 {
                    ids.push(sink.add(&alert(i, "acme"), T + 20_000)?.entry_id);
                }
                for i in 0..2 {
                    sink.add(&alert(i, "globex"), T + 20_000)?;
                }
                sink.commit(T + 20_000, true)?;
                Ok(ids)
            })
            .unwrap();
        let ack = TriageRequest::new(Action::Acknowledge, "cli:t", Some("T-1"), None).unwrap();
        let fix = TriageRequest::new(
            Action::Resolve(Resolution::TruePositive),
            "cli:t",
            None,
            Some("n"),
        )
        .unwrap();
        for (i, req) in [
            (0, &ack),
            (3, &ack),
            (6, &ack),
            (9, &ack),
            (0, &fix),
            (6, &fix),
            (4, &fix),
        ] {
            let a = check(&store, ids[i], req, &|_| true).unwrap().unwrap();
            writer
                .stream(&mut store, |sink| {
                    append(sink, &a, req, T + 30_000)?;
                    sink.commit(T + 30_000, true)?;
                    Ok(())
                })
                .unwrap();
        }
        (tmp, store, ids)
    }

    fn ids_of(p: &AlertPage) -> Vec<uuid::Uuid> {
        p.alerts.iter().map(|a| a.alert_id).collect()
    }

    #[test]
    fn states_filters_and_pages_come_from_the_chain() {
        let (_tmp, store, ids) = store();
        let acme = |f: AlertFilter| {
            list(
                &store,
                &AlertFilter {
                    tenant_id: Some("acme".into()),
                    ..f
                },
            )
            .unwrap()
        };
        assert_eq!(ids_of(&acme(AlertFilter::default())), ids);
        assert_eq!(
            list(&store, &AlertFilter::default()).unwrap().alerts.len(),
            14
        );
        let by_state = |s| {
            ids_of(&acme(AlertFilter {
                state: Some(s),
                ..AlertFilter::default()
            }))
        };
        assert_eq!(by_state(AlertState::Resolved), [ids[0], ids[4], ids[6]]);
        assert_eq!(by_state(AlertState::Acknowledged), [ids[3], ids[9]]);
        assert_eq!(by_state(AlertState::Open).len(), 7);
        let r = acme(AlertFilter {
            state: Some(AlertState::Resolved),
            ..AlertFilter::default()
        });
        let (res, mark) = r.alerts[0].triage.resolved.clone().unwrap();
        assert_eq!((res, mark.by.as_str()), (Resolution::TruePositive, "cli:t"));
        assert_eq!(
            mark.note_sha256,
            Some(blackbox_core::alert::note_sha256("n"))
        );
        assert_eq!(
            r.alerts[0]
                .triage
                .acknowledged
                .as_ref()
                .unwrap()
                .ticket
                .as_deref(),
            Some("T-1")
        );
        // Rule, agent and time filters.
        let f = acme(AlertFilter {
            rule: Some("odd".into()),
            agent_id: Some("agent-0".into()),
            ..AlertFilter::default()
        });
        assert_eq!(ids_of(&f), [ids[3], ids[9]]);
        let f = acme(AlertFilter {
            since_ms: Some(T + 2000),
            until_ms: Some(T + 4000),
            ..AlertFilter::default()
        });
        assert_eq!(ids_of(&f), ids[2..=4]);
        // Pages of open alerts, three at a time: every open alert once, in order.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let p = acme(AlertFilter {
                state: Some(AlertState::Open),
                limit: Some(3),
                after: after.clone(),
                ..AlertFilter::default()
            });
            assert!(p.alerts.len() <= 3);
            seen.extend(ids_of(&p));
            match p.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, by_state(AlertState::Open));
        // A full last page says no more follow.
        let p = acme(AlertFilter {
            state: Some(AlertState::Acknowledged),
            limit: Some(2),
            ..AlertFilter::default()
        });
        assert_eq!((p.alerts.len(), p.next), (2, None));
    }

    #[test]
    fn triage_is_refused_for_unknown_alerts_and_after_resolution() {
        let (_tmp, store, ids) = store();
        let ack = TriageRequest::new(Action::Acknowledge, "cli:t", None, None).unwrap();
        let fp = TriageRequest::new(
            Action::Resolve(Resolution::FalsePositive),
            "cli:t",
            None,
            None,
        )
        .unwrap();
        let refusal = |id, req: &TriageRequest| check(&store, id, req, &|_| true).unwrap().err();
        assert!(matches!(
            refusal(ids[0], &fp),
            Some(TriageRefusal::Conflict(_))
        ));
        assert!(matches!(
            refusal(ids[3], &ack),
            Some(TriageRefusal::Conflict(_))
        ));
        assert_eq!(refusal(ids[3], &fp), None);
        assert_eq!(refusal(ids[1], &ack), None);
        let unknown = uuid::Uuid::now_v7();
        assert!(matches!(
            refusal(unknown, &ack),
            Some(TriageRefusal::UnknownAlert(_))
        ));
        // Another tenant's alert is unknown to a caller limited to acme.
        let globex = list(
            &store,
            &AlertFilter {
                tenant_id: Some("globex".into()),
                ..AlertFilter::default()
            },
        )
        .unwrap()
        .alerts[0]
            .alert_id;
        let r = check(&store, globex, &ack, &|t| t == "acme").unwrap();
        assert!(matches!(r, Err(TriageRefusal::UnknownAlert(_))));
    }
}
