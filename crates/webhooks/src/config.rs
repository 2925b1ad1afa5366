//! A webhook target as the rules file declares it: URL, event types, payload format, secret
//! reference, attempts and timeout.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::{DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT, WebhookError};

/// Payload format of a webhook (see the module docs for both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The Standard Webhooks envelope `{"type", "timestamp", "data": <entry>}`.
    #[default]
    Json,
    /// An OCSF 1.1.0 Detection Finding (class 2004).
    Ocsf,
}

impl PayloadFormat {
    /// Parses `json` or `ocsf`.
    ///
    /// # Errors
    /// [`WebhookError::UnknownFormat`].
    pub fn parse(s: &str) -> Result<Self, WebhookError> {
        match s {
            "json" => Ok(Self::Json),
            "ocsf" => Ok(Self::Ocsf),
            other => Err(WebhookError::UnknownFormat {
                given: other.to_owned(),
            }),
        }
    }

    /// `json` or `ocsf`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Ocsf => "ocsf",
        }
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a webhook's HMAC secret is read from (`hmac_secret_ref`). The reference is what is
/// stored and shown; the secret is read at each attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// `env:NAME`: the environment variable `NAME` of the service.
    Env(String),
    /// `file:PATH`: a file readable by its owner only (mode 0600 or stricter).
    File(PathBuf),
    /// `k8s-secret/NAME`: the file `NAME` in the mounted secrets directory
    /// ([`crate::DEFAULT_K8S_SECRETS_DIR`] unless configured).
    K8s(String),
}

impl SecretRef {
    /// Parses `env:NAME`, `file:PATH` or `k8s-secret/NAME` (surrounding spaces ignored).
    ///
    /// # Errors
    /// [`WebhookError::InvalidSecretRef`], which lists the accepted forms and never repeats the
    /// value.
    pub fn parse(s: &str) -> Result<Self, WebhookError> {
        let s = s.trim();
        let bad = |reason| Err(WebhookError::InvalidSecretRef { reason });
        if let Some(name) = s.strip_prefix("env:") {
            let mut chars = name.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return bad("env: needs a variable name (letters, digits and `_`)");
            }
            Ok(Self::Env(name.to_owned()))
        } else if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() || path.contains('\0') {
                return bad("file: needs a path");
            }
            Ok(Self::File(PathBuf::from(path)))
        } else if let Some(name) = s.strip_prefix("k8s-secret/") {
            let name_ok = !name.is_empty()
                && name != "."
                && name != ".."
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !name_ok {
                return bad("k8s-secret/ needs a key name (letters, digits, `.`, `_` and `-`)");
            }
            Ok(Self::K8s(name.to_owned()))
        } else {
            bad("is not in a recognised form")
        }
    }
}

impl std::str::FromStr for SecretRef {
    type Err = WebhookError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::K8s(name) => write!(f, "k8s-secret/{name}"),
        }
    }
}

/// One webhook of the rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookTarget {
    /// Where to POST (`http://` or `https://`).
    pub url: String,
    /// Event types delivered (`anomaly_detected`, `agent_paused`, …).
    pub events: Vec<String>,
    /// Where the HMAC secret is read from.
    pub secret_ref: SecretRef,
    /// Payload format.
    pub format: PayloadFormat,
    /// Attempts before a delivery is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Time allowed for one attempt.
    pub timeout: Duration,
}

impl WebhookTarget {
    /// A webhook with the default format (JSON), attempts (12) and timeout (10 s).
    ///
    /// # Errors
    /// As [`SecretRef::parse`] and [`WebhookTarget::validate`].
    pub fn new(url: &str, events: Vec<String>, secret_ref: &str) -> Result<Self, WebhookError> {
        let t = Self {
            url: url.trim().to_owned(),
            events,
            secret_ref: SecretRef::parse(secret_ref)?,
            format: PayloadFormat::Json,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
        };
        t.validate()?;
        Ok(t)
    }

    /// Checks the URL (absolute `http://` or `https://` with a host), that `events` is not empty
    /// and that `max_attempts` is at least 1.
    ///
    /// # Errors
    /// [`WebhookError::InvalidUrl`], [`WebhookError::NoEvents`], [`WebhookError::ZeroAttempts`].
    pub fn validate(&self) -> Result<(), WebhookError> {
        let shown = redact_url(&self.url);
        let invalid = |reason| WebhookError::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        let uri: hyper::Uri = self
            .url
            .parse()
            .map_err(|_| invalid("is not a valid URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(invalid("must start with http:// or https://"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid("has no host"));
        }
        if self.events.is_empty() {
            return Err(WebhookError::NoEvents { url: shown });
        }
        if self.max_attempts == 0 {
            return Err(WebhookError::ZeroAttempts { url: shown });
        }
        Ok(())
    }

    /// Whether entries of `event_type` go to this webhook.
    #[must_use]
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_type)
    }
}

/// `url` without user info and query string (for logs, errors and listings).
#[must_use]
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let query = if rest.contains('?') { "?…" } else { "" };
    match scheme {
        Some(s) => format!("{s}://{host}{path}{query}"),
        None => format!("{host}{path}{query}"),
    }
}
