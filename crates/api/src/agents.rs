//! `GET /v1/agents`, `POST /v1/agents/{agent_id}/pause` and `/resume`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Answer of `GET /v1/agents`: paused and throttled agents first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentList {
    /// The agents the detector knows.
    pub agents: Vec<Agent>,
}

/// One agent as the detector sees it. Times are RFC 3339 (UTC, milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Agent {
    /// Its tenant.
    pub tenant_id: String,
    /// The agent.
    pub agent_id: String,
    /// `active`, `paused` or `throttled`.
    pub state: String,
    /// First seen since the service started (or in the history it replayed).
    pub first_seen: Option<String>,
    /// Its last event.
    pub last_seen: Option<String>,
    /// The last record an MCP gateway (`blackbox mcp`, docs/MCP.md) wrote for it: the agent's
    /// tool calls go through a gateway.
    #[serde(default)]
    pub mcp_last_seen: Option<String>,
    /// Events seen.
    pub events: u64,
    /// When it was paused.
    pub paused_since: Option<String>,
    /// Who paused it (`operator:<token id>` or `rule:<name>`).
    pub paused_by: Option<String>,
    /// Until when it is throttled.
    pub throttled_until: Option<String>,
    /// Calls per minute while throttled.
    pub throttle_per_minute: Option<u32>,
    /// Who throttled it.
    pub throttled_by: Option<String>,
}

/// Body of `POST /v1/agents/{agent_id}/pause` and `/resume` (optional; no body is `{}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentAction {
    /// The agent's tenant (admin tokens without a tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Why, for the record (at most 1024 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Resume only: the alert the resume answers (required when a rule paused the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
}

/// Answer of a pause or resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentChange {
    /// The agent's tenant.
    pub tenant_id: String,
    /// The agent.
    pub agent_id: String,
    /// `paused` or `active`.
    pub state: String,
    /// Whether the state changed (`false`: it was already so, nothing was recorded).
    pub changed: bool,
    /// The entry recording the change.
    pub entry_id: Option<String>,
    /// Its seq.
    pub seq: Option<u64>,
}
