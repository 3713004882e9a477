"""Execution benchmark through the MetaApi path: the `execution` benchmark's verdicts for
MetaApi accounts, through the production adapter and the real metaapi-cloud-sdk into
the stand-in (`sigrelay sim metaapi`, in its own process), on real NATS and Postgres.

Three phases on the same running services:
- warm-up: one verdict per account (`BENCH_METAAPI_ACCOUNTS`, 100). Each account's
  first order opens and synchronizes its RPC connection, which later orders reuse.
  The phase's time is what a cold start costs;
- burst: `BENCH_METAAPI_ORDERS` (2,000) verdicts at once: orders/s;
- paced: `BENCH_METAAPI_PACED_RATE` (50) verdicts/s for `BENCH_METAAPI_PACED_S` (5) s:
  verdict -> submit latency with no backlog.

Per market order the adapter sends the trade and one `getPosition` for the fill price
(`fetch_fill_price`), so an order costs two websocket round trips to the stand-in.
Against the cloud each is a network round trip and costs rate-limit credits, so these
figures are an upper bound on what the adapter can do. They are not a prediction of
MetaApi's latency.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nats

from contracts import subjects
from contracts.envelope import new_id
from eventstore.outbox import OutboxRelay
from services.bench.execution import _context, _latencies, _publish, _Reports, _verdict
from services.bench.servers import bench_infrastructure, fresh_database
from services.execution.broker.metaapi import MetaApiConfig, MetaApiConnectionPool
from services.execution.broker.metaapi_endpoint import api_factory_for
from services.execution.directory import MetaApiDirectory, PaperDirectory, RoutingDirectory
from services.execution.executor import ExecutionConfig
from services.execution.service import ExecutionService
from services.runtime import bus
from services.runtime.credentials import Secret
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ensure_streams

TOKEN = Secret("bench.metaapi.token")  # the stand-in accepts any token not starting "bad"


def _start_stand_in(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    sigrelay = str(Path(sys.executable).with_name("sigrelay"))
    env = {**os.environ, "SIGRELAY_HOME": str(home)}
    env.pop("SIGRELAY_METAAPI_URL", None)
    log = (home / "metaapi-sim.log").open("wb")
    proc = subprocess.Popen(
        [sigrelay, "sim", "metaapi", "--port", "0", "--balance", "1000000"],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("SIGRELAY_METAAPI_URL="):
        proc.kill()
        raise RuntimeError(f"the MetaApi stand-in did not start: {line!r} (see {log.name})")
    return proc, line.split("=", 1)[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _resolve(user_id: str, account_id: str) -> Secret:
    return TOKEN


async def _phase(js: Any, sink: _Reports, verdicts: list[Any], total: int) -> float:
    sink.want, sink.done = total, asyncio.Event()
    t0 = time.perf_counter()
    await _publish(js, verdicts)
    await asyncio.wait_for(sink.done.wait(), 900)
    return time.perf_counter() - t0


async def run_bench(settings: RuntimeSettings) -> dict[str, Any]:
    orders = int(os.environ.get("BENCH_METAAPI_ORDERS", "2000"))
    accounts = int(os.environ.get("BENCH_METAAPI_ACCOUNTS", "100"))
    paced_rate = float(os.environ.get("BENCH_METAAPI_PACED_RATE", "50"))
    paced_s = float(os.environ.get("BENCH_METAAPI_PACED_S", "5"))
    home = settings.home / "bench"
    home.mkdir(parents=True, exist_ok=True)
    proc, url = await asyncio.to_thread(_start_stand_in, home)
    try:
        async with (
            bench_infrastructure(settings) as infra,
            fresh_database(infra.database_url) as db,
        ):
            return await _run(infra, db, settings, url, orders, accounts, paced_rate, paced_s)
    finally:
        await asyncio.to_thread(_stop, proc)


async def _run(
    infra: Any,
    db: str,
    settings: RuntimeSettings,
    url: str,
    orders: int,
    accounts: int,
    paced_rate: float,
    paced_s: float,
) -> dict[str, Any]:
    embedded = infra.embedded_nats
    admin_url = embedded.admin_url if embedded is not None else infra.nats_url_for("admin")
    admin = await nats.connect(admin_url, name="bench-execution-metaapi-admin")
    js = admin.jetstream(publish_async_max_pending=4000)
    await ensure_streams(js)
    if embedded is not None:  # the bench's own server: start from an empty order flow
        info = await js.stream_info("ORDERS")
        if info.state.messages:
            await js.purge_stream("ORDERS")
    sink = _Reports()
    sub = await admin.subscribe(f"{subjects.REPORT}.>", cb=sink.on_msg)
    exec_ctx = await _context("execution", infra.nats_url_for("execution"), db, settings)
    config = MetaApiConfig(max_connections=max(200, accounts), request_timeout_s=30.0)
    pool = MetaApiConnectionPool(config, api_factory=api_factory_for(url))
    directory = RoutingDirectory(
        PaperDirectory(exec_ctx.nc), MetaApiDirectory(_resolve, pool=pool, config=config)
    )
    execution = ExecutionService(
        ExecutionConfig(workers=int(os.environ.get("BENCH_EXECUTION_WORKERS", "1024"))),
        directory=directory,
        reconcile_on_start=False,
    )
    relay = OutboxRelay(exec_ctx.store, bus.JetStreamPublisher(exec_ctx.js), idle_poll_s=0.2)
    tasks = [
        asyncio.create_task(execution.run(exec_ctx)),
        asyncio.create_task(relay.run()),
    ]
    result: dict[str, Any] = {"name": "execution-metaapi", "accounts": accounts}
    try:
        await asyncio.wait_for(execution.ready.wait(), 30)
        run = sink.run = new_id()
        warm = [_verdict(n, accounts, f"{run}w", "metaapi") for n in range(accounts)]
        warm_s = await _phase(js, sink, warm, accounts)
        result.update(warmup_accounts=accounts, warmup_s=round(warm_s, 2))

        burst = [_verdict(n, accounts, f"{run}b", "metaapi") for n in range(orders)]
        burst_s = await _phase(js, sink, burst, accounts + orders)
        result.update(
            burst_orders=orders,
            burst_orders_per_s=round(orders / burst_s),
            **_latencies(sink, burst, "burst"),
        )

        paced_n = int(paced_rate * paced_s)
        paced = []
        sink.want, sink.done = accounts + orders + paced_n, asyncio.Event()
        start = time.perf_counter()
        for n in range(paced_n):
            delay = start + n / paced_rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            v = _verdict(n, accounts, f"{run}p", "metaapi")
            paced.append(v)
            await _publish(js, [v])
        await asyncio.wait_for(sink.done.wait(), 300)
        result.update(
            paced_orders=paced_n, paced_rate_per_s=paced_rate, **_latencies(sink, paced, "paced")
        )
        statuses: dict[str, int] = {}
        for report, _received in sink.received.values():
            statuses[report.status] = statuses.get(report.status, 0) + 1
        result.update(reports_by_status=statuses, duplicates=execution.stats()["duplicates"])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=10)
        await sub.unsubscribe()
        await directory.close()
        await bus.drain(exec_ctx.nc)
        await exec_ctx.store.close()
        await admin.close()
    return result
