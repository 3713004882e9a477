"""Stub factories for ingest tests: raw messages and a table-driven parse."""

from __future__ import annotations

import msgspec

from contracts.ingest import RawMessage
from contracts.signals import ParseContext, ParseResult

SECOND = 1_000_000_000
T0 = 1_790_000_000 * SECOND


def raw(
    message_id: int,
    text: str,
    *,
    channel: str = "gold",
    at_s: float = 0.0,
    edit_at_s: float | None = None,
    reply_to: int | None = None,
    deleted: bool = False,
) -> RawMessage:
    date_ns = T0 + int(at_s * SECOND)
    edit_ns = T0 + int(edit_at_s * SECOND) if edit_at_s is not None else 0
    message = RawMessage(
        id="",
        ts=max(date_ns, edit_ns),
        channel=channel,
        message_id=message_id,
        date_ns=date_ns,
        edit_ns=edit_ns,
        text=text,
        reply_to_id=reply_to,
        deleted=deleted,
    )
    return msgspec.structs.replace(message, id=f"raw:{message.dedup_id}")


class TableParse:
    """A parse function answering from a table, recording the contexts it was given."""

    def __init__(self, table: dict[str, ParseResult]) -> None:
        self.table = table
        self.contexts: list[ParseContext] = []

    def __call__(self, text: str, context: ParseContext) -> ParseResult:
        self.contexts.append(context)
        return self.table[text]
