"""`sigrelay sim metaapi --port 0` as a real process; the real SDK finds it through
SIGRELAY_METAAPI_URL (the production adapter's default factory) and the `price`
subcommand moves the market."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import pytest

from services.execution.broker.metaapi import MetaApiBroker, MetaApiConnectionPool
from tests.unit.broker.conftest import E2E_CONFIG
from tests.unit.broker.stubs import TOKEN, order

SIGRELAY = str(Path(sys.executable).with_name("sigrelay"))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _spawn(home: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SIGRELAY_HOME": str(home)}
    env.pop("SIGRELAY_METAAPI_URL", None)
    return subprocess.Popen(
        [SIGRELAY, "sim", "metaapi", "--port", "0"], stdout=subprocess.PIPE, stderr=log, env=env
    )


@pytest.fixture
async def sim_process(tmp_path: Path) -> AsyncIterator[str]:
    """The stand-in as a subprocess; its URL from the first stdout line. Stopped even
    when the test fails."""
    log = (tmp_path / "sim.log").open("wb")
    proc = _spawn(tmp_path, log)
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        line = first.decode().strip()
        assert line.startswith("SIGRELAY_METAAPI_URL=http://127.0.0.1:"), (
            f"first line {line!r}; log: {(tmp_path / 'sim.log').read_text()}"
        )
        yield line.split("=", 1)[1]
    finally:
        await asyncio.to_thread(_stop, proc)
        log.close()
    assert proc.returncode == 0, (tmp_path / "sim.log").read_text()


def _sigrelay(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIGRELAY_METAAPI_URL": url}
    return subprocess.run(
        [SIGRELAY, "sim", "metaapi", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_process_when_price_moved_through_tp_then_position_gone_and_profit_booked(
    sim_process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGRELAY_METAAPI_URL", sim_process)
    pool = MetaApiConnectionPool(E2E_CONFIG)  # the production factory: redirected by the env
    broker = MetaApiBroker(token=TOKEN, account_id="proc-acc-1", pool=pool, config=E2E_CONFIG)
    try:
        before = await broker.account_info()
        quote = await broker.quote("XAUUSD")
        placed = await broker.place_order(order("proc1", volume=0.1, tp=quote.ask + 10))
        moved = await asyncio.to_thread(
            _sigrelay, sim_process, "price", "XAUUSD", str(quote.ask + 12)
        )
        positions = await broker.positions()
        after = await broker.account_info()
    finally:
        await broker.close()
        await pool.close()

    assert (before.balance, before.equity, before.currency) == (10_000.0, 10_000.0, "USD")
    assert quote.bid == 4350.0  # the stand-in's starting gold price
    assert placed.fill_price == quote.ask
    assert moved.returncode == 0, moved.stderr
    assert positions == []
    # the take profit fired at the quote that crossed it: bid ask + 12 on 0.1 lot of 100 oz
    assert after.balance == pytest.approx(10_000.0 + 12 * 0.1 * 100, abs=0.01)


def test_client_when_url_unset_then_one_line_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIGRELAY_METAAPI_URL"}
    done = subprocess.run(
        [SIGRELAY, "sim", "metaapi", "price", "XAUUSD", "4400"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "sigrelay: SIGRELAY_METAAPI_URL is not set: start `sigrelay sim metaapi`"
        " and export the line it prints"
    ]
