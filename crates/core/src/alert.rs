//! Alert triage (docs/FORMAT.md §14): every `anomaly_detected` entry is an alert, identified by
//! its `entry_id`, and people move it from open to acknowledged to resolved by entries the log
//! writes itself ([`ACKNOWLEDGED`], [`RESOLVED`]) in the alert's chain, naming the actor.
//!
//! The triage event types are reserved: normalisation refuses them from clients (like the
//! erasure marker's), so a triage entry with a valid HMAC was written by the log. The note an
//! operator gives may hold personal data; only its SHA-256 is written ([`note_sha256`]).
//!
//! Also here: the state machine ([`Triage`]) that folds an alert's triage entries, in chain
//! order, into its state. Pure: callers read the entries.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::entry::NormalizedEvent;
use crate::ids::{AgentId, EventType, SessionId, TenantId};

/// `event_type` of the entries that are alerts.
pub const ALERT: &str = "anomaly_detected";
/// `event_type` of an acknowledgement (reserved: clients cannot send it).
pub const ACKNOWLEDGED: &str = "alert_acknowledged";
/// `event_type` of a resolution (reserved: clients cannot send it).
pub const RESOLVED: &str = "alert_resolved";
/// The triage event types, the ones only the log writes (for the list of reserved types).
pub const TRIAGE_EVENT_TYPES: [&str; 2] = [ACKNOWLEDGED, RESOLVED];
/// The `action` of a shadow rule's record: an `anomaly_detected` entry that enforced nothing,
/// is delivered to no webhook and is not an alert of the compliance register.
pub const SHADOW_ACTION: &str = "log_only";

/// Whether the payload of an `anomaly_detected` entry is a shadow rule's record.
#[must_use]
pub fn is_shadow(payload: &Value) -> bool {
    payload.get("action").and_then(Value::as_str) == Some(SHADOW_ACTION)
}
/// `session_id` of triage entries (their `agent_id` is the alert's).
pub const SESSION_ID: &str = "triage";
/// Longest `ticket`, in characters.
pub const MAX_TICKET_CHARS: usize = 200;
/// Longest note, in bytes (only its digest is written).
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
/// Longest actor (`operator:<token id>`, `cli:<os user>`), in characters.
pub const MAX_ACTOR_CHARS: usize = 200;

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertState {
    /// Nobody has looked at it yet.
    Open,
    /// Someone is on it.
    Acknowledged,
    /// Closed, with a [`Resolution`]. Final: a recurrence fires a new alert.
    Resolved,
}

impl AlertState {
    /// Its name in payloads, the API and the CLI.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    /// Reads a state name.
    ///
    /// # Errors
    /// [`TriageError`] naming the accepted values.
    pub fn parse(s: &str) -> Result<Self, TriageError> {
        match s {
            "open" => Ok(Self::Open),
            "acknowledged" => Ok(Self::Acknowledged),
            "resolved" => Ok(Self::Resolved),
            _ => Err(TriageError::new(
                "state",
                format!("{s:?} is not a state; use open, acknowledged or resolved"),
            )),
        }
    }
}

/// How a resolved alert was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// The alert was right; whatever it found has been dealt with.
    TruePositive,
    /// The alert was wrong.
    FalsePositive,
    /// The alert was right and the risk is accepted.
    AcceptedRisk,
}

impl Resolution {
    /// Its name in payloads, the API and the CLI.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TruePositive => "true_positive",
            Self::FalsePositive => "false_positive",
            Self::AcceptedRisk => "accepted_risk",
        }
    }

    /// Reads a resolution name.
    ///
    /// # Errors
    /// [`TriageError`] naming the accepted values.
    pub fn parse(s: &str) -> Result<Self, TriageError> {
        match s {
            "true_positive" => Ok(Self::TruePositive),
            "false_positive" => Ok(Self::FalsePositive),
            "accepted_risk" => Ok(Self::AcceptedRisk),
            _ => Err(TriageError::new(
                "resolution",
                format!(
                    "{s:?} is not a resolution; use true_positive, false_positive or accepted_risk"
                ),
            )),
        }
    }
}

/// A triage request or entry that is not acceptable: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct TriageError {
    /// The field (`resolution`, `ticket`, `note`, `by`, `state`).
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl TriageError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

/// What a triage request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Acknowledge (open → acknowledged).
    Acknowledge,
    /// Resolve (open or acknowledged → resolved).
    Resolve(Resolution),
}

impl Action {
    /// The event type recording it.
    #[must_use]
    pub const fn event_type(self) -> &'static str {
        match self {
            Self::Acknowledge => ACKNOWLEDGED,
            Self::Resolve(_) => RESOLVED,
        }
    }
}

