#!/usr/bin/env python3
"""Emits GenAI spans and events, built as the OpenTelemetry GenAI semantic conventions say,
with the OpenTelemetry Python SDK and its OTLP exporters (HTTP/protobuf or gRPC).

One agent turn, in one trace:

    POST /chat                           (a plain HTTP server span: not GenAI)
    ├── create_agent WeatherAgent        (gen_ai.agent.id / gen_ai.agent.name)
    └── invoke_agent WeatherAgent        (gen_ai.agent.id / gen_ai.agent.name)
        ├── chat gpt-4o                  (inference: asks for the get_weather tool)
        │     + log events gen_ai.system.message, gen_ai.user.message, gen_ai.choice
        │       (the v1.36-era content events, the body carrying the content)
        ├── execute_tool get_weather     (arguments and result)
        ├── chat gpt-4o                  (inference: the final answer)
        ├── chat gpt-4o                  (fails: status ERROR, error.type)
        └── GET                          (a plain HTTP client span: not GenAI)
              + an application log record (not a GenAI event)

Every piece of content (messages, system instructions, tool arguments and results, event
bodies) carries the marker given with --marker, and so do the plain HTTP span's URL and the
application log: the receiving side must hash content or drop it, and never store it.

The token is given to the exporters through OTEL_EXPORTER_OTLP_HEADERS, as a user would.
Prints a JSON summary of what was exported (ids in hex) on stdout; exits 1 if any export
failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from opentelemetry import trace
from opentelemetry._logs import LogRecord
from opentelemetry.trace import SpanKind, Status, StatusCode

import peer

SERVICE = "weather-agent-svc"
AGENT_ID = "asst_weather_01"
AGENT_NAME = "WeatherAgent"
CONVERSATION = "conv_5j66UpCpwteGg4YSxUnt7lPY"
TOOL_CALL_ID = "call_VSPygqKTWdrhaFErNvMV18Yl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transport", choices=["http", "grpc"], required=True)
    ap.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:4318")
    ap.add_argument("--token", required=True)
    ap.add_argument("--marker", required=True)
    ap.add_argument("--processor", choices=["batch", "simple"], default="batch")
    ap.add_argument("--compression", choices=["none", "gzip"], default="none")
    a = ap.parse_args()
    m = a.marker

    peer.configure_environment(a.transport, a.endpoint, a.token, a.compression)
    p = peer.Pipeline(
        a.transport,
        a.processor,
        {"service.name": SERVICE, "service.instance.id": "instance-1", "deployment.environment.name": "test"},
    )
    tracer = p.tracer_provider.get_tracer("blackbox.tests.otel.emit_genai", "1.0.0")
    logger = p.logger_provider.get_logger("blackbox.tests.otel.emit_genai", "1.0.0")

    roles: dict[str, str] = {}

    def remember(role: str, span: trace.Span) -> None:
        roles[peer.hex_span_id(span.get_span_context().span_id)] = role

    system_instructions = [{"type": "text", "content": f"You are a weather assistant ({m}-system)."}]
    user_question = f"What is the weather in Paris? ({m}-user)"
    tool_args = {"location": f"Paris ({m}-args)", "unit": "celsius"}
    tool_result = {"temperature": 21, "condition": f"sunny ({m}-result)"}
    final_answer = f"It is 21 degrees and sunny in Paris. ({m}-answer)"

    # The request that runs the agent: a plain HTTP server span (not GenAI, skipped), so the
    # agent spans' parent is a span that is no entry.
    root = tracer.start_span(
        "POST /chat",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "http.route": "/chat", "url.path": f"/chat/{m}-route"},
    )
    remember("http_server", root)
    root_ctx = trace.set_span_in_context(root)

    with tracer.start_as_current_span(
        f"create_agent {AGENT_NAME}",
        context=root_ctx,
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "create_agent",
            "gen_ai.provider.name": "openai",
            "gen_ai.system": "openai",
            "gen_ai.agent.id": AGENT_ID,
            "gen_ai.agent.name": AGENT_NAME,
            "gen_ai.agent.description": "Answers questions about the weather",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.system_instructions": json.dumps(system_instructions),
        },
    ) as created:
        remember("create_agent", created)

    with tracer.start_as_current_span(
        f"invoke_agent {AGENT_NAME}",
        context=root_ctx,
        kind=SpanKind.INTERNAL,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": "openai",
            "gen_ai.system": "openai",
            "gen_ai.agent.id": AGENT_ID,
            "gen_ai.agent.name": AGENT_NAME,
            "gen_ai.agent.description": "Answers questions about the weather",
            "gen_ai.conversation.id": CONVERSATION,
            "gen_ai.request.model": "gpt-4o",
        },
    ) as agent:
        remember("agent", agent)

        # 1. Inference that asks for a tool (attributes as the latest conventions name them,
        # and the v1.36-era gen_ai.system beside gen_ai.provider.name).
        with tracer.start_as_current_span(
            "chat gpt-4o",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 256,
                "gen_ai.request.top_p": 1.0,
                "gen_ai.conversation.id": CONVERSATION,
                "server.address": "api.openai.com",
                "server.port": 443,
                "gen_ai.system_instructions": json.dumps(system_instructions),
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": user_question}]}]
                ),
            },
        ) as chat:
            remember("chat_tool_call", chat)
            ctx = trace.set_span_in_context(chat)
            # The v1.36-era content events, as opentelemetry-instrumentation-openai-v2 emits
            # them on its default path: the content is in the body.
            logger.emit(
                LogRecord(
                    event_name="gen_ai.system.message",
                    context=ctx,
                    attributes={"gen_ai.system": "openai"},
                    body={"content": system_instructions[0]["content"]},
                )
            )
            logger.emit(
                LogRecord(
                    event_name="gen_ai.user.message",
                    context=ctx,
                    attributes={"gen_ai.system": "openai"},
                    body={"content": user_question},
                )
            )
            time.sleep(0.02)
            chat.set_attributes(
                {
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.response.id": "chatcmpl-AAA111",
                    "gen_ai.response.finish_reasons": ["tool_calls"],
                    "gen_ai.usage.input_tokens": 97,
                    "gen_ai.usage.output_tokens": 52,
                    "gen_ai.output.messages": json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [
                                    {
                                        "type": "tool_call",
                                        "id": TOOL_CALL_ID,
                                        "name": "get_weather",
                                        "arguments": tool_args,
                                    }
                                ],
                                "finish_reason": "tool_call",
                            }
                        ]
                    ),
                }
            )
            logger.emit(
                LogRecord(
                    event_name="gen_ai.choice",
                    context=ctx,
                    attributes={"gen_ai.system": "openai"},
                    body={
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "tool_calls": [
                                {
                                    "id": TOOL_CALL_ID,
                                    "type": "function",
                                    "function": {"name": "get_weather", "arguments": json.dumps(tool_args)},
                                }
                            ],
                        },
                    },
                )
            )

        # 2. The tool.
        with tracer.start_as_current_span(
            "execute_tool get_weather",
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.call.id": TOOL_CALL_ID,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.description": "Current weather for a location",
                "gen_ai.tool.call.arguments": json.dumps(tool_args),
            },
        ) as tool:
            remember("tool", tool)
            time.sleep(0.01)
            tool.set_attribute("gen_ai.tool.call.result", json.dumps(tool_result))

        # 3. The final answer.
        with tracer.start_as_current_span(
            "chat gpt-4o",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.conversation.id": CONVERSATION,
                "gen_ai.input.messages": json.dumps(
                    [
                        {"role": "user", "parts": [{"type": "text", "content": user_question}]},
                        {
                            "role": "tool",
                            "parts": [{"type": "tool_call_response", "id": TOOL_CALL_ID, "response": tool_result}],
                        },
                    ]
                ),
            },
        ) as chat2:
            remember("chat_answer", chat2)
            chat2.set_attributes(
                {
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.response.id": "chatcmpl-BBB222",
                    "gen_ai.response.finish_reasons": ["stop"],
                    "gen_ai.usage.input_tokens": 140,
                    "gen_ai.usage.output_tokens": 21,
                    "gen_ai.output.messages": json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [{"type": "text", "content": final_answer}],
                                "finish_reason": "stop",
                            }
                        ]
                    ),
                }
            )

        # 4. An inference that fails (as the conventions record errors: status and error.type).
        with tracer.start_as_current_span(
            "chat gpt-4o",
            kind=SpanKind.CLIENT,
            record_exception=False,
            set_status_on_exception=False,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.conversation.id": CONVERSATION,
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": f"And tomorrow? ({m}-err)"}]}]
                ),
            },
        ) as err:
            remember("chat_error", err)
            err.set_attribute("error.type", "openai.RateLimitError")
            err.set_status(Status(StatusCode.ERROR, "Rate limit reached for gpt-4o"))

        # 5. Not GenAI: an HTTP client span and an application log; both must be skipped.
        with tracer.start_as_current_span(
            "GET",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": "GET",
                "url.full": f"https://weather.example/api?q={m}-http",
                "server.address": "weather.example",
                "http.response.status_code": 200,
            },
        ) as http:
            remember("http", http)
            logger.emit(
                LogRecord(
                    context=trace.set_span_in_context(http),
                    severity_text="INFO",
                    body=f"fetched the forecast ({m}-applog)",
                    attributes={"code.function.name": "fetch"},
                )
            )

    root.set_attribute("http.response.status_code", 200)
    root.end()

    problems = p.finish()
    if problems:
        peer.fail(problems)

    spans = []
    for summary in p.span_summaries():
        summary["role"] = roles.get(summary["span_id"], "?")
        spans.append(summary)
    print(
        json.dumps(
            {
                "transport": a.transport,
                "processor": a.processor,
                "compression": a.compression,
                "service_name": SERVICE,
                "agent_id": AGENT_ID,
                "agent_name": AGENT_NAME,
                "conversation_id": CONVERSATION,
                "tool_call_id": TOOL_CALL_ID,
                "span_exports": p.spans.results,
                "log_exports": p.logs.results,
                "partial_successes": p.partial.seen,
                "spans": spans,
                "logs": [peer.log_summary(r) for r in p.logs.records],
                "marker_exported": m in p.exported_text(),
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
