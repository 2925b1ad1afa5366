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
# Days of logs the evidence must show. SOC 2, ISO 27001, NIS2 and HIPAA's audit controls set no
# number: it is yours to define (required_days); without it the strictest preset of
# `standards` applies and the report says it is Blackbox's default.
# Presets: soc2 365, iso27001 365, nis2 1095, hipaa 2190 (organisation-defined: Blackbox's
# defaults), pci_dss 365 (PCI DSS v4.0 10.5.1; 90 immediately available), eu_ai_act 183
# (Regulation (EU) 2024/1689 Art. 19(1), 26(6)), gdpr 0 (storage limitation: no minimum).
# Every setting of this file is optional; a report names what is not configured.
standards = ["soc2"]
# required_days = 400

[report]
# Printed on the cover and in the management's assertion section; blank ones are named.
preparer = "Sam Ops, Platform Security"
reviewer = "Alex Audit, Internal Audit"
# Management's assertion about the control over the period (left as a placeholder when unset).
# management_assertion = "Management asserts that, throughout the period, ..."

[alerts]
# Alerts must be acknowledged or resolved by a person within this many hours (organisation-
# defined; 24 when not set): the alert register raises every later one as an exception.
triage_within_hours = 24

[gdpr]
controller = { name = "Acme Corp", contact = "privacy@acme.example", address = "1 Example Street, Berlin" }
# joint_controllers = [{ name = "Partner GmbH", contact = "privacy@partner.example" }]
# representative = { name = "EU Rep Ltd", contact = "rep@eurep.example" }   # Art. 27, controllers outside the EU
dpo = { name = "Dana Privacy", contact = "dpo@acme.example" }
# The record's version and the date it was last reviewed (printed on it).
record_version = "1"
record_date = "2026-01-15"

[[gdpr.activities]]
name = "Customer support assistant"
purposes = ["Answering customer questions about their orders"]
data_subject_categories = ["customers"]
personal_data_categories = ["contact details", "order history"]
recipients = ["support staff", "LLM provider (processor)"]
third_country_transfers = "LLM provider in the USA"
safeguards = "Standard contractual clauses (2021/914)"
erasure_time_limits = "Conversation logs 90 days; audit log entries 1 year, personal fields erased on request"
# The longest the audit log may keep this activity's personal data (days): the report tests it.
erasure_limit_days = 365
# The data classifications its tools' results may report (result.data_classification): any
# other one observed is raised as an exception.
data_classifications = ["pii", "internal"]
security_measures = ["raw prompts hashed before storage", "HMAC-chained, signed audit log", "role-based tool access"]
# Agents (ids, or prefixes ending in *) that carry out this activity.
agents = ["moltbot-*"]
"#;

/// The whole file. Every part is optional: what is not set is named in the reports
/// ([`ExportConfig::not_configured`]).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// The file the settings were read from (`None`: no file, every default).
    #[serde(skip)]
    pub source: Option<String>,
    /// Who and what the evidence covers.
    #[serde(default)]
    pub organisation: Organisation,
    /// Retention requirement.
    #[serde(default)]
    pub retention: Retention,
    /// Who prepared and reviewed the report, and management's assertion.
    #[serde(default)]
    pub report: ReportSettings,
    /// How alerts are handled (the alert register's tests).
    #[serde(default)]
    pub alerts: AlertSettings,
    /// GDPR Art. 30 record of processing activities.
    #[serde(default)]
    pub gdpr: Gdpr,
}

/// Who prepared and reviewed the report, and management's assertion.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// Who prepared the report (name, role).
    #[serde(default)]
    pub preparer: String,
    /// Who reviewed it (name, role).
    #[serde(default)]
    pub reviewer: String,
    /// Management's assertion about the control over the period.
    #[serde(default)]
    pub management_assertion: String,
}

/// How alerts are handled.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// Hours within which a person acknowledges or resolves an alert (at least 1).
    pub triage_within_hours: Option<u64>,
}

/// Who and what the evidence covers.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    /// Organisation name.
    #[serde(default)]
    pub name: String,
    /// The system covered.
    #[serde(default)]
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
    /// Art. 30(1)(a): joint controllers, where there are any.
    #[serde(default)]
    pub joint_controllers: Vec<Party>,
    /// Art. 30(1)(a): the controller's representative (Art. 27), where one is designated.
    #[serde(default)]
    pub representative: Party,
    /// Art. 30(1)(a): the data protection officer.
    #[serde(default)]
    pub dpo: Party,
    /// The record's version, as the controller numbers it.
    #[serde(default)]
    pub record_version: String,
    /// The date the record was last reviewed (`YYYY-MM-DD`).
    #[serde(default)]
    pub record_date: String,
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
    /// (f) the longest, in days, that the audit log may keep this activity's personal data
    /// (storage limitation: a maximum, tested against the oldest personal data kept).
    #[serde(default)]
    pub erasure_limit_days: Option<u64>,
    /// The data classifications (`result.data_classification`) this activity's tools may
    /// return; any other one observed for its agents is an exception.
    #[serde(default)]
    pub data_classifications: Vec<String>,
    /// (g) technical and organisational security measures.
    #[serde(default)]
    pub security_measures: Vec<String>,
    /// Agents carrying out the activity (ids, or prefixes ending in `*`).
    #[serde(default)]
    pub agents: Vec<String>,
}

