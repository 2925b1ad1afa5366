//! The export configuration: who the report is about, what retention is required, and (for
//! GDPR Art. 30) the processing activities. A TOML file, by default `DATA_DIR/export.toml`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ExportError;

/// An example file with every setting (`blackbox export --print-config`).
pub const EXAMPLE: &str = r#"# blackbox export settings (DATA_DIR/export.toml, or --config FILE)
[organisation]
name = "Acme Corp"
system = "Moltbot agent platform (production)"
contact = "security@acme.example"

[retention]
# Days of logs the evidence must show; by default the strictest preset of `standards`.
# Presets: soc2 365, iso27001 365, pci_dss 365 (90 immediately available), hipaa 2190,
# nis2 1095, eu_ai_act 183, gdpr 0 (storage limitation: no minimum).
standards = ["soc2"]
# required_days = 400

[gdpr]
controller = { name = "Acme Corp", contact = "privacy@acme.example", address = "1 Example Street, Berlin" }
dpo = { name = "Dana Privacy", contact = "dpo@acme.example" }

[[gdpr.activities]]
name = "Customer support assistant"
purposes = ["Answering customer questions about their orders"]
data_subject_categories = ["customers"]
personal_data_categories = ["contact details", "order history"]
recipients = ["support staff", "LLM provider (processor)"]
third_country_transfers = "LLM provider in the USA"
safeguards = "Standard contractual clauses (2021/914)"
erasure_time_limits = "Conversation logs 90 days; audit log entries 1 year, personal fields erased on request"
security_measures = ["raw prompts hashed before storage", "HMAC-chained, signed audit log", "role-based tool access"]
# Agents (ids, or prefixes ending in *) that carry out this activity.
agents = ["moltbot-*"]
"#;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Who and what the evidence covers.
    pub organisation: Organisation,
    /// Retention requirement.
    #[serde(default)]
    pub retention: Retention,
    /// GDPR Art. 30 record of processing activities.
    #[serde(default)]
    pub gdpr: Gdpr,
}

/// Who and what the evidence covers.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    /// Organisation name.
    pub name: String,
    /// The system covered.
    pub system: String,
    /// Contact for questions about the evidence.
    #[serde(default)]
    pub contact: String,
}

/// Retention requirement.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Standards whose presets apply (the strictest wins).
    #[serde(default)]
    pub standards: Vec<String>,
    /// Explicit requirement in days (overrides the presets).
    pub required_days: Option<u64>,
}

/// A named party.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Contact (e-mail, phone).
    #[serde(default)]
    pub contact: String,
    /// Postal address.
    #[serde(default)]
    pub address: String,
}

/// GDPR Art. 30(1).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Gdpr {
    /// Art. 30(1)(a): the controller.
    #[serde(default)]
    pub controller: Party,
    /// Art. 30(1)(a): the data protection officer.
    #[serde(default)]
    pub dpo: Party,
    /// The processing activities.
    #[serde(default)]
    pub activities: Vec<Activity>,
}

/// One processing activity (Art. 30(1)(b)–(g)).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    /// Name.
    pub name: String,
    /// (b) purposes.
    #[serde(default)]
    pub purposes: Vec<String>,
    /// (c) categories of data subjects.
    #[serde(default)]
    pub data_subject_categories: Vec<String>,
    /// (c) categories of personal data.
    #[serde(default)]
    pub personal_data_categories: Vec<String>,
    /// (d) recipients.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// (e) transfers to third countries.
    #[serde(default)]
    pub third_country_transfers: String,
    /// (e) their safeguards.
    #[serde(default)]
    pub safeguards: String,
    /// (f) time limits for erasure.
    #[serde(default)]
    pub erasure_time_limits: String,
    /// (g) technical and organisational security measures.
    #[serde(default)]
    pub security_measures: Vec<String>,
    /// Agents carrying out the activity (ids, or prefixes ending in `*`).
    #[serde(default)]
    pub agents: Vec<String>,
}

impl Activity {
    /// Whether `agent` carries out this activity.
    #[must_use]
    pub fn covers(&self, agent: &str) -> bool {
        self.agents.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => agent.starts_with(prefix),
            None => p == agent,
        })
    }
}

pub use blackbox_archive::settings::RETENTION_PRESETS;

impl ExportConfig {
    /// Reads and checks a config file.
    ///
    /// # Errors
    /// The file is missing (with how to write one), unreadable or invalid.
    pub fn load(path: &Path) -> Result<Self, ExportError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ExportError::Config(format!(
                "cannot read the export settings {}: {e}; write one (`blackbox export --print-config` prints an example) or pass --config FILE",
                path.display()
            ))
        })?;
        let c: Self = toml::from_str(&text).map_err(|e| {
            ExportError::Config(format!("{}: {}", path.display(), e.to_string().trim()))
        })?;
        if c.organisation.name.trim().is_empty() || c.organisation.system.trim().is_empty() {
            return Err(ExportError::Config(format!(
                "{}: organisation.name and organisation.system are required (they are printed on the evidence)",
                path.display()
            )));
        }
        for s in &c.retention.standards {
            if !RETENTION_PRESETS.iter().any(|(n, _, _)| n == s) {
                return Err(ExportError::Config(format!(
                    "{}: retention.standards: unknown standard `{s}`; use {}",
                    path.display(),
                    RETENTION_PRESETS.map(|p| p.0).join(", ")
                )));
            }
        }
        Ok(c)
    }

    /// Required retention in days for a report of `standard`, with where it comes from.
    #[must_use]
    pub fn required_days(&self, standard: &str) -> (u64, String) {
        if let Some(d) = self.retention.required_days {
            return (d, "retention.required_days in the export settings".into());
        }
        let mut names: Vec<&str> = self
            .retention
            .standards
            .iter()
            .map(String::as_str)
            .collect();
        if names.is_empty() {
            names.push(standard);
        }
        let best = names
            .iter()
            .filter_map(|n| RETENTION_PRESETS.iter().find(|p| p.0 == *n))
            .max_by_key(|p| p.1);
        match best {
            Some((n, d, _)) => (*d, format!("the {n} preset")),
            None => (0, "no retention requirement configured".into()),
        }
    }
}
