"""`sigrelay bench e2e --users N`: the whole pipeline on real NATS and Postgres,
every service in its own process, the paper broker behind execution.

1. one user: signals to a channel with one subscriber, one at a time, latency
   from the channel message to the order's submission at the broker;
2. one signal fanned out to N subscribed users: the same latency per user
   (p50/p99/max) and the time to the last order;
3. a sustained stream: signals posted back to back, orders per second through
   ingest → actors → risk → execution → broker;
4. peak RSS of every service, and CPU seconds per phase of every process
   (services, NATS, Postgres with its backends).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import replace
from typing import Any

import nats
import psutil

from services.demo.observer import BusObserver
from services.demo.run import SERVICES, ensure_channels, latest_prices
from services.ingest.inject import ScriptLine, inject
from services.runtime.ctl import request
from services.runtime.settings import RuntimeSettings
from services.runtime.supervisor import Supervisor

SOLO_CHANNEL = "indices"  # a demo channel the N users are not subscribed to


class ProcessSampler:
    """Peak RSS of each child, and CPU seconds of every process in the run
    (services, NATS, Postgres with its backends) between named marks."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._procs = {
            c.name: psutil.Process(c.proc.pid) for c in supervisor.children if c.proc is not None
        }
        self._servers: dict[str, psutil.Process] = {}
        for name, server in (
            ("nats", supervisor.infra.embedded_nats),
            ("postgres", supervisor.infra.embedded_postgres),
        ):
            pid = server.pid if server is not None else None
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    self._servers[name] = psutil.Process(pid)
        self.peak_rss: dict[str, int] = dict.fromkeys(self._procs, 0)
        self._marks: list[tuple[str, float, dict[str, float]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self.mark("start")

    async def _run(self) -> None:
        while True:
            for name, proc in self._procs.items():
                with contextlib.suppress(psutil.Error):  # a restarting child has no RSS
                    self.peak_rss[name] = max(self.peak_rss[name], proc.memory_info().rss)
            await asyncio.sleep(0.2)

    def _cpu(self) -> dict[str, float]:
        cpu: dict[str, float] = {}
        for name, proc in {**self._procs, **self._servers}.items():
            tree = [proc]
            if name in self._servers:  # postgres works in its backends
                with contextlib.suppress(psutil.Error):
                    tree += proc.children(recursive=True)
            total = 0.0
            for p in tree:
                with contextlib.suppress(psutil.Error):
                    times = p.cpu_times()
                    total += times.user + times.system
            cpu[name] = total
        return cpu

    async def settle(self, *, busy_below: float = 0.25, within_s: float = 60.0) -> float:
        """Wait until the whole system uses less than `busy_below` of a core (the
        audit and snapshots catching up on the set-up); returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < within_s:
            before = self._cpu()
            await asyncio.sleep(1.0)
            after = self._cpu()
            if sum(after[k] - before.get(k, 0.0) for k in after) < busy_below:
                break
        return round(time.monotonic() - started, 1)

    def mark(self, name: str) -> None:
        """Close the phase that ran since the previous mark under `name`."""
        self._marks.append((name, time.monotonic(), self._cpu()))

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
        phases, walls = {}, {}
        for (_, t0, before), (name, t1, after) in zip(self._marks, self._marks[1:], strict=False):
            phases[name] = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}
            walls[name] = round(t1 - t0, 2)
        return {
            "peak_rss_mb": {k: round(v / 2**20, 1) for k, v in self.peak_rss.items()},
            "cpu_s": phases,
            "phase_wall_s": walls,
        }


async def _users(nc: Any, users: list[str], channel: str) -> None:
    gate = asyncio.Semaphore(64)

    async def one(user: str) -> None:
        async with gate:
            for verb, body in (
                ("register", {}),
                ("link_account", {"account_id": "paper"}),
                ("subscribe", {"channel": channel}),
                (
                    "settings",
                    {
                        "lot": 0.01,
                        # a 10,000-user run lasts minutes: the market must not drift
                        # out of tolerance meanwhile, or refusals would replace orders
                        "max_signal_age_s": 3600,
                        "max_entry_distance_pips": None,
                        "risk.max_open_positions": 1000,
                        "risk.max_positions_per_symbol": 1000,
                        "risk.max_orders_per_minute": 10000,
                    },
                ),
            ):
                reply = await request(nc, verb, user, body, timeout_s=60)
                if not reply.get("ok") and reply["error"]["code"] != "user_exists":
                    raise RuntimeError(f"{verb} for {user}: {reply['error']}")

    await asyncio.gather(*(one(u) for u in users))


async def _one_user(nc: Any, price: float, first_id: int, rounds: int) -> dict[str, Any]:
    """Signals to a channel with one subscriber, one at a time on a quiet system:
    the latency of the pipeline itself, without a fan-out queued ahead."""
    await _users(nc, ["bench-solo"], SOLO_CHANNEL)
    observer = BusObserver()
    await observer.start(nc)
    try:
        for k in range(rounds):
            line = ScriptLine(channel=SOLO_CHANNEL, id=first_id + k, text=_ticket(price))
            await inject(nc, [line], default_channel=SOLO_CHANNEL)
            await _wait_reports(observer, k + 1, within_s=30)
            await asyncio.sleep(0.02)  # let the report's own writes settle: no overlap
        latency = observer.figures.latency()
        return {
            "one_user_signals": rounds,
            "one_user_orders": sum(observer.figures.reports.values()),
            "one_user_latency_p50_ms": latency.get("p50_ms"),
            "one_user_latency_p99_ms": latency.get("p99_ms"),
            "one_user_latency_max_ms": latency.get("max_ms"),
        }
    finally:
        await observer.stop()


async def _wait_reports(observer: BusObserver, expected: int, within_s: float) -> None:
    """Until every expected leg has an order report or a refusal (by an actor or risk)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        f = observer.figures
        done = (
            sum(f.reports.values())
            + sum(f.actor_refusals.values())
            + sum(f.risk_rejections.values())
        )
        if done >= expected:
            return
        await asyncio.sleep(0.05)


def _ticket(price: float) -> str:
    return f"XAUUSD BUY NOW {price:.2f}\nSL {price - 15:.2f}\nTP {price + 20:.2f}"


async def run_bench(settings: RuntimeSettings) -> dict[str, Any]:
    users = int(os.environ.get("BENCH_USERS", "1000"))
    sustained = int(os.environ.get("BENCH_E2E_SIGNALS", "5"))
    solo_rounds = int(os.environ.get("BENCH_E2E_ONE_USER_SIGNALS", "50"))
    home = settings.home / "bench-e2e"
    settings = replace(settings, home=home)
    supervisor = Supervisor(settings, SERVICES)
    await supervisor.prepare()
    ensure_channels(settings)
    supervisor.start_children()
    result: dict[str, Any] = {"name": "e2e", "users": users}
    try:
        nc = await nats.connect(supervisor.infra.nats_url_for("admin"), name="sigrelay-bench")
        try:
            await supervisor.wait_ready(nc)
            await _users(nc, [f"bench{i:06d}" for i in range(users)], "gold")
            prices = await latest_prices(nc, ("XAUUSD",))
            price = prices.get("XAUUSD", 2000.0)
            base = int(time.time() * 1000)
            sampler = ProcessSampler(supervisor)
            result["settle_s"] = await sampler.settle()
            sampler.start()
            result.update(await _one_user(nc, price, base + 1_000_000, solo_rounds))
            sampler.mark("one_user")

            observer = BusObserver()
            await observer.start(nc)
            await inject(
                nc,
                [ScriptLine(channel="gold", id=base, text=_ticket(price))],
                default_channel="gold",
            )
            await _wait_reports(observer, users, within_s=120)
            figures = observer.figures
            latency = figures.latency()
            posted_ns = min((i.signal_posted_ns for i in observer._intents.values()), default=0)
            result.update(
                one_signal_orders=sum(figures.reports.values()),
                one_signal_latency_p50_ms=latency.get("p50_ms"),
                one_signal_latency_p99_ms=latency.get("p99_ms"),
                one_signal_latency_max_ms=latency.get("max_ms"),
                one_signal_time_to_last_order_ms=round(
                    (figures.last_submit_ns - posted_ns) / 1e6, 1
                )
                if posted_ns and figures.last_submit_ns
                else None,
                one_signal_refusals=dict(figures.actor_refusals + figures.risk_rejections),
            )
            await observer.stop()
            sampler.mark("one_signal")

            stream = BusObserver()
            await stream.start(nc)
            t0 = time.perf_counter()
            lines = [
                ScriptLine(channel="gold", id=base + 1 + k, text=_ticket(price))
                for k in range(sustained)
            ]
            await asyncio.gather(
                *(inject(nc, [line], default_channel="gold", wait_s=30) for line in lines)
            )
            await _wait_reports(stream, users * sustained, within_s=300)
            elapsed = time.perf_counter() - t0
            orders = sum(stream.figures.reports.values())
            result.update(
                sustained_signals=sustained,
                sustained_orders=orders,
                sustained_refusals=dict(
                    stream.figures.actor_refusals + stream.figures.risk_rejections
                ),
                sustained_orders_per_s=round(orders / elapsed),
                sustained_elapsed_s=round(elapsed, 2),
            )
            await stream.stop()
            sampler.mark("sustained")
            result.update(await sampler.stop())
        finally:
            await nc.close()
    finally:
        await supervisor.shutdown()
    return result
