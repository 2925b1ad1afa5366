//! GenAI spans and log records to Blackbox events (docs/OTEL.md is the reference; a test checks
//! the two name the same event types).
//!
//! The mapping is pure: it builds each event with its raw content still in it, under the names of
//! [`CONTENT_FIELDS`], as the normaliser's tree ([`Node`]) whose strings borrow from the decoded
//! request (nothing is copied, escaped or parsed again on the way); the intake then normalises it
//! like every other event (the detector scans the content, the redaction replaces it by its hash,
//! nothing of it is stored).

use std::borrow::Cow;
use std::collections::HashMap;

use blackbox_core::event::{Node, Obj};

use crate::value::{Attrs, kv_to_node, to_node};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::Event as SpanEvent;

/// A value of the event being built.
struct N<'a>(Node<'a>);

impl<'a> From<&'a str> for N<'a> {
    fn from(s: &'a str) -> Self {
        Self(Node::Str(Cow::Borrowed(s)))
    }
}
impl From<String> for N<'_> {
    fn from(s: String) -> Self {
        Self(Node::Str(Cow::Owned(s)))
    }
}
impl From<i64> for N<'_> {
    fn from(i: i64) -> Self {
        Self(if i >= 0 {
            Node::Pos(i.unsigned_abs())
        } else {
            Node::Neg(i)
        })
    }
}
impl From<f64> for N<'_> {
    fn from(f: f64) -> Self {
        Self(Node::Float(f))
    }
}
impl<'a> From<Node<'a>> for N<'a> {
    fn from(n: Node<'a>) -> Self {
        Self(n)
    }
}

/// An object being built: members in any order, sorted once at the end. Every key is written by
/// this module, once.
#[derive(Default)]
struct Members<'a>(Obj<'a>);

impl<'a> Members<'a> {
    fn insert(&mut self, key: &'static str, v: impl Into<N<'a>>) {
        self.0.push((Cow::Borrowed(key), v.into().0));
    }

    fn finish(mut self) -> Node<'a> {
        // Keys are unique (each written once by this module): an unstable sort is exact.
        self.0.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Node::Obj(self.0)
    }
}

fn get<'n, 'a>(o: &'n Obj<'a>, key: &str) -> Option<&'n Node<'a>> {
    o.binary_search_by(|(k, _)| k.as_ref().cmp(key))
        .ok()
        .map(|i| &o[i].1)
}

fn as_str<'n>(n: Option<&'n Node<'_>>) -> Option<&'n str> {
    match n {
        Some(Node::Str(s)) => Some(s),
        _ => None,
    }
}

/// Payload members that hold raw content: the intake adds them to the redaction list, so they are
/// replaced by `<name>_hash` before anything is stored, whatever `[redaction]` says. `prompt`
/// (input messages), `completion` (output messages), `args_raw` (tool arguments) and
/// `result_data` (tool results) are on the default list already; the others are this intake's.
pub const CONTENT_FIELDS: [&str; 9] = [
    "prompt",
    "completion",
    "system_instructions",
    "tool_definitions",
    "args_raw",
    "result_data",
    "content",
    "status_message",
    "attributes",
];

/// The event types this intake writes (docs/OTEL.md lists the same).
pub const EVENT_TYPES: [&str; 8] = [
    "llm_request",
    "tool_call",
    "agent_invocation",
    "agent_created",
    "mcp_request",
    "llm_message",
    "otel_span",
    "otel_log",
];

/// Inference operations (`gen_ai.operation.name`) written as `llm_request`.
const INFERENCE: [&str; 4] = ["chat", "text_completion", "generate_content", "embeddings"];

/// The agent an item is attributed to when neither it, its ancestors nor its resource name one.
pub const UNKNOWN_AGENT: &str = "unknown_service";

/// The session of a log record with no conversation, session or trace id.
pub const NO_SESSION: &str = "otel";

/// What the mapping does with items that are not GenAI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    /// Record spans and log records that are not GenAI as `otel_span` / `otel_log` (their
    /// attributes and bodies hashed) instead of skipping them.
    pub keep_other: bool,
}

