"""The Postgres event log: the single source of truth of Sigrelay."""

from eventstore.errors import (
    AppendRefused,
    ConcurrencyError,
    CorruptEvent,
    EventStoreError,
    UnknownEventType,
)
from eventstore.records import (
    ANY_VERSION,
    NO_STREAM,
    AppendRequest,
    AppendResult,
    OutboxMessage,
    RecordedEvent,
    Snapshot,
)
from eventstore.registry import EventRegistry
from eventstore.store import EventStore, request

__all__ = [
    "ANY_VERSION",
    "NO_STREAM",
    "AppendRefused",
    "AppendRequest",
    "AppendResult",
    "ConcurrencyError",
    "CorruptEvent",
    "EventRegistry",
    "EventStore",
    "EventStoreError",
    "OutboxMessage",
    "RecordedEvent",
    "Snapshot",
    "UnknownEventType",
    "request",
]
