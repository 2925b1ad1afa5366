"""Shared plumbing for the real-peer scripts: the OpenTelemetry SDK's own OTLP exporters,
configured the way an unmodified agent is (environment variables only), wrapped so that the
script knows whether every export succeeded and what it sent.

Nothing here talks OTLP itself: the bytes on the wire are the SDK's.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Sequence

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)


def configure_environment(transport: str, endpoint: str, token: str, compression: str) -> None:
    """Sets the standard OTEL_EXPORTER_OTLP_* variables, as a user would in a shell.

    The token goes into OTEL_EXPORTER_OTLP_HEADERS with its space written `%20`: the Python
    SDK URL-decodes header values. It is never printed.
    """
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc" if transport == "grpc" else "http/protobuf"
    os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = f"Authorization=Bearer%20{token}"
    if compression != "none":
        os.environ["OTEL_EXPORTER_OTLP_COMPRESSION"] = compression
    else:
        os.environ.pop("OTEL_EXPORTER_OTLP_COMPRESSION", None)
    # A refused export must fail the run now, not be retried for minutes.
    os.environ.setdefault("OTEL_EXPORTER_OTLP_TIMEOUT", "10")


def _exporter_classes(transport: str) -> tuple[type, type]:
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif transport == "http":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"unknown transport {transport!r}")
    return OTLPSpanExporter, OTLPLogExporter


class RecordingSpanExporter(SpanExporter):
    """Delegates to the SDK's OTLP span exporter and keeps every result and span."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.results: list[str] = []
        self.spans: list[Any] = []
        # The export (one OTLP request) each span went in: the intake looks for a span's agent
        # and session among its ancestors in the same request.
        self.batch_of: dict[int, int] = {}
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        result = self.inner.export(spans)
        with self._lock:
            for s in spans:
                self.batch_of[s.get_span_context().span_id] = len(self.results)
            self.results.append(result.name)
            self.spans.extend(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class RecordingLogExporter(LogRecordExporter):
    """Delegates to the SDK's OTLP log exporter and keeps every result and record."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner
        self.results: list[str] = []
        self.records: list[Any] = []
        self._lock = threading.Lock()

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        result = self.inner.export(batch)
        with self._lock:
            self.results.append(result.name)
            self.records.extend(batch)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class PartialSuccesses:
    """Reads every OTLP/HTTP answer (a requests response hook) and keeps the partial successes:
    the SDK's exporters count them as success and say nothing."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def session(self) -> Any:
        import requests

        s = requests.Session()
        s.hooks["response"].append(self._hook)
        return s

    def _hook(self, response: Any, *args: Any, **kwargs: Any) -> None:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        if response.status_code != 200:
            return
        is_logs = response.url.endswith("/v1/logs")
        msg = ExportLogsServiceResponse() if is_logs else ExportTraceServiceResponse()
        try:
            msg.ParseFromString(response.content)
        except Exception as e:  # noqa: BLE001 (reported, not swallowed)
            with self._lock:
                self.seen.append({"url": response.url, "undecodable_answer": str(e)})
            return
        if msg.HasField("partial_success"):
            ps = msg.partial_success
            rejected = ps.rejected_log_records if is_logs else ps.rejected_spans
            if rejected or ps.error_message:
                with self._lock:
                    self.seen.append({"url": response.url, "rejected": rejected, "error_message": ps.error_message})


class Pipeline:
    """A TracerProvider and a LoggerProvider exporting over OTLP with the SDK's exporters."""

    def __init__(self, transport: str, processor: str, resource: dict[str, Any]) -> None:
        span_cls, log_cls = _exporter_classes(transport)
        # No endpoint, header or compression argument: the exporters read the environment.
        self.partial = PartialSuccesses()
        if transport == "http":
            self.spans = RecordingSpanExporter(span_cls(session=self.partial.session()))
            self.logs = RecordingLogExporter(log_cls(session=self.partial.session()))
        else:
            self.spans = RecordingSpanExporter(span_cls())
            self.logs = RecordingLogExporter(log_cls())
        res = Resource.create(resource)
        self.tracer_provider = TracerProvider(resource=res)
        self.logger_provider = LoggerProvider(resource=res)
        if processor == "batch":
            self.tracer_provider.add_span_processor(BatchSpanProcessor(self.spans))
            self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(self.logs))
        elif processor == "simple":
            self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
            self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        else:
            raise ValueError(f"unknown processor {processor!r}")

    def finish(self) -> list[str]:
        """Flushes and shuts down; the problems found (an export that did not succeed)."""
        problems = []
        if not self.tracer_provider.force_flush(30_000):
            problems.append("the span flush timed out")
        if not self.logger_provider.force_flush(30_000):
            problems.append("the log flush timed out")
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        for what, results in (("span", self.spans.results), ("log", self.logs.results)):
            bad = [r for r in results if r != "SUCCESS"]
            if bad:
                problems.append(f"{len(bad)} of {len(results)} {what} exports failed: {bad}")
        return problems

    def span_summaries(self) -> list[dict[str, Any]]:
        return [span_summary(s, self.spans.batch_of[s.get_span_context().span_id]) for s in self.spans.spans]

    def exported_text(self) -> str:
        """Everything exported, as text (to prove the marker really went out)."""
        parts = []
        for s in self.spans.spans:
            parts.append(s.name)
            parts.append(json.dumps(dict(s.attributes or {}), default=str))
        for r in self.logs.records:
            rec = getattr(r, "log_record", r)
            parts.append(json.dumps(getattr(rec, "body", None), default=str))
            parts.append(json.dumps(dict(getattr(rec, "attributes", None) or {}), default=str))
        return "\n".join(parts)


def hex_span_id(span_id: int) -> str:
    return format(span_id, "016x")


def hex_trace_id(trace_id: int) -> str:
    return format(trace_id, "032x")


def span_summary(span: Any, batch: int) -> dict[str, Any]:
    """What the Rust test matches an entry against, from a span as it was exported."""
    ctx = span.get_span_context()
    attrs = dict(span.attributes or {})
    return {
        "batch": batch,
        "name": span.name,
        "trace_id": hex_trace_id(ctx.trace_id),
        "span_id": hex_span_id(ctx.span_id),
        "parent_span_id": hex_span_id(span.parent.span_id) if span.parent else None,
        "start_unix_nano": span.start_time,
        "end_unix_nano": span.end_time,
        "status": span.status.status_code.name,
        "attributes": {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()},
    }


def log_summary(record: Any) -> dict[str, Any]:
    rec = getattr(record, "log_record", record)
    ctx = getattr(rec, "context", None)
    trace_id = getattr(rec, "trace_id", None)
    span_id = getattr(rec, "span_id", None)
    if ctx is not None and not trace_id:
        from opentelemetry import trace

        sc = trace.get_current_span(ctx).get_span_context()
        trace_id, span_id = sc.trace_id, sc.span_id
    return {
        "has_body": getattr(rec, "body", None) is not None,
        "event_name": getattr(rec, "event_name", None),
        "trace_id": hex_trace_id(trace_id) if trace_id else None,
        "span_id": hex_span_id(span_id) if span_id else None,
        "attribute_keys": sorted((getattr(rec, "attributes", None) or {}).keys()),
    }


def fail(problems: list[str]) -> None:
    for p in problems:
        print(f"export failed: {p}", file=sys.stderr)
    sys.exit(1)
