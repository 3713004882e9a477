"""A raw channel message naming a channel that no subject token can carry (4,200
characters, a dot, a space) is dead-lettered by ingest with the reason, and ingest
goes on: it is not published under another channel's name, and it does not break the
outbox relay that carries every channel's parsed signals.

A module of its own: on a system where such a name still breaks ingest's connection,
every other test sharing the system would fail for that one reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from contracts.envelope import encode
from tests.hostile.bus import (
    CASES,
    System,
    audit_durable,
    dead_letter_of,
    good_message_handled,
    new_key,
    publish,
    raw_message,
    running_system,
    settled,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def system(
    hostile_nats: Any, hostile_database: str, hostile_home: Path, consumer_warnings: list[str]
) -> AsyncIterator[System]:
    async with running_system(
        hostile_nats, hostile_database, hostile_home, consumer_warnings
    ) as running:
        yield running


@pytest.mark.parametrize(
    "channel", ["c" * 4200, "dotted.name", "two words"], ids=["4200_chars", "dotted", "space"]
)
async def test_raw_message_with_a_channel_no_subject_can_name_then_dead_lettered(
    system: System, channel: str
) -> None:
    case = CASES[0]
    key = new_key(case)
    subject = case.subject(key)
    mark = len(system.warnings)

    seq = await publish(system, subject, encode(raw_message(key, channel=channel)))

    for durable in ("ingest", audit_durable(case)):
        await settled(system, case, durable, seq, subject, mark)
    letter = dead_letter_of(system, "ingest", seq)
    assert letter is not None, (
        f"ingest took channel {channel[:40]!r} (no subject token: it would be published"
        f" under another name or not at all)"
    )
    assert letter.headers["Sigrelay-Error"].strip()
    await good_message_handled(system, case, key, mark)
