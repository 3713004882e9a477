"""Bus messages and events of signal ingestion.

A source (Telegram, `sigrelay signals inject`, a replay file) publishes a
`RawMessage` on `signals.raw.<channel>` with the de-duplication id
`<channel>:<message id>:<edit revision>` (the edit revision is the edit's
timestamp, 0 for the original post). The ingest service consumes it, parses
it, links it to the signal it belongs to, records both in the channel's event
stream and publishes a `ParsedSignal` on `signals.parsed.<channel>`.
"""

from __future__ import annotations

from contracts.envelope import Envelope
from contracts.signals import ParseResult


class RawMessage(Envelope, frozen=True, kw_only=True, tag="signal.raw"):
    channel: str  # the subject token: lower-case username or the numeric id
    channel_id: int = 0  # Telegram's marked id when known
    message_id: int
    date_ns: int  # when the message was posted
    edit_ns: int = 0  # when this revision was made; 0 for the original post
    text: str = ""
    reply_to_id: int | None = None
    is_forward: bool = False
    deleted: bool = False
    source: str = "inject"  # telegram | inject | replay

    @property
    def dedup_id(self) -> str:
        tail = ":deleted" if self.deleted else ""
        return f"{self.channel}:{self.message_id}:{self.edit_ns}{tail}"


class ParsedSignal(Envelope, frozen=True, kw_only=True, tag="signal.parsed"):
    """One revision of one channel message, parsed and linked.

    `signal_id` names the trade idea the message belongs to: its own
    `<channel>:<message id>` for a new signal, or the signal it completes
    (a ticket following a bare alert), answers (a reply) or manages (a
    follow-up naming no message). `revision` counts edits from 1.
    """

    signal_id: str
    channel: str
    message_id: int
    revision: int = 1
    posted_ns: int  # when this revision was posted (the clock for staleness checks)
    result: ParseResult
    text: str = ""
    link: str = "new"  # new | edit | reply | completes | follows
    reply_to_signal: str | None = None
    changes: tuple[str, ...] = ()  # for edits: the public fields that changed


class MessageDeleted(Envelope, frozen=True, kw_only=True, tag="signal.deleted"):
    signal_id: str
    channel: str
    message_id: int
    posted_ns: int


INGEST_EVENTS = (RawMessage, ParsedSignal, MessageDeleted)
