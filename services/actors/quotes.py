"""The latest quote per symbol, fed from `prices.<symbol>`: the actors' market view.

Only the newest quote matters, so this is a plain (non-durable) subscription.
A quote older than `max_age_s` is treated as no quote: a stale price must not
pass a distance check (fail closed).

A book that has just started listening knows no price yet, although the feed
has them: `wait_complete` tells when a full round of the feed has arrived (see
`services.runtime.market_view`), so that the host decides signals with the
market in view instead of refusing them for want of a quote.
"""

from __future__ import annotations

import contextlib

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts import subjects
from contracts.orders import Quote
from services.runtime.market_view import FeedRound


class QuoteBook:
    def __init__(self, *, max_age_s: float = 30.0, clock_ns: int = 0) -> None:
        self._quotes: dict[str, Quote] = {}
        self._max_age_ns = int(max_age_s * 1e9)
        self.now_ns = clock_ns  # set by the shell before each decision batch
        self._decoder = msgspec.json.Decoder(Quote)
        self._sub: Subscription | None = None
        self._round = FeedRound()

    def quote(self, symbol: str) -> Quote | None:
        found = self._quotes.get(symbol)
        if found is None:
            return None
        if self.now_ns and self.now_ns - found.ts > self._max_age_ns:
            return None
        return found

    def update(self, quote: Quote) -> None:
        current = self._quotes.get(quote.symbol)
        if current is None or quote.ts >= current.ts:
            self._quotes[quote.symbol] = quote
        self._round.observe(quote.symbol, quote.ts)

    @property
    def complete(self) -> bool:
        """Whether a full round of the feed has arrived since the book started."""
        return self._round.complete

    async def wait_complete(self, within_s: float) -> bool:
        """Wait (at most `within_s`) until a full round of the feed has arrived."""
        return await self._round.wait(within_s)

    def __len__(self) -> int:
        return len(self._quotes)

    async def subscribe(self, nc: NATS) -> None:
        async def on_quote(msg: Msg) -> None:
            # a bad quote is no quote: the distance check then fails closed
            with contextlib.suppress(msgspec.MsgspecError):
                self.update(self._decoder.decode(msg.data))

        self._sub = await nc.subscribe(f"{subjects.PRICES}.>", cb=on_quote)

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
