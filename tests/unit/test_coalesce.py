"""CoalescingLoader: concurrent gets become one bulk load; failures reach every waiter."""

from __future__ import annotations

import asyncio

import pytest

from services.runtime.coalesce import CoalescingLoader


async def test_concurrent_gets_are_loaded_in_one_call_each_key_once():
    calls: list[list[str]] = []

    async def load_many(keys: list[str]) -> dict[str, str]:
        calls.append(list(keys))
        await asyncio.sleep(0)
        return {k: k.upper() for k in keys}

    loader = CoalescingLoader(load_many)
    values = await asyncio.gather(*(loader.get(k) for k in ["a", "b", "a", "c"]))
    assert values == ["A", "B", "A", "C"]
    assert calls == [["a", "b", "c"]]


async def test_keys_asked_for_during_a_load_go_in_the_next_batch():
    calls: list[list[int]] = []
    release = asyncio.Event()

    async def load_many(keys: list[int]) -> dict[int, int]:
        calls.append(list(keys))
        if len(calls) == 1:
            await release.wait()
        return {k: k * 10 for k in keys}

    loader = CoalescingLoader(load_many, max_batch=2)
    first = asyncio.gather(*(loader.get(k) for k in (1, 2, 3)))
    await asyncio.sleep(0.01)
    late = asyncio.ensure_future(loader.get(4))
    await asyncio.sleep(0)
    release.set()
    assert await first == [10, 20, 30]
    assert await late == 40
    assert calls[0] == [1, 2] and sorted(k for c in calls[1:] for k in c) == [3, 4]


async def test_a_failed_load_fails_its_waiters_and_the_next_get_retries():
    attempts = 0

    async def load_many(keys: list[str]) -> dict[str, int]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("database away")
        return {k: 1 for k in keys}

    loader = CoalescingLoader(load_many)
    results = await asyncio.gather(loader.get("x"), loader.get("y"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await loader.get("x") == 1


async def test_a_key_the_bulk_load_did_not_return_is_a_key_error():
    async def load_many(keys: list[str]) -> dict[str, int]:
        return {}

    with pytest.raises(KeyError):
        await CoalescingLoader(load_many).get("missing")


async def test_one_caller_cancelled_does_not_cancel_the_load_for_others():
    gate = asyncio.Event()

    async def load_many(keys: list[str]) -> dict[str, str]:
        await gate.wait()
        return {k: "v" for k in keys}

    loader = CoalescingLoader(load_many)
    impatient = asyncio.ensure_future(loader.get("k"))
    patient = asyncio.ensure_future(loader.get("k"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    gate.set()
    assert await patient == "v"
