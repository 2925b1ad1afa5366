//! The request bodies: the Standard Webhooks envelope (`json`) and the OCSF Detection Finding
//! (`ocsf`); see the crate docs for both.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{OCSF_VERSION, PayloadFormat, WebhookError};

/// A committed ledger entry to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEntry {
    /// Tenant of its chain.
    pub tenant: String,
    /// Its position in the tenant chain.
    pub seq: u64,
    /// Its id.
    pub entry_id: String,
    /// Its `event_type`.
    pub event_type: String,
    /// Its `timestamp` (RFC 3339).
    pub timestamp: String,
    /// The entry JSON object as stored in the chain.
    pub entry_json: String,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: &'a str,
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct EntryFields {
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Ocsf<'a> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
    type_uid: u32,
    type_name: &'static str,
    severity_id: u8,
    severity: &'static str,
    status_id: u8,
    status: &'static str,
    time: i64,
    message: String,
    metadata: OcsfMetadata<'a>,
    finding_info: OcsfFindingInfo<'a>,
    actor: OcsfActor<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    resources: Vec<OcsfResource<'a>>,
    unmapped: &'a RawValue,
}

#[derive(Serialize)]
struct OcsfMetadata<'a> {
    version: &'static str,
    product: OcsfProduct,
    uid: &'a str,
    original_time: &'a str,
    sequence: u64,
}

#[derive(Serialize)]
struct OcsfProduct {
    name: &'static str,
    vendor_name: &'static str,
}

#[derive(Serialize)]
struct OcsfFindingInfo<'a> {
    uid: &'a str,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    desc: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    types: Option<[&'a str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    analytic: Option<OcsfAnalytic<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_events: Vec<OcsfUid<'a>>,
    created_time: i64,
}

#[derive(Serialize)]
struct OcsfAnalytic<'a> {
    name: &'a str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct OcsfUid<'a> {
    uid: &'a str,
}

#[derive(Serialize)]
struct OcsfActor<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<OcsfUser<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<OcsfUid<'a>>,
}

#[derive(Serialize)]
struct OcsfUser<'a> {
    uid: &'a str,
    name: &'a str,
    type_id: u8,
    #[serde(rename = "type")]
    kind: &'static str,
    org: OcsfNamed<'a>,
}

#[derive(Serialize)]
struct OcsfNamed<'a> {
    uid: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct OcsfResource<'a> {
    uid: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    group: OcsfNamed<'a>,
}

/// OCSF `severity_id` and `severity` of a Blackbox severity.
fn ocsf_severity(s: Option<&str>) -> (u8, &'static str) {
    match s.map(str::to_ascii_lowercase).as_deref() {
        Some("info" | "informational") => (1, "Informational"),
        Some("low") => (2, "Low"),
        Some("medium") => (3, "Medium"),
        Some("high") => (4, "High"),
        Some("critical") => (5, "Critical"),
        _ => (0, "Unknown"),
    }
}

/// The payload bytes of `entry` in `format` (see the module docs). Deterministic: the same entry
/// always gives the same bytes.
///
/// # Errors
/// [`WebhookError::InvalidEntry`] when `entry_json` is not a JSON object (or, for OCSF, its
/// fields have unexpected types or the timestamp is not RFC 3339).
pub fn payload(format: PayloadFormat, entry: &AlertEntry) -> Result<Vec<u8>, WebhookError> {
    let invalid = |reason: String| WebhookError::InvalidEntry {
        entry_id: entry.entry_id.clone(),
        reason,
    };
    let raw: &RawValue = serde_json::from_str(&entry.entry_json)
        .map_err(|e| invalid(format!("the entry is not JSON ({e})")))?;
    if !raw.get().starts_with('{') {
        return Err(invalid("the entry is not a JSON object".to_owned()));
    }
    let out = match format {
        PayloadFormat::Json => serde_json::to_vec(&Envelope {
            kind: &entry.event_type,
            timestamp: &entry.timestamp,
            data: raw,
        }),
        PayloadFormat::Ocsf => {
            let fields: EntryFields = serde_json::from_str(raw.get())
                .map_err(|e| invalid(format!("unexpected entry fields ({e})")))?;
            let time = blackbox_core::entry::parse_timestamp(&entry.timestamp)
                .map_err(|e| invalid(format!("timestamp {e}")))?;
            let p = fields.payload.as_ref();
            let text = |k: &str| p.and_then(|p| p.get(k)).and_then(serde_json::Value::as_str);
            let rule = text("rule");
            let description = text("description");
            let (severity_id, severity) = ocsf_severity(text("severity"));
            let related_events = p
                .and_then(|p| p.get("triggered_by"))
                .and_then(serde_json::Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(serde_json::Value::as_str)
                        .map(|uid| OcsfUid { uid })
                        .collect()
                })
                .unwrap_or_default();
            let agent = fields.agent_id.as_deref();
            let tenant = OcsfNamed {
                uid: &entry.tenant,
                name: &entry.tenant,
            };
            let message = match (description, agent) {
                (Some(d), _) => d.to_owned(),
                (None, Some(a)) => format!("{} (agent {a})", entry.event_type),
                (None, None) => entry.event_type.clone(),
            };
            serde_json::to_vec(&Ocsf {
                class_uid: 2004,
                class_name: "Detection Finding",
                category_uid: 2,
                category_name: "Findings",
                activity_id: 1,
                activity_name: "Create",
                type_uid: 200_401,
                type_name: "Detection Finding: Create",
                severity_id,
                severity,
                status_id: 1,
                status: "New",
                time,
                message,
                metadata: OcsfMetadata {
                    version: OCSF_VERSION,
                    product: OcsfProduct {
                        name: "Blackbox",
                        vendor_name: "Blackbox",
                    },
                    uid: &entry.entry_id,
                    original_time: &entry.timestamp,
                    sequence: entry.seq,
                },
                finding_info: OcsfFindingInfo {
                    uid: &entry.entry_id,
                    title: rule.unwrap_or(&entry.event_type),
                    desc: description,
                    types: text("kind").map(|k| [k]),
                    analytic: rule.map(|name| OcsfAnalytic {
                        name,
                        type_id: 1,
                        kind: "Rule",
                    }),
                    related_events,
                    created_time: time,
                },
                actor: OcsfActor {
                    user: agent.map(|a| OcsfUser {
                        uid: a,
                        name: a,
                        type_id: 99,
                        kind: "AI agent",
                        org: OcsfNamed {
                            uid: &entry.tenant,
                            name: &entry.tenant,
                        },
                    }),
                    session: fields.session_id.as_deref().map(|uid| OcsfUid { uid }),
                },
                resources: agent
                    .map(|a| OcsfResource {
                        uid: a,
                        name: a,
                        kind: "AI agent",
                        group: tenant,
                    })
                    .into_iter()
                    .collect(),
                unmapped: raw,
            })
        }
    };
    out.map_err(|e| invalid(format!("cannot serialise the payload ({e})")))
}