/// A checked triage request: who does what, with which ticket and note.
#[derive(Clone, PartialEq, Eq)]
pub struct TriageRequest {
    /// What.
    pub action: Action,
    /// Who: `operator:<token id>` or `cli:<os user>`.
    pub by: String,
    /// The operator's reference (ticket, incident number).
    pub ticket: Option<String>,
    /// Hex SHA-256 of the note's UTF-8 bytes.
    pub note_sha256: Option<String>,
}

// The note is never kept; the digest is not secret, but keep Debug short and predictable.
impl std::fmt::Debug for TriageRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriageRequest")
            .field("action", &self.action)
            .field("by", &self.by)
            .field("ticket", &self.ticket)
            .field("note_sha256", &self.note_sha256)
            .finish()
    }
}

/// Hex SHA-256 of a note's UTF-8 bytes (as docs/FORMAT.md §4 hashes a raw string), so that the
/// note kept elsewhere (the ticket) can be matched to the entry without the entry holding it.
#[must_use]
pub fn note_sha256(note: &str) -> String {
    hex::encode(Sha256::digest(note.as_bytes()))
}

impl TriageRequest {
    /// Checks a request: `by` 1 to [`MAX_ACTOR_CHARS`] characters without control characters,
    /// `ticket` (if given) 1 to [`MAX_TICKET_CHARS`] characters without control characters,
    /// `note` (if given) at most [`MAX_NOTE_BYTES`] bytes (it is hashed, never kept).
    ///
    /// # Errors
    /// [`TriageError`] naming the field.
    pub fn new(
        action: Action,
        by: &str,
        ticket: Option<&str>,
        note: Option<&str>,
    ) -> Result<Self, TriageError> {
        let text = |field: &'static str, v: &str, max: usize| {
            if v.trim().is_empty() {
                return Err(TriageError::new(
                    field,
                    "is empty; give a value or leave it out",
                ));
            }
            if v.chars().count() > max {
                return Err(TriageError::new(
                    field,
                    format!("is longer than {max} characters"),
                ));
            }
            if v.chars().any(char::is_control) {
                return Err(TriageError::new(
                    field,
                    "holds control characters (line breaks, tabs, …); give one line of text",
                ));
            }
            Ok(v.to_owned())
        };
        let by = text("by", by, MAX_ACTOR_CHARS)?;
        let ticket = ticket
            .map(|t| text("ticket", t, MAX_TICKET_CHARS))
            .transpose()?;
        if let Some(n) = note
            && n.len() > MAX_NOTE_BYTES
        {
            return Err(TriageError::new(
                "note",
                format!(
                    "is {} bytes; a note may have at most {MAX_NOTE_BYTES} (keep long texts in the ticket)",
                    n.len()
                ),
            ));
        }
        Ok(Self {
            action,
            by,
            ticket,
            note_sha256: note.map(note_sha256),
        })
    }

    /// The entry's payload ([`TriagePayload`]).
    #[must_use]
    pub fn payload(&self, alert_id: &str) -> TriagePayload {
        TriagePayload {
            alert_id: alert_id.to_owned(),
            by: self.by.clone(),
            note_sha256: self.note_sha256.clone(),
            resolution: match self.action {
                Action::Acknowledge => None,
                Action::Resolve(r) => Some(r.as_str().to_owned()),
            },
            ticket: self.ticket.clone(),
        }
    }

    /// The entry recording this request for the alert `alert_id` of `agent` in `tenant`'s chain
    /// (built directly: normalisation refuses the reserved event types). Its timestamp is left
    /// to the writer's clock.
    ///
    /// # Errors
    /// [`crate::Error`] when the tenant or agent is not a valid id.
    pub fn event(
        &self,
        tenant: &str,
        agent: &str,
        alert_id: &str,
    ) -> Result<NormalizedEvent, crate::Error> {
        let value = serde_json::to_value(self.payload(alert_id))
            .map_err(|e| crate::Error::Json(e.to_string()))?;
        Ok(NormalizedEvent {
            tenant_id: Some(TenantId::parse(tenant)?),
            agent_id: AgentId::parse(agent)?,
            session_id: SessionId::parse(SESSION_ID)?,
            event_type: EventType::parse(self.action.event_type())?,
            timestamp_ms: None,
            client_seq: None,
            payload_jcs: crate::entry::canonical_json(&value)?,
            tool: None,
            personal: None,
            subject_ids: Vec::new(),
            origin: Some(crate::origin::Origin::Service),
        })
    }
}

