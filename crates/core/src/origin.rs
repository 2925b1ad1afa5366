//! Who wrote an entry (docs/FORMAT.md §2 "Origin", §3 "Reserved event types").
//!
//! The agents Blackbox audits are untrusted: a hijacked agent holds an ingest token and controls
//! every byte it sends. So every entry of format v2 records, inside the bytes its HMAC covers,
//! who supplied it: the service itself, a client holding a token (by the token's id and scopes,
//! never its secret), or a local command. Event types the service writes are *reserved*: refused
//! from anyone else, so nothing that rebuilds enforcement state, fires webhooks or feeds the
//! compliance figures can be written by an agent. (CloudTrail separates `userIdentity` from
//! `eventSource`; Kubernetes reserves `system:` users for its control plane: the same idea.)

use std::fmt;

use serde::Deserialize;

use crate::format::push_json_str;

/// Event types only the service (or a Blackbox command acting as it) writes. Refused from
/// clients with a message naming the rule; docs/FORMAT.md §3 lists the same names (a test
/// checks the two agree).
pub const RESERVED_EVENT_TYPES: [&str; 14] = [
    "access_denied",
    "agent_paused",
    "agent_resumed",
    "agent_throttled",
    "alert_acknowledged",
    "alert_resolved",
    "anomaly_detected",
    "checkpoint_key",
    "decisions_unrecorded",
    "erasure",
    "key_rotated",
    "retention_archived",
    "retention_deleted",
    "rules_loaded",
];

/// Every event type beginning with this is reserved too (room for the service's future types).
pub const RESERVED_PREFIX: &str = "blackbox.";

/// The JCS text of [`Origin::Service`], as it appears in an entry line.
pub const SERVICE_JCS: &str = "{\"kind\":\"service\"}";

/// Whether clients may not write `event_type`.
#[must_use]
pub fn is_reserved(event_type: &str) -> bool {
    event_type.starts_with(RESERVED_PREFIX) || RESERVED_EVENT_TYPES.contains(&event_type)
}

/// Whether `e` is normalisation refusing a reserved event type (the refusals in
/// `crate::event`: `erasure`, and any reserved type from anyone but the service), so that an
/// intake can answer it as such (HTTP 422 `reserved_event_type`).
#[must_use]
pub fn refuses_reserved_type(e: &crate::Error) -> bool {
    matches!(e, crate::Error::Field(f)
        if f.field == "event_type" && f.problem.starts_with('`') && f.problem.contains("` is reserved"))
}

/// Who supplied an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Blackbox itself: detection, enforcement, decisions' refusal records, retention, erasure,
    /// triage, rules and key changes. Operator actions are of this origin too, and name the
    /// operator in their payload.
    Service,
    /// A client of the service holding a bearer token.
    Token {
        /// The token's id (never its secret).
        token_id: String,
        /// Its scopes, comma-separated in the order `admin,ingest,read`.
        scope: String,
        /// The way in: `events` (POST /v1/events), `decide` (POST /v1/decide: the service
        /// decided the call and wrote the `authorization` member), or a later intake.
        via: String,
    },
    /// A local command run on the data directory.
    Local {
        /// The command, e.g. `append`.
        command: String,
        /// The operating-system user who ran it (`name`, or `uid:<n>` when it has no name).
        user: String,
    },
}

/// A value of `token_id`, `scope`, `via` or `command`: `A-Z a-z 0-9 _ - . , :`, 1–128 bytes.
fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b',' | b':'))
}

