//! Guardrail spans out: an enforcement decision of the service (a tool call blocked, an agent
//! paused or throttled) as an OpenTelemetry span following the GenAI security conventions
//! (`apply_guardrail`, `gen_ai.security.*`, experimental), so the user's tracing backend shows it
//! next to the agent's own trace (docs/OTEL.md "Guardrail spans").

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// A W3C trace context (`traceparent`): the agent's span the decision belongs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// The parent span's id.
    pub span_id: [u8; 8],
}

impl TraceParent {
    /// Reads a `traceparent` header value (`00-<32 hex>-<16 hex>-<2 hex>`); `None` when it is
    /// not one (W3C Trace Context §3.2: an invalid header is ignored).
    #[must_use]
    pub fn parse(h: &str) -> Option<Self> {
        let mut parts = h.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || flags.len() != 2 {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        if trace.bytes().any(|b| b.is_ascii_uppercase())
            || span.bytes().any(|b| b.is_ascii_uppercase())
            || trace_id == [0; 16]
            || span_id == [0; 8]
        {
            return None;
        }
        Some(Self { trace_id, span_id })
    }
}

/// One enforcement decision.
#[derive(Debug, Clone)]
pub struct Guardrail<'a> {
    /// What the service did: `block`, `pause` (the agent is paused) or `throttle`.
    pub action: &'a str,
    /// Tenant.
    pub tenant: &'a str,
    /// Agent.
    pub agent: &'a str,
    /// Session.
    pub session: &'a str,
    /// The tool call decided on.
    pub tool: &'a str,
    /// The call's invocation id, if the agent gave one.
    pub invocation_id: Option<&'a str>,
    /// The entry that records the decision.
    pub entry_id: &'a str,
    /// The rules that decided it: name and severity.
    pub rules: &'a [(String, String)],
    /// The decision's reason, as the agent was told.
    pub reason: &'a str,
    /// Digest of the call's arguments (`sha256:…`), as the entry records it.
    pub args_hash: Option<&'a str>,
    /// When, Unix ns.
    pub time_ns: u64,
    /// The agent's span, from the decide request's `traceparent`.
    pub parent: Option<TraceParent>,
    /// Fresh random ids: the trace id (used only without a parent) and the span id.
    pub new_ids: ([u8; 16], [u8; 8]),
}

fn s(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
        ..Default::default()
    }
}

fn arr(key: &str, v: &[&str]) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(
                opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: v
                        .iter()
                        .map(|x| AnyValue {
                            value: Some(any_value::Value::StringValue((*x).to_owned())),
                        })
                        .collect(),
                },
            )),
        }),
        ..Default::default()
    }
}

/// The decision as one `apply_guardrail` span in an OTLP trace export.
#[must_use]
pub fn export_request(g: &Guardrail<'_>, service_version: &str) -> ExportTraceServiceRequest {
    let (trace_id, parent) = match g.parent {
        Some(p) => (p.trace_id.to_vec(), p.span_id.to_vec()),
        None => (g.new_ids.0.to_vec(), Vec::new()),
    };
    let code = match g.action {
        "pause" => "agent_paused",
        "throttle" => "agent_throttled",
        _ => "blocked",
    };
    let names: Vec<&str> = g.rules.iter().map(|(n, _)| n.as_str()).collect();
    let mut attributes = vec![
        s("gen_ai.operation.name", "apply_guardrail"),
        s("gen_ai.guardian.name", "blackbox"),
        s("gen_ai.guardian.provider.name", "blackbox"),
        s("gen_ai.guardian.version", service_version),
        s("gen_ai.security.target.type", "tool_call"),
        s("gen_ai.security.decision.type", "deny"),
        s("gen_ai.security.decision.code", code),
        s("gen_ai.security.decision.reason", g.reason),
        s("gen_ai.agent.id", g.agent),
        s("gen_ai.conversation.id", g.session),
        s("gen_ai.tool.name", g.tool),
        s("blackbox.tenant_id", g.tenant),
        s("blackbox.entry_id", g.entry_id),
    ];
    if !names.is_empty() {
        attributes.push(arr("gen_ai.security.policy.id", &names));
    }
    if let Some(id) = g.invocation_id {
        attributes.push(s("gen_ai.security.target.id", id));
        attributes.push(s("gen_ai.tool.call.id", id));
    }
    if let Some(h) = g.args_hash {
        attributes.push(s("gen_ai.security.content.input.hash", h));
    }
    let events = g
        .rules
        .iter()
        .map(|(name, severity)| Event {
            time_unix_nano: g.time_ns,
            name: "gen_ai.security.finding".into(),
            attributes: vec![
                s("gen_ai.security.risk.category", name),
                s("gen_ai.security.risk.severity", severity),
                s("gen_ai.security.policy.id", name),
            ],
            dropped_attributes_count: 0,
        })
        .collect();
    let span = Span {
        trace_id,
        span_id: g.new_ids.1.to_vec(),
        parent_span_id: parent,
        name: format!("apply_guardrail blackbox {}", g.tool),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: g.time_ns,
        end_time_unix_nano: g.time_ns,
        attributes,
        events,
        status: Some(Status {
            message: g.reason.to_owned(),
            code: StatusCode::Unset as i32,
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", "blackbox"),
                    s("service.version", service_version),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "blackbox.guardrail".into(),
                    version: service_version.into(),
                    ..Default::default()
                }),
                spans: vec![span],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn traceparent() {
        let p =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(hex::encode(p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(p.span_id), "00f067aa0ba902b7");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_block_is_a_child_of_the_agents_span() {
        let rules = [("prompt_injection".to_owned(), "critical".to_owned())];
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let g = Guardrail {
            action: "block",
            tenant: "acme",
            agent: "a1",
            session: "s1",
            tool: "shell",
            invocation_id: Some("call_1"),
            entry_id: "019d8d26-717b-7111-9111-111111111111",
            rules: &rules,
            reason: "blocked by rule prompt_injection",
            args_hash: Some("sha256:00"),
            time_ns: 1_700_000_000_000_000_000,
            parent,
            new_ids: ([7; 16], [9; 8]),
        };
        let req = export_request(&g, "0.1.0");
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id, parent.unwrap().trace_id.to_vec());
        assert_eq!(span.parent_span_id, parent.unwrap().span_id.to_vec());
        assert_eq!(span.span_id, vec![9; 8]);
        let a = crate::value::Attrs(&span.attributes);
        assert_eq!(a.str("gen_ai.operation.name"), Some("apply_guardrail"));
        assert_eq!(a.str("gen_ai.security.decision.type"), Some("deny"));
        assert_eq!(a.str("gen_ai.security.target.id"), Some("call_1"));
        assert_eq!(span.events[0].name, "gen_ai.security.finding");
        let g2 = Guardrail { parent: None, ..g };
        let req = export_request(&g2, "0.1.0");
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id, vec![7; 16]);
        assert!(span.parent_span_id.is_empty());
    }
}
