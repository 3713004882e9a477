"""OpenTelemetry traces: one trace per signal, across every service.

Context travels in NATS message headers (`traceparent`, W3C trace context):
the consumer runtime starts a child span for every message it handles, and
services put `trace_headers()` on what they publish (outbox rows keep their
headers, so a message relayed after a crash still continues its trace) and
`trace_metadata()` on the events they append, so `sigrelay audit explain`
can link an event to its trace.

Export: OTLP over HTTP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; otherwise JSON lines under
`$SIGRELAY_HOME/traces/<service>.jsonl`. Tests install an in-memory exporter.
Attributes never carry message bodies, so no secret can reach a span.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("sigrelay.tracing")

_propagator = TraceContextTextMapPropagator()
_encode = msgspec.json.Encoder().encode  # runs in the export thread, holding the GIL
T = TypeVar("T")
TRACER_NAME = "sigrelay"


class JsonLinesSpanExporter(SpanExporter):
    """Spans as JSON lines in a file: readable with `jq`, no collector needed."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines: list[bytes] = []
        for span in spans:
            ctx = span.get_span_context()
            parent = span.parent
            if ctx is None:
                continue
            lines.append(
                _encode(
                    {
                        "trace_id": f"{ctx.trace_id:032x}",
                        "span_id": f"{ctx.span_id:016x}",
                        "parent_id": f"{parent.span_id:016x}" if parent else None,
                        "name": span.name,
                        "service": span.resource.attributes.get("service.name"),
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "attributes": dict(span.attributes or {}),
                        "status": span.status.status_code.name,
                    }
                )
            )
        if not lines:
            return SpanExportResult.SUCCESS
        with self._lock, self._path.open("ab") as handle:
            handle.write(b"\n".join(lines) + b"\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def init_tracing(
    service: str,
    *,
    home: Path,
    env: Mapping[str, str],
    exporter: SpanExporter | None = None,
) -> TracerProvider:
    """Install this process's tracer provider (once); returns it for shutdown."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        if exporter is not None:
            current.add_span_processor(SimpleSpanProcessor(exporter))
        return current
    provider = TracerProvider(resource=Resource.create({"service.name": f"sigrelay-{service}"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("%s: exporting traces over OTLP", service)
    else:
        path = home / "traces" / f"{service}.jsonl"
        provider.add_span_processor(BatchSpanProcessor(JsonLinesSpanExporter(path)))
        log.info("%s: writing traces to %s", service, path)
    trace.set_tracer_provider(provider)
    return provider


_cached: tuple[trace.TracerProvider, trace.Tracer] | None = None


def tracer() -> trace.Tracer:
    """This process's tracer. Cached per provider: `get_tracer` builds a new
    Tracer and compares instrumentation scopes on every call (~10 µs), which
    the consumer would otherwise pay for every message."""
    global _cached
    provider = trace.get_tracer_provider()
    if _cached is None or _cached[0] is not provider:
        _cached = (provider, provider.get_tracer(TRACER_NAME))
    return _cached[1]


def trace_headers() -> dict[str, str]:
    """Headers that continue the current trace on the next hop (empty outside a span)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def trace_metadata() -> dict[str, str]:
    """The same, for an appended event's metadata."""
    return trace_headers()


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def in_current_context(factory: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """Carry the caller's trace context into work that another task will run later
    (a per-account queue, a worker pool), so its spans and headers stay in the trace."""
    captured = otel_context.get_current()

    async def run() -> T:
        token = otel_context.attach(captured)
        try:
            return await factory()
        finally:
            otel_context.detach(token)

    return run


@contextlib.contextmanager
def consume_span(
    name: str, headers: Mapping[str, str] | None, attributes: dict[str, Any]
) -> Iterator[trace.Span]:
    """A CONSUMER span, child of the trace the message's headers carry (if any)."""
    # no headers: a root span, not a child of whatever the caller had current
    parent = _propagator.extract(headers) if headers else otel_context.Context()
    with tracer().start_as_current_span(
        name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span