/// The payload of `alert_acknowledged` and `alert_resolved` entries (members in RFC 8785 order;
/// absent ones are omitted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriagePayload {
    /// The alert: the `entry_id` of its `anomaly_detected` entry.
    pub alert_id: String,
    /// Who: `operator:<token id>` or `cli:<os user>`.
    pub by: String,
    /// Hex SHA-256 of the note's UTF-8 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note_sha256: Option<String>,
    /// `alert_resolved` only: `true_positive`, `false_positive` or `accepted_risk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// The operator's reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// One triage step as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mark {
    /// Who.
    pub by: String,
    /// When (the writer's clock), Unix ms.
    pub at_ms: i64,
    /// The entry recording it.
    pub entry_id: String,
    /// Its seq in the alert's chain.
    pub seq: u64,
    /// The ticket.
    pub ticket: Option<String>,
    /// The note's digest.
    pub note_sha256: Option<String>,
}

/// An alert's triage: its state and the steps that led there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Triage {
    /// The acknowledgement, if any.
    pub acknowledged: Option<Mark>,
    /// The resolution and its step, if resolved.
    pub resolved: Option<(Resolution, Mark)>,
}

impl Serialize for Resolution {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Triage {
    /// Where the alert stands.
    #[must_use]
    pub const fn state(&self) -> AlertState {
        if self.resolved.is_some() {
            AlertState::Resolved
        } else if self.acknowledged.is_some() {
            AlertState::Acknowledged
        } else {
            AlertState::Open
        }
    }

    /// Whether `action` may be taken now: open → acknowledged or resolved, acknowledged →
    /// resolved. Nothing leaves `resolved` (a recurrence fires a new alert), and an
    /// acknowledged alert is not acknowledged again.
    ///
    /// # Errors
    /// [`TriageError`] (field `state`) saying what the alert's state is and what may be done.
    pub fn check(&self, action: Action) -> Result<(), TriageError> {
        if let Some((r, m)) = &self.resolved {
            return Err(TriageError::new(
                "state",
                format!(
                    "the alert was resolved ({}) by {} in entry {}; a resolved alert is final (a recurrence fires a new alert)",
                    r.as_str(),
                    m.by,
                    m.entry_id
                ),
            ));
        }
        if let (Action::Acknowledge, Some(m)) = (action, &self.acknowledged) {
            return Err(TriageError::new(
                "state",
                format!(
                    "the alert was acknowledged already by {} in entry {}; resolve it instead",
                    m.by, m.entry_id
                ),
            ));
        }
        Ok(())
    }

