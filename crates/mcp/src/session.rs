//! What the gateway does with each message of one MCP session, whatever the transport: decide
//! `tools/call` requests before they are forwarded, correlate responses with their requests,
//! pin tool definitions, and record what happened (docs/MCP.md §2).
//!
//! Raw content never leaves this module except the arguments of a `tools/call`, which go to the
//! service's decision (its detector scans them; the entry holds their hash). Everything else is
//! recorded as SHA-256 digests computed here (docs/FORMAT.md §4).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use blackbox_api::decide::{Decision, McpContext};
use serde_json::{Map, Value, json};

use crate::audit::{Audit, DecideError};
use crate::message::{Kind, Message, ParseError};
use crate::pins::{Change, Pins};

/// JSON-RPC error codes of the gateway's refusals: outside JSON-RPC's reserved range
/// (-32768..-32000), as MCP 2026-07-28 asks of codes it does not define.
pub mod codes {
    /// A rule blocked the call.
    pub const BLOCKED: i64 = -31001;
    /// The agent is paused.
    pub const PAUSED: i64 = -31002;
    /// The agent is throttled: retry later.
    pub const THROTTLED: i64 = -31003;
    /// The audit service could not be reached and the gateway fails closed.
    pub const UNAVAILABLE: i64 = -31004;
    /// The message could not be read (not JSON-RPC, duplicate keys, a batch).
    pub const UNREADABLE: i64 = -32700;
}

/// How a refused call is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A JSON-RPC error (the default: the call was not executed, which a tool result would
    /// misstate).
    Error,
    /// A `tools/call` result with `isError: true`, for hosts that show only tool results to the
    /// model.
    ToolError,
}

/// How a gateway runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The agent the traffic belongs to (`--agent-id`).
    pub agent_id: String,
    /// Its role, when configured (`--agent-role`): rules may scope by it.
    pub agent_role: Option<String>,
    /// How refusals look.
    pub refusal: Refusal,
    /// Forward calls when the service cannot decide them (default: refuse).
    pub fail_open: bool,
    /// `stdio` or `http`.
    pub transport: &'static str,
    /// What the gateway stands in front of: the wrapped command or the upstream URL (pins are
    /// kept per agent and upstream).
    pub upstream: String,
}

/// A `tools/call`'s decision, between [`Session::decide_call`] and [`Session::finish_call`].
#[derive(Debug)]
pub struct CallDecision {
    tool: String,
    args: Value,
    context: McpContext,
    started: Instant,
    outcome: Result<Decision, DecideError>,
}

/// What to do with a message from the client.
#[derive(Debug)]
pub enum Verdict {
    /// Forward it to the server as it was received.
    Forward,
    /// Do not forward it; answer the client with this message instead.
    Answer(Value),
    /// Do not forward it and do not answer (a response to nothing).
    Drop,
}

/// A request waiting for its response.
#[derive(Debug)]
struct Pending {
    method: String,
    started: Instant,
    /// `tools/call`: the tool.
    tool: Option<String>,
    /// `resources/read`: the URI; `prompts/get`: the prompt's name.
    target: Option<String>,
    /// The decision's entry, for a decided call.
    decision_entry: Option<String>,
    params_hash: Option<String>,
    progress: u64,
    /// `initialize`: the client's side, kept until the server answers.
    initialize: Option<Value>,
}

#[derive(Debug, Default)]
struct State {
    /// Client → server requests by id.
    pending: HashMap<String, Pending>,
    /// Server → client requests by id (sampling, elicitation, roots).
    server_pending: HashMap<String, Pending>,
    /// Progress token → the client request it reports on.
    progress_tokens: HashMap<String, String>,
    protocol_version: Option<String>,
    client_name: Option<String>,
    client_version: Option<String>,
    server_name: Option<String>,
    server_version: Option<String>,
    /// The digest of the MCP session id (Streamable HTTP, handshake era): [`session_digest`].
    mcp_session: Option<String>,
    counts: Counts,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    messages_in: u64,
    messages_out: u64,
    calls: u64,
    refused: u64,
    violations: u64,
}

