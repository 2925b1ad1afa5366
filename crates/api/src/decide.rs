//! `POST /v1/decide` (docs/RULES.md): may this agent make this tool call now?

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Body of `POST /v1/decide`. Raw `args` and `prompt` are scanned in memory; only their hashes
/// are recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    /// The agent making the call.
    pub agent_id: String,
    /// Its session.
    pub session_id: String,
    /// The tool it wants to call (1 to 256 characters).
    pub tool_name: String,
    /// The call's arguments.
    #[serde(default)]
    pub args: Value,
    /// The agent's role, when the runtime has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_role: Option<String>,
    /// The runtime's id of this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// The agent's own sequence number (at most 2^53-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_seq: Option<u64>,
    /// The prompt that led to the call, when the runtime has it: scanned, stored only as a hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Value>,
    /// The MCP message the call came in, when an MCP gateway asks (`blackbox mcp`,
    /// docs/MCP.md): recorded in the entry's payload as `mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpContext>,
}

/// Where an MCP gateway saw a call (docs/MCP.md). Every string is at most 256 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpContext {
    /// `stdio` or `http`.
    pub transport: String,
    /// The JSON-RPC id of the request, as JSON text (`7`, `"abc"`).
    pub jsonrpc_id: String,
    /// A digest of the MCP session id (Streamable HTTP), when there is one: the first 32 hex
    /// digits of its SHA-256. Not the id itself, which lets whoever holds it use the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_hash: Option<String>,
    /// The protocol version the session negotiated (or the request declares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// The server's `serverInfo.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The server's `serverInfo.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The client's `clientInfo.name` (self-reported by the client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The client's `clientInfo.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
}

impl McpContext {
    /// The first member longer than 256 characters, if any.
    #[must_use]
    pub fn too_long(&self) -> Option<&'static str> {
        let long = |s: &str| s.chars().count() > 256;
        let opt = |s: &Option<String>| s.as_deref().is_some_and(long);
        if long(&self.transport) {
            Some("transport")
        } else if long(&self.jsonrpc_id) {
            Some("jsonrpc_id")
        } else if opt(&self.session_hash) {
            Some("session_hash")
        } else if opt(&self.protocol_version) {
            Some("protocol_version")
        } else if opt(&self.server_name) {
            Some("server_name")
        } else if opt(&self.server_version) {
            Some("server_version")
        } else if opt(&self.client_name) {
            Some("client_name")
        } else if opt(&self.client_version) {
            Some("client_version")
        } else {
            None
        }
    }
}

/// A rule that fired on a decided call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionRule {
    /// Rule name.
    pub name: String,
    /// Its action (`alert`, `alert_and_pause`, `alert_and_throttle`, `block_and_alert`).
    pub action: String,
    /// Its severity.
    pub severity: String,
}

/// Answer of `POST /v1/decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// `allow`, `block`, `throttle` or `paused`.
    pub decision: String,
    /// For `throttle`: wait this long before retrying.
    pub retry_after_ms: Option<i64>,
    /// Rules that fired on the call.
    pub rules: Vec<DecisionRule>,
    /// The `tool_call` entry recording the attempt and the decision.
    pub entry_id: String,
    /// Its seq.
    pub seq: u64,
    /// Its hash.
    pub entry_hash: String,
    /// Whether the record was durably committed before the answer (`false` when the service
    /// answers decisions once sequenced; services before this field always committed first).
    #[serde(default = "committed")]
    pub durable: bool,
}

fn committed() -> bool {
    true
}

impl Decision {
    /// Whether the call may go ahead.
    #[must_use]
    pub fn allowed(&self) -> bool {
        self.decision == "allow"
    }
}
