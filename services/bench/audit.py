"""Audit benchmark: how fast the audit log records and verifies.

- `record_build_per_s`: turning a message into a record (JSON decode,
  redaction, canonical encoding), pure CPU.
- `writer_records_per_s`: records/s through the single writer (sealing,
  hashing, group commit into `audit_records`), in-process and WITHOUT NATS:
  records are built beforehand, in chunks, outside the timed part.
- `nats_records_per_s`: end to end through NATS: messages published to the
  streams beforehand, then the `AuditService` started and timed until all
  are recorded (pull consumers, per-message acks, the same writer). Only on
  the embedded bench NATS (its streams are purged first); skipped when
  NATS_URL points at a server we must not purge.
- `verify_records_per_s`: `sigrelay audit verify` over everything written.

BENCH_AUDIT_RECORDS (default 1,000,000) records go through the writer;
BENCH_AUDIT_NATS_RECORDS (default 50,000) through NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import nats
from nats.js.errors import NotFoundError

from contracts import subjects
from contracts.envelope import encode, new_id
from contracts.ingest import ParsedSignal
from contracts.orders import ExecutionReport, OrderIntent
from contracts.signals import OpenSignal
from contracts.subjects import inbox_prefix
from eventstore import EventStore
from eventstore.pg import open_pool
from services.audit import tools
from services.audit.chain import AuditKeys, AuditRecord
from services.audit.keys import keys_for_writing
from services.audit.records import build_record
from services.audit.service import AuditService, consumer_specs
from services.audit.writer import AuditWriter
from services.bench.servers import bench_infrastructure, fresh_database
from services.runtime.infrastructure import Infrastructure
from services.runtime.service import ServiceContext
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ensure_streams

T0 = 1_790_000_000_000_000_000
USERS = 10_000
CHUNK = 20_000


def _message(i: int) -> tuple[str, str, bytes]:
    """(subject, stream, body) of the i-th message: the mix one signal makes."""
    user = f"u{i % USERS}"
    signal_id = f"gold:{i // 8}"
    kind = i % 4
    if kind == 0:
        parsed = ParsedSignal(
            id=f"ps-{i}",
            ts=T0 + i,
            correlation_id=signal_id,
            signal_id=signal_id,
            channel="gold",
            message_id=i // 8,
            posted_ns=T0,
            result=OpenSignal(
                symbol="XAUUSD", side="buy", entry=4357.0, sl=4340.0, tps=(4365.0, 4380.0)
            ),
            text="XAUUSD BUY NOW 4357\nSL 4340\nTP1 4365\nTP2 4380",
        )
        return subjects.parsed("gold"), "SIGNALS", encode(parsed)
    intent = OrderIntent(
        id=f"oi-{i}",
        ts=T0 + i,
        correlation_id=signal_id,
        causation_id=f"ps-{i}",
        intent_id=f"{signal_id}:{user}:1:open",
        user_id=user,
        account_id=f"acc-{user}",
        broker="paper",
        action="open",
        signal_id=signal_id,
        symbol="XAUUSD",
        side="buy",
        volume=0.1,
        price=4357.0,
        sl=4340.0,
        tp=4365.0,
    )
    if kind in (1, 2):
        return subjects.intent(user), "ORDERS", encode(intent)
    report = ExecutionReport(
        id=f"er-{i}",
        ts=T0 + i,
        correlation_id=signal_id,
        intent_id=intent.intent_id,
        user_id=user,
        account_id=intent.account_id,
        signal_id=signal_id,
        action="open",
        status="filled",
        price=4357.2,
        volume=0.1,
        reason="opened 0.1 lot XAUUSD buy at 4357.2",
    )
    return subjects.report(user), "ORDERS", encode(report)


_HEADERS = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def _records(start: int, n: int) -> list[AuditRecord]:
    out = []
    for i in range(start, start + n):
        subject, stream, body = _message(i)
        out.append(build_record(subject, body, {**_HEADERS, "Nats-Msg-Id": str(i)}, stream, i + 1))
    return out


async def run_bench(settings: RuntimeSettings) -> dict[str, Any]:
    total = int(os.environ.get("BENCH_AUDIT_RECORDS", "1000000"))
    through_nats = int(os.environ.get("BENCH_AUDIT_NATS_RECORDS", "50000"))
    result: dict[str, Any] = {"name": "audit"}
    async with bench_infrastructure(settings) as infra:
        async with fresh_database(infra.database_url) as url:
            keys = keys_for_writing(settings.env, settings.home)
            result.update(await _writer(url, total, keys))
            result.update(await _verify(url, keys))
        if infra.embedded_nats is not None and through_nats > 0:
            async with fresh_database(infra.database_url) as url:
                result.update(await _through_nats(infra, url, through_nats, settings))
        elif through_nats > 0:
            result["nats_records_per_s"] = "skipped: NATS_URL is not the bench's own server"
    return result


async def _writer(url: str, total: int, keys: AuditKeys) -> dict[str, Any]:
    pool = await open_pool(url, min_size=1, max_size=2, name="bench-audit")
    writer = AuditWriter(pool, keys=keys, max_batch=1000)
    task = asyncio.create_task(writer.run())
    build_s = write_s = 0.0
    try:
        done = 0
        while done < total:
            n = min(CHUNK, total - done)
            t0 = time.perf_counter()
            records = _records(done, n)
            build_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            await asyncio.gather(*(writer.submit(r) for r in records))
            write_s += time.perf_counter() - t0
            done += n
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.close()
    return {
        "records": total,
        "record_build_per_s": round(total / build_s),
        "writer_records_per_s": round(total / write_s),
        "writer_batches": writer.batches,
        "writer_mean_batch": round(writer.written / max(writer.batches, 1)),
    }


async def _verify(url: str, keys: AuditKeys) -> dict[str, Any]:
    report = await tools.verify(url, keys)
    if not report.authentic:
        raise RuntimeError(f"the benchmark's own audit log does not verify: {report.first_break}")
    return {
        "verify_records": report.records,
        "verify_chains": report.chains,
        "verify_s": report.elapsed_s,
        "verify_records_per_s": round(report.records_per_s),
    }


async def _through_nats(
    infra: Infrastructure, url: str, n: int, settings: RuntimeSettings
) -> dict[str, Any]:
    admin = await nats.connect(infra.nats_url_for("admin"), name="bench-audit-admin")
    js = admin.jetstream(publish_async_max_pending=4000)
    await ensure_streams(js)
    for spec in consumer_specs():  # this bench NATS is ours: start from empty streams
        await js.purge_stream(spec.stream)
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(spec.stream, spec.durable)
    run = new_id()  # ids of an earlier run may still be in the duplicate window
    for i in range(n):
        subject, _, body = _message(i)
        await js.publish_async(
            subject, body, headers={**_HEADERS, "Nats-Msg-Id": f"bench-{run}-{i}"}
        )
    await asyncio.wait_for(js.publish_async_completed(), 60)
    await admin.close()

    nc = await nats.connect(
        infra.nats_url_for("audit"), name="bench-audit", inbox_prefix=inbox_prefix("audit")
    )
    store = await EventStore.connect(url, min_size=1, max_size=4, producer="audit")
    service = AuditService()
    ctx = ServiceContext(
        name="audit", settings=settings, nc=nc, js=nc.jetstream(), store=store, database_url=url
    )
    t0 = time.perf_counter()
    task = asyncio.create_task(service.run(ctx))
    try:
        deadline = t0 + 600
        while (service.writer.written if service.writer else 0) < n:
            if task.done():
                task.result()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"audit recorded {service.stats()} of {n} messages in 600 s")
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - t0
        stats = service.stats()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await nc.close()
        await store.close()
    return {
        "nats_records": n,
        "nats_records_per_s": round(n / elapsed),
        "nats_mean_batch": round(stats["recorded"] / max(stats["batches"], 1)),
    }