/// Where an item is in its request: its resource, scope and item positions and its name.
/// Displayed as `resource_spans[0].scope_spans[1].spans[3] "chat gpt-4o"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locator<'a> {
    /// Spans or log records.
    pub signal: LocatorKind,
    /// The positions: resource, scope, item.
    pub at: [usize; 3],
    /// The span's name or the record's event name.
    pub name: &'a str,
}

/// What a [`Locator`] locates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocatorKind {
    /// A span of a trace export.
    Span,
    /// A log record of a logs export.
    LogRecord,
}

impl std::fmt::Display for Locator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [r, s, i] = self.at;
        let name = truncate(self.name);
        match self.signal {
            LocatorKind::Span => write!(
                f,
                "resource_spans[{r}].scope_spans[{s}].spans[{i}] {name:?}"
            ),
            LocatorKind::LogRecord => write!(
                f,
                "resource_logs[{r}].scope_logs[{s}].log_records[{i}] {name:?}"
            ),
        }
    }
}

/// One item of a request mapped to an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a> {
    /// The item's position in the request (0-based, across resources and scopes).
    pub index: usize,
    /// Where it is, for messages: `resource_spans[0].scope_spans[1].spans[3] "chat gpt-4o"`
    /// (written only when a message needs it).
    pub locator: Locator<'a>,
    /// The event, raw content still in it, borrowing from the request.
    pub event: Node<'a>,
}

/// An item the mapping refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// As [`Item::index`].
    pub index: usize,
    /// As [`Item::locator`].
    pub locator: String,
    /// Why, and how to fix it.
    pub reason: String,
}

/// A request mapped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapped<'a> {
    /// Events to append, in the request's order.
    pub items: Vec<Item<'a>>,
    /// Items refused (reported as a partial success).
    pub rejected: Vec<Rejected>,
    /// Items that are not GenAI and were skipped.
    pub skipped: usize,
    /// Items in the request.
    pub total: usize,
}

/// What the resource says about who sent an item.
struct ResourceCtx<'a> {
    service_name: Option<&'a str>,
    service_instance_id: Option<&'a str>,
}

impl<'a> ResourceCtx<'a> {
    /// # Errors
    /// The resource names an attribute twice (which `service.name` counts would depend on the
    /// reader): every item of the resource is refused.
    fn new(r: Option<&'a Resource>) -> Result<Self, String> {
        let attrs = Attrs(r.map_or(&[][..], |r| &r.attributes));
        attrs
            .check_unique()
            .map_err(|e| format!("its resource is refused: {e}"))?;
        Ok(Self {
            service_name: attrs.str("service.name"),
            service_instance_id: attrs.str("service.instance.id"),
        })
    }

    fn agent(&self) -> &'a str {
        self.service_name
            .or(self.service_instance_id)
            .unwrap_or(UNKNOWN_AGENT)
    }

    fn fill(&self, p: &mut Members<'a>) {
        if let Some(s) = self.service_name {
            p.insert("service_name", s);
        }
        if let Some(s) = self.service_instance_id {
            p.insert("service_instance_id", s);
        }
    }
}

fn scope_fill<'a>(scope: Option<&'a InstrumentationScope>, p: &mut Members<'a>) {
    if let Some(s) = scope {
        if !s.name.is_empty() {
            p.insert("scope_name", s.name.as_str());
        }
        if !s.version.is_empty() {
            p.insert("scope_version", s.version.as_str());
        }
    }
}

/// `ns` as the event's RFC 3339 timestamp.
fn timestamp(ns: u64, what: &str) -> Result<String, String> {
    if ns == 0 {
        return Err(format!("{what} is 0; the item must say when it happened"));
    }
    let ms = i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX);
    blackbox_core::entry::format_timestamp(ms).map_err(|e| format!("{what}: {e}"))
}

/// Milliseconds between two times in ns, to the microsecond.
#[allow(clippy::cast_precision_loss)]
fn millis(start: u64, end: u64) -> f64 {
    // Spans last at most a few days: far below 2^53 µs.
    let us = end.saturating_sub(start) / 1_000;
    us as f64 / 1_000.0
}

