"""The audit service: records everything that crosses the bus.

One durable pull consumer per subject filter of every stream in
`contracts.subjects.STREAMS` (signals.raw, signals.parsed, orders.intent,
orders.verdict, orders.report, events, audit, dlq), all feeding one
`AuditWriter`. A message is acknowledged only after the transaction holding
its record commits; a failed commit naks it (with back-off, without limit:
audit never gives a message up to the dead letters). Nothing is decoded
against a schema: a body that is not JSON is recorded as text, type
`unparsed`. A redelivered message (same stream position) appends nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from nats.aio.msg import Msg

from contracts.envelope import Codec
from contracts.subjects import STREAMS
from services.audit.keys import keys_for_writing
from services.audit.records import build_record
from services.audit.writer import AuditWriter
from services.runtime.consumer import ConsumerConfigSpec, JetStreamConsumer
from services.runtime.service import ServiceContext

log = logging.getLogger("sigrelay.audit")

# a message is retried until it is recorded: the audit log must lose nothing
_MAX_DELIVER = 1_000_000


class PassThroughCodec(Codec):
    """Hands the body over as bytes: audit records whatever arrives."""

    def __init__(self) -> None:
        self.types = ()
        self.tags = {}

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        return bytes(data)


def durable_name(subject_filter: str) -> str:
    """`signals.raw.>` -> `audit_signals_raw`."""
    tokens = [t for t in subject_filter.split(".") if t not in (">", "*")]
    return "audit_" + "_".join(tokens)


def consumer_specs(*, concurrency: int = 2048, batch: int = 512) -> list[ConsumerConfigSpec]:
    """One durable consumer per subject filter of every stream of the design."""
    return [
        ConsumerConfigSpec(
            service="audit",
            stream=spec.name,
            durable=durable_name(subject),
            filter_subject=subject,
            concurrency=concurrency,
            batch=batch,
            ack_wait_s=60.0,
            max_deliver=_MAX_DELIVER,
            traced=False,  # each record keeps its trace id; a span per record adds nothing
        )
        for spec in STREAMS
        for subject in spec.subjects
    ]


class AuditService:
    name: ClassVar[str] = "audit"

    def __init__(self, *, max_batch: int = 1000, concurrency: int = 2048) -> None:
        self.max_batch = max_batch
        self.concurrency = concurrency
        self.writer: AuditWriter | None = None
        self.consumers: list[JetStreamConsumer] = []

    async def run(self, ctx: ServiceContext) -> None:
        keys = keys_for_writing(ctx.settings.env, ctx.settings.home)
        log.info("audit: sealing records under audit key %s (%s)", keys.active.kid, keys.source)
        writer = self.writer = AuditWriter(ctx.store.pool, keys=keys, max_batch=self.max_batch)
        codec = PassThroughCodec()
        self.consumers = [
            JetStreamConsumer(ctx.js, spec, codec, self._on_message)
            for spec in consumer_specs(concurrency=self.concurrency)
        ]
        tasks = [asyncio.create_task(writer.run(), name="audit.writer")]
        tasks += [
            asyncio.create_task(c.run(), name=f"audit.{c.spec.durable}") for c in self.consumers
        ]
        try:
            # the first task to end (with an error: they all run forever) ends the service
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _on_message(self, data: bytes, msg: Msg) -> None:
        assert self.writer is not None
        meta = msg.metadata
        record = build_record(msg.subject, data, msg.headers, meta.stream, meta.sequence.stream)
        await self.writer.submit(record)

    def stats(self) -> dict[str, Any]:
        writer = self.writer
        return {
            "recorded": writer.written if writer else 0,
            "duplicates": writer.duplicates if writer else 0,
            "batches": writer.batches if writer else 0,
            "largest_batch": writer.largest_batch if writer else 0,
            "write_failures": writer.failures if writer else 0,
            "kept_as_text": writer.kept_as_text if writer else 0,
            "pending": writer.pending if writer else 0,
            "retried": sum(c.retried for c in self.consumers),
        }