    /// Applies a triage entry read from the chain (in chain order). Entries that the state
    /// machine would have refused (a second acknowledgement, anything after the resolution) and
    /// payloads that do not parse change nothing: the first valid step counts.
    pub fn apply(
        &mut self,
        event_type: &str,
        payload: &Value,
        at_ms: i64,
        entry_id: &str,
        seq: u64,
    ) {
        let Ok(p) = TriagePayload::deserialize(payload) else {
            return;
        };
        let mark = Mark {
            by: p.by,
            at_ms,
            entry_id: entry_id.to_owned(),
            seq,
            ticket: p.ticket,
            note_sha256: p.note_sha256,
        };
        match event_type {
            ACKNOWLEDGED if self.check(Action::Acknowledge).is_ok() => {
                self.acknowledged = Some(mark);
            }
            RESOLVED => {
                let Some(r) = p
                    .resolution
                    .as_deref()
                    .and_then(|r| Resolution::parse(r).ok())
                else {
                    return;
                };
                if self.check(Action::Resolve(r)).is_ok() {
                    self.resolved = Some((r, mark));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_checked_field_by_field() {
        let ack = Action::Acknowledge;
        assert!(TriageRequest::new(ack, "operator:t1", Some("INC-1"), Some("x\ny")).is_ok());
        let field = |r: Result<TriageRequest, TriageError>| r.unwrap_err().field;
        assert_eq!(field(TriageRequest::new(ack, "", None, None)), "by");
        assert_eq!(
            field(TriageRequest::new(ack, "cli:a", Some("INC\n1"), None)),
            "ticket"
        );
        assert_eq!(
            field(TriageRequest::new(ack, "cli:a", Some("\u{7}"), None)),
            "ticket"
        );
        assert_eq!(
            field(TriageRequest::new(ack, "cli:a", Some(" "), None)),
            "ticket"
        );
        let long = "x".repeat(MAX_TICKET_CHARS + 1);
        assert_eq!(
            field(TriageRequest::new(ack, "cli:a", Some(&long), None)),
            "ticket"
        );
        assert!(TriageRequest::new(ack, "cli:a", Some(&long[1..]), None).is_ok());
        let note = "n".repeat(MAX_NOTE_BYTES + 1);
        assert_eq!(
            field(TriageRequest::new(ack, "cli:a", None, Some(&note))),
            "note"
        );
        assert!(TriageRequest::new(ack, "cli:a", None, Some(&note[1..])).is_ok());
    }

    #[test]
    fn the_note_is_kept_only_as_its_sha256() {
        let r = TriageRequest::new(
            Action::Resolve(Resolution::FalsePositive),
            "operator:t1",
            Some("INC-7"),
            Some("customer Jane Doe called"),
        )
        .unwrap();
        let ev = r.event("acme", "agent-1", "0190-x").unwrap();
        let text = String::from_utf8(ev.payload_jcs).unwrap();
        assert!(!text.contains("Jane"), "{text}");
        assert_eq!(
            text,
            format!(
                r#"{{"alert_id":"0190-x","by":"operator:t1","note_sha256":"{}","resolution":"false_positive","ticket":"INC-7"}}"#,
                note_sha256("customer Jane Doe called")
            )
        );
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            note_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(ev.event_type.as_str(), RESOLVED);
        assert_eq!(ev.session_id.as_str(), SESSION_ID);
    }

    #[test]
    fn the_state_machine_goes_open_acknowledged_resolved_and_stops() {
        let mut t = Triage::default();
        assert_eq!(t.state(), AlertState::Open);
        let fp = Action::Resolve(Resolution::FalsePositive);
        assert!(t.check(Action::Acknowledge).is_ok() && t.check(fp).is_ok());
        t.apply(
            ACKNOWLEDGED,
            &json!({"alert_id": "a", "by": "cli:x"}),
            5,
            "e1",
            2,
        );
        assert_eq!(t.state(), AlertState::Acknowledged);
        assert_eq!(t.check(Action::Acknowledge).unwrap_err().field, "state");
        // A second acknowledgement in the chain does not replace the first.
        t.apply(
            ACKNOWLEDGED,
            &json!({"alert_id": "a", "by": "cli:y"}),
            6,
            "e2",
            3,
        );
        assert_eq!(t.acknowledged.as_ref().unwrap().by, "cli:x");
        // A resolution without a valid resolution changes nothing.
        t.apply(
            RESOLVED,
            &json!({"alert_id": "a", "by": "cli:y"}),
            7,
            "e3",
            4,
        );
        t.apply(
            RESOLVED,
            &json!({"alert_id": "a", "by": "cli:y", "resolution": "fixed"}),
            7,
            "e3",
            4,
        );
        assert_eq!(t.state(), AlertState::Acknowledged);
        t.apply(
            RESOLVED,
            &json!({"alert_id": "a", "by": "cli:y", "resolution": "accepted_risk", "ticket": "T"}),
            8,
            "e4",
            5,
        );
        assert_eq!(t.state(), AlertState::Resolved);
        let (r, m) = t.resolved.clone().unwrap();
        assert_eq!(
            (r, m.at_ms, m.ticket.as_deref()),
            (Resolution::AcceptedRisk, 8, Some("T"))
        );
        assert!(t.check(fp).is_err() && t.check(Action::Acknowledge).is_err());
        // Nothing after the resolution counts.
        t.apply(
            RESOLVED,
            &json!({"alert_id": "a", "by": "cli:z", "resolution": "true_positive"}),
            9,
            "e5",
            6,
        );
        assert_eq!(t.resolved.unwrap().0, Resolution::AcceptedRisk);
    }

    #[test]
    fn clients_cannot_send_triage_event_types() {
        for t in TRIAGE_EVENT_TYPES {
            assert!(crate::origin::is_reserved(t), "{t} is in the reserved list");
            let ev = format!(
                r#"{{"agent_id":"a","session_id":"s","event_type":"{t}","payload":{{"alert_id":"x","by":"cli:me","resolution":"false_positive"}}}}"#
            );
            let token =
                crate::origin::Origin::token("0123456789abcdef", "ingest", "events").unwrap();
            let e = crate::event::normalize_json(ev.as_bytes(), &Default::default(), &token)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("event_type") && e.contains("reserved"),
                "{t}: {e}"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for s in [
            AlertState::Open,
            AlertState::Acknowledged,
            AlertState::Resolved,
        ] {
            assert_eq!(AlertState::parse(s.as_str()), Ok(s));
        }
        for r in [
            Resolution::TruePositive,
            Resolution::FalsePositive,
            Resolution::AcceptedRisk,
        ] {
            assert_eq!(Resolution::parse(r.as_str()), Ok(r));
        }
        assert_eq!(Resolution::parse("fixed").unwrap_err().field, "resolution");
        assert_eq!(AlertState::parse("closed").unwrap_err().field, "state");
    }
}
