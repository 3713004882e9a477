"""The ingest service on real NATS and Postgres: inject → parsed, linking over
the bus, and a SIGKILL in the middle of a burst losing and duplicating nothing."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import msgspec
import nats
import pytest

from contracts import subjects
from contracts.envelope import encode
from contracts.ingest import INGEST_EVENTS, ParsedSignal
from eventstore import EventRegistry, EventStore
from eventstore.migrate import migrate
from services.ingest.inject import ScriptLine, inject
from tests.support.ingest import raw
from tests.support.processes import start_service, stop

pytestmark = pytest.mark.integration

REGISTRY = EventRegistry(*INGEST_EVENTS)


async def wait_healthy(nc, service: str, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            await nc.request(f"{subjects.CTL_SERVICE}.{service}.health", b"", timeout=0.5)
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.fixture
async def ingest(isolated_nats, database_url: str, tmp_path: Path):
    await migrate(database_url)
    proc = start_service(
        "ingest",
        nats_url=isolated_nats.url_for("ingest"),
        database_url=database_url,
        home=tmp_path / "ingest",
    )
    nc = await nats.connect(isolated_nats.admin_url)
    try:
        await wait_healthy(nc, "ingest")
        yield proc, nc
    finally:
        stop(proc)
        await nc.close()


async def test_injected_ticket_then_parsed_signal_on_parsed_subject(ingest):
    _, nc = ingest

    (entry,) = await inject(
        nc,
        [ScriptLine(text="XAUUSD BUY NOW 4357\nSL 4340\nTP1 4365\nTP2 4380", id=501)],
        default_channel="Gold",
    )

    parsed = entry["parsed"]
    assert parsed is not None, entry
    assert parsed["signal_id"] == "gold:501" and parsed["result"]["kind"] == "open"
    assert parsed["result"]["sl"] == 4340 and list(parsed["result"]["tps"]) == [4365, 4380]
    assert entry["latency_ms"] < 5000


async def test_edit_and_reply_over_the_bus_then_linked_to_the_signal(ingest):
    _, nc = ingest

    entries = await inject(
        nc,
        [
            ScriptLine(text="XAUUSD BUY NOW 4357\nSL 4340\nTP 4380", id=601),
            ScriptLine(text="XAUUSD BUY NOW 4357\nSL 4345\nTP 4380", edit_of=601),
            ScriptLine(text="move SL to entry", id=602, reply_to=601),
        ],
        default_channel="gold",
    )

    opened, edited, reply = (e["parsed"] for e in entries)
    assert edited["signal_id"] == opened["signal_id"] == "gold:601"
    assert edited["revision"] == 2 and list(edited["changes"]) == ["sl"]
    assert reply["signal_id"] == "gold:601" and reply["link"] == "reply"
    assert reply["result"]["kind"] == "modify"


async def test_raw_message_with_4200_character_channel_then_dead_lettered_and_next_flows(
    ingest, database_url: str
):
    proc, nc = ingest
    js = nc.jetstream()
    poison = raw(701, "XAUUSD BUY NOW 4357 SL 4340 TP 4380", channel="x" * 4200)
    # a source that skipped the check: its own subject is short, the channel field is not
    await js.publish(
        subjects.raw("careless"), encode(poison), headers={"Nats-Msg-Id": "poison-701"}
    )
    letters = await js.subscribe("dlq.ingest", ordered_consumer=True)
    try:
        letter = await letters.next_msg(timeout=30)
    finally:
        await letters.unsubscribe()

    (entry,) = await inject(
        nc,
        [ScriptLine(text="XAUUSD SELL NOW 4360\nSL 4380\nTP 4340", id=702)],
        default_channel="gold",
    )

    assert (
        letter.headers["Sigrelay-Error"] == "rejected: channel name of 4200 characters exceeds 64"
    )
    assert letter.data == encode(poison)
    assert entry["parsed"] is not None and entry["parsed"]["signal_id"] == "gold:702", entry
    assert proc.poll() is None  # the same process: no restart
    store = await EventStore.connect(database_url, min_size=1, max_size=2)
    try:
        assert await store.read_stream(f"channel-{'x' * 4200}") == []
        async with store.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM outbox WHERE length(subject) > 100")
            row = await cur.fetchone()
        assert row is not None and row[0] == 0
    finally:
        await store.close()


async def test_ingest_killed_mid_burst_then_restart_loses_and_duplicates_nothing(
    isolated_nats, database_url: str, tmp_path: Path
):
    await migrate(database_url)
    home = tmp_path / "ingest"
    channel = "burst"
    total = 300
    nc = await nats.connect(isolated_nats.admin_url)
    js = nc.jetstream()
    seen: list[ParsedSignal] = []
    decoder = msgspec.json.Decoder(ParsedSignal)

    async def collect(msg) -> None:
        seen.append(decoder.decode(msg.data))

    sub = await nc.subscribe(subjects.parsed(channel), cb=collect)
    proc = start_service(
        "ingest", nats_url=isolated_nats.url_for("ingest"), database_url=database_url, home=home
    )
    try:
        await wait_healthy(nc, "ingest")
        for i in range(total):
            message = raw(
                1000 + i, f"XAUUSD SELL {4300 + i} SL {4320 + i} TP {4280 + i}", channel=channel
            )
            await js.publish(
                subjects.raw(channel), encode(message), headers={"Nats-Msg-Id": message.dedup_id}
            )
            if i == total // 3:
                await wait_for(lambda: len(seen) >= total // 6)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        assert len(seen) < total, "the kill came too late to test anything"
        proc = start_service(
            "ingest", nats_url=isolated_nats.url_for("ingest"), database_url=database_url, home=home
        )
        await wait_for(lambda: len({p.message_id for p in seen}) >= total, within=60)
        await asyncio.sleep(0.5)  # let any duplicate publish arrive

        info = await js.stream_info("SIGNALS", subjects_filter=subjects.parsed(channel))
        assert info.state.subjects[subjects.parsed(channel)] == total
        store = await EventStore.connect(database_url, min_size=1, max_size=2)
        try:
            recorded = await store.read_stream(f"channel-{channel}")
        finally:
            await store.close()
        parsed = [REGISTRY.decode(e) for e in recorded if e.type == "signal.parsed"]
        assert sorted(p.message_id for p in parsed) == list(range(1000, 1000 + total))
    finally:
        stop(proc)
        await sub.unsubscribe()
        await nc.close()


async def wait_for(predicate, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
