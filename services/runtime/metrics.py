"""OpenTelemetry metrics for operators.

Every service exports, every 10 s: per-hop latency histograms (the time from
a message's `ts` to the moment a consumer handles it, per subject kind), the
figures of its `stats()` as gauges (active users, actors in memory, signals,
orders, refusals by reason…), consumer lag per durable consumer, and the
event-store pool's use. Export is OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`…_METRICS_ENDPOINT`) is set, else JSON lines under
`$SIGRELAY_HOME/metrics/<service>.jsonl`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

log = logging.getLogger("sigrelay.metrics")

_meter = metrics.get_meter("sigrelay")
hop_latency_ms = _meter.create_histogram(
    "sigrelay.hop.latency",
    unit="ms",
    description="time from a message's creation (its ts) to a consumer handling it",
)
handled = _meter.create_counter(
    "sigrelay.messages.handled", description="messages a consumer settled, by outcome"
)


class JsonLinesMetricExporter(MetricExporter):
    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.Lock()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        line = {"ts": time.time(), "metrics": json.loads(metrics_data.to_json())}
        with self._lock, self._path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, separators=(",", ":")) + "\n")
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def init_metrics(
    service: str,
    *,
    home: Path,
    env: Mapping[str, str],
    stats: Callable[[], Mapping[str, Any]],
    extra: Callable[[], Mapping[str, float]] = lambda: {},
    interval_s: float = 10.0,
) -> MeterProvider:
    """Install this process's meter provider, with gauges read from `stats()` and `extra()`."""
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        exporter: MetricExporter = OTLPMetricExporter()
    else:
        exporter = JsonLinesMetricExporter(home / "metrics" / f"{service}.jsonl")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval_s * 1000)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"service.name": f"sigrelay-{service}"}),
    )
    metrics.set_meter_provider(provider)

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        try:
            values = dict(flatten(stats()))
            values.update(extra())
        except Exception as exc:  # a failing stats() must not break the exporter
            log.debug("stats for metrics failed: %r", exc)
            return []
        return [Observation(v, {"figure": k}) for k, v in values.items()]

    metrics.get_meter("sigrelay").create_observable_gauge(
        f"sigrelay.{service}.figures",
        callbacks=[observe],
        description=f"the figures of the {service} service's stats",
    )
    return provider


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, float]]:
    """Numeric leaves of nested stats as dotted names (refusals.paused -> 3)."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, (int, float)):  # bool is an int: True counts as 1
            yield name, float(value)
        elif isinstance(value, Mapping):
            yield from flatten(value, f"{name}.")
