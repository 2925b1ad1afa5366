//! `GET /v1/rules`: the detection rules in force and the versions the service recorded as loaded.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Answer of `GET /v1/rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RulesAnswer {
    /// The rules in force now.
    pub in_force: RulesInForce,
    /// Every rules version the service recorded as loaded (`rules_loaded` entries of its own
    /// chains), newest first, at most 200.
    pub history: Vec<RulesVersion>,
    /// More versions were recorded than `history` holds.
    pub history_more: bool,
}

/// The rules file in force and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RulesInForce {
    /// The rules file (`null`: the service runs without one, so no rule is in force).
    pub file: Option<String>,
    /// `sha256:` + hex of the rules file's bytes, as written into every alert (`rules_sha256`).
    pub rules_sha256: String,
    /// Time zone of the time-window rules (IANA name).
    pub time_zone: String,
    /// Webhooks the file configures (their count: URLs and secrets are not shown).
    pub webhooks: u64,
    /// Whether an external classifier is configured.
    pub classifier: bool,
    /// The rules that apply to the tenant asked for (an admin token without a tenant: all), in
    /// file order.
    pub rules: Vec<RuleSummary>,
    /// Rules of the file this answer leaves out because their scope names only other tenants.
    pub rules_hidden: u64,
}

/// One rule, as an auditor reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuleSummary {
    /// Unique name (as alerts name it).
    pub name: String,
    /// The file's description.
    pub description: String,
    /// Disabled rules are listed but do not run.
    pub enabled: bool,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// What it does when it fires (`alert`, `alert_and_pause`, `alert_and_throttle`,
    /// `block_and_alert`, `log_only`, `signal`).
    pub action: String,
    /// What it looks at: `metric`, `time_window`, `pattern`, `score`, `hidden_text`,
    /// `classifier`.
    pub kind: String,
    /// Its condition in words (for a pattern rule, how many phrases and regexes: the phrases
    /// themselves are in the rules file).
    pub condition: String,
    /// Whom it applies to, in words (`every agent` when unscoped).
    pub scope: String,
    /// Line of the rules file where it starts.
    pub line: u64,
}

/// A rules version the service recorded as loaded (docs/FORMAT.md §14, `rules_loaded`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RulesVersion {
    /// When the service recorded it (the writer's time, RFC 3339).
    pub loaded_at: String,
    /// `sha256:` + hex of the file.
    pub rules_sha256: String,
    /// Rules in the file.
    pub rules: u64,
    /// Of which enabled.
    pub enabled: u64,
    /// Webhooks the file configured.
    pub webhooks: u64,
    /// The file's path on the service's host.
    pub file: String,
    /// The service chain holding the `rules_loaded` entry.
    pub chain: String,
    /// Its seq in that chain.
    pub seq: u64,
    /// Its entry id.
    pub entry_id: String,
    /// This version is the one in force now (same SHA-256, and the newest such record).
    pub in_force: bool,
}
