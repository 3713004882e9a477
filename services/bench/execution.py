"""Execution benchmark: approved verdicts for many paper accounts through the execution
service and the paper exchange, in this process, on real NATS (JetStream) and Postgres.

Two phases, each on the same running services:
- burst: `BENCH_EXECUTION_ORDERS` (20,000) verdicts published at once over
  `BENCH_EXECUTION_ACCOUNTS` (1,000) accounts: orders/s from the first
  publish to the last report;
- paced: `BENCH_EXECUTION_PACED_RATE` (500) verdicts/s for
  `BENCH_EXECUTION_PACED_S` (5) seconds: latency with no backlog.

`BENCH_EXECUTION_WORKERS` (1,024) bounds broker calls in flight (at most one
per account is in flight anyway). `BENCH_EXECUTION_PAPER=process` runs the paper exchange in a child process
(as in production, where `paper` is its own service) instead of beside
execution in this one; everything else stays in this process.

Latencies: verdict -> broker submit (`report.submitted_ns - verdict.ts`, when
execution sent it to the exchange) and verdict -> report received (the whole
loop: consumer, two group-committed appends, the exchange's own commit, the
outbox relay and JetStream).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import msgspec
import nats

from contracts import subjects
from contracts.envelope import encode, new_id, now_ns
from contracts.orders import ExecutionReport, OrderIntent, RiskVerdict
from eventstore import EventStore
from eventstore.outbox import OutboxRelay
from services.bench.servers import bench_infrastructure, fresh_database
from services.execution.executor import ExecutionConfig
from services.execution.service import ExecutionService
from services.paper.exchange import PaperExchangeConfig
from services.paper.service import PaperExchangeService
from services.runtime import bus
from services.runtime.service import ServiceContext
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ensure_streams

_reports = msgspec.json.Decoder(ExecutionReport)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _verdict(n: int, accounts: int, run: str, broker: str = "paper") -> RiskVerdict:
    user = f"b{n % accounts}"
    now = now_ns()
    intent = OrderIntent(
        id=new_id(),
        ts=now,
        intent_id=f"{run}:{n}",
        user_id=user,
        account_id=f"paper-{user}" if broker == "paper" else f"mt-{user}",
        broker=broker,
        action="open",
        signal_id=f"{run}-sig{n // accounts}",
        symbol="EURUSD" if n % 2 else "XAUUSD",
        side="buy" if n % 3 else "sell",
        volume=0.01,
    )
    return RiskVerdict(id=new_id(), ts=now, intent=intent, approved=True)


class _Reports:
    def __init__(self) -> None:
        self.received: dict[str, tuple[ExecutionReport, int]] = {}
        self.done = asyncio.Event()
        self.want = 0
        self.run = ""

    async def on_msg(self, msg: Any) -> None:
        report = _reports.decode(msg.data)
        if not report.intent_id.startswith(self.run):
            return  # a report from an earlier run on the same server
        self.received.setdefault(report.intent_id, (report, now_ns()))
        if len(self.received) >= self.want:
            self.done.set()


async def _context(name: str, url: str, db: str, settings: RuntimeSettings) -> ServiceContext:
    nc = await bus.connect(url, f"bench-{name}")
    store = await EventStore.connect(db, min_size=2, max_size=8, producer=name)
    return ServiceContext(
        name=name, settings=settings, nc=nc, js=bus.jetstream(nc), store=store, database_url=db
    )


def _paper_child(url: str, db: str, home: str, ready: Any) -> None:
    """Child-process entry: the paper exchange alone, until terminated."""

    async def main() -> None:
        ctx = await _context("paper", url, db, RuntimeSettings(home=Path(home)))
        paper = PaperExchangeService(PaperExchangeConfig(balance=1_000_000.0))
        task = asyncio.create_task(paper.run(ctx))
        await paper.ready.wait()
        ready.set()
        await task

    asyncio.run(main())


async def _publish(js: Any, verdicts: list[RiskVerdict]) -> None:
    window = 2000
    for start in range(0, len(verdicts), window):
        futures = [
            await js.publish_async(
                subjects.verdict(v.intent.user_id), encode(v), headers={"Nats-Msg-Id": v.id}
            )
            for v in verdicts[start : start + window]
        ]
        await asyncio.gather(*futures)


def _latencies(sink: _Reports, verdicts: list[RiskVerdict], prefix: str) -> dict[str, float | int]:
    submit, loop = [], []
    for v in verdicts:
        got = sink.received.get(v.intent.intent_id)
        if got is None:
            continue
        report, received_ns = got
        submit.append((report.submitted_ns - v.ts) / 1e6)
        loop.append((received_ns - v.ts) / 1e6)
    return {
        f"{prefix}_verdict_to_submit_p50_ms": round(_pct(submit, 0.5), 2),
        f"{prefix}_verdict_to_submit_p99_ms": round(_pct(submit, 0.99), 2),
        f"{prefix}_verdict_to_report_p50_ms": round(_pct(loop, 0.5), 2),
        f"{prefix}_verdict_to_report_p99_ms": round(_pct(loop, 0.99), 2),
    }


async def run_bench(settings: RuntimeSettings) -> dict[str, Any]:
    orders = int(os.environ.get("BENCH_EXECUTION_ORDERS", "20000"))
    accounts = int(os.environ.get("BENCH_EXECUTION_ACCOUNTS", "1000"))
    paced_rate = float(os.environ.get("BENCH_EXECUTION_PACED_RATE", "500"))
    paced_s = float(os.environ.get("BENCH_EXECUTION_PACED_S", "5"))
    async with bench_infrastructure(settings) as infra, fresh_database(infra.database_url) as db:
        embedded = infra.embedded_nats
        admin_url = embedded.admin_url if embedded is not None else infra.nats_url_for("admin")
        paper_url, exec_url = infra.nats_url_for("paper"), infra.nats_url_for("execution")
        admin = await nats.connect(admin_url, name="bench-execution-admin")
        js = admin.jetstream(publish_async_max_pending=4000)
        await ensure_streams(js)
        if embedded is not None:  # the bench's own server: start from an empty order flow
            info = await js.stream_info("ORDERS")
            if info.state.messages:
                await js.purge_stream("ORDERS")
        sink = _Reports()
        sub = await admin.subscribe(f"{subjects.REPORT}.>", cb=sink.on_msg)
        separate = os.environ.get("BENCH_EXECUTION_PAPER", "inprocess") == "process"
        exec_ctx = await _context("execution", exec_url, db, settings)
        paper = PaperExchangeService(PaperExchangeConfig(balance=1_000_000.0))
        child: Any = None
        paper_ctx: ServiceContext | None = None
        execution = ExecutionService(
            ExecutionConfig(workers=int(os.environ.get("BENCH_EXECUTION_WORKERS", "1024"))),
            reconcile_on_start=False,
        )
        relay = OutboxRelay(exec_ctx.store, bus.JetStreamPublisher(exec_ctx.js), idle_poll_s=0.2)
        tasks: list[asyncio.Task[None]] = []
        if separate:
            mp = multiprocessing.get_context("spawn")
            ready = mp.Event()
            child = mp.Process(
                target=_paper_child, args=(paper_url, db, str(settings.home), ready), daemon=True
            )
            child.start()
            if not await asyncio.to_thread(ready.wait, 60):
                raise RuntimeError("the paper exchange child process did not start in 60 s")
        else:
            paper_ctx = await _context("paper", paper_url, db, settings)
            tasks.append(asyncio.create_task(paper.run(paper_ctx)))
            await asyncio.wait_for(paper.ready.wait(), 30)
        tasks += [
            asyncio.create_task(execution.run(exec_ctx)),
            asyncio.create_task(relay.run()),
        ]
        await asyncio.wait_for(execution.ready.wait(), 30)
        result: dict[str, Any] = {
            "name": "execution",
            "accounts": accounts,
            "paper_exchange": "child process" if separate else "in-process",
        }
        try:
            run = sink.run = new_id()
            burst = [_verdict(n, accounts, f"{run}b") for n in range(orders)]
            sink.want, sink.done = orders, asyncio.Event()
            t0 = time.perf_counter()
            await _publish(js, burst)
            published = time.perf_counter() - t0
            await asyncio.wait_for(sink.done.wait(), 600)
            elapsed = time.perf_counter() - t0
            result.update(
                burst_orders=orders,
                burst_publish_per_s=round(orders / published),
                burst_orders_per_s=round(orders / elapsed),
                **_latencies(sink, burst, "burst"),
            )

            paced_n = int(paced_rate * paced_s)
            paced = []
            sink.want, sink.done = orders + paced_n, asyncio.Event()
            start = time.perf_counter()
            for n in range(paced_n):
                due = start + n / paced_rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                v = _verdict(n, accounts, f"{run}p")
                paced.append(v)
                await js.publish(
                    subjects.verdict(v.intent.user_id), encode(v), headers={"Nats-Msg-Id": v.id}
                )
            await asyncio.wait_for(sink.done.wait(), 120)
            result.update(
                paced_orders=paced_n,
                paced_rate_per_s=paced_rate,
                **_latencies(sink, paced, "paced"),
            )
            stats = execution.stats()
            result.update(
                duplicates=stats["duplicates"],
                reports=stats["reports"],
            )
            if not separate:
                result.update(
                    paper_facts_stored=paper.stats()["facts_stored"],
                    paper_store_failures=paper.stats()["store_failures"],
                )
        finally:
            for task in tasks:
                task.cancel()
            # the outbox relay can sit in a database call for a while after a cancel
            await asyncio.wait(tasks, timeout=10)
            await sub.unsubscribe()
            if child is not None:
                child.terminate()
                child.join(10)
            for ctx in (exec_ctx, paper_ctx):
                if ctx is not None:
                    await bus.drain(ctx.nc)
                    await ctx.store.close()
            await admin.close()
    return result
