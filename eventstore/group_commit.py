"""Group commit: many writers, one transaction per short window.

One commit per event caps a writer at a few thousand events/s; gathering
whatever arrived in the last millisecond into one `append_batch` gives tens
of thousands (PERFORMANCE.md). Each caller still gets its own result (or
its own ConcurrencyError), as if it had appended alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from eventstore.errors import EventStoreError
from eventstore.records import AppendRequest, AppendResult
from eventstore.store import EventStore


class GroupCommitter:
    def __init__(
        self, store: EventStore, *, max_batch: int = 1000, linger_s: float = 0.001
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._queue: list[tuple[AppendRequest, asyncio.Future[AppendResult | EventStoreError]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self.appended = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def submit(self, request: AppendRequest) -> AppendResult | EventStoreError:
        """Queue one append; resolves when the batch holding it has committed."""
        (result,) = await self.submit_many([request])
        return result

    async def submit_many(
        self, requests: Sequence[AppendRequest]
    ) -> list[AppendResult | EventStoreError]:
        if self._task is None:
            raise RuntimeError("GroupCommitter.start() has not been called")
        loop = asyncio.get_running_loop()
        futures = []
        for req in requests:
            future: asyncio.Future[AppendResult | EventStoreError] = loop.create_future()
            self._queue.append((req, future))
            futures.append(future)
        self._wakeup.set()
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if len(self._queue) < self._max_batch:
                await asyncio.sleep(self._linger_s)  # let the rest of this burst arrive
            while self._queue:
                batch, self._queue = (
                    self._queue[: self._max_batch],
                    self._queue[self._max_batch :],
                )
                try:
                    results = await self._store.append_batch([req for req, _ in batch])
                except Exception as exc:  # the whole commit failed: every caller hears it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.commits += 1
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                    if isinstance(result, AppendResult):
                        self.appended += 1
