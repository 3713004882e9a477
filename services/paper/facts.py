"""What changes a paper account's book, as facts: the journal of a `PaperBook`.

The book records one fact per state change it makes (`PaperBook.journal`);
the paper exchange stores them in the account's stream (`paper-<account>`),
and `PaperBook.restore` folds them back into an identical book. Facts carry
outcomes (fill price, margin, realised profit), never commands, so folding
does not depend on the quotes of the day: a restarted exchange rebuilds every
book exactly, whatever its feed says now.

The book has no clock and no id source: it builds facts with `id=""` and
`ts` from the quote time; whoever stores them stamps a real id.
"""

from __future__ import annotations

from typing import Literal

from contracts.broker import BrokerOrderResult, OrderType, Side
from contracts.envelope import Envelope

CloseReason = Literal["close", "partial", "stop_loss", "take_profit"]


class PaperAccountOpened(Envelope, frozen=True, kw_only=True, tag="paper.account_opened"):
    account_id: str
    balance: float
    currency: str
    leverage: float


class PaperPositionOpened(Envelope, frozen=True, kw_only=True, tag="paper.position_opened"):
    """A market order filled; `result` is what the client was told."""

    position_id: str
    client_id: str | None
    symbol: str
    side: Side
    volume: float
    open_price: float
    sl: float | None = None
    tp: float | None = None
    comment: str | None = None
    open_time: float
    margin: float
    result: BrokerOrderResult


class PaperOrderPlaced(Envelope, frozen=True, kw_only=True, tag="paper.order_placed"):
    """A pending (limit or stop) order accepted."""

    order_id: str
    client_id: str
    symbol: str
    side: Side
    order_type: OrderType
    volume: float
    price: float
    sl: float | None = None
    tp: float | None = None
    comment: str | None = None
    open_time: float
    result: BrokerOrderResult


class PaperOrderFilled(Envelope, frozen=True, kw_only=True, tag="paper.order_filled"):
    """A pending order reached its price: a position with the order's id is open."""

    order_id: str
    price: float
    margin: float
    time: float
    client_id: str | None = None  # the order's (kept here for the broker events)
    volume: float | None = None


class PaperOrderCancelled(Envelope, frozen=True, kw_only=True, tag="paper.order_cancelled"):
    """A pending order removed: by request, or by the exchange itself (`by_broker`, e.g.
    no margin for it when the market reached its price)."""

    order_id: str
    reason: str = ""
    time: float = 0.0
    client_id: str | None = None
    by_broker: bool = False


class PaperOrderModified(Envelope, frozen=True, kw_only=True, tag="paper.order_modified"):
    order_id: str
    price: float
    sl: float | None = None
    tp: float | None = None


class PaperPositionModified(Envelope, frozen=True, kw_only=True, tag="paper.position_modified"):
    position_id: str
    sl: float | None = None
    tp: float | None = None


class PaperPositionClosed(Envelope, frozen=True, kw_only=True, tag="paper.position_closed"):
    """A full or partial close (by request, stop loss or take profit) with its realised P&L."""

    position_id: str
    volume: float
    price: float
    profit: float
    reason: CloseReason
    time: float
    close_order_id: str | None = None  # the deal's id, for closes by request
    client_id: str | None = None  # the position's (kept here for the broker events)
    remaining: float | None = None  # the position's volume after this close


PaperFact = (
    PaperAccountOpened
    | PaperPositionOpened
    | PaperOrderPlaced
    | PaperOrderFilled
    | PaperOrderCancelled
    | PaperOrderModified
    | PaperPositionModified
    | PaperPositionClosed
)

PAPER_EVENTS = (
    PaperAccountOpened,
    PaperPositionOpened,
    PaperOrderPlaced,
    PaperOrderFilled,
    PaperOrderCancelled,
    PaperOrderModified,
    PaperPositionModified,
    PaperPositionClosed,
)


def paper_stream(account_id: str) -> str:
    return f"paper-{account_id}"