fn id_hex(bytes: &[u8], len: usize, what: &str, required: bool) -> Result<Option<String>, String> {
    if bytes.is_empty() && !required {
        return Ok(None);
    }
    if bytes.len() != len {
        return Err(format!(
            "{what} is {} bytes; it must be {len} bytes{}",
            bytes.len(),
            if required { "" } else { " or absent" }
        ));
    }
    if bytes.iter().all(|b| *b == 0) {
        if required {
            return Err(format!(
                "{what} is all zeroes, which OTLP defines as invalid"
            ));
        }
        return Ok(None);
    }
    Ok(Some(hex::encode(bytes)))
}

/// A content value, as it goes into the event: itself, whatever its size (the detector scans
/// all of it, the redaction hashes it; the event's size is checked once content is hashed).
fn content(v: Node<'_>) -> Node<'_> {
    v
}

/// One or several captured values of one kind of content: a single one as it is (so a string's
/// hash is SHA-256 of that string), several as an array in the order found.
fn gather(values: Vec<Node<'_>>) -> Option<Node<'_>> {
    match values.len() {
        0 => None,
        1 => values.into_iter().next().map(content),
        _ => Some(content(Node::Arr(values))),
    }
}

/// Input, output and system content captured on a span or a record.
#[derive(Default)]
struct Content<'a> {
    input: Vec<Node<'a>>,
    output: Vec<Node<'a>>,
    system: Vec<Node<'a>>,
    tool_definitions: Vec<Node<'a>>,
}

impl<'a> Content<'a> {
    /// The content attributes of the conventions, latest (`gen_ai.input.messages`, …) and
    /// older (`gen_ai.prompt`, `gen_ai.prompt.0.content`, … as OpenLLMetry writes them).
    fn add_attrs(&mut self, a: Attrs<'a>) -> Result<(), String> {
        for (key, into) in [
            ("gen_ai.input.messages", &mut self.input),
            ("gen_ai.output.messages", &mut self.output),
            ("gen_ai.system_instructions", &mut self.system),
            ("gen_ai.tool.definitions", &mut self.tool_definitions),
        ] {
            if let Some(v) = a.node(key)? {
                into.push(v);
            }
        }
        if let Some(v) = a.prefixed_node("gen_ai.prompt")? {
            self.input.push(v);
        }
        if let Some(v) = a.prefixed_node("gen_ai.completion")? {
            self.output.push(v);
        }
        Ok(())
    }

    /// A span event carrying content (the v1.36-era `gen_ai.*.message` / `gen_ai.choice`
    /// events, the older `gen_ai.content.*`, the latest `gen_ai.client.inference.operation.details`).
    fn add_event(&mut self, e: &'a SpanEvent) -> Result<(), String> {
        let a = Attrs(&e.attributes);
        a.check_unique()
            .map_err(|m| format!("span event `{}`: {m}", e.name))?;
        match e.name.as_str() {
            "gen_ai.client.inference.operation.details"
            | "gen_ai.content.prompt"
            | "gen_ai.content.completion" => self.add_attrs(a),
            "gen_ai.choice" => {
                self.output.push(kv_to_node(&e.attributes)?);
                Ok(())
            }
            n if n.starts_with("gen_ai.") && n.ends_with(".message") => {
                if n == "gen_ai.system.message" {
                    self.system.push(kv_to_node(&e.attributes)?);
                } else {
                    self.input.push(kv_to_node(&e.attributes)?);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn fill(self, p: &mut Members<'a>) {
        for (name, values) in [
            ("prompt", self.input),
            ("completion", self.output),
            ("system_instructions", self.system),
            ("tool_definitions", self.tool_definitions),
        ] {
            if let Some(v) = gather(values) {
                p.insert(name, v);
            }
        }
    }
}

/// Tool calls an output announces: the latest conventions' message parts
/// (`{"type":"tool_call","id","name","arguments"}`), or OpenAI-style `tool_calls`
/// (`{"id","function":{"name","arguments"}}`) in a message or a `gen_ai.choice` body. Their
/// arguments go under `args_raw` (hashed).
fn tool_calls_in<'a>(v: &Node<'a>, out: &mut Vec<Node<'a>>, depth: usize) {
    if depth > 8 || out.len() >= 128 {
        return;
    }
    match v {
        // Output messages as the latest conventions put them on a span: JSON text, read with the
        // normaliser's reader (borrowing from it) only when it may announce a call.
        Node::Str(Cow::Borrowed(s))
            if depth == 0
                && s.trim_start().starts_with(['[', '{'])
                && (s.contains("tool_call") || s.contains("\"function\"")) =>
        {
            if let Ok(parsed) = blackbox_core::json::read(s.as_bytes()) {
                tool_calls_in(&parsed, out, depth + 1);
            }
        }
        Node::Arr(items) => {
            for i in items {
                tool_calls_in(i, out, depth + 1);
            }
        }
        Node::Obj(m) => {
            if as_str(get(m, "type")) == Some("tool_call")
                && let Some(name) = as_str(get(m, "name"))
            {
                out.push(tool_call_ref(name, get(m, "id"), get(m, "arguments")));
                return;
            }
            if let Some(Node::Obj(f)) = get(m, "function")
                && let Some(name) = as_str(get(f, "name"))
            {
                out.push(tool_call_ref(name, get(m, "id"), get(f, "arguments")));
                return;
            }
            for key in ["message", "parts", "tool_calls", "messages"] {
                if let Some(inner) = get(m, key) {
                    tool_calls_in(inner, out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn tool_call_ref<'a>(name: &str, id: Option<&Node<'a>>, args: Option<&Node<'a>>) -> Node<'a> {
    let mut c = Members::default();
    c.insert("name", name.to_owned());
    if let Some(id) = as_str(id) {
        c.insert("id", id.to_owned());
    }
    if let Some(a) = args {
        c.insert("args_raw", content(a.clone()));
    }
    c.finish()
}

/// The span's kind, as the OTLP enum names it.
fn span_kind(k: i32) -> Option<&'static str> {
    match k {
        1 => Some("internal"),
        2 => Some("server"),
        3 => Some("client"),
        4 => Some("producer"),
        5 => Some("consumer"),
        _ => None,
    }
}

/// Who a span's GenAI attributes name, inherited along its parents within one request.
#[derive(Default, Clone, Copy)]
struct Lineage<'a> {
    agent: Option<&'a str>,
    session: Option<&'a str>,
}

fn own_lineage(a: Attrs<'_>) -> Lineage<'_> {
    Lineage {
        agent: a
            .str("gen_ai.agent.id")
            .or_else(|| a.str("gen_ai.agent.name")),
        session: a
            .str("gen_ai.conversation.id")
            .or_else(|| a.str("session.id")),
    }
}

/// A span's (trace id, span id).
type SpanKey<'r> = (&'r [u8], &'r [u8]);

/// Spans of one request by (trace id, span id): their parent and their own lineage.
struct Family<'r> {
    spans: HashMap<SpanKey<'r>, (&'r [u8], Lineage<'r>)>,
}

impl<'r> Family<'r> {
    fn new(req: &'r ExportTraceServiceRequest) -> Self {
        let n = req
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum();
        let mut spans = HashMap::with_capacity(n);
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let l = own_lineage(Attrs(&s.attributes));
                    spans.insert(
                        (s.trace_id.as_slice(), s.span_id.as_slice()),
                        (s.parent_span_id.as_slice(), l),
                    );
                }
            }
        }
        Self { spans }
    }

    /// The span's own agent and session, else its nearest ancestor's in this request.
    /// `span`'s own agent and session, else its nearest ancestor's in this request. The
    /// span's own come from its attributes (not from the map, which holds one span per id when
    /// a request repeats an id).
    fn lineage(&self, span: &'r Span) -> Lineage<'r> {
        let mut out = own_lineage(Attrs(&span.attributes));
        let trace = span.trace_id.as_slice();
        let mut at = span.parent_span_id.as_slice();
        for _ in 0..64 {
            if (out.agent.is_some() && out.session.is_some()) || at.is_empty() {
                break;
            }
            let Some((parent, l)) = self.spans.get(&(trace, at)) else {
                break;
            };
            if out.agent.is_none() {
                out.agent = l.agent;
            }
            if out.session.is_none() {
                out.session = l.session;
            }
            at = parent;
        }
        out
    }
}

/// What a span is.
enum SpanClass<'a> {
    Inference(&'a str),
    Tool,
    Agent(&'static str),
    Mcp(&'a str),
    OtherGenAi(&'a str),
    Other,
}

fn classify<'a>(a: Attrs<'a>) -> SpanClass<'a> {
    let op = a.str("gen_ai.operation.name");
    let mcp = a.str("mcp.method.name");
    match (op, mcp) {
        (Some(o), _) if INFERENCE.contains(&o) => SpanClass::Inference(o),
        (Some("execute_tool"), _) | (_, Some("tools/call")) => SpanClass::Tool,
        (Some("invoke_agent"), _) => SpanClass::Agent("agent_invocation"),
        (Some("create_agent"), _) => SpanClass::Agent("agent_created"),
        (_, Some(m)) => SpanClass::Mcp(m),
        (Some(o), None) => SpanClass::OtherGenAi(o),
        (None, None) => {
            // Instrumentations of the older conventions (OpenLLMetry) name the system and the
            // request type but no operation.
            if let Some(t) = a.str("llm.request.type") {
                SpanClass::Inference(t)
            } else if a.str("gen_ai.system").is_some() || a.str("gen_ai.provider.name").is_some() {
                SpanClass::Inference("chat")
            } else {
                SpanClass::Other
            }
        }
    }
}

fn put<'a>(p: &mut Members<'a>, key: &'static str, v: Option<&'a str>) {
    if let Some(v) = v {
        p.insert(key, v);
    }
}

fn put_count(
    p: &mut Members<'_>,
    a: Attrs<'_>,
    key: &'static str,
    attrs: &[&str],
) -> Result<(), String> {
    for k in attrs {
        if let Some(n) = a.count(k)? {
            p.insert(key, n);
            return Ok(());
        }
    }
    Ok(())
}

/// The error a span reports: its status ERROR and `error.type` (or an `exception` event's
/// `exception.type`); the status message may quote content and is hashed.
fn error_fill<'a>(span: &'a Span, p: &mut Members<'a>) {
    let a = Attrs(&span.attributes);
    let status_error = span.status.as_ref().is_some_and(|s| s.code == 2);
    let exception = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .and_then(|e| Attrs(&e.attributes).str("exception.type"));
    let error_type = a.str("error.type").or(exception);
    if status_error || error_type.is_some() {
        p.insert("status", "error");
        let mut e = Members::default();
        e.insert("type", error_type.unwrap_or("_OTHER"));
        p.insert("error", e.finish());
    }
    if let Some(s) = &span.status
        && !s.message.is_empty()
    {
        p.insert(
            "status_message",
            content(Node::Str(Cow::Borrowed(s.message.as_str()))),
        );
    }
}

fn map_span<'a>(
    res: &ResourceCtx<'a>,
    scope: Option<&'a InstrumentationScope>,
    span: &'a Span,
    family: &Family<'a>,
    opts: MapOptions,
) -> Result<Option<Node<'a>>, String> {
    let a = Attrs(&span.attributes);
    a.check_unique()?;
    let class = classify(a);
    if matches!(class, SpanClass::Other) && !opts.keep_other {
        return Ok(None);
    }
    let trace_id = id_hex(&span.trace_id, 16, "trace_id", true)?.unwrap_or_default();
    let span_id = id_hex(&span.span_id, 8, "span_id", true)?.unwrap_or_default();
    let parent = id_hex(&span.parent_span_id, 8, "parent_span_id", false)?;
    let ts = timestamp(span.start_time_unix_nano, "start_time_unix_nano")?;
    if span.end_time_unix_nano != 0 && span.end_time_unix_nano < span.start_time_unix_nano {
        return Err("end_time_unix_nano is before start_time_unix_nano".into());
    }
    let duration = (span.end_time_unix_nano != 0)
        .then(|| millis(span.start_time_unix_nano, span.end_time_unix_nano));
    let lineage = family.lineage(span);
    let agent = lineage.agent.unwrap_or_else(|| res.agent());
    let session: N<'a> = match lineage.session {
        Some(s) => s.into(),
        None => trace_id.clone().into(),
    };

    // A span's payload has 15–30 members: no regrowth.
    let mut p = Members(Obj::with_capacity(32));
    p.insert("trace_id", trace_id);
    p.insert("span_id", span_id);
    if let Some(parent) = parent {
        p.insert("parent_span_id", parent);
    }
    p.insert("span_name", span.name.as_str());
    put(&mut p, "span_kind", span_kind(span.kind));
    res.fill(&mut p);
    scope_fill(scope, &mut p);
    error_fill(span, &mut p);
    put(&mut p, "agent_name", a.str("gen_ai.agent.name"));
    put(
        &mut p,
        "provider",
        a.str("gen_ai.provider.name")
            .or_else(|| a.str("gen_ai.system")),
    );
    put(&mut p, "server_address", a.str("server.address"));

    let mut c = Content::default();
    c.add_attrs(a)?;
    for e in &span.events {
        c.add_event(e)?;
    }

    let event_type = match class {
        SpanClass::Inference(op) => {
            p.insert("operation", op);
            let request = a.str("gen_ai.request.model");
            let response = a.str("gen_ai.response.model");
            p.insert("model", response.or(request).unwrap_or("unknown"));
            if let (Some(r), Some(s)) = (request, response)
                && r != s
            {
                p.insert("request_model", r);
            }
            put_count(
                &mut p,
                a,
                "token_count_in",
                &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"],
            )?;
            put_count(
                &mut p,
                a,
                "token_count_out",
                &[
                    "gen_ai.usage.output_tokens",
                    "gen_ai.usage.completion_tokens",
                ],
            )?;
            if let Some(d) = duration {
                p.insert("latency_ms", d);
            }
            if let Some(f) = a.node("gen_ai.response.finish_reasons")? {
                p.insert("finish_reasons", f);
            }
            put(&mut p, "response_id", a.str("gen_ai.response.id"));
            let mut calls = Vec::new();
            for v in &c.output {
                tool_calls_in(v, &mut calls, 0);
            }
            if !calls.is_empty() {
                p.insert("tool_calls", Node::Arr(calls));
            }
            "llm_request"
        }
        SpanClass::Tool => {
            let name = a
                .str("gen_ai.tool.name")
                .filter(|n| !n.trim().is_empty())
                .or_else(|| span.name.strip_prefix("execute_tool "))
                .or_else(|| span.name.strip_prefix("tools/call "))
                .filter(|n| !n.trim().is_empty())
                .ok_or(
                    "a tool span has no `gen_ai.tool.name` (nor a span name `execute_tool <tool>`); \
                     set the attribute",
                )?;
            p.insert("tool_name", name);
            put(&mut p, "invocation_id", a.str("gen_ai.tool.call.id"));
            put(&mut p, "tool_type", a.str("gen_ai.tool.type"));
            if let Some(v) = a.node("gen_ai.tool.call.arguments")? {
                p.insert("args_raw", content(v));
            }
            if let Some(v) = a.node("gen_ai.tool.call.result")? {
                p.insert("result_data", content(v));
            }
            if let Some(d) = duration {
                p.insert("duration_ms", d);
            }
            mcp_fill(a, &mut p);
            "tool_call"
        }
        SpanClass::Agent(t) => {
            put(&mut p, "operation", a.str("gen_ai.operation.name"));
            put(&mut p, "agent_id", a.str("gen_ai.agent.id"));
            put(&mut p, "model", a.str("gen_ai.request.model"));
            put_count(&mut p, a, "token_count_in", &["gen_ai.usage.input_tokens"])?;
            put_count(
                &mut p,
                a,
                "token_count_out",
                &["gen_ai.usage.output_tokens"],
            )?;
            if let Some(d) = duration {
                p.insert("duration_ms", d);
            }
            t
        }
        SpanClass::Mcp(method) => {
            put(&mut p, "tool_name", a.str("gen_ai.tool.name"));
            if let Some(d) = duration {
                p.insert("duration_ms", d);
            }
            mcp_fill(a, &mut p);
            p.insert("method", method);
            "mcp_request"
        }
        SpanClass::OtherGenAi(op) => {
            // An operation the conventions added after this mapping (retrieval, …): recorded,
            // with its operation, as a GenAI span not otherwise interpreted.
            p.insert("operation", op);
            if let Some(d) = duration {
                p.insert("duration_ms", d);
            }
            p.insert("attributes", content(kv_to_node(&span.attributes)?));
            "otel_span"
        }
        SpanClass::Other => {
            if let Some(d) = duration {
                p.insert("duration_ms", d);
            }
            if !span.attributes.is_empty() {
                p.insert("attributes", content(kv_to_node(&span.attributes)?));
            }
            "otel_span"
        }
    };
    c.fill(&mut p);
    let mut ev = Members(Obj::with_capacity(5));
    ev.insert("agent_id", agent);
    ev.insert("session_id", session);
    ev.insert("event_type", event_type);
    ev.insert("timestamp", ts);
    ev.insert("payload", p.finish());
    Ok(Some(ev.finish()))
}

fn mcp_fill<'a>(a: Attrs<'a>, p: &mut Members<'a>) {
    let Some(method) = a.str("mcp.method.name") else {
        return;
    };
    let mut m = Members::default();
    m.insert("method", method);
    for (key, name) in [
        ("mcp.session.id", "session_id"),
        ("mcp.protocol.version", "protocol_version"),
        ("jsonrpc.request.id", "request_id"),
        ("mcp.resource.uri", "resource_uri"),
    ] {
        if let Some(v) = a.str(key) {
            m.insert(name, v);
        }
    }
    p.insert("mcp", m.finish());
}

/// Maps the spans of an OTLP trace export.
#[must_use]
pub fn map_traces(req: &ExportTraceServiceRequest, opts: MapOptions) -> Mapped<'_> {
    let family = Family::new(req);
    let mut out = Mapped::default();
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        let res = ResourceCtx::new(rs.resource.as_ref());
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            for (pi, span) in ss.spans.iter().enumerate() {
                let index = out.total;
                out.total += 1;
                let locator = Locator {
                    signal: LocatorKind::Span,
                    at: [ri, si, pi],
                    name: &span.name,
                };
                let mapped = res
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|res| map_span(res, ss.scope.as_ref(), span, &family, opts));
                match mapped {
                    Ok(Some(event)) => out.items.push(Item {
                        index,
                        locator,
                        event,
                    }),
                    Ok(None) => out.skipped += 1,
                    Err(reason) => out.rejected.push(Rejected {
                        index,
                        locator: locator.to_string(),
                        reason,
                    }),
                }
            }
        }
    }
    out
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The event name of a log record: the field (OTLP 1.5+), else the `event.name` attribute.
fn event_name(r: &LogRecord) -> Option<&str> {
    if r.event_name.is_empty() {
        Attrs(&r.attributes).str("event.name")
    } else {
        Some(&r.event_name)
    }
}

