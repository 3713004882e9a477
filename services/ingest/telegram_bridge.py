"""Runs the Telegram source inside the ingest process: each channel message it
sees is published as a `RawMessage` on `signals.raw.<channel>` with its
de-duplication id, and the last processed message id per channel is kept in
the event store's cursors, so a restart backfills exactly the gap."""

from __future__ import annotations

import logging

import msgspec

from contracts import subjects
from contracts.channels import channel_name_problem
from contracts.envelope import encode, now_ns
from contracts.ingest import RawMessage
from eventstore import EventStore
from services.ingest.config import TelegramSettings
from services.ingest.sources.base import ChannelMessage
from services.ingest.sources.telegram import TelegramConfig, TelegramSource
from services.runtime.bus import publish
from services.runtime.service import ServiceContext

log = logging.getLogger("sigrelay.ingest.telegram")


class EventStoreCursors:
    """The `CursorStore` port on the event store's cursors table; never moves backwards."""

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def get(self, channel_id: int) -> int:
        value = await self._store.get_cursor(f"telegram:{channel_id}")
        return int(msgspec.json.decode(value)) if value else 0

    async def set(self, channel_id: int, last_message_id: int) -> None:
        if last_message_id > await self.get(channel_id):
            await self._store.set_cursor(f"telegram:{channel_id}", last_message_id)


def to_raw(message: ChannelMessage) -> RawMessage:
    """The bus form of a source's channel message (ids derived, so a repeat dedupes).

    Raises ValueError when the message's channel is not a channel name."""
    problem = channel_name_problem(message.channel)
    if problem is not None:
        raise ValueError(
            f"telegram channel {message.channel_id}: {problem}; message "
            f"{message.message_id} is not published"
        )
    edit_ns = message.edit_date_ns or 0
    raw = RawMessage(
        id="",
        ts=now_ns(),
        channel=message.channel,
        channel_id=message.channel_id,
        message_id=message.message_id,
        date_ns=message.date_ns,
        edit_ns=edit_ns,
        text=message.text,
        reply_to_id=message.reply_to_id,
        is_forward=message.is_forward,
        deleted=message.deleted,
        source="telegram",
    )
    return msgspec.structs.replace(raw, id=f"raw:{raw.dedup_id}", correlation_id=raw.dedup_id)


async def run_telegram(ctx: ServiceContext, settings: TelegramSettings) -> None:
    env = ctx.settings.env
    api_hash = env.get(settings.api_hash_env, "")
    session = env.get(settings.session_env, "")
    if not api_hash or not session:
        raise ValueError(
            f"telegram is configured but {settings.api_hash_env} or {settings.session_env} "
            "is not set in the environment"
        )
    config = TelegramConfig(
        api_id=settings.api_id,
        api_hash=api_hash,
        session=session,
        channels=settings.channels,
        backfill_interval_s=settings.backfill_interval_s,
    )
    source = TelegramSource(config, EventStoreCursors(ctx.store))

    async def sink(message: ChannelMessage) -> None:
        try:
            raw = to_raw(message)
        except ValueError as exc:
            # refused for good: raising would only have the source retry it every backfill
            log.error("%s", exc)
            return
        await publish(ctx.js, subjects.raw(raw.channel), encode(raw), msg_id=raw.dedup_id)

    log.info("telegram source: %d channel(s)", len(settings.channels))
    await source.run(sink)
