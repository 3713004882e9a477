"""`AccountRecovery`: orders that may have executed are looked up, one account at a time,
in the background, while every other account trades.

An account with an order sent without a recorded outcome (found at start, or an
`OutcomeStillUnknown` later) is held in the `AccountScheduler`: its new jobs
queue in their order, none is served, so nothing else is sent for it before the
broker has been asked about that order (exactly once, fail closed). Its recovery
runs on its own task, at most `concurrency` at once, retried with back-off until
it succeeds; then the account is released and its queue proceeds. An account
whose broker cannot be reached therefore holds only its own orders.

`statuses()` says which accounts are recovering, since when, after how many
attempts, and the last error in plain words, for the service's health reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from contracts.broker import BrokerError
from contracts.envelope import now_ns

from .executor import OutcomeStillUnknown
from .scheduler import AccountScheduler

log = logging.getLogger("sigrelay.execution")

Recover = Callable[[str], Awaitable[list[Any]]]


class RecoveryStatus:
    """One account's recovery, as far as it went."""

    def __init__(self, account_id: str, since_ns: int) -> None:
        self.account_id = account_id
        self.since_ns = since_ns
        self.attempts = 0
        self.last_error = ""

    def as_dict(self) -> dict[str, Any]:
        since = datetime.fromtimestamp(self.since_ns / 1e9, tz=UTC)
        return {
            "account_id": self.account_id,
            "since": since.isoformat(timespec="seconds"),
            "since_ns": self.since_ns,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


def describe(exc: BaseException, *, timeout_s: float) -> str:
    """An attempt's failure in plain words. Broker reasons are plain already (tokens are
    redacted where they are made); anything else is named by its kind only, since its
    text may be a database's or a library's."""
    if isinstance(exc, (BrokerError, OutcomeStillUnknown)):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return f"the broker did not answer within {timeout_s:g} s"
    return f"internal error ({type(exc).__name__}); see the execution service log"


class AccountRecovery:
    def __init__(
        self,
        scheduler: AccountScheduler,
        recover: Recover,
        *,
        concurrency: int = 16,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        attempt_timeout_s: float = 120.0,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"recovery concurrency {concurrency} must be at least 1")
        self._scheduler = scheduler
        self._recover = recover
        self._slots = asyncio.Semaphore(concurrency)
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._attempt_timeout_s = attempt_timeout_s
        self._clock = clock
        self._status: dict[str, RecoveryStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.recovered_orders = 0
        self.recovered_accounts = 0
        self.failed_attempts = 0

    def start(self, account_id: str) -> None:
        """Hold the account and recover it in the background (once, if already started).

        Call it when no job of the account is running, or from inside the account's
        running job as it fails: the hold is in place before that job returns (no await
        in between), and the recovery task first runs after it."""
        if account_id in self._tasks:
            return
        self._scheduler.hold(account_id)
        self._status[account_id] = RecoveryStatus(account_id, self._clock())
        self._tasks[account_id] = asyncio.create_task(
            self._run(account_id), name=f"execution.recover.{account_id}"
        )

    def recovering(self, account_id: str) -> bool:
        return account_id in self._status

    def status(self, account_id: str) -> RecoveryStatus | None:
        return self._status.get(account_id)

    def statuses(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in sorted(self._status.values(), key=lambda s: s.since_ns)]

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, account_id: str) -> None:
        status = self._status[account_id]
        try:
            while True:
                async with self._slots:
                    status.attempts += 1
                    try:
                        # a hung broker must not hold the account's slot for ever: the next
                        # attempt looks the order up again before anything is sent
                        reports = await asyncio.wait_for(
                            self._recover(account_id), self._attempt_timeout_s
                        )
                    except Exception as exc:
                        self.failed_attempts += 1
                        status.last_error = describe(exc, timeout_s=self._attempt_timeout_s)
                        log.warning(
                            "execution: recovery of %s, attempt %d: %s",
                            account_id,
                            status.attempts,
                            status.last_error,
                        )
                    else:
                        self.recovered_orders += len(reports)
                        self.recovered_accounts += 1
                        break
                await asyncio.sleep(self._backoff(status.attempts))
        except asyncio.CancelledError:
            # stopping: the account stays held; the next start finds its records again
            raise
        finally:
            self._tasks.pop(account_id, None)
        del self._status[account_id]
        log.info(
            "execution: %s recovered after %d attempt(s); its queued orders proceed",
            account_id,
            status.attempts,
        )
        self._scheduler.release(account_id)

    def _backoff(self, attempts: int) -> float:
        return min(self._backoff_base_s * 2 ** min(attempts - 1, 30), self._backoff_max_s)

    def stats(self) -> dict[str, Any]:
        return {
            "recovering": self.statuses(),
            "recovering_accounts": len(self._status),
            "recovered_accounts": self.recovered_accounts,
            "recovery_failed_attempts": self.failed_attempts,
        }
