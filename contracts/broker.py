"""The broker port: what the execution service needs from any broker, and nothing more.

Implementations: `PaperBroker` (the embedded default, `paper.py`) and
`MetaApiBroker` (MT5 through the MetaApi cloud, `metaapi.py`). Both are run
by one contract test class.

Prices, volumes and money are `float`: the MetaApi SDK accepts only `int`/`float`
for stops, and MT5 itself works in doubles rounded to the symbol's digits.
Times are unix seconds (UTC) as `float`.

Failures are raised as `BrokerError` subclasses, each telling the execution
service what to do next:

- `Rejected`        final; do not resend the same request.
- `RetryLater`      not executed; send again after `retry_after_s`.
- `OutcomeUnknown`  may have executed (timeout, dropped connection): call
                    `find_by_client_id` before any resend.
- `NotConnected`    the account's terminal or connection is down; retry later.
- `AuthFailed`      credentials or account link are bad; needs a human.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal, Protocol, runtime_checkable

import msgspec

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop"]
OrderStatus = Literal["accepted", "filled", "rejected", "unknown"]

MAX_CLIENT_ID = 20
MAX_COMMENT = 6
# MetaApi stores clientId inside the MT comment: both together must fit in 26 characters.
MAX_CLIENT_ID_PLUS_COMMENT = 26
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]+\Z")


class OrderRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One order to send. `client_id` is the idempotency key (at most 20 characters)."""

    client_id: str
    symbol: str
    side: Side
    volume: float
    order_type: OrderType = "market"
    price: float | None = None  # required for limit and stop orders
    sl: float | None = None
    tp: float | None = None
    comment: str | None = None  # at most 6 characters

    def __post_init__(self) -> None:
        if not self.client_id or len(self.client_id) > MAX_CLIENT_ID:
            raise ValueError(
                f"client_id {self.client_id!r} has {len(self.client_id)} characters;"
                f" it must have 1 to {MAX_CLIENT_ID}"
            )
        if not _CLIENT_ID_RE.match(self.client_id):
            raise ValueError(
                f"client_id {self.client_id!r} may contain only letters, digits, '_', '.', '-'"
            )
        if self.comment is not None and len(self.comment) > MAX_COMMENT:
            raise ValueError(
                f"comment {self.comment!r} has {len(self.comment)} characters;"
                f" at most {MAX_COMMENT} fit beside the client id"
            )
        if not self.symbol:
            raise ValueError("symbol is empty")
        if not self.volume > 0:
            raise ValueError(f"volume {self.volume} for {self.symbol} must be positive")
        if self.order_type == "market":
            if self.price is not None:
                raise ValueError(f"market order {self.client_id} must not carry a price")
        elif self.price is None or not self.price > 0:
            raise ValueError(
                f"{self.order_type} order {self.client_id} needs a positive price,"
                f" found {self.price}"
            )


class BrokerOrderResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the broker answered to one trade request.

    `broker_code` / `broker_code_name` are the numeric and string codes
    (e.g. 10009 / TRADE_RETCODE_DONE); `reason` says it in plain words.
    `duplicate` is true when the client id had already been placed and the
    existing order or position is returned instead of a new one.
    """

    status: OrderStatus
    client_id: str | None = None
    order_id: str | None = None
    position_id: str | None = None
    fill_price: float | None = None
    volume: float | None = None
    broker_code: int | None = None
    broker_code_name: str | None = None
    reason: str = ""
    retry_after_s: float | None = None
    duplicate: bool = False
    profit: float | None = None  # realised, on a close (when the broker says)


class Position(msgspec.Struct, frozen=True, kw_only=True):
    position_id: str
    symbol: str
    side: Side
    volume: float
    open_price: float
    client_id: str | None = None
    sl: float | None = None
    tp: float | None = None
    current_price: float | None = None
    profit: float = 0.0  # floating, in account currency
    comment: str | None = None
    open_time: float | None = None


class PendingOrder(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    volume: float
    price: float
    client_id: str | None = None
    sl: float | None = None
    tp: float | None = None
    comment: str | None = None
    open_time: float | None = None


class AccountInfo(msgspec.Struct, frozen=True, kw_only=True):
    balance: float
    equity: float
    currency: str
    margin_free: float
    margin: float = 0.0
    leverage: float | None = None


class SymbolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Trading rules of one symbol. `tick_value` is the value of one point per lot, in
    account currency."""

    symbol: str
    digits: int
    point: float
    pip_size: float
    contract_size: float
    min_volume: float
    max_volume: float
    volume_step: float
    tick_value: float | None = None


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    bid: float
    ask: float
    time: float  # unix seconds


# ---------------------------------------------------------------------------------------
# Errors