/// One MCP session as the gateway sees it. Shared by the tasks that carry each direction; no
/// lock is held across an await.
#[derive(Debug)]
pub struct Session {
    cfg: Arc<Config>,
    audit: Arc<Audit>,
    pins: Arc<Pins>,
    /// The session id of the entries: the MCP session id when the transport has one, else
    /// the gateway's own (`mcp-<uuid>`).
    id: Mutex<String>,
    state: Mutex<State>,
}

/// The digest the gateway records of a value: docs/FORMAT.md §4's (SHA-256 of a string's
/// UTF-8, of anything else's RFC 8785 form), `sha256:`-prefixed.
pub(crate) fn digest(v: &Value) -> String {
    blackbox_core::entry::content_hash(v).map_or_else(
        |_| blackbox_core::hash::Hash::digest(v.to_string().as_bytes()).to_prefixed(),
        |h| h.to_prefixed(),
    )
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn millis(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// A JSON-RPC id given as JSON text, as JSON again.
fn id_value(id: &str) -> Value {
    serde_json::from_str(id).unwrap_or(Value::Null)
}

impl Session {
    /// A session; `mcp_session` is the transport's session id, when it has one.
    #[must_use]
    pub fn new(
        cfg: Arc<Config>,
        audit: Arc<Audit>,
        pins: Arc<Pins>,
        mcp_session: Option<String>,
    ) -> Self {
        let mcp_session = mcp_session.as_deref().map(session_digest);
        let id = match &mcp_session {
            Some(h) => format!("mcp-{h}"),
            None => format!("mcp-{}", uuid::Uuid::now_v7()),
        };
        Self {
            cfg,
            audit,
            pins,
            id: Mutex::new(truncate_id(id)),
            state: Mutex::new(State {
                mcp_session,
                ..State::default()
            }),
        }
    }

    /// The session id of its entries.
    #[must_use]
    pub fn id(&self) -> String {
        self.id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The transport's session id, learnt from the server's answer to `initialize` (Streamable
    /// HTTP): the entries of the session name it from then on.
    pub fn set_mcp_session(&self, mcp_session: &str) {
        let h = session_digest(mcp_session);
        let mut st = self.state();
        if st.mcp_session.as_deref() == Some(h.as_str()) {
            return;
        }
        *self.id.lock().unwrap_or_else(PoisonError::into_inner) = format!("mcp-{h}");
        st.mcp_session = Some(h);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether requests of this session are still waiting for their answers.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        !self.state().pending.is_empty()
    }

    fn context(&self, st: &State, jsonrpc_id: &str) -> McpContext {
        McpContext {
            transport: self.cfg.transport.to_owned(),
            jsonrpc_id: jsonrpc_id.chars().take(256).collect(),
            session_hash: st.mcp_session.clone(),
            protocol_version: st.protocol_version.clone(),
            server_name: st.server_name.clone(),
            server_version: st.server_version.clone(),
            client_name: st.client_name.clone(),
            client_version: st.client_version.clone(),
        }
    }

    fn mcp_member(&self, st: &State, jsonrpc_id: Option<&str>) -> Value {
        let mut v =
            serde_json::to_value(self.context(st, jsonrpc_id.unwrap_or(""))).unwrap_or_default();
        if jsonrpc_id.is_none()
            && let Value::Object(m) = &mut v
        {
            m.remove("jsonrpc_id");
        }
        v
    }

    /// Records an event of this session.
    fn record(&self, event_type: &str, payload: Value) {
        self.audit.record(json!({
            "agent_id": self.cfg.agent_id,
            "session_id": self.id(),
            "event_type": event_type,
            "payload": payload,
        }));
    }

    /// Counts a message from the client handled outside [`Session::from_client`] (a call
    /// decided with [`Session::decide_call`]).
    pub fn note_client_message(&self) {
        self.state().counts.messages_in += 1;
    }

    /// A message from the client: decided (a `tools/call`), remembered, and forwarded or
    /// answered here.
    pub async fn from_client(&self, msg: &Message) -> Verdict {
        self.state().counts.messages_in += 1;
        match (msg.kind, msg.method.as_deref()) {
            (Kind::Request, Some("tools/call")) => self.call(msg).await,
            (Kind::Request, Some(method)) => {
                let id = msg.id.clone().unwrap_or_default();
                let params = msg.params();
                let mut st = self.state();
                if method == "initialize" {
                    let info = params.get("clientInfo");
                    st.client_name = info.and_then(|i| str_of(i, "name")).map(clip);
                    st.client_version = info.and_then(|i| str_of(i, "version")).map(clip);
                }
                if let Some(v) = params
                    .get("_meta")
                    .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
                    .and_then(Value::as_str)
                {
                    st.protocol_version = Some(clip(v.to_owned()));
                }
                self.remember_progress(&mut st, params, &id);
                st.pending.insert(
                    id,
                    Pending {
                        method: method.to_owned(),
                        started: Instant::now(),
                        tool: None,
                        target: str_of(params, "uri").or_else(|| str_of(params, "name")),
                        decision_entry: None,
                        params_hash: (!params.is_null()).then(|| digest(params)),
                        progress: 0,
                        initialize: (method == "initialize").then(|| params.clone()),
                    },
                );
                Verdict::Forward
            }
            (Kind::Notification, Some("tools/call")) => {
                // A call without an id cannot be answered, nor decided as a call: not forwarded.
                self.violation("client", "a tools/call without an id", &msg.value);
                Verdict::Drop
            }
            (Kind::Notification, Some("notifications/cancelled")) => {
                self.cancelled(msg, "client");
                Verdict::Forward
            }
            (Kind::Notification, _) => Verdict::Forward,
            (Kind::Response, _) => {
                // The client's answer to a server request (sampling, elicitation, roots).
                self.answered(msg, true);
                Verdict::Forward
            }
            (Kind::Request, None) => Verdict::Forward,
        }
    }

    fn remember_progress(&self, st: &mut State, params: &Value, id: &str) {
        if let Some(token) = params.get("_meta").and_then(|m| m.get("progressToken")) {
            st.progress_tokens.insert(token.to_string(), id.to_owned());
        }
    }

    /// A `tools/call`: decided by the service before it may reach the server.
    async fn call(&self, msg: &Message) -> Verdict {
        match self.decide_call(msg).await {
            Some(d) => self.finish_call(msg, d),
            None => self.undecidable(msg),
        }
    }

    /// A `tools/call` the gateway cannot decide (no tool name as a string): refused, since a
    /// lenient server might still run it.
    pub fn undecidable(&self, msg: &Message) -> Verdict {
        let id = msg.id.clone().unwrap_or_default();
        self.violation(
            "client",
            "a tools/call without a tool name (params.name)",
            &msg.value,
        );
        Verdict::Answer(json!({
            "jsonrpc": "2.0",
            "id": id_value(&id),
            "error": {
                "code": -32602,
                "message": "Refused by Blackbox: a tools/call needs params.name, the tool's name as a string; the call was not forwarded",
            },
        }))
    }

    /// The first half of a `tools/call`: the service's decision (no state of the session
    /// changes, so that decisions of several calls may be awaited at once). `None` for a call
    /// without a tool name, which the server answers as it would without the gateway.
    pub async fn decide_call(&self, msg: &Message) -> Option<CallDecision> {
        let id = msg.id.clone().unwrap_or_default();
        let params = msg.params();
        let tool = params.get("name").and_then(Value::as_str)?.to_owned();
        let args = params.get("arguments").cloned().unwrap_or(Value::Null);
        let context = self.context(&self.state(), &id);
        let request = blackbox_api::decide::DecideRequest {
            agent_id: self.cfg.agent_id.clone(),
            session_id: self.id(),
            tool_name: tool.clone(),
            args: args.clone(),
            agent_role: self.cfg.agent_role.clone(),
            invocation_id: Some(id.chars().take(256).collect()),
            client_seq: None,
            prompt: None,
            mcp: Some(context.clone()),
        };
        let started = Instant::now();
        let outcome = self.audit.decide(&request).await;
        Some(CallDecision {
            tool,
            args,
            context,
            started,
            outcome,
        })
    }

    /// The second half of a `tools/call`, in the order the client sent its messages: the call
    /// is remembered and forwarded, or answered here.
    pub fn finish_call(&self, msg: &Message, d: CallDecision) -> Verdict {
        let id = msg.id.clone().unwrap_or_default();
        let CallDecision {
            tool,
            args,
            context,
            started,
            outcome,
        } = d;
        {
            let mut st = self.state();
            st.counts.calls += 1;
            self.audit
                .stats
                .calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match outcome {
            Ok(d) if d.allowed() => {
                let mut st = self.state();
                self.remember_progress(&mut st, msg.params(), &id);
                st.pending.insert(
                    id,
                    Pending {
                        method: "tools/call".into(),
                        started,
                        tool: Some(tool),
                        target: None,
                        decision_entry: Some(d.entry_id),
                        params_hash: None,
                        progress: 0,
                        initialize: None,
                    },
                );
                Verdict::Forward
            }
            Ok(d) => {
                self.state().counts.refused += 1;
                self.audit
                    .stats
                    .refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Verdict::Answer(self.refusal(&id, &tool, &d))
            }
            Err(e) => self.undecided(&id, &tool, &args, context, &e),
        }
    }

    /// The service could not decide: refuse (default) or forward, and record what happened
    /// (sent when the service is back).
    fn undecided(
        &self,
        id: &str,
        tool: &str,
        args: &Value,
        context: McpContext,
        e: &DecideError,
    ) -> Verdict {
        // Only a service that is away lets --fail-open forward: a request the service refused
        // (a tool name too long, arguments too large) is refused here too.
        let forwarded = self.cfg.fail_open && matches!(e, DecideError::Unavailable(_));
        let mut payload = json!({
            "tool_name": tool,
            "args_hash": digest(args),
            "invocation_id": id,
            "gateway": {
                "decision": if forwarded { "forwarded_undecided" } else { "refused_undecided" },
                "reason": e.to_string(),
            },
            "mcp": context,
        });
        if let Some(role) = &self.cfg.agent_role {
            payload["agent_role"] = json!(role);
        }
        self.record("tool_call", payload);
        if forwarded {
            let mut st = self.state();
            st.pending.insert(
                id.to_owned(),
                Pending {
                    method: "tools/call".into(),
                    started: Instant::now(),
                    tool: Some(tool.to_owned()),
                    target: None,
                    decision_entry: None,
                    params_hash: None,
                    progress: 0,
                    initialize: None,
                },
            );
            return Verdict::Forward;
        }
        self.state().counts.refused += 1;
        self.audit
            .stats
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let message = format!(
            "Refused by Blackbox: the audit service could not decide this call ({e}); the \
             gateway fails closed. Retry when the service is reachable."
        );
        Verdict::Answer(self.error_or_result(
            id,
            codes::UNAVAILABLE,
            &message,
            json!({"blackbox": {"decision": "unavailable"}}),
        ))
    }

    /// The answer to a refused call.
    fn refusal(&self, id: &str, tool: &str, d: &Decision) -> Value {
        let rules: Vec<&str> = d.rules.iter().map(|r| r.name.as_str()).collect();
        let (code, message) = match d.decision.as_str() {
            "paused" => (
                codes::PAUSED,
                format!(
                    "Refused by Blackbox: agent `{}` is paused; an operator must resume it \
                     (`blackbox agents resume`). Tool `{tool}` was not called (entry {}).",
                    self.cfg.agent_id, d.entry_id
                ),
            ),
            "throttle" => (
                codes::THROTTLED,
                format!(
                    "Refused by Blackbox: agent `{}` is throttled by rule {}; retry after {} ms. \
                     Tool `{tool}` was not called (entry {}).",
                    self.cfg.agent_id,
                    rules.join(", "),
                    d.retry_after_ms.unwrap_or(0),
                    d.entry_id
                ),
            ),
            _ => (
                codes::BLOCKED,
                format!(
                    "Refused by Blackbox: rule {} blocked this call. Tool `{tool}` was not \
                     called (entry {}).",
                    if rules.is_empty() {
                        "(none named)".to_owned()
                    } else {
                        rules.join(", ")
                    },
                    d.entry_id
                ),
            ),
        };
        let data = json!({"blackbox": {
            "decision": d.decision,
            "rules": d.rules,
            "entry_id": d.entry_id,
            "seq": d.seq,
            "retry_after_ms": d.retry_after_ms,
        }});
        self.error_or_result(id, code, &message, data)
    }

    fn error_or_result(&self, id: &str, code: i64, message: &str, data: Value) -> Value {
        match self.cfg.refusal {
            Refusal::Error => json!({
                "jsonrpc": "2.0",
                "id": id_value(id),
                "error": {"code": code, "message": message, "data": data},
            }),
            Refusal::ToolError => json!({
                "jsonrpc": "2.0",
                "id": id_value(id),
                "result": {
                    "content": [{"type": "text", "text": message}],
                    "isError": true,
                    "_meta": data,
                },
            }),
        }
    }

    /// A message from the server: responses close their request, server requests are
    /// remembered, tool listings are pinned. The message is forwarded by the caller whatever
    /// this records.
    pub fn from_server(&self, msg: &Message) {
        self.state().counts.messages_out += 1;
        match msg.kind {
            Kind::Response => self.answered(msg, false),
            Kind::Request => {
                let id = msg.id.clone().unwrap_or_default();
                let params = msg.params();
                self.state().server_pending.insert(
                    id,
                    Pending {
                        method: msg.method.clone().unwrap_or_default(),
                        started: Instant::now(),
                        tool: None,
                        target: None,
                        decision_entry: None,
                        params_hash: (!params.is_null()).then(|| digest(params)),
                        progress: 0,
                        initialize: None,
                    },
                );
            }
            Kind::Notification => match msg.method.as_deref() {
                Some("notifications/progress") => {
                    let token = msg.params().get("progressToken").map(Value::to_string);
                    let mut st = self.state();
                    if let Some(id) = token.and_then(|t| st.progress_tokens.get(&t).cloned())
                        && let Some(p) = st.pending.get_mut(&id)
                    {
                        p.progress += 1;
                    }
                }
                Some("notifications/cancelled") => self.cancelled(msg, "server"),
                _ => {}
            },
        }
    }

    /// A response: to a client request (`by_client` false) or to a server request.
    fn answered(&self, msg: &Message, by_client: bool) {
        let id = msg.id.clone().unwrap_or_default();
        let (pending, mcp) = {
            let mut st = self.state();
            let p = if by_client {
                st.server_pending.remove(&id)
            } else {
                st.pending.remove(&id)
            };
            st.progress_tokens.retain(|_, v| *v != id);
            if let (Some(p), false) = (&p, by_client)
                && p.method == "initialize"
                && let Some(r) = msg.result()
            {
                let info = r.get("serverInfo");
                st.server_name = info.and_then(|i| str_of(i, "name")).map(clip);
                st.server_version = info.and_then(|i| str_of(i, "version")).map(clip);
                st.protocol_version = str_of(r, "protocolVersion").map(clip);
            }
            let mcp = self.mcp_member(&st, Some(&id));
            (p, mcp)
        };
        let Some(p) = pending else {
            // A response to nothing the gateway saw (a request from before it started, or an
            // id the peer made up): recorded, forwarded.
            self.violation(
                if by_client { "client" } else { "server" },
                "a response to no pending request",
                &msg.value,
            );
            return;
        };
        let status = match (msg.result(), msg.error()) {
            (Some(r), _) if r.get("isError").and_then(Value::as_bool) == Some(true) => "tool_error",
            (Some(_), _) => "ok",
            _ => "error",
        };
        let mut payload = Map::new();
        payload.insert("status".into(), status.into());
        payload.insert("duration_ms".into(), json!(millis(p.started)));
        if let Some(r) = msg.result() {
            payload.insert("result_data_hash".into(), digest(r).into());
        }
        if let Some(e) = msg.error() {
            let mut err = Map::new();
            if let Some(c) = e.get("code").and_then(Value::as_i64) {
                err.insert("code".into(), c.into());
            }
            if let Some(m) = e.get("message") {
                err.insert("message_hash".into(), digest(m).into());
            }
            payload.insert("error".into(), Value::Object(err));
        }
        payload.insert("mcp".into(), mcp);
        match p.method.as_str() {
            "tools/call" if !by_client => {
                payload.insert(
                    "tool_name".into(),
                    p.tool.clone().unwrap_or_default().into(),
                );
                payload.insert("invocation_id".into(), id.into());
                payload.insert("is_error".into(), (status != "ok").into());
                if let Some(d) = p.decision_entry {
                    payload.insert("decision_entry_id".into(), d.into());
                }
                if let Some(r) = msg.result() {
                    if let Some(s) = r.get("structuredContent") {
                        payload.insert("structured_content_hash".into(), digest(s).into());
                    }
                    let types: Vec<Value> = r
                        .get("content")
                        .and_then(Value::as_array)
                        .map(|c| c.iter().filter_map(|x| x.get("type").cloned()).collect())
                        .unwrap_or_default();
                    payload.insert("content_types".into(), Value::Array(types));
                }
                if p.progress > 0 {
                    payload.insert("progress_notifications".into(), p.progress.into());
                }
                self.record("tool_result", Value::Object(payload));
            }
            "tools/list" if !by_client => {
                if let Some(r) = msg.result() {
                    self.tools_listed(r, payload);
                }
            }
            "initialize" if !by_client => {
                let params = p.initialize.unwrap_or_default();
                let result = msg.result().cloned().unwrap_or_default();
                payload.insert("phase".into(), "initialized".into());
                payload.insert(
                    "requested_protocol_version".into(),
                    params.get("protocolVersion").cloned().unwrap_or_default(),
                );
                payload.insert(
                    "client_info".into(),
                    params.get("clientInfo").cloned().unwrap_or_default(),
                );
                payload.insert(
                    "client_capabilities".into(),
                    params.get("capabilities").cloned().unwrap_or_default(),
                );
                payload.insert(
                    "server_info".into(),
                    result.get("serverInfo").cloned().unwrap_or_default(),
                );
                payload.insert(
                    "server_capabilities".into(),
                    result.get("capabilities").cloned().unwrap_or_default(),
                );
                if let Some(i) = result.get("instructions") {
                    payload.insert("instructions_hash".into(), digest(i).into());
                }
                payload.remove("result_data_hash");
                self.record("mcp_session", Value::Object(payload));
            }
            method => {
                if method == "ping" {
                    return;
                }
                payload.insert("method".into(), method.into());
                payload.insert(
                    "direction".into(),
                    if by_client {
                        "server_to_client"
                    } else {
                        "client_to_server"
                    }
                    .into(),
                );
                if let Some(t) = p.target {
                    let key = if method == "resources/read" {
                        "uri"
                    } else {
                        "name"
                    };
                    payload.insert(key.into(), clip(t).into());
                }
                if let Some(h) = p.params_hash {
                    payload.insert("params_hash".into(), h.into());
                }
                if let Some(r) = msg.result()
                    && by_client
                    && let Some(a) = r.get("action")
                {
                    // Elicitation: accept, decline or cancel.
                    payload.insert("action".into(), a.clone());
                }
                self.record("mcp_request", Value::Object(payload));
            }
        }
    }

    /// A `tools/list` result: every tool's definition is compared with its pin.
    fn tools_listed(&self, result: &Value, mut payload: Map<String, Value>) {
        let tools = result
            .get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let (server, mcp) = {
            let st = self.state();
            (
                st.server_name.clone().unwrap_or_default(),
                payload.get("mcp").cloned(),
            )
        };
        let listed: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.get("name").cloned().unwrap_or_default(),
                    "definition_hash": digest(t),
                })
            })
            .collect();
        payload.insert("method".into(), "tools/list".into());
        payload.insert("direction".into(), "client_to_server".into());
        payload.insert("tool_count".into(), tools.len().into());
        payload.insert("tools".into(), Value::Array(listed));
        if result.get("nextCursor").is_some_and(|c| !c.is_null()) {
            payload.insert("next_cursor".into(), true.into());
        }
        self.record("mcp_request", Value::Object(payload));
        for change in self
            .pins
            .check(&self.cfg.agent_id, &self.cfg.upstream, &server, &tools)
        {
            let Change {
                tool,
                before,
                after,
                changed,
            } = change;
            self.record(
                "mcp_tool_changed",
                json!({
                    "tool_name": tool,
                    "server_name": server,
                    "before": before,
                    "after": after,
                    "changed": changed,
                    "mcp": mcp,
                }),
            );
        }
    }

    /// `notifications/cancelled`, from either side.
    fn cancelled(&self, msg: &Message, by: &str) {
        let params = msg.params();
        let request = params
            .get("requestId")
            .map(Value::to_string)
            .unwrap_or_default();
        let (pending, mcp) = {
            let mut st = self.state();
            let p = if by == "client" {
                st.pending.remove(&request)
            } else {
                st.server_pending.remove(&request)
            };
            (p, self.mcp_member(&st, Some(&request)))
        };
        let mut payload = json!({
            "request_id": request,
            "by": by,
            "mcp": mcp,
        });
        if let Some(r) = params.get("reason") {
            payload["reason_hash"] = digest(r).into();
        }
        if let Some(p) = pending {
            payload["method"] = p.method.into();
            payload["duration_ms"] = json!(millis(p.started));
            if let Some(t) = p.tool {
                payload["tool_name"] = t.into();
            }
            if let Some(d) = p.decision_entry {
                payload["decision_entry_id"] = d.into();
            }
        }
        self.record("mcp_cancelled", payload);
    }

    /// A message that could not be read, from `from` (`client` or `server`).
    pub fn unreadable(&self, from: &str, e: &ParseError, bytes: &[u8]) {
        self.violation(
            from,
            &e.to_string(),
            &Value::String(String::from_utf8_lossy(bytes).into_owned()),
        );
    }

    fn violation(&self, from: &str, problem: &str, message: &Value) {
        let mcp = {
            let mut st = self.state();
            st.counts.violations += 1;
            self.mcp_member(&st, None)
        };
        self.record(
            "mcp_protocol_violation",
            json!({
                "from": from,
                "problem": clip(problem.to_owned()),
                "message_hash": digest(message),
                "mcp": mcp,
            }),
        );
    }

    /// The server could not be reached, or its answer not read (HTTP).
    pub fn upstream_failed(&self, error: &str) {
        let mcp = self.mcp_member(&self.state(), None);
        self.record(
            "mcp_upstream_error",
            json!({"error": clip(error.to_owned()), "mcp": mcp}),
        );
    }

    /// The answer to an unreadable message from the client (which is not forwarded).
    #[must_use]
    pub fn unreadable_answer(e: &ParseError) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {
                "code": codes::UNREADABLE,
                "message": format!("Refused by Blackbox: {e}; the message was not forwarded"),
            },
        })
    }

    /// The session ends (`reason`: `client_closed`, `upstream_exited`, …): every request still
    /// waiting is recorded as unanswered, then the session's end.
    pub fn end(&self, reason: &str, detail: Value) {
        let (pending, counts, mcp) = {
            let mut st = self.state();
            let p: Vec<(String, Pending)> = st.pending.drain().collect();
            (p, st.counts, self.mcp_member(&st, None))
        };
        for (id, p) in pending {
            if p.method == "tools/call" {
                let mut payload = json!({
                    "tool_name": p.tool.unwrap_or_default(),
                    "invocation_id": id,
                    "status": reason,
                    "is_error": true,
                    "duration_ms": millis(p.started),
                    "mcp": mcp,
                });
                if let Some(d) = p.decision_entry {
                    payload["decision_entry_id"] = d.into();
                }
                self.record("tool_result", payload);
            }
        }
        self.record(
            "mcp_session",
            json!({
                "phase": "ended",
                "reason": reason,
                "detail": detail,
                "messages_from_client": counts.messages_in,
                "messages_from_server": counts.messages_out,
                "tool_calls": counts.calls,
                "refused": counts.refused,
                "protocol_violations": counts.violations,
                "mcp": mcp,
            }),
        );
    }
}

/// What the records say of an MCP session id: the first 32 hex digits of its SHA-256. The id
/// itself is a bearer credential of the session (whoever holds it can use the session): it is
/// never recorded.
#[must_use]
pub fn session_digest(mcp_session: &str) -> String {
    let h = blackbox_core::hash::Hash::digest(mcp_session.as_bytes()).to_prefixed();
    h["sha256:".len().."sha256:".len() + 32].to_owned()
}

/// At most 256 characters.
fn clip(s: String) -> String {
    if s.chars().count() <= 256 {
        s
    } else {
        s.chars().take(256).collect()
    }
}

/// A session id of at most 128 characters (the entry format's limit).
fn truncate_id(s: String) -> String {
    if s.len() <= 128 {
        s
    } else {
        let h = blackbox_core::hash::Hash::digest(s.as_bytes()).to_prefixed();
        format!("mcp-{}", &h[7..39])
    }
}
