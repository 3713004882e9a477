"""The order flow: actor -> risk -> execution -> back.

- `OrderIntent` (orders.intent.<user>): what an actor decided one user's
  account should do for one leg of one signal. `intent_id` is the
  idempotency key (signal × user × leg × action), carried to the broker as
  the order's client id, so no retry anywhere opens a second position.
- `RiskVerdict` (orders.verdict.<user>): approval or rejection with a
  machine-readable code; carries the intent whole, so execution needs
  nothing else.
- `ExecutionReport` (orders.report.<user>): what the broker did, with its
  code and a plain-words reason.
- `Quote` (prices.<symbol>): the latest price, for distance and spread checks.
"""

from __future__ import annotations

from typing import Literal

from contracts.envelope import Envelope

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop"]
IntentAction = Literal["open", "modify", "close", "cancel"]
ReportStatus = Literal[
    "accepted",  # a pending order is placed
    "filled",  # a position is open
    "modified",
    "closed",  # fully or partly (see volume / remaining)
    "cancelled",
    "rejected",  # the broker refused; nothing happened
    "failed",  # never reached the broker (no account, auth, gave up retrying)
]


class OrderIntent(Envelope, frozen=True, kw_only=True, tag="order.intent"):
    intent_id: str
    user_id: str
    account_id: str
    broker: str  # "paper" or "metaapi"
    action: IntentAction
    signal_id: str
    leg: int = 1
    symbol: str  # the broker's symbol, after the user's mapping
    signal_symbol: str = ""  # as the channel wrote it (normalised)
    side: Side | None = None
    order_type: OrderType = "market"
    volume: float = 0.0
    price: float | None = None  # entry of a pending order, reference price of a market one
    sl: float | None = None
    tp: float | None = None
    target_intent_id: str | None = None  # for modify/close/cancel: the open leg acted on
    close_fraction: float | None = None  # for partial closes
    signal_posted_ns: int = 0
    decided_ns: int = 0


class RiskVerdict(Envelope, frozen=True, kw_only=True, tag="order.verdict"):
    intent: OrderIntent
    approved: bool
    code: str = ""  # empty when approved; a RefusalCode value otherwise
    reason: str = ""
    decided_ns: int = 0


class ExecutionReport(Envelope, frozen=True, kw_only=True, tag="order.report"):
    intent_id: str
    user_id: str
    account_id: str
    signal_id: str
    action: IntentAction
    leg: int = 1
    status: ReportStatus
    target_intent_id: str | None = None  # for modify/close/cancel: the open leg acted on
    symbol: str = ""
    side: Side | None = None
    order_id: str | None = None
    position_id: str | None = None
    price: float | None = None
    volume: float | None = None  # filled / closed volume
    remaining_volume: float | None = None
    sl: float | None = None
    tp: float | None = None
    profit: float | None = None  # realised, on a close
    balance: float | None = None
    equity: float | None = None
    broker_code: int | None = None
    broker_code_name: str | None = None
    reason: str = ""  # plain words for the user
    submitted_ns: int = 0  # when execution sent it to the broker
    reported_ns: int = 0


class Quote(Envelope, frozen=True, kw_only=True, tag="market.quote"):
    symbol: str  # canonical signal symbol, e.g. XAUUSD
    bid: float
    ask: float
    pip_size: float
    pip_value_per_lot: float  # account currency per pip for 1.0 lot
    min_volume: float = 0.01
    max_volume: float = 100.0
    volume_step: float = 0.01
