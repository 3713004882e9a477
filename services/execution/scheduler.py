"""`AccountScheduler`: per-account FIFO queues served round-robin by a bounded pool of workers.

- One job at a time per account, in submission order: intents of one broker
  account reach the broker in the order they were decided.
- Many accounts at once, at most `workers` jobs in flight overall.
- Fair: an account with a long queue runs one job, then goes to the back of
  the ready line, so a burst for one account never starves the others.
- Held accounts (`hold`/`release`): jobs queue in order but none is served
  until release. Recovery holds an account while an order that may have
  executed is looked up, so nothing else is sent for it meanwhile, and no
  worker waits on it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

Job = Callable[[], Awaitable[Any]]


class AccountScheduler:
    def __init__(self, *, workers: int = 64) -> None:
        if workers < 1:
            raise ValueError(f"workers {workers} must be at least 1")
        self.workers = workers
        self._queues: dict[str, deque[tuple[Job, asyncio.Future[Any]]]] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._scheduled: set[str] = set()  # accounts in the ready line or being served
        self._held: set[str] = set()
        self.in_flight = 0
        self.done = 0

    def submit(self, account: str, job: Job) -> asyncio.Future[Any]:
        """Queue `job` behind the account's earlier jobs; the future gets its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(account)
        if queue is None:
            queue = self._queues[account] = deque()
        queue.append((job, future))
        self._schedule(account)
        return future

    def _schedule(self, account: str) -> None:
        if account not in self._scheduled and account not in self._held:
            self._scheduled.add(account)
            self._ready.put_nowait(account)

    def hold(self, account: str) -> None:
        """Serve no further job of `account` until `release` (a job running now finishes)."""
        self._held.add(account)

    def release(self, account: str) -> None:
        """Serve `account`'s queued jobs again, in their order."""
        self._held.discard(account)
        if self._queues.get(account):
            self._schedule(account)

    def held(self, account: str) -> bool:
        return account in self._held

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queues.values())

    async def run(self) -> None:
        """Serve until cancelled."""
        workers = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            # nobody will run what is left: its submitters must not wait forever
            for queue in self._queues.values():
                for _, future in queue:
                    future.cancel()
            self._queues.clear()
            self._scheduled.clear()

    async def _worker(self) -> None:
        while True:
            account = await self._ready.get()
            if account in self._held:  # held while waiting in the ready line
                self._scheduled.discard(account)
                continue
            queue = self._queues[account]
            job, future = queue.popleft()
            try:
                if not future.cancelled():  # the submitter gave up before its turn
                    self.in_flight += 1
                    try:
                        result = await job()
                    except asyncio.CancelledError:
                        future.cancel()
                        raise
                    except Exception as exc:
                        if not future.done():
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(result)
                    finally:
                        self.in_flight -= 1
                        self.done += 1

            finally:
                if queue and account in self._held:
                    self._scheduled.discard(account)  # `release` puts it back in line
                elif queue:
                    self._ready.put_nowait(account)  # to the back of the line
                else:
                    del self._queues[account]
                    self._scheduled.discard(account)
