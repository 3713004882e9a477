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


@pytest.fixture
async def own_store(database_url: str):
    """A store with a producer of its own, so its dead letters (dlq.<producer>) are its own."""
    await migrate(database_url)
    es = await EventStore.connect(
        database_url, min_size=1, max_size=4, producer=f"relay{uuid.uuid4().hex[:10]}"
    )
    yield es
    await es.close()


async def dead_letter_on(js, producer: str):
    sub = await js.subscribe(f"dlq.{producer}", ordered_consumer=True)
    try:
        return await sub.next_msg(timeout=5)
    finally:
        await sub.unsubscribe()


async def dead_rows(store: EventStore) -> list[tuple[str, str]]:
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT msg_id, dead_reason FROM outbox WHERE dead_at IS NOT NULL ORDER BY id"
        )
        return [(row[0], row[1]) for row in await cur.fetchall()]


async def test_relay_when_row_subject_too_long_then_dead_lettered_and_next_row_published(
    own_store: EventStore, nc, js
):
    tag = uuid.uuid4().hex
    good = f"events.test.{tag}"
    await own_store.append(
        "acct-outbox",
        -1,
        [deposited(4)],
        outbox=[
            OutboxMessage(subject=f"events.test.{'x' * 4200}", msg_id=f"p-{tag}", payload=b"{}"),
            OutboxMessage(subject=good, msg_id=f"g-{tag}", payload=b"{}"),
        ],
    )
    relay = OutboxRelay(own_store, JetStreamPublisher(js))

    assert await relay.drain_once() == 2

    assert await relay.drain_once() == 0
    assert nc.is_connected
    assert await count_on(js, good) == 1
    letter = await dead_letter_on(js, own_store.producer)
    assert letter.data == b"{}"
    assert "subject of 4212 bytes exceeds" in letter.headers["Sigrelay-Error"]
    assert letter.headers["Sigrelay-Source"] == "outbox"
    assert letter.headers["Sigrelay-Msg-Id"] == f"p-{tag}"
    assert len(letter.headers["Sigrelay-Subject"]) < 300
    ((msg_id, reason),) = await dead_rows(own_store)
    assert msg_id == f"p-{tag}" and "subject of 4212 bytes" in reason
    assert relay.dead_lettered == 1


async def test_relay_when_row_payload_over_max_then_reference_dead_lettered_and_body_kept(
    own_store: EventStore, nc, js
):
    tag = uuid.uuid4().hex
    good = f"events.test.{tag}"
    big = b"x" * (nc.max_payload - 64)
    trace = {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}
    await own_store.append(
        "acct-outbox",
        -1,
        [deposited(5)],
        outbox=[
            OutboxMessage(subject=good, msg_id=f"b-{tag}", payload=big, headers=trace),
            OutboxMessage(subject=good, msg_id=f"g-{tag}", payload=b"{}", headers=trace),
        ],
    )
    relay = OutboxRelay(own_store, JetStreamPublisher(js))

    assert await relay.drain_once() == 2

    assert nc.is_connected
    assert await count_on(js, good) == 1
    letter = await dead_letter_on(js, own_store.producer)
    assert letter.data == b""  # the body could not travel: a reference to the row instead
    assert f"exceeds the server's max_payload {nc.max_payload}" in letter.headers["Sigrelay-Error"]
    assert letter.headers["Sigrelay-Size"] == str(len(big))
    assert letter.headers["Sigrelay-Subject"] == good
    outbox_id = int(letter.headers["Sigrelay-Outbox-Id"])
    async with own_store.pool.connection() as conn:
        cur = await conn.execute("SELECT payload FROM outbox WHERE id = %s", (outbox_id,))
        row = await cur.fetchone()
    assert row is not None and bytes(row[0]) == big
    assert [m for m, _ in await dead_rows(own_store)] == [f"b-{tag}"]


async def test_relay_when_jetstream_refuses_a_row_then_dead_lettered_and_next_row_published(
    own_store: EventStore, js
):
    tag = uuid.uuid4().hex[:12]
    small, good = f"small{tag}", f"events.test.{tag}"
    await js.add_stream(name=f"SMALL{tag}", subjects=[f"{small}.>"], max_msg_size=64)
    try:
        await own_store.append(
            "acct-outbox",
            -1,
            [deposited(6)],
            outbox=[
                OutboxMessage(subject=f"{small}.x", msg_id=f"s-{tag}", payload=b"y" * 200),
                OutboxMessage(subject=good, msg_id=f"g-{tag}", payload=b"{}"),
            ],
        )
        # nats-py answers a refused publish_async with silence: a short wait finds it sooner
        relay = OutboxRelay(own_store, JetStreamPublisher(js, ack_timeout_s=1.0))

        assert await relay.drain_once() == 2

        assert await count_on(js, good) == 1
        letter = await dead_letter_on(js, own_store.producer)
        assert letter.headers["Sigrelay-Error"].startswith("refused by JetStream: ")
        assert [m for m, _ in await dead_rows(own_store)] == [f"s-{tag}"]
    finally:
        await js.delete_stream(f"SMALL{tag}")
