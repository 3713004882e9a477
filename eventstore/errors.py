"""Errors the event store raises; each names the stream and values involved."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base of every event-store error."""


class ConcurrencyError(EventStoreError):
    """Another writer appended to the stream first (optimistic concurrency)."""

    def __init__(self, stream: str, expected: int, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        found = "does not exist" if actual is None else f"is at version {actual}"
        super().__init__(f"stream {stream!r}: expected version {expected}, but the stream {found}")


class UnknownEventType(EventStoreError):
    """A stored event's type is not one this reader knows how to decode."""

    def __init__(self, stream: str, version: int, type_: str, known: list[str]) -> None:
        self.stream = stream
        self.version = version
        self.type = type_
        super().__init__(
            f"event {stream}@{version} has type {type_!r}, which this reader does not know "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )


class CorruptEvent(EventStoreError):
    """A stored event of a known type does not decode into that type."""

    def __init__(self, stream: str, version: int, type_: str, detail: str) -> None:
        self.stream = stream
        self.version = version
        self.type = type_
        super().__init__(f"event {stream}@{version} of type {type_!r} does not decode: {detail}")


class AppendRefused(EventStoreError):
    """The database refused one append's content (a value it cannot store, such as
    a NUL character in a JSON payload). Nothing of it was written; the requests
    committed beside it in a group commit are unaffected. The database's own
    error is the `__cause__`; the message names only its kind, so it can travel
    further than a log line."""

    def __init__(self, stream: str, cause: BaseException) -> None:
        self.stream = stream
        state = getattr(cause, "sqlstate", None)
        kind = type(cause).__name__ + (f", SQLSTATE {state}" if state else "")
        super().__init__(f"stream {stream!r}: the database refused the append ({kind})")
        self.__cause__ = cause
