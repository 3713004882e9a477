"""The signal-source port: the project's own view of a channel message, and where sources put them.

Everything past a source (parser, actors) sees only `ChannelMessage`, never a
Telethon object, so the Telegram adapter, a replay file and `sigrelay signals
inject` are interchangeable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

import msgspec


class ChannelMessage(msgspec.Struct, frozen=True, kw_only=True):
    """One channel message as a source saw it: new, edited, or deleted.

    - `channel_id`: the marked id (`-100…` for channels), stable across renames.
    - `channel`: the subject token for this channel (lower-case username, or
      `str(channel_id)` when it has none).
    - `date_ns` / `edit_date_ns`: Telegram's send and last-edit times, unix ns.
      For a deletion `date_ns` is when the deletion was observed.
    - `text`: the raw text, without formatting; `""` for media without caption
      and for deletions.
    - `(channel_id, message_id, edit_date_ns)` identifies one revision.
    """

    channel_id: int
    channel: str
    message_id: int
    date_ns: int
    edit_date_ns: int | None
    text: str
    reply_to_id: int | None
    is_forward: bool
    grouped_id: int | None
    deleted: bool = False

    @property
    def revision_key(self) -> tuple[int, int, int | None, bool]:
        """What tells two deliveries of the same revision apart from different revisions."""
        return (self.channel_id, self.message_id, self.edit_date_ns, self.deleted)


Sink = Callable[[ChannelMessage], Awaitable[None]]
"""Where a source hands messages. Returning means accepted; raising means "not taken, retry"."""


@runtime_checkable
class SignalSource(Protocol):
    """Something that produces channel messages."""

    async def run(self, sink: Sink) -> None:
        """Deliver messages to `sink` until cancelled.

        Delivery is at-least-once: after a restart a source may hand the sink
        a revision it already accepted, so the sink must be idempotent on
        `ChannelMessage.revision_key`. Raises only when it cannot go on (a
        dead session, no readable channel).
        """
        ...


@runtime_checkable
class CursorStore(Protocol):
    """The last message id processed per channel, so a restart resumes where it stopped."""

    async def get(self, channel_id: int) -> int:
        """The last processed message id of `channel_id`, 0 if none yet."""
        ...

    async def set(self, channel_id: int, last_message_id: int) -> None:
        """Record that everything up to `last_message_id` was processed."""
        ...


class InMemoryCursorStore:
    """A `CursorStore` in a dict, for tests and the demo. Never moves a cursor backwards."""

    def __init__(self, initial: dict[int, int] | None = None) -> None:
        self.cursors: dict[int, int] = dict(initial or {})

    async def get(self, channel_id: int) -> int:
        return self.cursors.get(channel_id, 0)

    async def set(self, channel_id: int, last_message_id: int) -> None:
        if last_message_id > self.cursors.get(channel_id, 0):
            self.cursors[channel_id] = last_message_id
