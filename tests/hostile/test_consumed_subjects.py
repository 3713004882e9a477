"""Hostile messages on every subject a service consumes (signals.raw, signals.parsed,
orders.intent, orders.verdict, orders.report, events.user): random bytes, JSON of the
wrong shape, a message of another type, valid messages with absurd values, a body as
large as the server allows. Each is settled at once by every consumer of the subject:
dead-lettered on `dlq.<service>` with the reason (the malformed ones must be), or
handled; audit records it; no service dies; and a good message published next is
still handled.

The services run in this process, started once for the module (tests/hostile/bus.py)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from contracts.envelope import encode
from contracts.users import UserRegistered
from tests.hostile.bus import (
    CASE_IDS,
    CASES,
    System,
    audit_durable,
    dead_letter_of,
    good_message_handled,
    new_key,
    publish,
    running_system,
    settled,
)
from tests.hostile.hostile import encode_body, json_values, raw_bytes

pytestmark = pytest.mark.integration

# The system outlives each example, so a shrunk example replays against a changed
# system: report the example as found, and save the minutes shrinking would cost.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)


@pytest.fixture(scope="module")
async def system(
    hostile_nats: Any, hostile_database: str, hostile_home: Path, consumer_warnings: list[str]
) -> AsyncIterator[System]:
    async with running_system(
        hostile_nats, hostile_database, hostile_home, consumer_warnings
    ) as running:
        yield running


malformed = st.one_of(
    raw_bytes,
    json_values.map(encode_body),
    st.sampled_from(
        [
            encode(UserRegistered(id="x", ts=1, user_id="x")),  # a message of another type
            b'{"type": "order.intent"}',
            b'{"type": "signal.raw", "id": 1}',
            b'{"type": "order.report", "id": "r", "ts": "yesterday"}',
        ]
    ),
)


@pytest.mark.parametrize("name", CASE_IDS)
@settings(max_examples=4, deadline=None, phases=NO_SHRINK)
@given(bodies=st.lists(malformed, min_size=1, max_size=3))
async def test_malformed_bodies_then_dead_lettered_with_a_reason_and_a_good_one_still_handled(
    system: System, name: str, bodies: list[bytes]
) -> None:
    case = CASES[CASE_IDS.index(name)]
    key = new_key(case)
    subject = case.subject(key)
    mark = len(system.warnings)

    seqs = [await publish(system, subject, body) for body in bodies]

    for durable in (*case.consumers, audit_durable(case)):
        await settled(system, case, durable, seqs[-1], subject, mark)
    for seq, body in zip(seqs, bodies, strict=True):
        if case.decodes(body):
            continue  # a valid message after all: handled or refused, either is fine
        for durable in case.consumers:
            letter = dead_letter_of(system, durable, seq)
            assert letter is not None, f"{durable} did not dead-letter {body[:100]!r} on {subject}"
            assert letter.headers["Sigrelay-Subject"] == subject
            assert letter.headers["Sigrelay-Error"].strip(), "a dead letter without a reason"
            assert letter.data == body
    await good_message_handled(system, case, key, mark)


@pytest.mark.parametrize("name", CASE_IDS)
async def test_absurd_values_then_settled_at_once_and_a_good_one_still_handled(
    system: System, name: str
) -> None:
    case = CASES[CASE_IDS.index(name)]
    key = new_key(case)
    subject = case.subject(key)
    mark = len(system.warnings)

    for message in case.absurd(key):
        seq = await publish(system, subject, encode(message))
        for durable in (*case.consumers, audit_durable(case)):
            await settled(system, case, durable, seq, subject, mark)

    await good_message_handled(system, case, key, mark)


@pytest.mark.parametrize("name", CASE_IDS)
async def test_body_as_large_as_the_server_allows_then_dead_lettered_and_a_good_one_handled(
    system: System, name: str
) -> None:
    case = CASES[CASE_IDS.index(name)]
    key = new_key(case)
    subject = case.subject(key)
    mark = len(system.warnings)
    body = random.Random(key).randbytes(system.admin.max_payload - 64)

    seq = await publish(system, subject, body)

    for durable in (*case.consumers, audit_durable(case)):
        await settled(system, case, durable, seq, subject, mark)
    for durable in case.consumers:
        letter = dead_letter_of(system, durable, seq)
        assert letter is not None, f"{durable} did not dead-letter the large body"
        assert letter.headers["Sigrelay-Error"].strip()
    await good_message_handled(system, case, key, mark)