impl Gdpr {
    /// The first declared activity that `agent` carries out.
    #[must_use]
    pub fn activity_of(&self, agent: &str) -> Option<&Activity> {
        self.activities.iter().find(|a| a.covers(agent))
    }
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

pub use blackbox_archive::settings::{RETENTION_PRESETS, RetentionPreset};

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
        let mut c: Self = toml::from_str(&text).map_err(|e| {
            ExportError::Config(format!("{}: {}", path.display(), e.to_string().trim()))
        })?;
        for s in &c.retention.standards {
            if RetentionPreset::find(s).is_none() {
                return Err(ExportError::Config(format!(
                    "{}: retention.standards: unknown standard `{s}`; use {}",
                    path.display(),
                    RetentionPreset::names()
                )));
            }
        }
        if c.alerts.triage_within_hours == Some(0) {
            return Err(ExportError::Config(format!(
                "{}: alerts.triage_within_hours must be at least 1 (hours)",
                path.display()
            )));
        }
        let date = c.gdpr.record_date.trim();
        if !date.is_empty() && date.parse::<jiff::civil::Date>().is_err() {
            return Err(ExportError::Config(format!(
                "{}: gdpr.record_date `{date}` is not a date; write it as YYYY-MM-DD",
                path.display()
            )));
        }
        c.source = Some(path.display().to_string());
        Ok(c)
    }

    /// The settings at `path` when the file exists, else every default (the reports then name
    /// what is not configured). Use [`ExportConfig::load`] for a file the user named.
    ///
    /// # Errors
    /// The file exists but cannot be read or is invalid.
    pub fn load_or_default(path: &Path) -> Result<Self, ExportError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            _ => Self::load(path),
        }
    }

    /// The settings a report of `standard` (`soc2`, `iso27001`, `gdpr`) would print that are
    /// not set, as `key: what it is` lines (empty when everything is configured).
    #[must_use]
    pub fn not_configured(&self, standard: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut need = |set: bool, what: &str| {
            if !set {
                out.push(what.to_owned());
            }
        };
        let filled = |s: &str| !s.trim().is_empty();
        need(
            filled(&self.organisation.name),
            "organisation.name: the organisation the evidence is about",
        );
        need(
            filled(&self.organisation.system),
            "organisation.system: the system covered",
        );
        need(
            filled(&self.organisation.contact),
            "organisation.contact: who answers questions about the evidence",
        );
        need(
            self.retention.required_days.is_some() || !self.retention.standards.is_empty(),
            "retention.required_days or retention.standards: the retention the organisation requires (the standard's preset is used)",
        );
        need(
            filled(&self.report.preparer),
            "report.preparer: who prepared the report",
        );
        need(
            filled(&self.report.reviewer),
            "report.reviewer: who reviewed it",
        );
        need(
            filled(&self.report.management_assertion),
            "report.management_assertion: management's assertion about the control (a placeholder is printed)",
        );
        if standard != "gdpr" {
            need(
                self.alerts.triage_within_hours.is_some(),
                &format!(
                    "alerts.triage_within_hours: the hours within which alerts are triaged ({} is used)",
                    crate::alerts::DEFAULT_TRIAGE_HOURS
                ),
            );
        }
        if standard == "gdpr" {
            let g = &self.gdpr;
            need(
                filled(&g.controller.name),
                "gdpr.controller.name: Art. 30(1)(a), the controller",
            );
            need(
                filled(&g.controller.contact) || filled(&g.controller.address),
                "gdpr.controller.contact / address: Art. 30(1)(a), the controller's contact details",
            );
            need(
                filled(&g.dpo.name),
                "gdpr.dpo.name: Art. 30(1)(a), the data protection officer (where one is designated)",
            );
            need(
                filled(&g.record_version),
                "gdpr.record_version: the record's version",
            );
            need(
                filled(&g.record_date),
                "gdpr.record_date: the date the record was last reviewed",
            );
            need(
                !g.activities.is_empty(),
                "gdpr.activities: Art. 30(1)(b)–(g), the processing activities (every observed agent is then unattributed)",
            );
            for a in &g.activities {
                need(
                    a.erasure_limit_days.is_some(),
                    &format!(
                        "gdpr.activities[{}].erasure_limit_days: the longest the log may keep its personal data (storage limitation is then not tested)",
                        a.name
                    ),
                );
            }
        }
        out
    }

    /// The hours within which alerts are triaged, with where that comes from.
    #[must_use]
    pub fn triage_hours(&self) -> (u64, String) {
        match self.alerts.triage_within_hours {
            Some(h) => (
                h,
                "organisation-defined: alerts.triage_within_hours in the export settings".into(),
            ),
            None => (
                crate::alerts::DEFAULT_TRIAGE_HOURS,
                format!(
                    "not configured (alerts.triage_within_hours), so Blackbox's default of {} hours",
                    crate::alerts::DEFAULT_TRIAGE_HOURS
                ),
            ),
        }
    }

    /// Required retention in days for a report of `standard`, with where it comes from.
    #[must_use]
    pub fn required_days(&self, standard: &str) -> (u64, String) {
        if let Some(d) = self.retention.required_days {
            return (
                d,
                "organisation-defined: retention.required_days in the export settings".into(),
            );
        }
        let configured = !self.retention.standards.is_empty();
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
            .filter_map(|n| RetentionPreset::find(n))
            .max_by_key(|p| p.keep_days);
        match best {
            Some(p) if configured => (p.keep_days, p.describe()),
            Some(p) => (p.keep_days, format!("not configured, so {}", p.describe())),
            None => (0, "no retention requirement configured".into()),
        }
    }
}
