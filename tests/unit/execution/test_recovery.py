from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.broker import NotConnected
from services.execution.recovery import AccountRecovery, describe
from services.execution.scheduler import AccountScheduler


@pytest.fixture
async def scheduler() -> AsyncIterator[AccountScheduler]:
    s = AccountScheduler(workers=2)
    task = asyncio.create_task(s.run())
    yield s
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class FlakyRecover:
    """Fails `failures` times with NotConnected, then recovers one order; notes what
    the health reply said at each attempt."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: list[list[dict[str, Any]]] = []
        self.recovery: AccountRecovery | None = None

    async def __call__(self, account_id: str) -> list[Any]:
        assert self.recovery is not None
        self.seen.append(self.recovery.statuses())
        if self.failures:
            self.failures -= 1
            raise NotConnected(f"the terminal of account {account_id} is not connected")
        return ["report"]


async def test_recovery_when_broker_fails_then_retried_listed_and_released_after(
    scheduler: AccountScheduler,
) -> None:
    recover = FlakyRecover(failures=2)
    recovery = recover.recovery = AccountRecovery(
        scheduler, recover, backoff_base_s=0.0, clock=lambda: 1_700_000_000_000_000_000
    )
    recovery.start("m1")
    queued = scheduler.submit("m1", lambda: asyncio.sleep(0, result="sent"))

    assert await queued == "sent"  # only after recovery released the account

    assert [[(s["account_id"], s["attempts"]) for s in seen] for seen in recover.seen] == [
        [("m1", 1)],
        [("m1", 2)],
        [("m1", 3)],
    ]
    last = recover.seen[2][0]
    assert last["last_error"] == "the terminal of account m1 is not connected"
    assert last["since"] == "2023-11-14T22:13:20+00:00"
    assert recovery.statuses() == []
    assert recovery.stats()["recovered_accounts"] == 1
    assert recovery.recovered_orders == 1
    assert recovery.failed_attempts == 2


async def test_recovery_when_started_again_while_running_then_one_task(
    scheduler: AccountScheduler,
) -> None:
    calls: list[str] = []
    entered, gate = asyncio.Event(), asyncio.Event()

    async def recover(account_id: str) -> list[Any]:
        calls.append(account_id)
        entered.set()
        await gate.wait()
        return []

    recovery = AccountRecovery(scheduler, recover)
    recovery.start("m1")
    await entered.wait()
    recovery.start("m1")  # a second unknown outcome while the first is looked up
    queued = scheduler.submit("m1", lambda: asyncio.sleep(0, result="sent"))
    gate.set()

    assert await queued == "sent"
    assert calls == ["m1"]
    assert not recovery.recovering("m1")


def test_describe_when_not_a_broker_error_then_its_text_is_not_shown() -> None:
    exc = RuntimeError('connection to "postgres://sigrelay:hunter2@db" failed')

    text = describe(exc, timeout_s=120)

    assert text == "internal error (RuntimeError); see the execution service log"
    assert describe(TimeoutError(), timeout_s=120) == "the broker did not answer within 120 s"
