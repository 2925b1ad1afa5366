//! API tokens (admin): `POST /v1/tokens`, `GET /v1/tokens`, `DELETE /v1/tokens/{id}`.

use std::borrow::Cow;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A bearer token (`bbx_<id>_<secret>`). Its `Debug` shows the public id only, never the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a token string.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The public token id (the 16 hex digits after `bbx_`), when the token has the documented
    /// shape.
    #[must_use]
    pub fn id(&self) -> Option<&str> {
        let rest = self.0.strip_prefix("bbx_")?;
        let (id, _secret) = rest.split_once('_')?;
        (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
    }

    /// The whole token, secret included: only to hand it to whoever must hold it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "Token(bbx_{id}_…)"),
            None => f.write_str("Token(…)"),
        }
    }
}

impl From<&str> for Token {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Token {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// A token scope, written as its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// `POST /v1/events` and `POST /v1/decide` for the token's tenant.
    Ingest,
    /// Every `GET /v1/…` for the token's tenant.
    Read,
    /// Everything, for every tenant.
    Admin,
    /// A scope this side does not know (a newer peer), by its name: the service refuses it
    /// with a message naming it, a client keeps it.
    Unknown(String),
}

impl Scope {
    /// The scope's name (`ingest`, `read`, `admin`, or the unknown name).
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ingest => "ingest",
            Self::Read => "read",
            Self::Admin => "admin",
            Self::Unknown(s) => s,
        }
    }

    /// The scope of a name.
    #[must_use]
    pub fn from_name(name: &str) -> Self {
        match name {
            "ingest" => Self::Ingest,
            "read" => Self::Read,
            "admin" => Self::Admin,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self::from_name(&s))
    }
}

impl JsonSchema for Scope {
    fn schema_name() -> Cow<'static, str> {
        "Scope".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "enum": ["ingest", "read", "admin"],
            "description": "A token scope: ingest (write events, ask for decisions), read (every GET of the token's tenant), admin (everything, every tenant)."
        })
    }
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The tenant the token acts for (`None`: an admin token of every tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Answer of `POST /v1/tokens`: the token is shown only this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreatedToken {
    /// Public id.
    pub id: String,
    /// Its tenant (`None` for an admin token of every tenant).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Its scopes.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
    /// When it was created, Unix ms.
    #[serde(default)]
    pub created_ms: Option<i64>,
    /// When it was revoked, Unix ms (`null`: a new token is not).
    #[serde(default)]
    pub revoked_ms: Option<i64>,
    /// The token itself (its `Debug` hides the secret).
    pub token: Token,
    /// Any other member the service sends.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// One token in `GET /v1/tokens` (no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenInfo {
    /// Public id.
    pub id: String,
    /// Its tenant (`None` for an admin token of every tenant).
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Its scopes.
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
    /// When it was created, Unix ms.
    #[serde(default)]
    pub created_ms: Option<i64>,
    /// When it was revoked, Unix ms.
    #[serde(default)]
    pub revoked_ms: Option<i64>,
    /// Any other member the service sends.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// Answer of `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenList {
    /// Every token, revoked ones included.
    pub tokens: Vec<TokenInfo>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_debug_hides_the_secret() {
        let t = Token::new("bbx_0123456789abcdef_SECRETSECRETSECRETSECRETSECRETSECRETSECRE");
        assert_eq!(t.id(), Some("0123456789abcdef"));
        let d = format!("{t:?}");
        assert!(!d.contains("SECRET"), "{d}");
        assert!(d.contains("0123456789abcdef"));
        let odd = Token::new("hunter2");
        assert_eq!(format!("{odd:?}"), "Token(…)");
        let created: CreatedToken = serde_json::from_str(
            r#"{"id":"0123456789abcdef","token":"bbx_0123456789abcdef_SECRET","tenant_id":"acme",
                "scopes":["ingest","read","future"],"label":"","created_ms":1776124800000,"revoked_ms":null}"#,
        )
        .unwrap();
        assert!(!format!("{created:?}").contains("SECRET"));
        assert_eq!(
            created.scopes,
            [Scope::Ingest, Scope::Read, Scope::Unknown("future".into())]
        );
    }

    #[test]
    fn new_token_body() {
        let body = serde_json::to_string(&NewToken {
            tenant_id: Some("acme".into()),
            scopes: vec![Scope::Ingest, Scope::Read],
            label: Some("agent fleet".into()),
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"tenant_id":"acme","scopes":["ingest","read"],"label":"agent fleet"}"#
        );
    }
}
