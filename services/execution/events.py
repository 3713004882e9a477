"""What the execution service records in each broker account's stream (`account-<id>`).

- `OrderSubmitting` ("execution.submitting"): written BEFORE the broker is
  called, with idempotency key = intent id and consumer tracking
  `("execution", intent_id)`. A submitting record without a report is an
  order whose outcome is unknown: after a crash it is looked up at the
  broker by client id before anything is sent again.
- `OrderReported` ("execution.reported"): the outcome, with the
  `ExecutionReport` published on `orders.report.<user>` in the same
  transaction (outbox); idempotency key `report:<intent id>`.
- `ReconciliationDifference` ("execution.reconciliation_difference"): the
  account stream and the broker disagree about a position or order.
- `BrokerEventRecorded` ("execution.broker_event"): the broker did something
  on its own to a leg one of our intents opened (a pending order filled, a
  position closed by its SL or TP, an order cancelled); the report for that
  intent goes out with it (outbox, msg id `report:<intent>:<status>:<seq>`),
  idempotency key `broker-event:<account>:<seq>` (`broker_events.py`).

Only execution reads these streams, so the types live here, not in contracts.
"""

from __future__ import annotations

from typing import Literal

from contracts.broker import BrokerEvent
from contracts.envelope import Envelope
from contracts.orders import ExecutionReport, OrderIntent

DifferenceKind = Literal["missing_at_broker", "unknown_at_broker", "volume_mismatch"]


def account_stream(account_id: str) -> str:
    return f"account-{account_id}"


def report_key(intent_id: str) -> str:
    """Idempotency key of an intent's `OrderReported` event."""
    return f"report:{intent_id}"


def broker_event_key(account_id: str, seq: int) -> str:
    """Idempotency key of a `BrokerEventRecorded` event."""
    return f"broker-event:{account_id}:{seq}"


class OrderSubmitting(Envelope, frozen=True, kw_only=True, tag="execution.submitting"):
    """About to send `intent` to the broker under `client_id`.

    For a modify, close or cancel, `position_id` / `order_id` name the target and
    `volume_before` its volume when the request was planned; `volume` is what a
    close will take (None for everything else).
    """

    intent: OrderIntent
    client_id: str
    verdict_id: str = ""
    position_id: str | None = None
    order_id: str | None = None
    price: float | None = None  # a pending order's price, for modifying it
    volume: float | None = None
    volume_before: float | None = None


class OrderReported(Envelope, frozen=True, kw_only=True, tag="execution.reported"):
    report: ExecutionReport
    client_id: str = ""
    target_intent_id: str | None = None  # the open leg a modify/close/cancel acted on
    recovered: bool = False  # the outcome was looked up at the broker after a restart


class ReconciliationDifference(
    Envelope, frozen=True, kw_only=True, tag="execution.reconciliation_difference"
):
    """The account stream and the broker disagree.

    - `missing_at_broker`: we believe a position or order is open; the broker
      has none (closed by a stop, by hand, or never opened).
    - `unknown_at_broker`: the broker holds one we never recorded.
    - `volume_mismatch`: both know it, with different volumes.
    """

    account_id: str
    kind: DifferenceKind
    intent_id: str | None = None
    client_id: str | None = None
    position_id: str | None = None
    order_id: str | None = None
    symbol: str = ""
    believed_volume: float | None = None
    broker_volume: float | None = None
    detail: str = ""


class BrokerEventRecorded(Envelope, frozen=True, kw_only=True, tag="execution.broker_event"):
    """The broker's own `event` (its `seq` is the account's broker-event cursor) and the
    `report` it made for the intent that opened the leg."""

    event: BrokerEvent
    report: ExecutionReport
    client_id: str = ""


EXECUTION_EVENTS = (OrderSubmitting, OrderReported, ReconciliationDifference, BrokerEventRecorded)
