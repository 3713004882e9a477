"""Group commit: many writers, one transaction per short window.

One commit per event caps a writer at a few thousand events/s; gathering
whatever arrived in the last millisecond into one `append_batch` gives tens
of thousands (PERFORMANCE.md). The linger applies only while another commit
is in flight: an append that finds the committer idle is committed at once. Each
caller still gets its own slot: an `AppendResult`, or an `EventStoreError` for that
request alone — a version conflict (`ConcurrencyError`), or `AppendRefused` when the
database refuses what the request holds.

A batch the database refuses for its content (one caller's value that Postgres
cannot store fails the whole transaction) is committed again one request per
transaction, in order, so that only the request at fault fails and every other
caller's append is written. A batch that fails because the database is in trouble
(connection lost, pool exhausted, serialization failure: `OperationalError`,
`InterfaceError`) is not retried here: every caller in it gets the exception, so
the messages behind them are redelivered. Up to `max_in_flight` batches commit at
once, so gathering the next batch overlaps the database's work on the current one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import psycopg

from eventstore.errors import AppendRefused, EventStoreError
from eventstore.records import AppendRequest, AppendResult
from eventstore.store import EventStore

log = logging.getLogger("sigrelay.eventstore.group_commit")

Slot = AppendResult | EventStoreError


class GroupCommitter:
    """`start()` it (or run `run()` as a task); `submit()` from anywhere on the same loop."""

    def __init__(
        self,
        store: EventStore,
        *,
        linger_s: float = 0.001,
        max_batch: int = 1000,
        max_in_flight: int = 2,
    ) -> None:
        self._store = store
        self._linger_s = linger_s
        self._max_batch = max_batch
        self._queue: list[tuple[AppendRequest, asyncio.Future[Slot]]] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._stopped = False
        self.commits = 0
        self.appended = 0

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self.run(), name="group-commit")

    async def stop(self) -> None:
        """Let the commits in flight finish, then stop; later submits raise."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None

    async def submit(self, request: AppendRequest) -> Slot:
        """Queue one append; resolves when the batch holding it has committed."""
        (result,) = await self.submit_many([request])
        return result

    async def submit_many(self, requests: Sequence[AppendRequest]) -> list[Slot]:
        if self._stopped:
            raise RuntimeError("the group committer has stopped; the message will be redelivered")
        loop = asyncio.get_running_loop()
        futures = []
        for req in requests:
            future: asyncio.Future[Slot] = loop.create_future()
            self._queue.append((req, future))
            futures.append(future)
        self._wake.set()
        return list(await asyncio.gather(*futures))

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                await self._slots.acquire()
                if self._tasks and self._linger_s > 0 and len(self._queue) < self._max_batch:
                    # busy: a commit is in flight, so let the rest of this burst arrive
                    # and commit it together. Idle: commit at once (a lone append would
                    # otherwise wait out the linger, ~2 ms with the loop's timer).
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
            # nobody may wait for ever on a committer that is gone
            self._stopped = True
            for task in list(self._tasks):
                task.cancel()
            _fail(self._queue, RuntimeError("the group committer stopped"))
            self._queue = []

    async def _commit(self, taken: list[tuple[AppendRequest, asyncio.Future[Slot]]]) -> None:
        outcomes: list[Slot | Exception]
        try:
            try:
                outcomes = list(await self._store.append_batch([req for req, _ in taken]))
                self.commits += 1
            except Exception as exc:
                if _database_trouble(exc):
                    log.warning("group commit of %d appends failed: %r", len(taken), exc)
                    _fail(taken, exc)
                    return
                outcomes = await self._one_by_one(taken, exc)
        except asyncio.CancelledError:
            _fail(taken, RuntimeError("the group committer stopped mid-commit"))
            raise
        finally:
            self._slots.release()
        for (_, future), outcome in zip(taken, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, (AppendResult, EventStoreError)):
                self.appended += 1
                future.set_result(outcome)
            else:
                future.set_exception(outcome)

    async def _one_by_one(
        self, taken: list[tuple[AppendRequest, asyncio.Future[Slot]]], refused: Exception
    ) -> list[Slot | Exception]:
        """The batch was refused for what one (or more) of its requests holds: commit
        each alone, in order (two requests for one stream still chain their versions),
        so only the requests at fault fail, each with its own error."""
        if len(taken) == 1:
            return [self._refused(taken[0][0], refused)]
        log.warning(
            "group commit of %d appends refused (%r); committing them one by one",
            len(taken),
            refused,
        )
        outcomes: list[Slot | Exception] = []
        for index, (req, _) in enumerate(taken):
            try:
                (result,) = await self._store.append_batch([req])
                self.commits += 1
            except Exception as exc:
                if _database_trouble(exc):
                    log.warning("appending to %s failed: %r", req.stream, exc)
                    outcomes.extend([exc] * (len(taken) - index))
                    break
                result = self._refused(req, exc)
            outcomes.append(result)
        return outcomes

    def _refused(self, req: AppendRequest, exc: Exception) -> AppendRefused:
        log.error("the database refused the append to %s: %r", req.stream, exc)
        return AppendRefused(req.stream, exc)


def _database_trouble(exc: Exception) -> bool:
    """The database, not the batch, is at fault: committing the requests one by one
    would fail the same way, only slower."""
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


def _fail(items: list[tuple[AppendRequest, asyncio.Future[Slot]]], exc: BaseException) -> None:
    for _, future in items:
        if not future.done():
            future.set_exception(exc)
