"""When has a service that just started listening to `prices.*` seen the market?

The feed sends every symbol each round, so once the first symbol heard comes
again with a newer quote, every symbol is in view. A service that decides on
prices (the actors' distance checks, risk's spread check) waits for that before
taking work queued while it was away; otherwise that work meets "no price" a
moment before the first quote, and a refusal is final.
"""

from __future__ import annotations

import asyncio


class FeedRound:
    def __init__(self) -> None:
        self._first: tuple[str, int] | None = None  # (symbol, ts) of the first quote heard
        self._done = asyncio.Event()

    def observe(self, symbol: str, ts: int) -> None:
        if self._done.is_set():
            return
        if self._first is None:
            self._first = (symbol, ts)
        elif symbol == self._first[0] and ts > self._first[1]:
            self._done.set()

    @property
    def complete(self) -> bool:
        """Whether a full round of the feed has arrived since listening began."""
        return self._done.is_set()

    async def wait(self, within_s: float) -> bool:
        """Wait (at most `within_s`) for a full round; False if it did not come."""
        if within_s <= 0:
            return self.complete
        try:
            await asyncio.wait_for(self._done.wait(), within_s)
        except TimeoutError:
            return False
        return True
