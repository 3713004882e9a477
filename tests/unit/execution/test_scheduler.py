from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from services.execution.scheduler import AccountScheduler

Start = Callable[[int], AccountScheduler]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Starts a scheduler with N workers, stopped after the test."""
    tasks: list[asyncio.Task[None]] = []

    def starter(workers: int) -> AccountScheduler:
        scheduler = AccountScheduler(workers=workers)
        tasks.append(asyncio.create_task(scheduler.run()))
        return scheduler

    yield starter
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _job(log: list[str], name: str) -> Callable[[], Awaitable[str]]:
    async def run() -> str:
        await asyncio.sleep(0)
        log.append(name)
        return name

    return run


async def test_scheduler_when_one_account_floods_then_others_served_round_robin(
    start: Start,
) -> None:
    scheduler = start(1)
    log: list[str] = []

    futures = [scheduler.submit("A", _job(log, f"A{i}")) for i in range(5)]
    futures += [scheduler.submit("B", _job(log, f"B{i}")) for i in range(2)]
    futures += [scheduler.submit("C", _job(log, "C0"))]
    await asyncio.gather(*futures)

    assert log == ["A0", "B0", "C0", "A1", "B1", "A2", "A3", "A4"]


async def test_scheduler_when_many_workers_then_one_job_per_account_in_order(
    start: Start,
) -> None:
    scheduler = start(8)
    log: list[str] = []
    active: dict[str, int] = {}
    overlap: list[str] = []

    def job(account: str, n: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            active[account] = active.get(account, 0) + 1
            if active[account] > 1:
                overlap.append(account)
            await asyncio.sleep(0.001 * (n % 3))
            log.append(f"{account}{n}")
            active[account] -= 1

        return run

    futures = [scheduler.submit(a, job(a, n)) for n in range(20) for a in ("A", "B", "C")]
    await asyncio.gather(*futures)

    assert overlap == []
    for account in "ABC":
        assert [x for x in log if x[0] == account] == [f"{account}{n}" for n in range(20)]


async def test_scheduler_when_workers_bounded_then_at_most_that_many_in_flight(
    start: Start,
) -> None:
    scheduler = start(3)
    peak = 0

    async def job() -> None:
        nonlocal peak
        peak = max(peak, scheduler.in_flight)
        await asyncio.sleep(0.005)

    await asyncio.gather(*(scheduler.submit(f"acct{n}", job) for n in range(20)))

    assert peak == 3


async def test_scheduler_when_job_fails_then_its_future_fails_and_account_goes_on(
    start: Start,
) -> None:
    scheduler = start(1)
    log: list[str] = []

    async def boom() -> None:
        raise RuntimeError("broker exploded")

    failed = scheduler.submit("A", boom)
    after = scheduler.submit("A", _job(log, "A1"))

    with pytest.raises(RuntimeError, match="broker exploded"):
        await failed
    assert await after == "A1"
    assert scheduler.queued == 0


async def test_scheduler_when_stopped_then_waiting_submitters_are_released() -> None:
    scheduler = AccountScheduler(workers=1)
    task = asyncio.create_task(scheduler.run())
    gate = asyncio.Event()

    async def blocked() -> None:
        await gate.wait()

    running = scheduler.submit("A", blocked)
    waiting = scheduler.submit("A", blocked)
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert running.cancelled() and waiting.cancelled()


async def test_scheduler_when_account_held_then_its_jobs_wait_and_others_run(
    start: Start,
) -> None:
    scheduler = start(2)
    log: list[str] = []
    scheduler.hold("a")
    held = [scheduler.submit("a", _job(log, f"a{i}")) for i in range(3)]

    await scheduler.submit("b", _job(log, "b0"))

    assert log == ["b0"]
    assert not any(f.done() for f in held)
    scheduler.release("a")
    assert await asyncio.gather(*held) == ["a0", "a1", "a2"]
    assert log == ["b0", "a0", "a1", "a2"]


async def test_scheduler_when_held_by_its_running_job_then_next_job_waits_for_release(
    start: Start,
) -> None:
    scheduler = start(2)
    log: list[str] = []

    async def holding() -> str:
        scheduler.hold("a")  # as recovery does from a job that left an unknown outcome
        log.append("a0")
        return "a0"

    first = scheduler.submit("a", holding)
    second = scheduler.submit("a", _job(log, "a1"))
    await first
    await scheduler.submit("b", _job(log, "b0"))

    assert not second.done()
    assert log == ["a0", "b0"]
    scheduler.release("a")
    assert await second == "a1"
