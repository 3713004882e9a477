"""During fan-outs to 1,000 users, each part is killed in turn — the actor host,
risk, execution, ingest (SIGKILL), the NATS server (SIGKILL) — and Postgres is
restarted. After recovery every subscribed user has exactly one position per
leg of every signal, none missing and none doubled, and the audit chain verifies."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import psycopg
import pytest

from services.audit import tools
from services.audit.keys import keys_for_verifying
from services.demo.run import ensure_channels, latest_prices
from services.ingest.inject import ScriptLine, inject
from services.runtime.ctl import request
from services.runtime.settings import RuntimeSettings
from services.runtime.supervisor import Supervisor
from tests.support.pipeline import consumer_states, legs_report, outbox_backlog

pytestmark = pytest.mark.faults
log = logging.getLogger("sigrelay.tests.faults")

SERVICES = ("ingest", "actors", "risk", "paper", "execution", "audit")
USERS = int(os.environ.get("SIGRELAY_FAULT_USERS", "1000"))


async def _users(nc, count: int) -> None:
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        user = f"f{i:05d}"
        async with gate:
            for verb, body in (
                ("register", {}),
                ("link_account", {"account_id": "paper"}),
                ("subscribe", {"channel": "gold"}),
                (
                    "settings",
                    {
                        "lot": 0.01,
                        # recovery takes seconds: a signal must not go stale or drift
                        # out of tolerance meanwhile, or "no order" would be correct
                        "max_signal_age_s": 3600,
                        "max_entry_distance_pips": None,
                        "risk.max_open_positions": 100,
                        "risk.max_positions_per_symbol": 100,
                        "risk.max_orders_per_minute": 1000,
                    },
                ),
            ):
                reply = await request(nc, verb, user, body, timeout_s=60)
                assert reply.get("ok"), (verb, user, reply)

    await asyncio.gather(*(one(i) for i in range(count)))


def _positions_by_client(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT data->>'client_id', count(*) FROM events"
            " WHERE type = 'paper.position_opened' GROUP BY 1"
        ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def _filled_intents(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT data->'report'->>'intent_id', count(*) FROM events"
            " WHERE type = 'execution.reported' AND data->'report'->>'status' = 'filled'"
            " GROUP BY 1"
        ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


@pytest.mark.timeout(1200)  # 6 fan-outs to 1,000 users at today's pipeline speed, plus recoveries
async def test_each_part_killed_during_fanouts_then_exactly_one_order_per_leg(tmp_path: Path):
    key = "kf:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    settings = RuntimeSettings.from_env(
        {"SIGRELAY_HOME": str(tmp_path / "home"), "SIGRELAY_MASTER_KEYS": key}
    )
    supervisor = Supervisor(settings, SERVICES)
    await supervisor.prepare()
    ensure_channels(settings)
    supervisor.start_children()
    keep_alive = asyncio.create_task(_supervise(supervisor))
    nats_server = supervisor.infra.embedded_nats
    postgres = supervisor.infra.embedded_postgres
    assert nats_server is not None and postgres is not None
    database_url = supervisor.infra.database_url

    def kill(name: str) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            child = supervisor.child(name)
            assert child.proc is not None
            child.proc.send_signal(signal.SIGKILL)  # the supervisor restarts it

        return go

    async def kill_nats() -> None:
        await asyncio.to_thread(nats_server.kill)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(nats_server.restart)

    async def restart_postgres() -> None:
        await asyncio.to_thread(postgres.restart)

    faults: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("actors", kill("actors")),
        ("risk", kill("risk")),
        ("execution", kill("execution")),
        ("ingest", kill("ingest")),
        ("nats", kill_nats),
        ("postgres", restart_postgres),
    ]

    async def on_error(exc: Exception) -> None:  # one line, not a traceback per reconnect try
        log.warning("fault suite: nats: %r", exc)

    nc = await nats.connect(
        supervisor.infra.nats_url_for("admin"),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        error_cb=on_error,
    )
    try:
        await supervisor.wait_ready(nc)
        await _users(nc, USERS)
        log.info("fault suite: %d users ready", USERS)
        price = (await latest_prices(nc, ("XAUUSD",)))["XAUUSD"]
        base = int(time.time())
        signal_ids = []
        for n, (name, fault) in enumerate(faults):
            message_id = base + n
            signal_ids.append(f"gold:{message_id}")
            text = f"XAUUSD BUY NOW {price:.2f}\nSL {price - 30:.2f}\nTP {price + 40:.2f}"
            await inject(
                nc,
                [ScriptLine(channel="gold", id=message_id, text=text)],
                default_channel="gold",
                wait_s=60,
            )
            await asyncio.sleep(0.3)  # the fan-out is under way
            await fault()
            await supervisor.wait_ready(nc, within_s=120, restarting=True)
            log.info(
                "fault suite: %s recovered; %d positions so far",
                name,
                sum((await asyncio.to_thread(_filled_intents, database_url)).values()),
            )

        expected = USERS * len(faults)
        users = [f"f{i:05d}" for i in range(USERS)]
        deadline = time.monotonic() + 240
        next_note = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum((await asyncio.to_thread(_filled_intents, database_url)).values()) >= expected:
                break
            if time.monotonic() >= next_note:  # a slow recovery says where it is
                next_note = time.monotonic() + 30
                log.info(
                    "fault suite: waiting\n%s",
                    (await asyncio.to_thread(legs_report, database_url, signal_ids, users))[1],
                )
            await asyncio.sleep(2.0)
        await asyncio.sleep(5.0)  # anything doubled would show up now

        filled = await asyncio.to_thread(_filled_intents, database_url)
        positions = await asyncio.to_thread(_positions_by_client, database_url)
        wanted = {f"{sid}|{user}|L1" for sid in signal_ids for user in users}
        legs = ""
        if not (
            set(filled) == wanted
            and set(filled.values()) == {1}
            and len(positions) == expected
            and set(positions.values()) == {1}
        ):
            legs = await _where_are_the_legs(nc, database_url, signal_ids, users)
        assert set(filled) == wanted, legs
        assert set(filled.values()) == {1}, legs
        assert len(positions) == expected and set(positions.values()) == {1}, legs

        report = await tools.verify(database_url, keys_for_verifying(settings.env, settings.home))
        assert report.ok and report.authentic, report.first_break or report.note
    finally:
        keep_alive.cancel()
        await nc.close()
        await supervisor.shutdown()


async def _where_are_the_legs(
    nc: nats.NATS, database_url: str, signal_ids: list[str], users: list[str]
) -> str:
    """Which signal lacks how many legs, where they stopped, and what is still queued."""
    try:
        _, legs = await asyncio.to_thread(legs_report, database_url, signal_ids, users)
        backlog = await asyncio.to_thread(outbox_backlog, database_url)
    except psycopg.Error as exc:  # the report must not hide the failure it explains
        legs, backlog = f"(the log could not be read: {exc!r})", {}
    consumers = "\n".join(await consumer_states(nc.jetstream(timeout=5)))
    return (
        "not exactly one filled order and one position per user per signal.\n"
        f"legs per stage (and, per signal, where the missing ones stopped):\n{legs}\n"
        f"outbox rows not yet relayed, per producer: {backlog}\n"
        f"JetStream consumers:\n{consumers}"
    )


async def _supervise(supervisor: Supervisor) -> None:
    while True:
        supervisor.supervise()
        await asyncio.sleep(0.2)
