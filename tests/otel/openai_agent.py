#!/usr/bin/env python3
"""A tiny tool-using agent, audited with no Blackbox code: the real `openai` client,
instrumented by `opentelemetry-instrumentation-openai-v2` (the chat spans and content events),
with the agent and tool spans from `opentelemetry-util-genai`'s TelemetryHandler (what
framework instrumentations use), exported by the SDK's OTLP exporters.

The model is a stub OpenAI-compatible server started here (http.server in a thread):
the first POST /v1/chat/completions answers with one `get_weather` tool call whose arguments
carry the marker; the second (after the tool result) answers in plain text with the marker.

--mode default: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true and no opt-in, as the
  instrumentation's README has long said to enable content capture.
--mode latest: OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental with
  OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_and_event: content on the spans
  (gen_ai.input.messages, ...) and in gen_ai.client.inference.operation.details events.

Whatever the installed versions do with these settings, the summary says what was really
exported (`marker_exported`, the event names), so the caller checks what it got.
Prints a JSON summary on stdout; exits 1 if an export failed or the agent did not finish.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import peer

MODEL = "gpt-4o-mini"
CONVERSATION = "conv_agent_0001"
AGENT_NAME = "TravelAgent"
AGENT_ID = "agent_travel_01"


class StubOpenAI(BaseHTTPRequestHandler):
    """POST /v1/chat/completions, as the OpenAI API answers it (non-streaming)."""

    marker = ""
    calls: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        StubOpenAI.calls.append(request)
        n = len(StubOpenAI.calls)
        m = StubOpenAI.marker
        has_tool_result = any(msg.get("role") == "tool" for msg in request.get("messages", []))
        if not has_tool_result:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_stub_0001",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": json.dumps({"location": f"Lisbon ({m}-stub-args)"}),
                        },
                    }
                ],
            }
            finish, usage = "tool_calls", (31, 18)
        else:
            message = {"role": "assistant", "content": f"Lisbon is sunny, 24 C. ({m}-stub-answer)"}
            finish, usage = "stop", (64, 12)
        self._send(
            200,
            {
                "id": f"chatcmpl-stub{n:04d}",
                "object": "chat.completion",
                "created": 1767225600 + n,
                "model": f"{request.get('model', MODEL)}-2024-07-18",
                "system_fingerprint": "fp_stub",
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": {
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": usage[0] + usage[1],
                },
            },
        )

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def get_weather(location: str) -> dict[str, Any]:
    return {"location": location, "temperature_c": 24, "condition": "sunny"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True, help="OTLP base URL, e.g. http://127.0.0.1:4318")
    ap.add_argument("--token", required=True)
    ap.add_argument("--marker", required=True)
    ap.add_argument("--mode", choices=["default", "latest"], default="default")
    ap.add_argument("--transport", choices=["http", "grpc"], default="http")
    ap.add_argument("--compression", choices=["none", "gzip"], default="gzip")
    a = ap.parse_args()
    m = a.marker

    # The instrumentation reads these when it is set up: set them first, as a shell would.
    if a.mode == "latest":
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "span_and_event"
    else:
        os.environ.pop("OTEL_SEMCONV_STABILITY_OPT_IN", None)
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
    peer.configure_environment(a.transport, a.endpoint, a.token, a.compression)

    from openai import OpenAI
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.util.genai.handler import TelemetryHandler

    StubOpenAI.marker = m
    stub = ThreadingHTTPServer(("127.0.0.1", 0), StubOpenAI)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    stub_url = f"http://127.0.0.1:{stub.server_address[1]}/v1"

    p = peer.Pipeline(a.transport, "batch", {"service.name": "travel-agent-svc"})
    OpenAIInstrumentor().instrument(tracer_provider=p.tracer_provider, logger_provider=p.logger_provider)
    handler = TelemetryHandler(tracer_provider=p.tracer_provider, logger_provider=p.logger_provider)
    client = OpenAI(base_url=stub_url, api_key="sk-stub-not-a-real-key", max_retries=0)

    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a location",
                "parameters": {
                    "type": "object",
                    "properties": {"location": {"type": "string"}},
                    "required": ["location"],
                },
            },
        }
    ]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": f"You are a travel assistant. ({m}-system)"},
        {"role": "user", "content": f"What's the weather in Lisbon? ({m}-user)"},
    ]
    answer = None
    try:
        with handler.invoke_local_agent(agent_name=AGENT_NAME, request_model=MODEL) as agent:
            agent.agent_id = AGENT_ID
            agent.conversation_id = CONVERSATION
            first = client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
            call = first.choices[0].message.tool_calls[0]
            messages.append(first.choices[0].message.model_dump(exclude_none=True))
            with handler.tool(call.function.name, tool_call_id=call.id, tool_type="function") as tool:
                args = json.loads(call.function.arguments)
                result = get_weather(**args)
                # As the handler asks: content only when capture is on.
                if tool.should_capture_content_on_span:
                    tool.arguments = args
                    tool.tool_result = result
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
            second = client.chat.completions.create(model=MODEL, messages=messages, tools=tools)
            answer = second.choices[0].message.content
    finally:
        stub.shutdown()
        problems = p.finish()
    if problems:
        peer.fail(problems)
    if answer is None or len(StubOpenAI.calls) != 2:
        print(f"the agent did not finish: {len(StubOpenAI.calls)} model calls", file=sys.stderr)
        sys.exit(1)

    print(
        json.dumps(
            {
                "mode": a.mode,
                "transport": a.transport,
                "model_calls": len(StubOpenAI.calls),
                "conversation_id": CONVERSATION,
                "agent_name": AGENT_NAME,
                "agent_id": AGENT_ID,
                "service_name": "travel-agent-svc",
                "tool_call_id": "call_stub_0001",
                "span_exports": p.spans.results,
                "log_exports": p.logs.results,
                "partial_successes": p.partial.seen,
                "spans": p.span_summaries(),
                "logs": [peer.log_summary(r) for r in p.logs.records],
                "marker_exported": m in p.exported_text(),
            },
            sort_keys=True,
        )
    )


if __name__ == "__main__":
    main()
