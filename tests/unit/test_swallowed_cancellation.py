"""A stop request survives a library that swallows it.

Python 3.11's `asyncio.wait_for` (inside nats-py's `fetch` and publish-ack waits)
returns the inner result when a cancel arrives together with it, and the cancel is
lost. The consumer and the outbox relay loop for ever around such waits, so they
check the task's `cancelling()` count on every turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import pytest

from contracts.envelope import Codec
from eventstore.cancellation import stop_if_cancelling
from services.runtime.consumer import ConsumerConfigSpec, JetStreamConsumer


class Ping(msgspec.Struct, frozen=True, kw_only=True, tag="test.ping"):
    n: int


class SwallowingSubscription:
    """A pull subscription whose fetch, when cancelled, answers "nothing" instead."""

    def __init__(self) -> None:
        self.fetching = asyncio.Event()

    async def fetch(self, batch: int, timeout: float) -> list[Any]:  # noqa: ASYNC109 (nats-py's)
        self.fetching.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(timeout)  # the cancel is lost, as wait_for loses it
        return []

    async def unsubscribe(self) -> None:
        return None


class ConsumerOnFake(JetStreamConsumer):
    def __init__(self, sub: SwallowingSubscription) -> None:
        spec = ConsumerConfigSpec(service="t", stream="S", durable="d", filter_subject="x.>")
        super().__init__(None, spec, Codec(Ping), self._handle)  # type: ignore[arg-type]
        self._fake = sub

    async def _handle(self, msg: Ping, raw: Any) -> None:
        return None

    async def _subscribe(self, config: Any = None) -> Any:
        return self._fake


async def test_consumer_when_a_fetch_swallows_the_cancel_then_it_still_stops() -> None:
    sub = SwallowingSubscription()
    task = asyncio.create_task(ConsumerOnFake(sub).run())
    await sub.fetching.wait()

    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)

    assert task in done and task.cancelled()


async def test_stop_if_cancelling_when_not_asked_then_nothing() -> None:
    stop_if_cancelling()


async def test_stop_if_cancelling_when_a_cancel_was_swallowed_then_raises() -> None:
    async def swallowing_wait() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        stop_if_cancelling()

    task = asyncio.create_task(swallowing_wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
