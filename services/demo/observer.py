"""Watches the bus (as an operator would, with the admin user) and keeps the
figures a demo or a benchmark reports: signals, intents, verdicts, refusals,
broker reports, and message-in → order-submitted latency per order."""

from __future__ import annotations

import contextlib
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from contracts import subjects
from contracts.orders import ExecutionReport, OrderIntent, RiskVerdict
from contracts.users import SignalRefused


class _Result(msgspec.Struct):
    kind: str


class _ParsedKind(msgspec.Struct):
    result: _Result

    @property
    def kind(self) -> str:
        return self.result.kind


@dataclass
class Figures:
    raw_messages: int = 0
    parsed: Counter[str] = field(default_factory=Counter)  # by kind
    intents: Counter[str] = field(default_factory=Counter)  # by action
    verdicts_approved: int = 0
    risk_rejections: Counter[str] = field(default_factory=Counter)
    actor_refusals: Counter[str] = field(default_factory=Counter)
    reports: Counter[str] = field(default_factory=Counter)  # by status
    broker_rejections: Counter[str] = field(default_factory=Counter)
    open_latencies_ms: list[float] = field(default_factory=list)
    first_submit_ns: int = 0
    last_submit_ns: int = 0

    def latency(self) -> dict[str, float]:
        values = sorted(self.open_latencies_ms)
        if not values:
            return {}
        return {
            "p50_ms": round(statistics.median(values), 2),
            "p99_ms": round(values[min(len(values) - 1, int(0.99 * len(values)))], 2),
            "max_ms": round(values[-1], 2),
        }


class BusObserver:
    def __init__(self) -> None:
        self.figures = Figures()
        self._intents: dict[str, OrderIntent] = {}
        self._subs: list[Any] = []
        self._parsed = msgspec.json.Decoder(_ParsedKind)
        self._intent = msgspec.json.Decoder(OrderIntent)
        self._verdict = msgspec.json.Decoder(RiskVerdict)
        self._report = msgspec.json.Decoder(ExecutionReport)
        self._refused = msgspec.json.Decoder(SignalRefused)

    async def start(self, nc: NATS) -> None:
        handlers = {
            f"{subjects.RAW}.>": self._on_raw,
            f"{subjects.PARSED}.>": self._on_parsed,
            f"{subjects.INTENT}.>": self._on_intent,
            f"{subjects.VERDICT}.>": self._on_verdict,
            f"{subjects.REPORT}.>": self._on_report,
            f"{subjects.EVENTS}.user.>": self._on_user_event,
        }
        for subject, handler in handlers.items():
            self._subs.append(await nc.subscribe(subject, cb=handler, pending_msgs_limit=1_000_000))

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()
        self._subs.clear()

    async def _on_raw(self, msg: Msg) -> None:
        self.figures.raw_messages += 1

    async def _on_parsed(self, msg: Msg) -> None:
        with _tolerant():
            self.figures.parsed[self._parsed.decode(msg.data).kind] += 1

    async def _on_intent(self, msg: Msg) -> None:
        with _tolerant():
            intent = self._intent.decode(msg.data)
            self._intents[intent.intent_id] = intent
            self.figures.intents[intent.action] += 1

    async def _on_verdict(self, msg: Msg) -> None:
        with _tolerant():
            verdict = self._verdict.decode(msg.data)
            if verdict.approved:
                self.figures.verdicts_approved += 1
            else:
                self.figures.risk_rejections[verdict.code] += 1

    async def _on_report(self, msg: Msg) -> None:
        with _tolerant():
            report = self._report.decode(msg.data)
            self.figures.reports[report.status] += 1
            if report.status in ("rejected", "failed"):
                self.figures.broker_rejections[report.reason[:60] or report.status] += 1
            intent = self._intents.get(report.intent_id)
            if report.action == "open" and report.submitted_ns and intent is not None:
                if intent.signal_posted_ns:
                    self.figures.open_latencies_ms.append(
                        (report.submitted_ns - intent.signal_posted_ns) / 1e6
                    )
                f = self.figures
                f.first_submit_ns = min(
                    f.first_submit_ns or report.submitted_ns, report.submitted_ns
                )
                f.last_submit_ns = max(f.last_submit_ns, report.submitted_ns)

    async def _on_user_event(self, msg: Msg) -> None:
        if b'"user.signal_refused"' not in msg.data:
            return
        with _tolerant():
            self.figures.actor_refusals[self._refused.decode(msg.data).code] += 1


def _tolerant() -> contextlib.suppress:
    """Observing must never fail on a message it does not understand."""
    return contextlib.suppress(msgspec.MsgspecError, KeyError, AttributeError)
