"""Symbol specifications and price feeds for the paper broker.

Feeds are deterministic: a `RandomWalkFeed` draws from its own `random.Random`
seeded from (seed, symbol) with a stable hash, so adding a symbol never changes
another symbol's prices, and the same seed gives the same quotes in every
process.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterable, Sequence

import msgspec

from contracts.broker import Quote, SymbolSpec


class PaperSymbol(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A symbol the paper broker offers: its spec plus what the simulation needs."""

    spec: SymbolSpec
    profit_currency: str = "USD"  # currency the price (and so the P&L) is quoted in
    start_price: float = 1.0
    spread_points: int = 10
    volatility: float = 0.0002  # standard deviation of one tick's log return


def _spec(
    symbol: str,
    digits: int,
    pip: float,
    contract: float,
    *,
    min_volume: float = 0.01,
    max_volume: float = 100.0,
    step: float = 0.01,
) -> SymbolSpec:
    point = 10.0**-digits
    return SymbolSpec(
        symbol=symbol,
        digits=digits,
        point=point,
        pip_size=pip,
        contract_size=contract,
        min_volume=min_volume,
        max_volume=max_volume,
        volume_step=step,
        tick_value=None,  # filled in by the book from live quotes
    )


def _fx(symbol: str, start: float, spread: int = 12) -> PaperSymbol:
    jpy = symbol.endswith("JPY")
    digits, pip = (3, 0.01) if jpy else (5, 0.0001)
    return PaperSymbol(
        spec=_spec(symbol, digits, pip, 100_000),
        profit_currency=symbol[3:],
        start_price=start,
        spread_points=spread,
        volatility=0.00005,
    )


DEFAULT_SYMBOLS: dict[str, PaperSymbol] = {
    s.spec.symbol: s
    for s in (
        PaperSymbol(
            spec=_spec("XAUUSD", 2, 0.1, 100),
            start_price=2000.0,
            spread_points=20,
            volatility=0.0001,
        ),
        PaperSymbol(
            spec=_spec("XAGUSD", 3, 0.01, 5000),
            start_price=24.0,
            spread_points=20,
            volatility=0.0002,
        ),
        _fx("EURUSD", 1.085),
        _fx("GBPUSD", 1.27),
        _fx("AUDUSD", 0.655),
        _fx("NZDUSD", 0.605),
        _fx("USDCAD", 1.36),
        _fx("USDCHF", 0.88),
        _fx("EURGBP", 0.855),
        _fx("USDJPY", 150.0),
        _fx("EURJPY", 162.0),
        _fx("GBPJPY", 190.0),
        PaperSymbol(
            spec=_spec("US30", 1, 1.0, 1),
            start_price=38000.0,
            spread_points=20,
            volatility=0.0001,
        ),
        PaperSymbol(
            spec=_spec("NAS100", 1, 1.0, 1),
            start_price=17000.0,
            spread_points=15,
            volatility=0.00012,
        ),
        PaperSymbol(
            spec=_spec("GER40", 1, 1.0, 1),
            profit_currency="EUR",
            start_price=18000.0,
            spread_points=15,
            volatility=0.0001,
        ),
        PaperSymbol(
            spec=_spec("BTCUSD", 2, 1.0, 1),
            start_price=60000.0,
            spread_points=3000,
            volatility=0.0004,
        ),
    )
}


def stable_seed(seed: int, symbol: str) -> int:
    """A per-symbol seed that is the same in every process (unlike `hash(str)`)."""
    return (seed * 1_000_003) ^ zlib.crc32(symbol.encode())


class RandomWalkFeed:
    """Quotes from a seeded geometric random walk with a fixed spread."""

    def __init__(self, symbol: PaperSymbol, seed: int) -> None:
        self._symbol = symbol.spec.symbol
        self._digits = symbol.spec.digits
        self._spread = symbol.spread_points * symbol.spec.point
        self._vol = symbol.volatility
        self._rng = random.Random(stable_seed(seed, self._symbol))
        self._mid = symbol.start_price

    def first(self, now: float) -> Quote:
        return self._quote(now)

    def next(self, now: float) -> Quote:
        self._mid *= math.exp(self._rng.gauss(0.0, self._vol))
        return self._quote(now)

    def move_to(self, bid: float, ask: float) -> None:
        """Continue the walk from this quote's mid (the test-only control sets quotes)."""
        self._mid = (bid + ask) / 2

    def _quote(self, now: float) -> Quote:
        bid = round(self._mid - self._spread / 2, self._digits)
        ask = round(bid + self._spread, self._digits)
        return Quote(symbol=self._symbol, bid=bid, ask=ask, time=now)


class ReplayFeed:
    """A recorded list of quotes, released in time order as the clock passes them."""

    def __init__(self, quotes: Iterable[Quote]) -> None:
        self._quotes: Sequence[Quote] = sorted(quotes, key=lambda q: q.time)
        self._next = 0

    def due(self, now: float) -> list[Quote]:
        """Quotes with `time <= now` not released yet."""
        start = self._next
        end = start
        while end < len(self._quotes) and self._quotes[end].time <= now:
            end += 1
        self._next = end
        return list(self._quotes[start:end])

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self._quotes)
