"""What the paper exchange did on its own, read from an account's facts (pure).

The book's facts (`paper_events.py`, stream `paper-<account>`) record every
change; the ones no client asked for are broker events (`port.BrokerEvent`):

| fact | event |
| --- | --- |
| `PaperOrderFilled` (the market reached a pending order) | `filled` |
| `PaperPositionClosed`, reason `stop_loss` / `take_profit` | `closed` |
| `PaperOrderCancelled` by the exchange (no margin at the fill) | `cancelled` |

Closes and cancels by request are not events: the requester heard the reply.
An event's `seq` is its fact's stream version, so the account's events are
ordered, and "the events after N" is a read of the stream from N + 1.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.broker import BrokerEvent

from .facts import (
    PaperFact,
    PaperOrderCancelled,
    PaperOrderFilled,
    PaperOrderPlaced,
    PaperPositionClosed,
    PaperPositionOpened,
)

_CAUSE_WORDS = {"stop_loss": "stop loss", "take_profit": "take profit"}


def broker_events(account_id: str, facts: Iterable[tuple[int, PaperFact]]) -> list[BrokerEvent]:
    """The broker events among `(version, fact)` pairs, in version order.

    Facts written before they carried client ids get one from an earlier fact of
    the same batch when there is one, else none (execution then matches by id).
    """
    clients: dict[str, str | None] = {}
    symbols: dict[str, str] = {}
    out: list[BrokerEvent] = []
    for seq, fact in facts:
        if isinstance(fact, PaperOrderPlaced):
            clients[fact.order_id] = fact.client_id
            symbols[fact.order_id] = fact.symbol
        elif isinstance(fact, PaperPositionOpened):
            clients[fact.position_id] = fact.client_id
            symbols[fact.position_id] = fact.symbol
        elif isinstance(fact, PaperOrderFilled):
            out.append(
                BrokerEvent(
                    account_id=account_id,
                    seq=seq,
                    kind="filled",
                    client_id=fact.client_id or clients.get(fact.order_id),
                    order_id=fact.order_id,
                    position_id=fact.order_id,  # a filled order's position keeps its id
                    symbol=symbols.get(fact.order_id, ""),
                    price=fact.price,
                    volume=fact.volume,
                    reason=f"pending order {fact.order_id} filled at {fact.price}",
                    time=fact.time,
                )
            )
        elif isinstance(fact, PaperPositionClosed) and fact.reason in _CAUSE_WORDS:
            out.append(
                BrokerEvent(
                    account_id=account_id,
                    seq=seq,
                    kind="closed",
                    client_id=fact.client_id or clients.get(fact.position_id),
                    position_id=fact.position_id,
                    symbol=symbols.get(fact.position_id, ""),
                    price=fact.price,
                    volume=fact.volume,
                    remaining_volume=fact.remaining if fact.remaining is not None else 0.0,
                    profit=fact.profit,
                    cause="stop_loss" if fact.reason == "stop_loss" else "take_profit",
                    reason=f"{_CAUSE_WORDS[fact.reason]} hit at {fact.price}",
                    time=fact.time,
                )
            )
        elif isinstance(fact, PaperOrderCancelled) and (fact.by_broker or fact.time > 0):
            # before `by_broker` existed, only the exchange's own cancels carried a time
            out.append(
                BrokerEvent(
                    account_id=account_id,
                    seq=seq,
                    kind="cancelled",
                    client_id=fact.client_id or clients.get(fact.order_id),
                    order_id=fact.order_id,
                    symbol=symbols.get(fact.order_id, ""),
                    reason=fact.reason or f"order {fact.order_id} cancelled by the broker",
                    time=fact.time,
                )
            )
    return out
