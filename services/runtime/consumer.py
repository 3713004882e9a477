"""A JetStream pull consumer with bounded concurrency, explicit ack/nak/term,
and a dead-letter subject for messages that cannot be handled.

- A message that does not decode or validate is published to
  `dlq.<service>` with the reason in headers, then terminated: it is kept
  for inspection and never redelivered, and the consumer goes on.
- A handler that raises `Rejected` sends the message the same way.
- Any other exception is treated as transient: the message is nak'ed with a
  back-off, and after `max_deliver` attempts it goes to the dead letters too.
- A durable that vanished (deleted by an operator or a careless client) is
  created again with the same config, resuming at the first message not yet
  settled, and counted (`durables_recreated`, shown by `ctl health`).
- A dead letter never exceeds the server's max_payload: when the body will not
  fit beside the headers, it carries a reference (stream, sequence, subject,
  size, reason) and the original stays in its stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts.envelope import Codec
from eventstore.cancellation import reraise_if_cancelling, stop_if_cancelling
from services.runtime.dead_letters import publish_dead_letter, shown
from services.runtime.metrics import hop_latency_ms
from services.runtime.tracing import consume_span

log = logging.getLogger("sigrelay.consumer")

Handler = Callable[[Any, Msg], Awaitable[None]]

CONSUMER_NOT_FOUND = 10014  # JetStream's error code for a consumer that does not exist


class Rejected(Exception):
    """Raised by a handler for a message that is well-formed but cannot be acted on."""


@dataclass(frozen=True)
class ConsumerConfigSpec:
    service: str  # names the dead-letter subject dlq.<service>
    stream: str
    durable: str
    filter_subject: str
    concurrency: int = 64
    batch: int = 256
    ack_wait_s: float = 30.0
    max_deliver: int = 8
    deliver_new_only: bool = False
    # a consumer created for the first time starts this far back (None: from the start)
    deliver_since_s: float | None = None
    drain_s: float = 5.0  # on shutdown, how long in-flight messages may still finish
    # one span per message, child of the trace in its headers; a passive recorder
    # (audit) keeps the trace id in what it writes instead of adding a span per record
    traced: bool = True


class JetStreamConsumer:
    """Runs `handler(decoded, msg)` for each message of a durable pull consumer."""

    def __init__(
        self, js: JetStreamContext, spec: ConsumerConfigSpec, codec: Codec, handler: Handler
    ) -> None:
        self._js = js
        self.spec = spec
        self._codec = codec
        self._handler = handler
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self.handled = 0
        self.dead_lettered = 0
        self.retried = 0
        self.lag = 0  # messages waiting for this consumer, as the server last said
        self.durables_recreated = 0
        self.durable_recreated_at: float | None = None  # unix time of the last re-creation
        # stream sequences fetched and not yet acked or terminated: where a re-created
        # durable resumes (a redelivery is harmless, handlers are idempotent)
        self._unsettled: set[int] = set()
        self._last_fetched = 0

    def _config(self) -> ConsumerConfig:
        spec = self.spec
        config = ConsumerConfig(
            durable_name=spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait_s,
            max_deliver=spec.max_deliver,
            max_ack_pending=max(spec.concurrency * 4, spec.batch * 2),
            filter_subject=spec.filter_subject,
            deliver_policy=DeliverPolicy.NEW if spec.deliver_new_only else DeliverPolicy.ALL,
        )
        if spec.deliver_since_s is not None and not spec.deliver_new_only:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = datetime.now(UTC) - timedelta(seconds=spec.deliver_since_s)
        if self._last_fetched:
            # created again: go on where this consumer was, not from the policy's start
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_time = None
            config.opt_start_seq = min(self._unsettled, default=self._last_fetched + 1)
        return config

    async def _subscribe(
        self, config: ConsumerConfig | None = None
    ) -> JetStreamContext.PullSubscription:
        spec = self.spec
        return await self._js.pull_subscribe(
            spec.filter_subject,
            durable=spec.durable,
            stream=spec.stream,
            config=config or self._config(),
        )

    async def _vanished(self) -> bool:
        """Whether the server says our durable does not exist (any other answer: no)."""
        try:
            await self._js.consumer_info(self.spec.stream, self.spec.durable)
        except NotFoundError as exc:
            return exc.err_code == CONSUMER_NOT_FOUND
        except Exception as exc:
            reraise_if_cancelling(exc)
        return False

    async def _recreate(
        self, sub: JetStreamContext.PullSubscription
    ) -> JetStreamContext.PullSubscription:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        config = self._config()
        fresh = await self._subscribe(config)
        self.durables_recreated += 1
        self.durable_recreated_at = time.time()
        log.warning(
            "%s: durable consumer on stream %s had vanished; created it again, resuming at"
            " stream sequence %s",
            self.spec.durable,
            self.spec.stream,
            config.opt_start_seq or "the start of its policy",
        )
        return fresh

    async def run(self) -> None:
        spec = self.spec
        sub = await self._subscribe()
        # fetch again once this many handlers are free: a pull per freed slot would
        # cost a round trip per message when the handlers are the bottleneck
        refill = max(1, min(spec.batch, spec.concurrency // 4))
        try:
            while True:
                stop_if_cancelling()  # a fetch may have swallowed our cancellation
                free = spec.concurrency - len(self._tasks)
                if free < refill:
                    # not asyncio.wait(self._tasks): that visits every in-flight task
                    # on each wake-up, quadratic at a concurrency of hundreds
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                try:
                    msgs = await sub.fetch(min(spec.batch, free), timeout=1.0)
                except (nats.errors.TimeoutError, TimeoutError):
                    # nats-py sometimes raises the plain asyncio timeout: nothing to fetch
                    self.lag = 0
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.DrainTimeoutError):
                    raise
                except Exception as exc:  # server restarting, leader election: keep going
                    reraise_if_cancelling(exc)
                    # a deleted durable answers every fetch with 503 (no responders)
                    if await self._vanished():
                        try:
                            sub = await self._recreate(sub)
                            continue
                        except Exception as again:
                            reraise_if_cancelling(again)
                            exc = again
                    log.warning("%s: fetch failed (%r); retrying", spec.durable, exc)
                    await asyncio.sleep(0.5)
                    continue
                if msgs:
                    self.lag = msgs[-1].metadata.num_pending
                for msg in msgs:
                    seq = _stream_seq(msg)
                    self._unsettled.add(seq)
                    self._last_fetched = max(self._last_fetched, seq)
                    task = asyncio.create_task(self._process(msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._handled)
        finally:
            # Let in-flight messages finish for a moment, then cancel them: a handler
            # may wait on a component that is itself shutting down, and an unacked
            # message is simply redelivered (handlers are idempotent).
            if self._tasks:
                _, pending = await asyncio.wait(set(self._tasks), timeout=spec.drain_s)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            # a fetched batch nobody will read would keep a later drain() waiting
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()

    async def _process(self, msg: Msg) -> None:
        try:
            try:
                decoded = self._codec.decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                await self._dead_letter(msg, f"invalid message: {exc}")
                self._unsettled.discard(_stream_seq(msg))
                return
            try:
                if self.spec.traced:
                    with consume_span(
                        f"{self.spec.service} {_kind(msg.subject)}",
                        msg.headers,
                        self._span_attributes(decoded, msg),
                    ):
                        await self._handler(decoded, msg)
                else:
                    await self._handler(decoded, msg)
            except Rejected as exc:
                await self._dead_letter(msg, f"rejected: {exc}")
                self._unsettled.discard(_stream_seq(msg))
                return
            except Exception as exc:
                await self._retry_or_give_up(msg, exc)
                return
            await msg.ack()
            self._unsettled.discard(_stream_seq(msg))
            self.handled += 1
            sent_ns = getattr(decoded, "ts", 0)
            if sent_ns:
                hop_latency_ms.record(
                    max(time.time_ns() - sent_ns, 0) / 1e6,
                    {"hop": _kind(msg.subject), "consumer": self.spec.service},
                )
        except Exception as exc:  # ack/nak on a dropped connection: redelivery will follow
            log.warning("%s: could not settle message: %s", self.spec.durable, exc)

    def _span_attributes(self, decoded: Any, msg: Msg) -> dict[str, Any]:
        meta = msg.metadata
        return {
            "messaging.system": "nats",
            "messaging.destination.name": msg.subject,
            "messaging.consumer.group.name": self.spec.durable,
            "sigrelay.stream_seq": meta.sequence.stream if meta.sequence else 0,
            "sigrelay.message_id": getattr(decoded, "id", ""),
            "sigrelay.correlation_id": getattr(decoded, "correlation_id", ""),
        }

    async def _retry_or_give_up(self, msg: Msg, exc: Exception) -> None:
        delivered = msg.metadata.num_delivered or 1
        if delivered >= self.spec.max_deliver:
            await self._dead_letter(msg, f"failed {delivered} times, last error: {exc!r}")
            return
        self.retried += 1
        log.warning(
            "%s: handler failed on %s (attempt %d): %r",
            self.spec.durable,
            msg.subject,
            delivered,
            exc,
        )
        await msg.nak(delay=min(0.2 * 2**delivered, 10.0))

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        # The dead letter is acked by JetStream before the original is termed: the
        # original then stays in its stream, which a too-large body's reference names.
        meta = msg.metadata
        seq = str(meta.sequence.stream if meta.sequence else "")
        with_body = await publish_dead_letter(
            self._js,
            self.spec.service,
            msg.data,
            reason=reason,
            subject=msg.subject,
            msg_id=f"dlq:{self.spec.durable}:{meta.stream}:{seq}",
            where={
                "Sigrelay-Consumer": self.spec.durable,
                "Sigrelay-Stream": meta.stream,
                "Sigrelay-Stream-Seq": seq,
            },
        )
        await msg.term()
        self.dead_lettered += 1
        log.warning(
            "%s: dead-lettered %s%s: %s",
            self.spec.durable,
            shown(msg.subject),
            "" if with_body else f" (a reference to {meta.stream} #{seq})",
            reason[:300],
        )


def _stream_seq(msg: Msg) -> int:
    sequence = msg.metadata.sequence
    return sequence.stream if sequence else 0


def recreated_durables(consumers: Iterable[JetStreamConsumer]) -> dict[str, Any]:
    """For a health reply: how often this process re-created a vanished durable, and when."""
    consumers = list(consumers)
    times = [c.durable_recreated_at for c in consumers if c.durable_recreated_at is not None]
    last = max(times, default=None)
    return {
        "durables_recreated": sum(c.durables_recreated for c in consumers),
        "durable_recreated_at": (
            datetime.fromtimestamp(last, UTC).isoformat(timespec="seconds") if last else None
        ),
    }


def _kind(subject: str) -> str:
    """`orders.intent.u42` -> `orders.intent`: span names stay few (no user ids)."""
    return ".".join(subject.split(".")[:2])
