"""A signal already waiting in the stream when an actor host starts is decided with
the market in view, not refused `no_price` for want of a quote the feed delivers a
moment later. (A host restarted during a fan-out used to refuse the next signal for
every subscriber: the lost signal behind the fan-out fault suite's intermittent hang.)"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import nats
import psycopg
import pytest

from contracts import subjects
from contracts.channels import ChannelDirectory, ChannelInfo, save_directory
from contracts.envelope import encode, new_id, now_ns
from contracts.orders import Quote
from contracts.subjects import inbox_prefix
from eventstore.migrate import migrate
from services.ingest.inject import ScriptLine, inject
from tests.support.control import ctl, wait_serving
from tests.support.processes import start_service, stop

pytestmark = pytest.mark.integration


async def _feed(nc: nats.NATS, *, every_s: float) -> None:
    """A price feed sending one round (XAUUSD only) every `every_s`."""
    while True:
        quote = Quote(
            id=new_id(),
            ts=now_ns(),
            symbol="XAUUSD",
            bid=2000.0,
            ask=2000.2,
            pip_size=0.1,
            pip_value_per_lot=10.0,
        )
        await nc.publish(subjects.prices("XAUUSD"), encode(quote))
        await asyncio.sleep(every_s)


def _decisions(database_url: str, user: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT type, coalesce(data->>'code', '') FROM events WHERE stream = %s"
            " AND type IN ('user.signal_handled', 'user.signal_refused') ORDER BY version",
            (f"user-{user}",),
        ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


async def test_signal_waiting_when_the_host_starts_then_decided_with_a_price(
    isolated_nats, database_url: str, tmp_path: Path
):
    await migrate(database_url)
    home = tmp_path / "home"
    save_directory(home, ChannelDirectory(channels={"gold": ChannelInfo(default_symbol="XAUUSD")}))
    key = "km:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")

    def start(name: str):
        return start_service(
            name,
            nats_url=isolated_nats.url_for(name),
            database_url=database_url,
            home=home,
            extra_env={"SIGRELAY_MASTER_KEYS": key},
        )

    procs = [start("ingest"), start("actors")]
    ctl_nc = await nats.connect(isolated_nats.url_for("ctl"), inbox_prefix=inbox_prefix("ctl"))
    admin = await nats.connect(isolated_nats.admin_url)
    feed: asyncio.Task[None] | None = None
    try:
        await wait_serving(ctl_nc, "u1")
        for verb, body in (
            ("register", {}),
            ("link_account", {"account_id": "paper"}),
            ("subscribe", {"channel": "gold"}),
            ("settings", {"lot": 0.01, "max_signal_age_s": 3600, "max_entry_distance_pips": None}),
        ):
            assert (await ctl(ctl_nc, verb, "u1", **body))["ok"], verb
        stop(procs[1])  # the host goes away; a signal arrives meanwhile

        (entry,) = await inject(
            admin,
            [ScriptLine(channel="gold", id=1, text="XAUUSD BUY NOW 2000\nSL 1990\nTP 2020")],
            default_channel="gold",
            wait_s=30,
        )
        assert entry.get("parsed"), entry
        # one round a second: a host deciding before it heard one would find no price
        feed = asyncio.create_task(_feed(admin, every_s=1.0))
        procs.append(start("actors"))

        deadline = asyncio.get_running_loop().time() + 30
        while not (decided := await asyncio.to_thread(_decisions, database_url, "u1")):
            assert asyncio.get_running_loop().time() < deadline, "the signal was never decided"
            await asyncio.sleep(0.2)
        assert decided == [("user.signal_handled", "")]
    finally:
        if feed is not None:
            feed.cancel()
        for proc in procs:
            stop(proc)
        await ctl_nc.close()
        await admin.close()
