"""Execution reports: the broker's answer (or failure) to one intent, in the contract's terms.

| outcome | report status |
| --- | --- |
| open filled / pending placed | `filled` / `accepted` |
| modify, close, cancel done | `modified`, `closed`, `cancelled` |
| `Rejected`, `AuthFailed` | `rejected` (final; reason from the broker) |
| `RetryLater`, `NotConnected` after the retries, `OutcomeUnknown` never resolved, no broker | `failed` |

Every report carries the broker's code and its name when there is one, and
a plain-words reason (the broker's own words when it gave some, else the
code table's, `broker/codes.py`).
"""

from __future__ import annotations

from typing import Any

from contracts import broker_codes as codes
from contracts.broker import AuthFailed, BrokerError, BrokerOrderResult, Rejected
from contracts.envelope import new_id
from contracts.orders import ExecutionReport, OrderIntent, ReportStatus

from .events import OrderSubmitting

_SUCCESS: dict[str, ReportStatus] = {
    "modify": "modified",
    "close": "closed",
    "cancel": "cancelled",
}


def status_for_error(error: BrokerError) -> ReportStatus:
    """`rejected` when the broker refused for good, `failed` when it never got to decide."""
    return "rejected" if isinstance(error, Rejected | AuthFailed) else "failed"


def _reason(code: int | None, name: str | None, given: str) -> str:
    if given:
        return given
    if code is None and not name:
        return ""
    return codes.describe(code, name)


def _base(
    intent: OrderIntent, causation_id: str, submitted_ns: int, reported_ns: int
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "ts": reported_ns,
        "correlation_id": intent.correlation_id or intent.signal_id,
        "causation_id": causation_id,
        "intent_id": intent.intent_id,
        "user_id": intent.user_id,
        "account_id": intent.account_id,
        "signal_id": intent.signal_id,
        "action": intent.action,
        "leg": intent.leg,
        "symbol": intent.symbol,
        "side": intent.side,
        "submitted_ns": submitted_ns,
        "reported_ns": reported_ns,
    }


def report_success(
    sub: OrderSubmitting,
    result: BrokerOrderResult,
    *,
    causation_id: str,
    submitted_ns: int,
    reported_ns: int,
) -> ExecutionReport:
    """The report of a request the broker carried out (or had already carried out)."""
    intent = sub.intent
    fields = _base(intent, causation_id, submitted_ns, reported_ns)
    reason = _reason(result.broker_code, result.broker_code_name, "")
    if not reason:
        reason = result.reason
    fields.update(
        broker_code=result.broker_code,
        broker_code_name=result.broker_code_name,
        reason=reason,
        order_id=result.order_id,
        position_id=result.position_id or sub.position_id,
    )
    if intent.action == "open":
        status: ReportStatus = "filled" if result.status == "filled" else "accepted"
        fields.update(
            price=result.fill_price if status == "filled" else intent.price,
            volume=result.volume if result.volume is not None else intent.volume,
            sl=intent.sl,
            tp=intent.tp,
        )
    elif intent.action == "close":
        status = "closed"
        before = sub.volume_before
        closed = result.volume if result.volume is not None else (sub.volume or before)
        remaining = (
            round(max(before - closed, 0.0), 8)
            if before is not None and closed is not None
            else None
        )
        fields.update(
            price=result.fill_price, volume=closed, remaining_volume=remaining, profit=result.profit
        )
    else:
        status = _SUCCESS[intent.action]
        fields.update(sl=intent.sl, tp=intent.tp, order_id=result.order_id or sub.order_id)
    return ExecutionReport(status=status, **fields)


def report_failure(
    intent: OrderIntent,
    error: BrokerError,
    *,
    causation_id: str,
    submitted_ns: int,
    reported_ns: int,
) -> ExecutionReport:
    """The report of a request the broker refused, or that never reached a decision."""
    fields = _base(intent, causation_id, submitted_ns, reported_ns)
    fields.update(
        broker_code=error.broker_code,
        broker_code_name=error.broker_code_name,
        reason=_reason(error.broker_code, error.broker_code_name, error.reason),
    )
    return ExecutionReport(status=status_for_error(error), **fields)
