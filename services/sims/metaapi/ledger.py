"""One account's history orders and deals, built from its paper book's facts.

MetaApi answers `getHistoryOrdersBy*` and `getDealsBy*` from the terminal's
history; the stand-in writes that history as the book reports what it did
(`paper_events`): a market fill is a filled order and an entry deal, a pending
order reaching its price is the same, a close (by request, stop loss or take
profit) is a closing order and an exit deal with the realised profit, a
cancelled order is a cancelled history order. The account's opening balance is
a balance deal, as on MT5.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

from services.paper.facts import (
    PaperAccountOpened,
    PaperFact,
    PaperOrderCancelled,
    PaperOrderFilled,
    PaperOrderPlaced,
    PaperPositionClosed,
    PaperPositionOpened,
)

from .shapes import PLATFORM, broker_time, iso

# internal client id -> (the caller's clientId, comment)
External = Callable[[str | None], tuple[str | None, str | None]]

_DEAL_REASON = {
    "close": "DEAL_REASON_EXPERT",
    "partial": "DEAL_REASON_EXPERT",
    "stop_loss": "DEAL_REASON_SL",
    "take_profit": "DEAL_REASON_TP",
}
_ORDER_REASON = {
    "close": "ORDER_REASON_EXPERT",
    "partial": "ORDER_REASON_EXPERT",
    "stop_loss": "ORDER_REASON_SL",
    "take_profit": "ORDER_REASON_TP",
}


class Ledger:
    """History orders and deals of one account, in the order they happened."""

    def __init__(self, external: External) -> None:
        self._external = external
        self._ids = itertools.count(90_000_001)  # apart from the book's own ids
        self.history_orders: list[dict[str, Any]] = []
        self.deals: list[dict[str, Any]] = []
        self._positions: dict[str, tuple[str, bool, str | None]] = {}  # symbol, buy, client id
        self._pending: dict[str, PaperOrderPlaced] = {}

    def record(self, facts: Iterable[PaperFact], now: float) -> None:
        for fact in facts:
            self._record(fact, now)

    # ---- queries --------------------------------------------------------------------

    def orders_by(self, key: str, value: str) -> list[dict[str, Any]]:
        return [o for o in self.history_orders if str(o.get(key)) == value]

    def deals_by(self, key: str, value: str) -> list[dict[str, Any]]:
        return [d for d in self.deals if str(d.get(key)) == value]

    @staticmethod
    def in_range(
        items: list[dict[str, Any]], start: float, end: float, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        chosen = [i for i in items if start <= i["_ts"] <= end]
        return chosen[offset : offset + limit]

    # ---- facts ----------------------------------------------------------------------

    def _record(self, fact: PaperFact, now: float) -> None:
        if isinstance(fact, PaperAccountOpened):
            self._deal(now, "DEAL_TYPE_BALANCE", None, None, None, 0.0, 0.0, fact.balance, "")
        elif isinstance(fact, PaperPositionOpened):
            buy = fact.side == "buy"
            self._positions[fact.position_id] = (fact.symbol, buy, fact.client_id)
            self._order(
                now,
                fact.position_id,
                "ORDER_TYPE_BUY" if buy else "ORDER_TYPE_SELL",
                "ORDER_STATE_FILLED",
                fact.symbol,
                fact.open_price,
                fact.volume,
                fact.position_id,
                fact.client_id,
                "ORDER_REASON_EXPERT",
                sl=fact.sl,
                tp=fact.tp,
            )
            self._entry_deal(now, fact.position_id, fact.symbol, buy, fact.volume, fact.open_price)
        elif isinstance(fact, PaperOrderPlaced):
            self._pending[fact.order_id] = fact
        elif isinstance(fact, PaperOrderFilled):
            placed = self._pending.pop(fact.order_id, None)
            if placed is None:
                return
            buy = placed.side == "buy"
            self._positions[fact.order_id] = (placed.symbol, buy, placed.client_id)
            self._order(
                now,
                fact.order_id,
                f"ORDER_TYPE_{placed.side.upper()}_{placed.order_type.upper()}",
                "ORDER_STATE_FILLED",
                placed.symbol,
                placed.price,
                placed.volume,
                fact.order_id,
                placed.client_id,
                "ORDER_REASON_EXPERT",
                sl=placed.sl,
                tp=placed.tp,
            )
            self._entry_deal(now, fact.order_id, placed.symbol, buy, placed.volume, fact.price)
        elif isinstance(fact, PaperOrderCancelled):
            placed = self._pending.pop(fact.order_id, None)
            if placed is None:
                return
            self._order(
                now,
                fact.order_id,
                f"ORDER_TYPE_{placed.side.upper()}_{placed.order_type.upper()}",
                "ORDER_STATE_CANCELED",
                placed.symbol,
                placed.price,
                placed.volume,
                None,
                placed.client_id,
                "ORDER_REASON_EXPERT",
                current_volume=placed.volume,
            )
        elif isinstance(fact, PaperPositionClosed):
            known = self._positions.get(fact.position_id)
            if known is None:
                return
            symbol, buy, client_id = known
            order_id = fact.close_order_id or str(next(self._ids))
            closing = "ORDER_TYPE_SELL" if buy else "ORDER_TYPE_BUY"
            self._order(
                now,
                order_id,
                closing,
                "ORDER_STATE_FILLED",
                symbol,
                fact.price,
                fact.volume,
                fact.position_id,
                client_id,
                _ORDER_REASON[fact.reason],
            )
            self._deal(
                now,
                "DEAL_TYPE_SELL" if buy else "DEAL_TYPE_BUY",
                symbol,
                order_id,
                fact.position_id,
                fact.volume,
                fact.price,
                fact.profit,
                _DEAL_REASON[fact.reason],
                entry="DEAL_ENTRY_OUT",
                client_id=client_id,
            )
            if not fact.remaining:
                self._positions.pop(fact.position_id, None)

    def _entry_deal(
        self, now: float, position_id: str, symbol: str, buy: bool, volume: float, price: float
    ) -> None:
        client_id = self._positions[position_id][2]
        self._deal(
            now,
            "DEAL_TYPE_BUY" if buy else "DEAL_TYPE_SELL",
            symbol,
            position_id,
            position_id,
            volume,
            price,
            0.0,
            "DEAL_REASON_EXPERT",
            entry="DEAL_ENTRY_IN",
            client_id=client_id,
        )

    def _order(
        self,
        now: float,
        order_id: str,
        kind: str,
        state: str,
        symbol: str,
        price: float,
        volume: float,
        position_id: str | None,
        client_id: str | None,
        reason: str,
        *,
        sl: float | None = None,
        tp: float | None = None,
        current_volume: float = 0.0,
    ) -> None:
        caller_id, comment = self._external(client_id)
        order: dict[str, Any] = {
            "id": order_id,
            "platform": PLATFORM,
            "type": kind,
            "state": state,
            "symbol": symbol,
            "magic": 0,
            "time": iso(now),
            "brokerTime": broker_time(now),
            "doneTime": iso(now),
            "doneBrokerTime": broker_time(now),
            "openPrice": price,
            "volume": volume,
            "currentVolume": current_volume,
            "reason": reason,
            "fillingMode": "ORDER_FILLING_FOK",
            "expirationType": "ORDER_TIME_GTC",
            "_ts": now,
        }
        for key, value in (
            ("positionId", position_id),
            ("clientId", caller_id),
            ("comment", comment),
            ("stopLoss", sl),
            ("takeProfit", tp),
        ):
            if value is not None:
                order[key] = value
        self.history_orders.append(order)

    def _deal(
        self,
        now: float,
        kind: str,
        symbol: str | None,
        order_id: str | None,
        position_id: str | None,
        volume: float,
        price: float,
        profit: float,
        reason: str,
        *,
        entry: str | None = None,
        client_id: str | None = None,
    ) -> None:
        caller_id, comment = self._external(client_id)
        deal: dict[str, Any] = {
            "id": str(next(self._ids)),
            "platform": PLATFORM,
            "type": kind,
            "time": iso(now),
            "brokerTime": broker_time(now),
            "profit": profit,
            "commission": 0,
            "swap": 0,
            "magic": 0,
            "_ts": now,
        }
        if kind != "DEAL_TYPE_BALANCE":
            deal.update(symbol=symbol, volume=volume, price=price, entryType=entry, reason=reason)
        for key, value in (
            ("orderId", order_id),
            ("positionId", position_id),
            ("clientId", caller_id),
            ("comment", comment),
        ):
            if value is not None:
                deal[key] = value
        self.deals.append(deal)


def public(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as sent (without the stand-in's own sort key)."""
    return [{k: v for k, v in item.items() if k != "_ts"} for item in items]