/// A user name: 1–256 bytes without control characters.
fn is_user(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrigin {
    kind: String,
    #[serde(default)]
    token_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    via: Option<String>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

impl Origin {
    /// A token origin, checking its values.
    ///
    /// # Errors
    /// A value outside the grammar of docs/FORMAT.md §2.
    pub fn token(token_id: &str, scope: &str, via: &str) -> Result<Self, String> {
        for (name, v) in [("token_id", token_id), ("scope", scope), ("via", via)] {
            if !is_ident(v) {
                return Err(format!(
                    "origin {name} {v:?} must be 1-128 characters of A-Z a-z 0-9 _ - . , :"
                ));
            }
        }
        Ok(Self::Token {
            token_id: token_id.to_owned(),
            scope: scope.to_owned(),
            via: via.to_owned(),
        })
    }

    /// A local-command origin, checking its values.
    ///
    /// # Errors
    /// A value outside the grammar of docs/FORMAT.md §2.
    pub fn local(command: &str, user: &str) -> Result<Self, String> {
        if !is_ident(command) {
            return Err(format!(
                "origin command {command:?} must be 1-128 characters of A-Z a-z 0-9 _ - . , :"
            ));
        }
        if !is_user(user) {
            return Err("origin user must be 1-256 characters without control characters".into());
        }
        Ok(Self::Local {
            command: command.to_owned(),
            user: user.to_owned(),
        })
    }

    /// `service`, `token` or `local`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Token { .. } => "token",
            Self::Local { .. } => "local",
        }
    }

    /// Whether the service wrote the entry.
    #[must_use]
    pub fn is_service(&self) -> bool {
        matches!(self, Self::Service)
    }

    /// Appends the RFC 8785 form of the origin object (members sorted).
    pub fn write_jcs(&self, out: &mut Vec<u8>) {
        match self {
            Self::Service => out.extend_from_slice(b"{\"kind\":\"service\"}"),
            Self::Token {
                token_id,
                scope,
                via,
            } => {
                out.extend_from_slice(b"{\"kind\":\"token\",\"scope\":");
                push_json_str(out, scope);
                out.extend_from_slice(b",\"token_id\":");
                push_json_str(out, token_id);
                out.extend_from_slice(b",\"via\":");
                push_json_str(out, via);
                out.push(b'}');
            }
            Self::Local { command, user } => {
                out.extend_from_slice(b"{\"command\":");
                push_json_str(out, command);
                out.extend_from_slice(b",\"kind\":\"local\",\"user\":");
                push_json_str(out, user);
                out.push(b'}');
            }
        }
    }

    /// The RFC 8785 text of the origin object.
    #[must_use]
    pub fn to_jcs(&self) -> String {
        let mut out = Vec::with_capacity(96);
        self.write_jcs(&mut out);
        // Only valid UTF-8 is ever pushed (literals and JSON-escaped `str`s).
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Reads an origin object (any member order; the entry's own bytes are checked elsewhere).
    ///
    /// # Errors
    /// Not an object of one of the three forms of docs/FORMAT.md §2.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: RawOrigin = serde_json::from_str(text).map_err(|e| format!("origin: {e}"))?;
        let only = |allowed: &[&str]| -> Result<(), String> {
            let present = [
                ("token_id", raw.token_id.is_some()),
                ("scope", raw.scope.is_some()),
                ("via", raw.via.is_some()),
                ("command", raw.command.is_some()),
                ("user", raw.user.is_some()),
            ];
            for (name, is) in present {
                if is != allowed.contains(&name) {
                    return Err(format!(
                        "origin of kind {:?} must have exactly the members kind{}",
                        raw.kind,
                        allowed.iter().fold(String::new(), |a, m| a + ", " + m)
                    ));
                }
            }
            Ok(())
        };
        match raw.kind.as_str() {
            "service" => {
                only(&[])?;
                Ok(Self::Service)
            }
            "token" => {
                only(&["token_id", "scope", "via"])?;
                Self::token(
                    raw.token_id.as_deref().unwrap_or_default(),
                    raw.scope.as_deref().unwrap_or_default(),
                    raw.via.as_deref().unwrap_or_default(),
                )
            }
            "local" => {
                only(&["command", "user"])?;
                Self::local(
                    raw.command.as_deref().unwrap_or_default(),
                    raw.user.as_deref().unwrap_or_default(),
                )
            }
            other => Err(format!(
                "origin kind {other:?} is not one of service, token, local"
            )),
        }
    }

    /// Whether the origin matches a filter of `blackbox query --origin`: `service`, `token`,
    /// `local`, `token:<token id>` or `local:<user>`.
    #[must_use]
    pub fn matches(&self, filter: &str) -> bool {
        match filter.split_once(':') {
            None => self.kind() == filter,
            Some(("token", id)) => matches!(self, Self::Token { token_id, .. } if token_id == id),
            Some(("local", u)) => matches!(self, Self::Local { user, .. } if user == u),
            Some(_) => false,
        }
    }
}

impl fmt::Display for Origin {
    /// The short form shown to people: `service`, `token:<id> (<scope>, via <via>)`,
    /// `local:<user> (<command>)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Service => f.write_str("service"),
            Self::Token {
                token_id,
                scope,
                via,
            } => write!(f, "token:{token_id} ({scope}, via {via})"),
            Self::Local { command, user } => write!(f, "local:{user} ({command})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jcs_form_reads_back_and_is_canonical() {
        let cases = [
            Origin::Service,
            Origin::token("tok_1", "ingest,read", "events").unwrap(),
            Origin::local("append", "al\"ice").unwrap(),
        ];
        for o in cases {
            let text = o.to_jcs();
            assert_eq!(Origin::from_json(&text).unwrap(), o, "{text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let canon = serde_json_canonicalizer::to_string(&v).unwrap();
            assert_eq!(canon, text);
        }
    }

    #[test]
    fn bad_origins_are_refused() {
        for bad in [
            r#"{"kind":"root"}"#,
            r#"{"kind":"service","user":"x"}"#,
            r#"{"kind":"token","token_id":"t","scope":"ingest"}"#,
            r#"{"kind":"token","token_id":"t x","scope":"ingest","via":"events"}"#,
            r#"{"kind":"local","command":"append","user":""}"#,
            r#"{"kind":"service","extra":1}"#,
            r#""service""#,
        ] {
            assert!(Origin::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_types_and_prefix() {
        assert!(is_reserved("agent_resumed"));
        assert!(is_reserved("blackbox.future"));
        assert!(!is_reserved("tool_call"));
        assert!(!is_reserved("heartbeat"));
        let mut sorted = RESERVED_EVENT_TYPES;
        sorted.sort_unstable();
        assert_eq!(sorted, RESERVED_EVENT_TYPES, "kept sorted for the docs");
    }

    #[test]
    fn filters() {
        let t = Origin::token("tok_1", "ingest", "events").unwrap();
        assert!(t.matches("token") && t.matches("token:tok_1"));
        assert!(!t.matches("token:tok_2") && !t.matches("service"));
        assert!(Origin::Service.matches("service"));
        let l = Origin::local("append", "root").unwrap();
        assert!(l.matches("local") && l.matches("local:root") && !l.matches("local:bob"));
    }
}
