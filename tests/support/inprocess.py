"""Running one service inside the test process, wired as the service host would
wire it (its own NATS user, its own producer in the event store, its outbox relay)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from eventstore import EventStore
from eventstore.outbox import OutboxRelay
from services.runtime import bus
from services.runtime.service import ServiceContext
from services.runtime.settings import RuntimeSettings


async def open_context(
    name: str, *, nats_url: str, database_url: str, home: Path, pool_max: int = 4
) -> ServiceContext:
    nc = await bus.connect(nats_url, f"tests-{name}")
    store = await EventStore.connect(database_url, min_size=1, max_size=pool_max, producer=name)
    return ServiceContext(
        name=name,
        settings=RuntimeSettings(home=home),
        nc=nc,
        js=bus.jetstream(nc),
        store=store,
        database_url=database_url,
    )


async def close_context(ctx: ServiceContext) -> None:
    await bus.drain(ctx.nc)
    await ctx.store.close()


def start(
    service: Any, ctx: ServiceContext, *, relay_poll_s: float | None = 0.2
) -> list[asyncio.Task[Any]]:
    """`service.run(ctx)` as a task, plus the outbox relay of its producer unless None."""
    tasks = [asyncio.create_task(service.run(ctx))]
    if relay_poll_s is not None:
        relay = OutboxRelay(ctx.store, bus.JetStreamPublisher(ctx.js), idle_poll_s=relay_poll_s)
        tasks.append(asyncio.create_task(relay.run()))
    return tasks


async def stop(
    tasks: list[asyncio.Task[Any]], ctx: ServiceContext, *, within_s: float = 20.0
) -> None:
    """Cancel the service's tasks; a service that does not stop in time fails the test."""
    for task in tasks:
        task.cancel()
    _done, pending = await asyncio.wait(tasks, timeout=within_s)
    assert not pending, f"{ctx.name} did not stop: {[awaiting(t) for t in pending]}"
    await close_context(ctx)


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """Where a task is stuck: every coroutine and async generator on its await chain
    (`get_stack()` shows only the outermost frame of a coroutine)."""
    chain: list[str] = []
    current: Any = task.get_coro()
    while current is not None and len(chain) < 50:
        frame = getattr(current, "cr_frame", None) or getattr(current, "ag_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        nxt = getattr(current, "cr_await", None) or getattr(current, "ag_await", None)
        if nxt is None and frame is None:
            chain.append(repr(current)[:200])  # a future, or a wrapper without a frame
        current = nxt
    return chain
