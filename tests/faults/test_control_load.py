"""A load of 1,000 concurrent control requests against a real actor host is answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from contracts.channels import ChannelDirectory, ChannelInfo, save_directory
from contracts.subjects import inbox_prefix
from eventstore.migrate import migrate
from tests.support.control import ctl, wait_serving
from tests.support.processes import start_service, stop

pytestmark = pytest.mark.faults


async def test_thousand_concurrent_control_requests_then_every_one_answered(
    isolated_nats, database_url: str, tmp_path: Path
):
    await migrate(database_url)
    home = tmp_path / "home"
    save_directory(home, ChannelDirectory(channels={"gold": ChannelInfo(default_symbol="XAUUSD")}))
    proc = start_service(
        "actors", nats_url=isolated_nats.url_for("actors"), database_url=database_url, home=home
    )
    nc = await nats.connect(isolated_nats.url_for("ctl"), inbox_prefix=inbox_prefix("ctl"))
    try:
        await wait_serving(nc, "load0")

        registered = await asyncio.gather(*(ctl(nc, "register", f"load{i}") for i in range(1000)))
        subscribed = await asyncio.gather(
            *(ctl(nc, "subscribe", f"load{i}", channel="gold") for i in range(1000))
        )
        statuses = await asyncio.gather(*(ctl(nc, "status", f"load{i}") for i in range(1000)))

        assert [r["ok"] for r in registered] == [True] * 1000
        assert [r["ok"] for r in subscribed] == [True] * 1000
        assert {tuple(s["data"]["subscriptions"]) for s in statuses} == {("gold",)}
    finally:
        stop(proc)
        await nc.close()
