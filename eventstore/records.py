"""Value types going into and out of the event store."""

from __future__ import annotations

from typing import Any

import msgspec

ANY_VERSION = -1
"""Pass as expected_version to append without a concurrency check."""

NO_STREAM = 0
"""Pass as expected_version when the stream must not exist yet."""


class OutboxMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message to publish on JetStream once the transaction that wrote it commits."""

    subject: str
    msg_id: str  # becomes Nats-Msg-Id: a republish after a crash is de-duplicated
    payload: bytes
    headers: dict[str, str] = {}


class AppendRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One stream's part of an append: events (already-encoded JSON) and side effects."""

    stream: str
    expected_version: int
    types: tuple[str, ...]
    payloads: tuple[bytes, ...]
    idempotency_key: str | None = None
    metadata: dict[str, Any] = {}
    outbox: tuple[OutboxMessage, ...] = ()
    processed: tuple[tuple[str, str], ...] = ()  # (consumer, message id) pairs


class AppendResult(msgspec.Struct, frozen=True, kw_only=True):
    stream: str
    first_version: int  # 0 when nothing was appended
    last_version: int
    positions: tuple[int, ...] = ()
    duplicate: bool = False  # the idempotency key had been seen: nothing appended


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    stream: str
    version: int
    type: str
    data: bytes  # the event's JSON as stored
    metadata: bytes = b"{}"  # JSON object (read_all leaves it out unless asked)
    recorded_at_us: int = 0


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    stream: str
    version: int  # the state includes every event up to and including this version
    type: str
    data: bytes