fn map_record<'a>(
    res: &ResourceCtx<'a>,
    scope: Option<&'a InstrumentationScope>,
    r: &'a LogRecord,
    opts: MapOptions,
) -> Result<Option<Node<'a>>, String> {
    let a = Attrs(&r.attributes);
    a.check_unique()?;
    let name = event_name(r);
    let genai = name.is_some_and(|n| n.starts_with("gen_ai."));
    if !genai && !opts.keep_other {
        return Ok(None);
    }
    let trace_id = id_hex(&r.trace_id, 16, "trace_id", false)?;
    let span_id = id_hex(&r.span_id, 8, "span_id", false)?;
    let ts = if r.time_unix_nano != 0 {
        timestamp(r.time_unix_nano, "time_unix_nano")?
    } else {
        timestamp(
            r.observed_time_unix_nano,
            "time_unix_nano and observed_time_unix_nano",
        )?
    };
    let own = own_lineage(a);
    let agent = own.agent.unwrap_or_else(|| res.agent());
    let session: N<'a> = match (own.session, &trace_id) {
        (Some(s), _) => s.into(),
        (None, Some(t)) => t.clone().into(),
        (None, None) => NO_SESSION.into(),
    };
    // An empty body (an `AnyValue` with no value set, as SDKs send for an event without one) is
    // no body: nothing to hash.
    let body = r
        .body
        .as_ref()
        .filter(|b| b.value.is_some())
        .map(to_node)
        .transpose()?;

    let mut p = Members(Obj::with_capacity(16));
    if let Some(t) = trace_id {
        p.insert("trace_id", t);
    }
    if let Some(s) = span_id {
        p.insert("span_id", s);
    }
    put(&mut p, "event_name", name);
    res.fill(&mut p);
    scope_fill(scope, &mut p);
    let event_type = if genai {
        put(
            &mut p,
            "provider",
            a.str("gen_ai.provider.name")
                .or_else(|| a.str("gen_ai.system")),
        );
        put(&mut p, "agent_name", a.str("gen_ai.agent.name"));
        let role = match name {
            Some("gen_ai.system.message") => Some("system"),
            Some("gen_ai.user.message") => Some("user"),
            Some("gen_ai.assistant.message" | "gen_ai.choice") => Some("assistant"),
            Some("gen_ai.tool.message") => Some("tool"),
            _ => None,
        };
        let body_obj = match &body {
            Some(Node::Obj(o)) => Some(o),
            _ => None,
        };
        let field = |k: &str| body_obj.and_then(|o| as_str(get(o, k))).map(str::to_owned);
        match field("role") {
            Some(r) => p.insert("role", r),
            None => put(&mut p, "role", role),
        }
        if let Some(f) = field("finish_reason") {
            p.insert("finish_reason", f);
        }
        if let Some(id) = field("id") {
            // A tool message answers the call with this id.
            p.insert("tool_call_id", id);
        }
        if let Some(b) = &body {
            let mut calls = Vec::new();
            tool_calls_in(b, &mut calls, 1);
            if !calls.is_empty() {
                p.insert("tool_calls", Node::Arr(calls));
            }
        }
        let mut c = Content::default();
        c.add_attrs(a)?;
        c.fill(&mut p);
        "llm_message"
    } else {
        p.insert("severity_number", i64::from(r.severity_number));
        if !r.severity_text.is_empty() {
            p.insert("severity_text", r.severity_text.as_str());
        }
        if !r.attributes.is_empty() {
            p.insert("attributes", content(kv_to_node(&r.attributes)?));
        }
        "otel_log"
    };
    if let Some(b) = body {
        p.insert("content", content(b));
    }
    let mut ev = Members(Obj::with_capacity(5));
    ev.insert("agent_id", agent);
    ev.insert("session_id", session);
    ev.insert("event_type", event_type);
    ev.insert("timestamp", ts);
    ev.insert("payload", p.finish());
    Ok(Some(ev.finish()))
}

