"""Group commit: many callers' appends gathered into one `append_batch`.

Each caller submits one `AppendRequest` and awaits its own result. The writer
gathers what arrives within `linger_s` (about a millisecond), commits it as
one transaction, and hands each caller its slot: an `AppendResult`, or an
`EventStoreError` (a version conflict) for that request alone. If the whole
batch fails (the database went away) every caller gets the exception, so the
messages behind them are redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from eventstore import AppendRequest, AppendResult, EventStore, EventStoreError

log = logging.getLogger("sigrelay.risk.writer")

Slot = AppendResult | EventStoreError


class GroupCommitWriter:
    """Run `run()` as a task; `submit()` from anywhere on the same loop."""

    def __init__(
        self,
        store: EventStore,
        *,
        linger_s: float = 0.001,
        max_batch: int = 2000,
        max_in_flight: int = 2,
    ) -> None:
        self._store = store
        self._linger_s = linger_s
        self._max_batch = max_batch
        self._queue: list[tuple[AppendRequest, asyncio.Future[Slot]]] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self.batches = 0
        self.appended = 0

    async def submit(self, req: AppendRequest) -> Slot:
        if self._stopped:
            raise RuntimeError("the risk writer has stopped; the message will be redelivered")
        future: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self._queue.append((req, future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                await self._slots.acquire()
                if self._linger_s > 0:
                    await asyncio.sleep(self._linger_s)
                taken = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                if not self._queue:
                    self._wake.clear()
                if not taken:
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._commit(taken))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            # nobody may wait for ever on a writer that is gone
            self._stopped = True
            for task in list(self._tasks):
                task.cancel()
            _fail(self._queue, RuntimeError("the risk writer stopped"))
            self._queue = []

    async def _commit(self, taken: list[tuple[AppendRequest, asyncio.Future[Slot]]]) -> None:
        try:
            results = await self._store.append_batch([req for req, _ in taken])
        except asyncio.CancelledError:
            _fail(taken, RuntimeError("the risk writer stopped mid-commit"))
            raise
        except Exception as exc:
            log.warning("group commit of %d appends failed: %r", len(taken), exc)
            _fail(taken, exc)
            return
        finally:
            self._slots.release()
        self.batches += 1
        self.appended += len(taken)
        for (_, future), result in zip(taken, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        """Let the commits in flight finish."""
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._tasks, return_exceptions=True)


def _fail(items: list[tuple[AppendRequest, asyncio.Future[Slot]]], exc: BaseException) -> None:
    for _, future in items:
        if not future.done():
            future.set_exception(exc)
