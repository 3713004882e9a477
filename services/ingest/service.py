"""The ingest service: consumes raw channel messages from `signals.raw.>`,
parses and links them, records them in the channel's event stream
(`channel-<name>`) and publishes parsed signals through the outbox.

One message at a time per channel (linking depends on order); channels in
parallel. A redelivered message is recognised by its de-duplication id and
appends nothing. Channel state lives in memory, rebuilt on first use from
the latest snapshot plus the events after it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from nats.aio.msg import Msg

from contracts import subjects
from contracts.channels import ChannelDirectory, channel_name_problem, load_directory
from contracts.envelope import Codec, encode
from contracts.ingest import INGEST_EVENTS, MessageDeleted, ParsedSignal, RawMessage
from eventstore import ConcurrencyError, EventRegistry, EventStore, OutboxMessage
from services.ingest.config import IngestConfig, load_config
from services.ingest.linking import ChannelState, LinkConfig, decide, evolve
from services.ingest.parser import parse
from services.runtime.consumer import ConsumerConfigSpec, JetStreamConsumer, Rejected
from services.runtime.service import ServiceContext
from services.runtime.tracing import trace_headers, trace_metadata

log = logging.getLogger("sigrelay.ingest")

REGISTRY = EventRegistry(*INGEST_EVENTS)
REGISTRY_STATE = Codec(ChannelState)
CONSUMER = "ingest"


def channel_stream(channel: str) -> str:
    return f"channel-{channel}"


class ChannelLog:
    """One channel's state and stream version, kept in step with the event log."""

    def __init__(self, state: ChannelState, version: int, since_snapshot: int) -> None:
        self.state = state
        self.version = version
        self.since_snapshot = since_snapshot
        self.lock = asyncio.Lock()


class IngestCore:
    """Everything ingest does between the consumer and the event store (no NATS here)."""

    def __init__(
        self, store: EventStore, config: IngestConfig, directory: ChannelDirectory | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.directory = directory or ChannelDirectory()
        self._channels: dict[str, ChannelLog] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        self.parsed = 0
        self.duplicates = 0

    async def channel(self, name: str) -> ChannelLog:
        found = self._channels.get(name)
        if found is not None:
            return found
        lock = self._loading.setdefault(name, asyncio.Lock())
        async with lock:
            found = self._channels.get(name)
            if found is None:
                found = self._channels[name] = await self._load(name)
        return found

    async def _load(self, name: str) -> ChannelLog:
        stream = channel_stream(name)
        snapshot = await self.store.load_snapshot(stream)
        state, version = ChannelState(channel=name), 0
        if snapshot is not None:
            state = REGISTRY_STATE.decode(snapshot.data)
            version = snapshot.version
        tail = await self.store.read_stream(stream, from_version=version + 1)
        for recorded in tail:
            state = evolve(state, REGISTRY.decode(recorded))
            version = recorded.version
        return ChannelLog(state, version, len(tail))

    async def handle(self, raw: RawMessage) -> list[Any]:
        """Record one raw message and what it means; return the new events (empty if a repeat)."""
        log_ = await self.channel(raw.channel)
        async with log_.lock:
            for _attempt in range(3):
                link_config = LinkConfig(
                    alert_window_s=self.config.alert_window_s,
                    default_symbol=self.directory.default_symbol(raw.channel),
                )
                events = decide(log_.state, raw, parse, link_config)
                outbox = [
                    OutboxMessage(
                        subject=subjects.parsed(e.channel),
                        msg_id=e.id,
                        payload=encode(e),
                        headers=trace_headers(),
                    )
                    for e in events
                    if isinstance(e, (ParsedSignal, MessageDeleted))
                ]
                try:
                    result = await self.store.append(
                        channel_stream(raw.channel),
                        log_.version,
                        events,
                        idempotency_key=raw.dedup_id,
                        metadata=trace_metadata(),
                        outbox=outbox,
                        processed=[(CONSUMER, raw.dedup_id)],
                    )
                except ConcurrencyError:
                    # another ingest wrote to this channel: catch up and decide again
                    fresh = await self._load(raw.channel)
                    log_.state, log_.version = fresh.state, fresh.version
                    continue
                if result.duplicate:
                    self.duplicates += 1
                    return []
                for event in events:
                    log_.state = evolve(log_.state, event)
                log_.version = result.last_version
                log_.since_snapshot += len(events)
                self.parsed += sum(isinstance(e, ParsedSignal) for e in events)
                if log_.since_snapshot >= self.config.snapshot_every:
                    await self.store.save_snapshot(
                        channel_stream(raw.channel), log_.version, log_.state
                    )
                    log_.since_snapshot = 0
                return events
        raise RuntimeError(f"channel {raw.channel}: could not append after 3 concurrent writers")


class IngestService:
    name: ClassVar[str] = "ingest"

    def __init__(self) -> None:
        self.core: IngestCore | None = None
        self.consumer: JetStreamConsumer | None = None

    @property
    def consumers(self) -> list[JetStreamConsumer]:
        return [self.consumer] if self.consumer else []

    async def run(self, ctx: ServiceContext) -> None:
        config = load_config(ctx.settings.home, ctx.settings.env)
        directory = load_directory(ctx.settings.home, ctx.settings.env)
        self.core = IngestCore(ctx.store, config, directory)
        self.consumer = JetStreamConsumer(
            ctx.js,
            ConsumerConfigSpec(
                service="ingest",
                stream="SIGNALS",
                durable=CONSUMER,
                filter_subject=f"{subjects.RAW}.>",
                concurrency=64,
                # a message held by a crashed ingest comes back after this; repeats are harmless
                ack_wait_s=5.0,
            ),
            Codec(RawMessage),
            self._on_raw,
        )
        tasks = [asyncio.create_task(self.consumer.run(), name="ingest.consumer")]
        if config.telegram is not None:
            from services.ingest.telegram_bridge import run_telegram

            tasks.append(asyncio.create_task(run_telegram(ctx, config.telegram)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _on_raw(self, raw: RawMessage, msg: Msg) -> None:
        assert self.core is not None
        # a source should have refused it; if one did not, it goes to the dead
        # letters here rather than into a stream name and an outbox subject
        problem = channel_name_problem(raw.channel)
        if problem is not None:
            raise Rejected(problem)
        await self.core.handle(raw)

    def stats(self) -> dict[str, Any]:
        core, consumer = self.core, self.consumer
        return {
            "parsed": core.parsed if core else 0,
            "duplicates": core.duplicates if core else 0,
            "dead_lettered": consumer.dead_lettered if consumer else 0,
        }
