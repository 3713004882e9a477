"""`PaperBroker`: the embedded default broker, simulated fills on a deterministic price feed.

The state and the rules live in `PaperBook` (pure, synchronous, no clock);
this module adds the feeds and the async `Broker` facade. Time moves only when
the owner calls `advance(quote)` (one quote) or `tick(now)` (every feed steps
to `now`). Nothing sleeps unless `latency_s` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import msgspec

from contracts.broker import (
    AccountInfo,
    BrokerOrderResult,
    NotConnected,
    OrderRequest,
    PendingOrder,
    Position,
    Quote,
    SymbolSpec,
)

from .book import ClosedTrade, PaperBook, PaperEvent
from .feed import DEFAULT_SYMBOLS, PaperSymbol, RandomWalkFeed, ReplayFeed

__all__ = ["ClosedTrade", "PaperBook", "PaperBroker", "PaperBrokerConfig", "PaperEvent"]


class PaperBrokerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of a paper account.

    `symbols` restricts the offered instruments to a subset of the built-in table
    (None offers all). `tick_interval_s` is how far `tick()` moves the clock when
    called without `now`.
    """

    seed: int = 0
    balance: float = 10_000.0
    currency: str = "USD"
    leverage: float = 100.0
    latency_s: float = 0.0  # simulated broker round trip per call
    start_time: float = 1_700_000_000.0  # unix seconds of the first quote
    tick_interval_s: float = 1.0
    symbols: tuple[str, ...] | None = None
    history_limit: int = 100_000


class PaperBroker:
    """A simulated MT5 hedging account implementing the `Broker` port.

    Each symbol gets a seeded random-walk feed, unless `replay` holds quotes for
    it: those symbols follow the recording instead.
    """

    def __init__(
        self,
        config: PaperBrokerConfig | None = None,
        *,
        symbols: dict[str, PaperSymbol] | None = None,
        replay: Iterable[Quote] | None = None,
    ) -> None:
        self.config = config = config or PaperBrokerConfig()
        table = dict(symbols) if symbols is not None else dict(DEFAULT_SYMBOLS)
        if config.symbols is not None:
            unknown = sorted(set(config.symbols) - set(table))
            if unknown:
                raise ValueError(f"paper broker has no symbol {', '.join(unknown)}")
            table = {name: table[name] for name in config.symbols}
        self.book = PaperBook(
            table,
            balance=config.balance,
            currency=config.currency,
            leverage=config.leverage,
            history_limit=config.history_limit,
        )
        self._replay = ReplayFeed(replay) if replay is not None else None
        replayed = {q.symbol for q in replay} if replay is not None else set()
        self._walks = {
            name: RandomWalkFeed(sym, config.seed)
            for name, sym in table.items()
            if name not in replayed
        }
        self.now = config.start_time
        for walk in self._walks.values():
            self.book.apply_quote(walk.first(self.now))
        self._closed = False

    # ---- moving the feed (synchronous) ----------------------------------------------

    def advance(self, quote: Quote) -> list[PaperEvent]:
        """Apply one quote: fills pending orders and SL/TP it crosses."""
        self.now = max(self.now, quote.time)
        return self.book.apply_quote(quote)

    def tick(self, now: float | None = None) -> list[PaperEvent]:
        """Move the clock to `now`: every random walk takes one step, and replayed quotes
        up to `now` are applied in time order."""
        now = self.now + self.config.tick_interval_s if now is None else now
        self.now = max(self.now, now)
        events: list[PaperEvent] = []
        if self._replay is not None:
            for quote in self._replay.due(now):
                events.extend(self.book.apply_quote(quote))
        for walk in self._walks.values():
            events.extend(self.book.apply_quote(walk.next(now)))
        return events

    def set_market_open(self, symbol: str, is_open: bool) -> None:
        """Open or close trading in a symbol (closed gives MT5 code 10018)."""
        self.book.set_market_open(symbol, is_open)

    @property
    def history(self) -> list[ClosedTrade]:
        return list(self.book.history)

    # ---- the Broker port ------------------------------------------------------------

    async def _wait(self) -> None:
        if self._closed:
            raise NotConnected("paper broker is closed")
        if self.config.latency_s > 0:
            await asyncio.sleep(self.config.latency_s)

    async def place_order(self, req: OrderRequest) -> BrokerOrderResult:
        await self._wait()
        return self.book.place(req)

    async def modify_position(
        self, position_id: str, sl: float | None, tp: float | None
    ) -> BrokerOrderResult:
        await self._wait()
        return self.book.modify_position(position_id, sl, tp)

    async def close_position(
        self, position_id: str, volume: float | None = None
    ) -> BrokerOrderResult:
        await self._wait()
        return self.book.close_position(position_id, volume)

    async def cancel_order(self, order_id: str) -> BrokerOrderResult:
        await self._wait()
        return self.book.cancel_order(order_id)

    async def modify_order(
        self, order_id: str, price: float, sl: float | None = None, tp: float | None = None
    ) -> BrokerOrderResult:
        await self._wait()
        return self.book.modify_order(order_id, price, sl, tp)

    async def positions(self) -> list[Position]:
        await self._wait()
        return self.book.positions()

    async def orders(self) -> list[PendingOrder]:
        await self._wait()
        return self.book.orders()

    async def find_by_client_id(self, client_id: str) -> Position | PendingOrder | None:
        await self._wait()
        return self.book.find(client_id)

    async def account_info(self) -> AccountInfo:
        await self._wait()
        return self.book.account()

    async def symbol_spec(self, symbol: str) -> SymbolSpec:
        await self._wait()
        return self.book.spec(symbol)

    async def quote(self, symbol: str) -> Quote:
        await self._wait()
        return self.book.last_quote(symbol)

    async def close(self) -> None:
        self._closed = True