/// Maps the log records of an OTLP logs export.
#[must_use]
pub fn map_logs(req: &ExportLogsServiceRequest, opts: MapOptions) -> Mapped<'_> {
    let mut out = Mapped::default();
    for (ri, rl) in req.resource_logs.iter().enumerate() {
        let res = ResourceCtx::new(rl.resource.as_ref());
        for (si, sl) in rl.scope_logs.iter().enumerate() {
            for (pi, r) in sl.log_records.iter().enumerate() {
                let index = out.total;
                out.total += 1;
                let locator = Locator {
                    signal: LocatorKind::LogRecord,
                    at: [ri, si, pi],
                    name: event_name(r).unwrap_or(""),
                };
                let mapped = res
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|res| map_record(res, sl.scope.as_ref(), r, opts));
                match mapped {
                    Ok(Some(event)) => out.items.push(Item {
                        index,
                        locator,
                        event,
                    }),
                    Ok(None) => out.skipped += 1,
                    Err(reason) => out.rejected.push(Rejected {
                        index,
                        locator: locator.to_string(),
                        reason,
                    }),
                }
            }
        }
    }
    out
}

/// A summary of refusals for a partial-success answer: the count, then the first few items with
/// their reasons.
#[must_use]
pub fn summarise(rejected: &[Rejected], total: usize, what: &str) -> String {
    let mut s = format!("{} of {total} {what} were refused", rejected.len());
    for (i, r) in rejected.iter().take(5).enumerate() {
        s.push_str(if i == 0 { ": " } else { "; " });
        s.push_str(&r.locator);
        s.push_str(": ");
        s.push_str(&r.reason);
    }
    if rejected.len() > 5 {
        s.push_str(&format!("; and {} more", rejected.len() - 5));
    }
    s
}

/// An attribute key-value, for tests and for the guardrail spans.
#[must_use]
pub fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}
