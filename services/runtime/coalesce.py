"""Coalesced loading: keys asked for concurrently are read in one bulk call.

A fan-out makes a service meet hundreds of users it has not loaded yet within
a millisecond. Loading each with its own queries costs a round trip per user;
gathering whatever is asked for while the previous bulk read runs (plus a short
linger) costs a few queries per fan-out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CoalescingLoader(Generic[K, V]):
    """`await get(key)` -> the value `load_many` returned for it.

    One key is never loaded twice concurrently; a failed bulk load fails every
    caller waiting on it (the next `get` tries again).
    """

    def __init__(
        self,
        load_many: Callable[[list[K]], Awaitable[dict[K, V]]],
        *,
        linger_s: float = 0.0005,
        max_batch: int = 1000,
        name: str = "loader",
    ) -> None:
        self._load_many = load_many
        self._linger_s = linger_s
        self._max_batch = max_batch
        self._name = name
        self._waiting: dict[K, asyncio.Future[V]] = {}
        self._queue: list[K] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.loaded = 0

    async def get(self, key: K) -> V:
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = asyncio.get_running_loop().create_future()
            self._queue.append(key)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(), name=self._name)
        # shielded: one caller giving up must not cancel the load others wait on
        return await asyncio.shield(future)

    async def get_many(self, keys: Iterable[K]) -> list[V]:
        return list(await asyncio.gather(*(self.get(k) for k in keys)))

    async def _run(self) -> None:
        await asyncio.sleep(self._linger_s)
        while self._queue:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            try:
                found = await self._load_many(batch)
            except BaseException as exc:
                for key in batch:
                    self._settle(key, error=exc)
                if isinstance(exc, asyncio.CancelledError):
                    for key in list(self._queue):
                        self._settle(key, error=exc)
                    self._queue.clear()
                    raise
                continue
            self.batches += 1
            self.loaded += len(batch)
            for key in batch:
                if key in found:
                    self._settle(key, value=found[key])
                else:
                    self._settle(key, error=KeyError(key))

    def _settle(
        self, key: K, *, value: V | None = None, error: BaseException | None = None
    ) -> None:
        future = self._waiting.pop(key, None)
        if future is None or future.done():
            return
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        elif error is not None:
            future.set_exception(error)
            future.exception()  # retrieved: nobody waiting is not an unhandled error
        else:
            future.set_result(value)  # type: ignore[arg-type]
