"""The outbox relay under real crashes: a subprocess is SIGKILLed between steps."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import pytest

from eventstore import EventStore, OutboxMessage
from eventstore.migrate import migrate
from eventstore.outbox import OutboxRelay
from services.runtime.bus import JetStreamPublisher
from tests.support.events import deposited

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_child(*args: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.outbox_child", *args],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    return proc.returncode


async def count_on(js, subject: str) -> int:
    info = await js.stream_info("EVENTS", subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def outbox_rows(store: EventStore) -> int:
    async with store.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM outbox")
        row = await cur.fetchone()
        return int(row[0])


@pytest.fixture
async def store(database_url: str):
    await migrate(database_url)
    es = await EventStore.connect(database_url, min_size=1, max_size=4)
    yield es
    await es.close()


async def test_killed_after_commit_before_publish_then_restart_publishes_exactly_once(
    store: EventStore, database_url: str, nats_url: str, js
):
    subject = f"events.test.{uuid.uuid4().hex}"

    code = await asyncio.to_thread(
        run_child, "commit-then-die", database_url, nats_url, subject, "m-commit"
    )

    assert code == -signal.SIGKILL
    assert await outbox_rows(store) == 1 and await count_on(js, subject) == 0
    relay = OutboxRelay(store, JetStreamPublisher(js))
    assert await relay.drain_once() == 1
    assert await relay.drain_once() == 0
    assert await count_on(js, subject) == 1
    assert await outbox_rows(store) == 0


async def test_killed_after_publish_before_delete_then_republish_is_deduplicated(
    store: EventStore, database_url: str, nats_url: str, js
):
    subject = f"events.test.{uuid.uuid4().hex}"
    await store.append(
        "acct-outbox",
        -1,
        [deposited(2)],
        outbox=[OutboxMessage(subject=subject, msg_id=f"m-{subject}", payload=b"{}")],
    )

    code = await asyncio.to_thread(
        run_child, "publish-then-die", database_url, nats_url, subject, "unused"
    )

    assert code == -signal.SIGKILL
    assert await outbox_rows(store) == 1 and await count_on(js, subject) == 1
    publisher = JetStreamPublisher(js)
    relay = OutboxRelay(store, publisher)
    assert await relay.drain_once() == 1
    assert publisher.duplicates == 1
    assert await count_on(js, subject) == 1
    assert await outbox_rows(store) == 0


async def test_relay_run_when_event_committed_then_published_without_polling_delay(
    store: EventStore, js
):
    subject = f"events.test.{uuid.uuid4().hex}"
    relay = OutboxRelay(store, JetStreamPublisher(js), idle_poll_s=30.0)
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(100):
            if relay.is_leader:
                break
            await asyncio.sleep(0.05)
        await store.append(
            "acct-outbox",
            -1,
            [deposited(3)],
            outbox=[OutboxMessage(subject=subject, msg_id=f"n-{subject}", payload=b"{}")],
        )
        for _ in range(100):
            if await count_on(js, subject) == 1:
                break
            await asyncio.sleep(0.05)
        assert await count_on(js, subject) == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
