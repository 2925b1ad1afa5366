//! Validated identifiers: parse once, then trust the type.

use std::fmt;

use crate::error::FieldError;

/// The tenant of the service's own chain (refusals, rules loaded, lost decisions). On one
/// database of a tenant map each database has its own, `_blackbox.<database>`.
pub const SERVICE_TENANT: &str = "_blackbox";

/// Whether `tenant` is a service's own chain ([`SERVICE_TENANT`], or `_blackbox.<database>`).
#[must_use]
pub fn is_service_tenant(tenant: &str) -> bool {
    tenant
        .strip_prefix(SERVICE_TENANT)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// Largest integer RFC 8785 (IEEE 754 doubles) represents exactly: 2^53 - 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr, $check:expr, $rule:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates `s`.
            ///
            /// # Errors
            /// [`FieldError`] naming the field and the rule broken.
            pub fn parse(s: &str) -> Result<Self, FieldError> {
                let ok_char: fn(char) -> bool = $check;
                if s.is_empty() || s.len() > $max || !s.chars().all(ok_char) {
                    return Err(FieldError::new($field, concat!("must be ", $rule)));
                }
                Ok(Self(s.to_owned()))
            }

            /// The identifier as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            // Eq, Ord and Hash are derived from the one String field, so they agree with str's.
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

fn tenant_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

fn free_text_char(c: char) -> bool {
    !c.is_control()
}

fn key_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

text_id!(
    /// A tenant: the owner of one chain. ASCII letters, digits, `_ - . :`, 1–128 bytes, so it
    /// can appear in checkpoint origins and file names unescaped.
    TenantId, "tenant_id", 128, tenant_char,
    "1-128 characters from A-Z a-z 0-9 _ - . :"
);
text_id!(
    /// The agent's identity (a service account, e.g. `moltbot-analyst-07`).
    AgentId, "agent_id", 256, free_text_char,
    "1-256 bytes of text without control characters"
);
text_id!(
    /// The agent session an event belongs to.
    SessionId, "session_id", 256, free_text_char,
    "1-256 bytes of text without control characters"
);
text_id!(
    /// The kind of event (`llm_request`, `tool_call`, or any other name).
    EventType, "event_type", 64, |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'),
    "1-64 characters from A-Z a-z 0-9 _ - ."
);
text_id!(
    /// Names an HMAC key generation (`k1`, `k2`, …) so keys can rotate.
    KeyId, "key_id", 32, key_char,
    "1-32 characters from a-z 0-9 -"
);

/// A chain sequence number: 1 for the first entry of a chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Formats `n` with thousands separators (`14,823`), as the verifier's messages do.
#[must_use]
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_rules() {
        assert!(is_service_tenant("_blackbox") && is_service_tenant("_blackbox.eu"));
        assert!(!is_service_tenant("_blackboxes") && !is_service_tenant("acme"));
        assert!(TenantId::parse("tenant_xyz").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a/b").is_err());
        assert!(TenantId::parse(&"x".repeat(129)).is_err());
        let e = TenantId::parse("a b").unwrap_err();
        assert!(e.to_string().contains("tenant_id"), "{e}");
    }

    #[test]
    fn free_text_ids_refuse_control_characters() {
        assert!(AgentId::parse("moltbot-agent-prod-01").is_ok());
        assert!(AgentId::parse("agent\n01").is_err());
        assert!(SessionId::parse("sess_abc123").is_ok());
    }

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(14_823), "14,823");
        assert_eq!(group_thousands(1_000_000), "1,000,000");
    }
}
