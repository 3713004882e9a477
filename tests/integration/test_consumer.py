"""The JetStream consumer runtime: dead letters, retries, and going on."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from contracts.envelope import Codec, Envelope, encode, new_id, now_ns
from services.runtime.consumer import ConsumerConfigSpec, JetStreamConsumer, Rejected

pytestmark = pytest.mark.integration


class Ping(Envelope, frozen=True, kw_only=True, tag="test.ping"):
    n: int


async def wait_until(predicate, within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def dead_letters(js, service: str, expected: int) -> list:
    sub = await js.subscribe(f"dlq.{service}", ordered_consumer=True)
    got = []
    try:
        for _ in range(expected):
            got.append(await sub.next_msg(timeout=5))
    finally:
        await sub.unsubscribe()
    return got


async def test_malformed_message_then_dead_lettered_with_reason_and_consumer_goes_on(js):
    tag = uuid.uuid4().hex[:12]
    subject = f"signals.raw.dlqtest-{tag}"
    service = f"svc{tag}"
    seen: list[int] = []

    async def handle(msg: Ping, raw) -> None:
        seen.append(msg.n)

    consumer = JetStreamConsumer(
        js,
        ConsumerConfigSpec(
            service=service, stream="SIGNALS", durable=f"test-{tag}", filter_subject=subject
        ),
        Codec(Ping),
        handle,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await js.publish(subject, b"not json at all")
        await js.publish(subject, b'{"type":"test.ping","id":"x","ts":1,"n":"seven"}')
        await js.publish(subject, encode(Ping(id=new_id(), ts=now_ns(), n=7)))

        await wait_until(lambda: seen == [7] and consumer.dead_lettered == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    letters = await dead_letters(js, service, 2)
    assert letters[0].data == b"not json at all"
    assert "invalid message" in letters[0].headers["Sigrelay-Error"]
    assert letters[0].headers["Sigrelay-Subject"] == subject
    assert "$.n" in letters[1].headers["Sigrelay-Error"]


async def test_handler_rejects_or_keeps_failing_then_dead_lettered_after_max_deliver(js):
    tag = uuid.uuid4().hex[:12]
    subject = f"signals.raw.retrytest-{tag}"
    service = f"svc{tag}"
    attempts: dict[int, int] = {}

    async def handle(msg: Ping, raw) -> None:
        attempts[msg.n] = attempts.get(msg.n, 0) + 1
        if msg.n == 1:
            raise Rejected("ping 1 is not allowed")
        if msg.n == 2:
            raise RuntimeError("always broken")
        if msg.n == 3 and attempts[3] == 1:
            raise RuntimeError("broken once")

    consumer = JetStreamConsumer(
        js,
        ConsumerConfigSpec(
            service=service,
            stream="SIGNALS",
            durable=f"test-{tag}",
            filter_subject=subject,
            max_deliver=3,
        ),
        Codec(Ping),
        handle,
    )
    task = asyncio.create_task(consumer.run())
    try:
        for n in (1, 2, 3):
            await js.publish(subject, msgspec.json.encode(Ping(id=new_id(), ts=now_ns(), n=n)))
        await wait_until(lambda: consumer.dead_lettered == 2 and consumer.handled == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert attempts == {1: 1, 2: 3, 3: 2}
    reasons = sorted(m.headers["Sigrelay-Error"] for m in await dead_letters(js, service, 2))
    assert reasons[0].startswith("failed 3 times") and "always broken" in reasons[0]
    assert reasons[1] == "rejected: ping 1 is not allowed"


async def test_durable_deleted_under_running_consumer_then_created_again_and_goes_on(js):
    tag = uuid.uuid4().hex[:12]
    subject = f"signals.raw.vanish-{tag}"
    durable = f"test-{tag}"
    seen: list[int] = []

    async def handle(msg: Ping, raw) -> None:
        seen.append(msg.n)

    consumer = JetStreamConsumer(
        js,
        ConsumerConfigSpec(
            service=f"svc{tag}", stream="SIGNALS", durable=durable, filter_subject=subject
        ),
        Codec(Ping),
        handle,
    )
    task = asyncio.create_task(consumer.run())
    try:
        await js.publish(subject, encode(Ping(id=new_id(), ts=now_ns(), n=1)))
        await wait_until(lambda: seen == [1])

        await js.delete_consumer("SIGNALS", durable)
        await js.publish(subject, encode(Ping(id=new_id(), ts=now_ns(), n=2)))
        await wait_until(lambda: seen == [1, 2], within=30.0)
        info = await js.consumer_info("SIGNALS", durable)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await js.delete_consumer("SIGNALS", durable)

    # created again where it was: the handled message is not taken a second time
    assert consumer.durables_recreated == 1 and consumer.durable_recreated_at is not None
    assert info.config.filter_subject == subject and info.num_ack_pending == 0


async def test_dead_letter_when_message_near_max_payload_then_reference_and_original_kept(nc, js):
    tag = uuid.uuid4().hex[:12]
    subject = f"signals.raw.bigtest-{tag}"
    service = f"svc{tag}"
    seen: list[int] = []

    async def handle(msg: Ping, raw) -> None:
        seen.append(msg.n)

    consumer = JetStreamConsumer(
        js,
        ConsumerConfigSpec(
            service=service, stream="SIGNALS", durable=f"test-{tag}", filter_subject=subject
        ),
        Codec(Ping),
        handle,
    )
    big = b"x" * (nc.max_payload - 64)  # fits alone, not with the dead letter's headers
    task = asyncio.create_task(consumer.run())
    try:
        ack = await js.publish(subject, big)
        await js.publish(subject, encode(Ping(id=new_id(), ts=now_ns(), n=7)))

        await wait_until(lambda: seen == [7] and consumer.dead_lettered == 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert nc.is_connected
    (letter,) = await dead_letters(js, service, 1)
    assert letter.data == b""
    assert "invalid message" in letter.headers["Sigrelay-Error"]
    assert letter.headers["Sigrelay-Stream"] == "SIGNALS"
    assert letter.headers["Sigrelay-Stream-Seq"] == str(ack.seq)
    assert letter.headers["Sigrelay-Size"] == str(len(big))
    assert letter.headers["Sigrelay-Subject"] == subject
    original = await js.get_msg("SIGNALS", ack.seq)
    assert original.data == big
