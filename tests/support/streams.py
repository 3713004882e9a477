"""Reading what JetStream holds, the way a consumer would see it."""

from __future__ import annotations

from typing import Any

import msgspec
import nats.errors
from nats.js.api import DeliverPolicy

from contracts import subjects
from contracts.orders import ExecutionReport

_reports = msgspec.json.Decoder(ExecutionReport)


async def reports_in_stream(js: Any, user: str) -> list[ExecutionReport]:
    """Every report JetStream holds for the user (what the actors and risk consume)."""
    sub = await js.subscribe(
        subjects.report(user),
        stream="ORDERS",
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
    )
    out = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                break
            out.append(_reports.decode(msg.data))
    finally:
        await sub.unsubscribe()
    return out