class BrokerError(Exception):
    """Base of every failure a broker reports. `reason` is in plain words."""

    status: ClassVar[OrderStatus] = "rejected"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        reason: str,
        *,
        broker_code: int | None = None,
        broker_code_name: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.broker_code = broker_code
        self.broker_code_name = broker_code_name
        self.retry_after_s = retry_after_s

    def as_result(self, client_id: str | None = None) -> BrokerOrderResult:
        """The failure as an order result, for an execution report."""
        return BrokerOrderResult(
            status=self.status,
            client_id=client_id,
            broker_code=self.broker_code,
            broker_code_name=self.broker_code_name,
            reason=self.reason,
            retry_after_s=self.retry_after_s,
        )

    def __repr__(self) -> str:
        code = f", code={self.broker_code} {self.broker_code_name}" if self.broker_code else ""
        return f"{type(self).__name__}({self.reason!r}{code})"


class Rejected(BrokerError):
    """Final: the broker refused the request; the same request will be refused again."""


class RetryLater(BrokerError):
    """Not executed; send again after `retry_after_s` seconds."""

    retryable = True


class OutcomeUnknown(BrokerError):
    """The request may have executed (timeout, dropped connection).

    Reconcile with `find_by_client_id` before any resend.
    """

    status = "unknown"
    retryable = True


class NotConnected(BrokerError):
    """The account's terminal or our connection to it is down; nothing was executed."""

    retryable = True


class AuthFailed(BrokerError):
    """The token or account link is invalid; needs a human before trading resumes."""


# ---------------------------------------------------------------------------------------
# The port


@runtime_checkable
class Broker(Protocol):
    """One broker account. All methods are coroutines and may raise `BrokerError`."""

    async def place_order(self, req: OrderRequest) -> BrokerOrderResult:
        """Send an order. Placing a client id that was already placed returns the existing
        order or position (`duplicate=True`), never a second one."""
        ...

    async def modify_position(
        self, position_id: str, sl: float | None, tp: float | None
    ) -> BrokerOrderResult:
        """Set SL and TP of an open position; `None` keeps the current value."""
        ...

    async def close_position(
        self, position_id: str, volume: float | None = None
    ) -> BrokerOrderResult:
        """Close a position, or only `volume` lots of it."""
        ...

    async def cancel_order(self, order_id: str) -> BrokerOrderResult: ...

    async def modify_order(
        self, order_id: str, price: float, sl: float | None = None, tp: float | None = None
    ) -> BrokerOrderResult:
        """Move a pending order; `None` keeps the current SL or TP."""
        ...

    async def positions(self) -> list[Position]: ...

    async def orders(self) -> list[PendingOrder]: ...

    async def find_by_client_id(self, client_id: str) -> Position | PendingOrder | None:
        """The open position or pending order placed with `client_id`, if any. Call it after
        `OutcomeUnknown` or a restart, before any resend."""
        ...

    async def account_info(self) -> AccountInfo: ...

    async def symbol_spec(self, symbol: str) -> SymbolSpec: ...

    async def quote(self, symbol: str) -> Quote: ...

    async def close(self) -> None:
        """Release connections; the broker is unusable afterwards."""
        ...


# ---------------------------------------------------------------------------------------
# What a broker does on its own


BrokerEventKind = Literal["filled", "closed", "cancelled"]
CloseCause = Literal["stop_loss", "take_profit", "stop_out"]


class BrokerEvent(msgspec.Struct, frozen=True, kw_only=True):
    """Something the broker did without a request of ours: a pending order filled by the
    market, a position closed by its stop loss or take profit, an order cancelled.

    `seq` orders an account's events (gapless at the source, though most of its
    numbers belong to facts that are not events): an event is applied once,
    and a client that remembers the last `seq` it applied misses nothing.
    """

    account_id: str
    seq: int
    kind: BrokerEventKind
    client_id: str | None = None  # of the order or position (None if the broker lost it)
    order_id: str | None = None
    position_id: str | None = None
    symbol: str = ""
    price: float | None = None  # the fill or close price
    volume: float | None = None  # filled or closed volume
    remaining_volume: float | None = None  # of the position, after a close
    profit: float | None = None  # realised, on a close
    cause: CloseCause | None = None  # why a position closed
    reason: str = ""  # the broker's own words
    time: float = 0.0


class BrokerEventPage(msgspec.Struct, frozen=True, kw_only=True):
    """The events after `after`; `last_seq` is how far the broker looked (resume after it),
    `more` says a further page is waiting."""

    events: list[BrokerEvent] = msgspec.field(default_factory=list)
    last_seq: int = 0
    more: bool = False


@runtime_checkable
class BrokerEventSource(Protocol):
    """A broker that can list what it did on its own (the paper exchange does; MetaApi's
    streaming listener would be the equivalent, not wired yet)."""

    async def events_since(self, after: int, limit: int = 500) -> BrokerEventPage: ...


def found_as_result(found: Position | PendingOrder, *, duplicate: bool) -> BrokerOrderResult:
    """An already existing position or order, reported as the result of placing it."""
    if isinstance(found, Position):
        return BrokerOrderResult(
            status="filled",
            client_id=found.client_id,
            order_id=found.position_id,
            position_id=found.position_id,
            fill_price=found.open_price,
            volume=found.volume,
            reason="already open under this client id",
            duplicate=duplicate,
        )
    return BrokerOrderResult(
        status="accepted",
        client_id=found.client_id,
        order_id=found.order_id,
        volume=found.volume,
        reason="already pending under this client id",
        duplicate=duplicate,
    )
