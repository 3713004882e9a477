"""Relays the transactional outbox to the bus, exactly once as the bus sees it.

Messages are written to `outbox` in the same transaction as the events that
caused them. The relay publishes them in id order with their `msg_id` as the
de-duplication id, waits for every acknowledgement, then deletes them. A
crash between publish and delete republishes the same ids, which JetStream
drops as duplicates; a crash before publish loses nothing, because the rows
are still there. Each producer's rows are relayed by that producer's own
processes (with its own bus credentials); among them one relay works at a
time (a session advisory lock per producer), so order is kept, and the
others wait as standbys.

A row the bus refuses for what it is (a subject or a size the server will
never take) must not hold back the rows behind it, nor be retried for ever:
the publisher reports it as refused, the relay sends a dead letter for it,
and once that is acknowledged marks the row dead (`dead_at`, `dead_reason`)
in the same transaction that deletes the rows published with it. A dead row
stays in the table, body and all, for inspection; the relay never picks it
up again. A publish error that is not about one message (the bus down, a
timeout) keeps every row, to be tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import psycopg

from eventstore.cancellation import reraise_if_cancelling, stop_if_cancelling
from eventstore.records import OutboxMessage
from eventstore.store import OUTBOX_CHANNEL, EventStore

log = logging.getLogger("sigrelay.eventstore.outbox")

_RELAY_LOCK_CLASS = 0x5E0E0002


@dataclass(frozen=True)
class Refusal:
    """The bus refused `messages[index]` itself; sending it again would fail the same way."""

    index: int
    reason: str


@dataclass(frozen=True)
class DeadRow:
    """An outbox row that cannot be published, for the dead letters."""

    producer: str
    row_id: int
    message: OutboxMessage
    reason: str


class Publisher(Protocol):
    async def __call__(self, messages: Sequence[OutboxMessage]) -> Sequence[Refusal]:
        """Publish a batch; return once every message not refused is acknowledged.

        Raises (and the relay keeps every row) on any error not about one message."""
        ...

    async def dead_letter(self, row: DeadRow) -> None:
        """Record `row` in the dead letters; return once that is durable."""
        ...


_headers_decoder = msgspec.json.Decoder(dict[str, str])


class OutboxRelay:
    """Moves committed outbox rows to the bus. Run `run()` as a task."""

    def __init__(
        self,
        store: EventStore,
        publish: Publisher,
        *,
        batch: int = 1000,
        idle_poll_s: float = 1.0,
        retry_s: float = 0.5,
    ) -> None:
        self._store = store
        self._publish = publish
        self._batch = batch
        self._idle_poll_s = idle_poll_s
        self._retry_s = retry_s
        self.relayed = 0
        self.dead_lettered = 0
        self.is_leader = False

    async def run(self) -> None:
        """Relay forever: become leader, drain, then wait for NOTIFY or the poll tick."""
        url = self._store.url
        while True:
            stop_if_cancelling()
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await self._lead(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: try again, never die
                reraise_if_cancelling(exc)
                log.warning("outbox relay lost its connection (%r); retrying", exc)
                self.is_leader = False
                await asyncio.sleep(self._retry_s)

    async def _lead(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                (_RELAY_LOCK_CLASS, self._store.producer),
            )
            row = await cur.fetchone()
            if row and row[0]:
                break
            await asyncio.sleep(self._idle_poll_s)
        self.is_leader = True
        await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
        while True:
            stop_if_cancelling()  # a publish's ack wait may have swallowed it
            try:
                moved = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # bus down or slow: keep the rows, try again
                reraise_if_cancelling(exc)
                log.warning("outbox publish failed (%r); will retry", exc)
                await asyncio.sleep(self._retry_s)
                continue
            if moved >= self._batch:
                continue
            await self._wait_for_notice(conn)

    async def _wait_for_notice(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # Wake on a NOTIFY naming this producer (others' rows are not ours to
        # move), or after the idle poll: a notice lost in a reconnect costs at
        # most one poll interval, never a message.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._idle_poll_s
        while (remaining := deadline - loop.time()) > 0:
            async for notice in conn.notifies(timeout=remaining, stop_after=1):
                if notice.payload == self._store.producer:
                    return

    async def drain_once(self) -> int:
        """Publish and delete up to one batch of outbox rows; return how many moved
        (published, or dead-lettered and marked dead)."""
        async with self._store.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT id, subject, msg_id, payload, headers FROM outbox"
                " WHERE producer = %s AND dead_at IS NULL"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (self._store.producer, self._batch),
            )
            rows = await cur.fetchall()
            if not rows:
                return 0
            messages = [
                OutboxMessage(
                    subject=row[1],
                    msg_id=row[2],
                    payload=bytes(row[3]),
                    headers=_headers_decoder.decode(row[4]) if row[4] else {},
                )
                for row in rows
            ]
            refusals = await self._publish(messages)
            dead: list[tuple[str, int]] = []
            for refusal in refusals:
                row_id = rows[refusal.index][0]
                await self._publish.dead_letter(
                    DeadRow(
                        producer=self._store.producer,
                        row_id=row_id,
                        message=messages[refusal.index],
                        reason=refusal.reason,
                    )
                )
                log.error(
                    "outbox row %d (%s) refused by the bus and dead-lettered: %s",
                    row_id,
                    messages[refusal.index].msg_id,
                    refusal.reason,
                )
                dead.append((refusal.reason, row_id))
            await self._after_publish(messages)
            if dead:
                async with conn.cursor() as marking:
                    await marking.executemany(
                        "UPDATE outbox SET dead_at = now(), dead_reason = %s WHERE id = %s", dead
                    )
            dead_ids = {row_id for _, row_id in dead}
            await conn.execute(
                "DELETE FROM outbox WHERE id = ANY(%s)",
                ([row[0] for row in rows if row[0] not in dead_ids],),
            )
        self.relayed += len(rows) - len(dead)
        self.dead_lettered += len(dead)
        return len(rows)

    async def _after_publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Hook between publish and delete; fault tests override it to crash here."""
