"""Event-store benchmark: single-event append (rate, latency), batched append,
and replay in global order, each beside the raw-psycopg floor measured in the
same run (PERFORMANCE.md asks for ratios: absolute times drift)."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import psycopg

from contracts.envelope import Envelope, new_id, now_ns
from eventstore import EventStore, request
from eventstore.pg import configure
from services.bench.servers import bench_infrastructure, fresh_database
from services.runtime.settings import RuntimeSettings


class BenchEvent(Envelope, frozen=True, kw_only=True, tag="bench.event"):
    symbol: str
    volume: float
    note: str


def _event(i: int) -> BenchEvent:
    # ~200 bytes of JSON, like a typical user event
    return BenchEvent(
        id=new_id(),
        ts=now_ns(),
        correlation_id=new_id(),
        symbol="XAUUSD",
        volume=0.01 * i,
        note="x" * 20,
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_bench(settings: RuntimeSettings) -> dict[str, Any]:
    singles = int(os.environ.get("BENCH_SINGLE_APPENDS", "3000"))
    replay_events = int(os.environ.get("BENCH_REPLAY_EVENTS", "1000000"))
    batch_size = 100
    async with bench_infrastructure(settings) as infra, fresh_database(infra.database_url) as url:
        store = await EventStore.connect(url, min_size=2, max_size=4)
        try:
            result: dict[str, Any] = {"name": "eventstore"}
            result.update(await _single(store, singles))
            result.update(await _batched(store, replay_events // 2, batch_size))
            result.update(await _batched(store, replay_events // 2, 1000))
            result.update(await _replay(store))
            result.update(await _floor(url, batch_size))
        finally:
            await store.close()
    result["batched_100_vs_floor"] = round(
        result["batched_append_100_per_commit_events_per_s"]
        / result["floor_executemany_events_per_s"],
        2,
    )
    result["replay_vs_floor"] = round(
        result["replay_events_per_s"] / result["floor_cursor_rows_per_s"], 2
    )
    return result


async def _single(store: EventStore, n: int) -> dict[str, Any]:
    latencies = []
    started = time.perf_counter()
    for i in range(n):
        event = _event(i)
        t0 = time.perf_counter()
        await store.append(f"single-{i}", 0, [event])
        latencies.append((time.perf_counter() - t0) * 1e6)
    elapsed = time.perf_counter() - started
    return {
        "single_append_per_s": round(n / elapsed),
        "single_append_p50_us": round(statistics.median(latencies)),
        "single_append_p99_us": round(_pct(latencies, 0.99)),
    }


async def _batched(store: EventStore, total: int, batch_size: int) -> dict[str, Any]:
    # Requests are built (and encoded) outside the timed part: the writer in
    # production receives encoded events from the actors.
    elapsed = 0.0
    written = 0
    chunk = 20_000
    stream_no = batch_size * 1_000_000  # distinct streams per run, 50k of them
    while written < total:
        batches = []
        for _ in range(chunk // batch_size):
            reqs = []
            for _ in range(batch_size):
                reqs.append(
                    request(f"user-{batch_size}-{stream_no % 50_000}", -1, [_event(stream_no)])
                )
                stream_no += 1
            batches.append(reqs)
        t0 = time.perf_counter()
        for reqs in batches:
            await store.append_batch(reqs)
        elapsed += time.perf_counter() - t0
        written += chunk
    return {f"batched_append_{batch_size}_per_commit_events_per_s": round(written / elapsed)}


async def _replay(store: EventStore) -> dict[str, Any]:
    t0 = time.perf_counter()
    count = 0
    async for _ in store.read_all(0):
        count += 1
    elapsed = time.perf_counter() - t0
    return {"replay_events": count, "replay_events_per_s": round(count / elapsed)}


async def _floor(url: str, batch_size: int) -> dict[str, Any]:
    """Raw psycopg on a plain table: executemany per 100 rows, and a binary server cursor."""
    payload = '{"k": "' + "x" * 180 + '"}'
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute("CREATE TEMP TABLE floor (id bigserial primary key, s text, d jsonb)")
        rows = [(f"s{i}", payload) for i in range(batch_size)]
        n_batches = 200
        t0 = time.perf_counter()
        for _ in range(n_batches):
            async with conn.cursor() as cur:
                await cur.executemany("INSERT INTO floor (s, d) VALUES (%s, %s::jsonb)", rows)
            await conn.commit()
        insert_rate = n_batches * batch_size / (time.perf_counter() - t0)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        configure(conn)  # same raw-bytes JSON loading as the store: a like-for-like floor
        t0 = time.perf_counter()
        count = 0
        async with conn.transaction():
            cur = conn.cursor(name="floor", binary=True)
            cur.itersize = 5000
            await cur.execute(
                "SELECT position, stream, version, type, data FROM events ORDER BY position"
            )
            while rows_read := await cur.fetchmany(5000):
                count += len(rows_read)
        read_rate = count / (time.perf_counter() - t0)
    return {
        "floor_executemany_events_per_s": round(insert_rate),
        "floor_cursor_rows_per_s": round(read_rate),
    }
