"""The Telegram signal source, on Telethon 1.x (never `telethon.sync`).

Live updates arrive through event handlers; because Telethon can silently
drop updates (reconnects, "channel difference too long"), every channel is
also backfilled from its cursor with `iter_messages(min_id=cursor,
reverse=True)`: at start-up, after every reconnect and every
`backfill_interval_s`. Both paths go through one per-channel lock and one
dedupe on `(channel_id, message_id, edit_date)`, so the sink sees each
revision once per process and, per channel, in the order handled.

The cursor only moves when nothing below it can be missing: during a
backfill (which reads in id order), or for a live message whose id is the
cursor + 1. A live message after a gap leaves the cursor for the next
backfill, which fills the gap first.

The client comes from an injectable factory, so tests drive the source with
a fake client and the real Telethon message and event classes.
"""

from __future__ import annotations

import asyncio
import binascii
import inspect
import logging
import random
import struct
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
from telethon import TelegramClient, events
from telethon.errors import (
    AuthKeyDuplicatedError,
    ChannelInvalidError,
    ChannelPrivateError,
    FloodError,
    PeerIdInvalidError,
    RPCError,
    UnauthorizedError,
    UsernameInvalidError,
    UsernameNotOccupiedError,
)
from telethon.sessions import StringSession
from telethon.tl import types

from services.ingest.sources.base import ChannelMessage, CursorStore, Sink

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DEDUPE_PER_CHANNEL = 4096
# Errors that mean "this channel cannot be read by this account": skip it, keep the others.
_CHANNEL_GONE = (
    ChannelPrivateError,
    ChannelInvalidError,
    UsernameNotOccupiedError,
    UsernameInvalidError,
    PeerIdInvalidError,
)
# Errors that mean the session itself is dead: nothing will work until an operator logs in again.
_SESSION_DEAD = (UnauthorizedError, AuthKeyDuplicatedError)


class TelegramConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the Telegram source.

    - `api_id`, `api_hash`: the application's credentials from my.telegram.org.
    - `session`: a Telethon `StringSession` string of a logged-in **user**
      (bots cannot read history, so cannot backfill). Whoever holds it controls
      the account: it never appears in `repr` or logs.
    - `channels`: usernames (`gold_signals`, `@gold_signals`, `t.me/gold_signals`)
      or marked ids (`-1001234567890`) of channels the account has joined.
    - `backfill_interval_s`: seconds between periodic backfills (default 120).
    - `flood_sleep_threshold`: Telethon sleeps by itself through flood waits up
      to this many seconds (default 60); longer ones reach the source, which waits them out.
    - `backfill_limit`: at most this many messages per channel per backfill pass
      (default 500); a longer gap is worked off over the following passes, oldest first.
    """

    api_id: int
    api_hash: str
    session: str
    channels: list[str]
    backfill_interval_s: float = 120.0
    flood_sleep_threshold: int = 60
    backfill_limit: int = 500

    def __post_init__(self) -> None:
        if self.api_id <= 0:
            raise ValueError(f"telegram api_id must be a positive integer, got {self.api_id}")
        if not self.api_hash:
            raise ValueError("telegram api_hash is empty")
        if not self.session:
            raise ValueError(
                "telegram session is empty: create a StringSession once with an interactive "
                "login and configure it; the service never logs in by itself"
            )
        if not self.channels:
            raise ValueError("telegram channels is empty: configure at least one channel")
        if self.backfill_interval_s <= 0:
            raise ValueError(f"backfill_interval_s must be > 0, got {self.backfill_interval_s}")
        if self.flood_sleep_threshold < 0:
            raise ValueError(
                f"flood_sleep_threshold must be >= 0, got {self.flood_sleep_threshold}"
            )
        if self.backfill_limit <= 0:
            raise ValueError(f"backfill_limit must be > 0, got {self.backfill_limit}")

    def __repr__(self) -> str:
        return (
            f"TelegramConfig(api_id={self.api_id}, api_hash='****', session='****', "
            f"channels={self.channels!r}, backfill_interval_s={self.backfill_interval_s}, "
            f"flood_sleep_threshold={self.flood_sleep_threshold}, "
            f"backfill_limit={self.backfill_limit})"
        )

    __str__ = __repr__


class TelegramSourceError(RuntimeError):
    """The source cannot go on (no readable channel, client gone)."""


class TelegramSessionDead(TelegramSourceError):
    """The session is not authorized, revoked, or used elsewhere: log in again to get a new one."""


class TelegramClientLike(Protocol):
    """The part of `telethon.TelegramClient` the source uses (the drift test pins it)."""

    async def connect(self) -> None: ...

    async def is_user_authorized(self) -> bool: ...

    async def get_input_entity(self, peer: Any) -> Any: ...

    async def get_peer_id(self, peer: Any, add_mark: bool = True) -> int: ...

    async def get_dialogs(self, limit: float | None = None) -> Any: ...

    def iter_messages(
        self, entity: Any, limit: float | None = None, *, min_id: int = 0, reverse: bool = False
    ) -> AsyncIterator[Any]: ...

    def add_event_handler(self, callback: Callable[[Any], Any], event: Any = None) -> None: ...

    def remove_event_handler(self, callback: Callable[[Any], Any], event: Any = None) -> int: ...

    def disconnect(self) -> Any: ...

    @property
    def disconnected(self) -> Awaitable[None]: ...


ClientFactory = Callable[[TelegramConfig, Callable[[], None]], TelegramClientLike]
"""Builds a client from the config and an `on_reconnect` callback the client calls after each automatic reconnect."""


class _ReconnectAwareClient(TelegramClient):
    # Telethon 1.x has no public "reconnected" hook; the sender calls this private
    # coroutine after every successful automatic reconnect (the drift test pins it).
    _sigrelay_on_reconnect: Callable[[], None] | None = None

    async def _handle_auto_reconnect(self) -> None:
        await super()._handle_auto_reconnect()
        if self._sigrelay_on_reconnect is not None:
            self._sigrelay_on_reconnect()


def telethon_client_factory(
    config: TelegramConfig, on_reconnect: Callable[[], None]
) -> TelegramClientLike:
    """The production client: a Telethon client on the configured StringSession."""
    try:
        session = StringSession(config.session)
    except (ValueError, struct.error, binascii.Error):
        raise TelegramSessionDead(
            "the configured telegram session is not a valid Telethon StringSession string "
            "(truncated when copied?); create a new one with an interactive login"
        ) from None
    client = _ReconnectAwareClient(
        session,
        config.api_id,
        config.api_hash,
        flood_sleep_threshold=config.flood_sleep_threshold,
        receive_updates=True,
        catch_up=False,  # StringSession keeps no update state; the backfill catches up instead
    )
    client._sigrelay_on_reconnect = on_reconnect
    return client


def to_channel_message(msg: types.Message, channel_name: str) -> ChannelMessage:
    """Convert a Telethon message to the project's `ChannelMessage`. Pure; works offline."""
    chat_id = msg.chat_id
    if chat_id is None:
        raise ValueError(f"telegram message {msg.id} has no chat (peer_id {msg.peer_id!r})")
    if msg.date is None:
        raise ValueError(f"telegram message {msg.id} in chat {chat_id} has no date")
    reply_to = msg.reply_to
    reply_to_id = getattr(reply_to, "reply_to_msg_id", None) if reply_to is not None else None
    return ChannelMessage(
        channel_id=int(chat_id),
        channel=channel_name,
        message_id=int(msg.id),
        date_ns=_to_ns(msg.date),
        edit_date_ns=_to_ns(msg.edit_date) if msg.edit_date is not None else None,
        text=msg.raw_text or "",
        reply_to_id=int(reply_to_id) if reply_to_id is not None else None,
        is_forward=msg.fwd_from is not None,
        grouped_id=int(msg.grouped_id) if msg.grouped_id is not None else None,
    )


def channel_name_from_config(entry: str) -> tuple[str | int, str | None]:
    """What to resolve for a configured channel, and its username if it is one.

    `"@Gold_Signals"` and `"https://t.me/Gold_Signals"` give `("gold_signals", "gold_signals")`;
    `"-1001234"` gives `(-1001234, None)`.
    """
    text = entry.strip()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    for prefix in ("t.me/", "telegram.me/", "@"):
        text = text.removeprefix(prefix)
    text = text.strip("/")
    if not text:
        raise ValueError(f"telegram channel entry {entry!r} is empty")
    try:
        return int(text), None
    except ValueError:
        name = text.lower()
        return name, name


@dataclass(eq=False)
class _Channel:
    configured: str
    peer_id: int
    entity: Any
    name: str
    cursor: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    seen: OrderedDict[tuple[int, int, int | None, bool], None] = field(default_factory=OrderedDict)
    readable: bool = True
    bootstrapped: bool = False

    def remember(self, key: tuple[int, int, int | None, bool]) -> None:
        self.seen[key] = None
        if len(self.seen) > _DEDUPE_PER_CHANNEL:
            self.seen.popitem(last=False)


class TelegramSource:
    """A `SignalSource` reading Telegram channels through a logged-in user session."""

    def __init__(
        self,
        config: TelegramConfig,
        cursors: CursorStore,
        *,
        client_factory: ClientFactory = telethon_client_factory,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], int] = time.time_ns,
        jitter: Callable[[], float] = lambda: random.uniform(0.5, 2.0),
    ) -> None:
        self.config = config
        self.cursors = cursors
        self._client_factory = client_factory
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._channels: dict[int, _Channel] = {}
        self._sink: Sink | None = None
        self._reconnected = asyncio.Event()

    @property
    def channels(self) -> dict[int, str]:
        """The channels being read: marked id to subject token (after start-up)."""
        return {ch.peer_id: ch.name for ch in self._channels.values() if ch.readable}

    async def run(self, sink: Sink) -> None:
        """Connect, resolve channels, then deliver live and backfilled messages until cancelled.

        Raises `TelegramSessionDead` when the session is not (or no longer)
        authorized and `TelegramSourceError` when no channel can be read or
        the client disconnects for good.
        """
        self._sink = sink
        self._reconnected = asyncio.Event()
        client = self._client_factory(self.config, self._reconnected.set)
        try:
            await self._start(client)
            handlers = self._register(client)
            try:
                await self.backfill(client)
                while True:
                    await self._wait_for_next_backfill(client)
                    await self.backfill(client)
            finally:
                for callback, builder in handlers:
                    client.remove_event_handler(callback, builder)
        finally:
            await _maybe_await(client.disconnect())

    # --- start-up -------------------------------------------------------------------

    async def _start(self, client: TelegramClientLike) -> None:
        try:
            await client.connect()
            authorized = await client.is_user_authorized()
        except _SESSION_DEAD as exc:
            raise _session_dead(exc) from exc
        if not authorized:
            raise TelegramSessionDead(
                "telegram session is not authorized: the configured StringSession was never "
                "logged in, or was logged out; create a new one with an interactive login "
                "(the service never prompts)"
            )
        self._channels = {}
        dialogs_loaded = False
        for entry in self.config.channels:
            channel, dialogs_loaded = await self._resolve(client, entry, dialogs_loaded)
            if channel is None:
                continue
            if channel.peer_id in self._channels:
                log.warning(
                    "telegram channel %r is the same channel as %r (id %d); reading it once",
                    entry,
                    self._channels[channel.peer_id].configured,
                    channel.peer_id,
                )
                continue
            channel.cursor = await self.cursors.get(channel.peer_id)
            self._channels[channel.peer_id] = channel
        if not self._channels:
            raise TelegramSourceError(
                f"none of the configured telegram channels could be resolved: "
                f"{self.config.channels!r} (see the errors above)"
            )
        log.info(
            "telegram source reading %d channel(s): %s",
            len(self._channels),
            ", ".join(f"{ch.name} ({ch.peer_id})" for ch in self._channels.values()),
        )

    async def _resolve(
        self, client: TelegramClientLike, entry: str, dialogs_loaded: bool
    ) -> tuple[_Channel | None, bool]:
        try:
            target, username = channel_name_from_config(entry)
        except ValueError as exc:
            log.error("%s; skipping it", exc)
            return None, dialogs_loaded
        while True:
            try:
                try:
                    entity = await client.get_input_entity(target)
                except ValueError:
                    if not isinstance(target, int) or dialogs_loaded:
                        raise
                    # A bare id needs its access hash, which a StringSession forgets on
                    # restart: loading the dialogs fills the cache for joined channels.
                    dialogs_loaded = True
                    await client.get_dialogs()
                    entity = await client.get_input_entity(target)
                peer_id = await client.get_peer_id(entity)
            except FloodError as exc:
                await self._flood_wait(exc, f"resolving telegram channel {entry!r}")
                continue
            except _SESSION_DEAD as exc:
                raise _session_dead(exc) from exc
            except (*_CHANNEL_GONE, ValueError) as exc:
                log.error(
                    "telegram channel %r cannot be read by this account (%s: %s); skipping it. "
                    "Check the username, and that the account has joined the channel.",
                    entry,
                    type(exc).__name__,
                    exc,
                )
                return None, dialogs_loaded
            name = username if username is not None else str(peer_id)
            return _Channel(configured=entry, peer_id=peer_id, entity=entity, name=name), (
                dialogs_loaded
            )

    def _register(self, client: TelegramClientLike) -> list[tuple[Callable[[Any], Any], Any]]:
        ids = list(self._channels)
        handlers: list[tuple[Callable[[Any], Any], Any]] = [
            (self.on_new_message, events.NewMessage(chats=ids)),
            (self.on_message_edited, events.MessageEdited(chats=ids)),
            (self.on_message_deleted, events.MessageDeleted(chats=ids)),
        ]
        for callback, builder in handlers:
            client.add_event_handler(callback, builder)
        return handlers

    # --- live updates ---------------------------------------------------------------

    async def on_new_message(self, event: Any) -> None:
        """Handler for `events.NewMessage` (registered by `run`)."""
        await self._live(event.message)

    async def on_message_edited(self, event: Any) -> None:
        """Handler for `events.MessageEdited` (registered by `run`)."""
        await self._live(event.message)

    async def on_message_deleted(self, event: Any) -> None:
        """Handler for `events.MessageDeleted` (registered by `run`)."""
        channel = self._channels.get(event.chat_id) if event.chat_id is not None else None
        if channel is None:
            return
        observed = self._clock()
        async with channel.lock:
            for message_id in event.deleted_ids or ():
                message = ChannelMessage(
                    channel_id=channel.peer_id,
                    channel=channel.name,
                    message_id=int(message_id),
                    date_ns=observed,
                    edit_date_ns=None,
                    text="",
                    reply_to_id=None,
                    is_forward=False,
                    grouped_id=None,
                    deleted=True,
                )
                if not await self._deliver_logged(channel, message, advance=False):
                    return

    async def _live(self, msg: Any) -> None:
        channel = self._channels.get(msg.chat_id)
        if channel is None or not isinstance(msg, types.Message):
            return
        async with channel.lock:
            try:
                message = to_channel_message(msg, channel.name)
            except ValueError as exc:
                log.error(
                    "telegram channel %s: dropping an unreadable update: %s", channel.name, exc
                )
                return
            # Only a message right after the cursor proves nothing in between was missed.
            await self._deliver_logged(
                channel, message, advance=message.message_id == channel.cursor + 1
            )

    async def _deliver_logged(
        self, channel: _Channel, message: ChannelMessage, *, advance: bool
    ) -> bool:
        try:
            await self._deliver(channel, message, advance=advance)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "telegram channel %s: message %d was not delivered or its cursor not recorded; "
                "the next backfill retries it",
                channel.name,
                message.message_id,
            )
            return False
        return True

    async def _deliver(self, channel: _Channel, message: ChannelMessage, *, advance: bool) -> None:
        key = message.revision_key
        if key not in channel.seen:
            assert self._sink is not None, "deliver called before run()"
            await self._sink(message)
            channel.remember(key)
        if advance and message.message_id > channel.cursor:
            await self.cursors.set(channel.peer_id, message.message_id)
            channel.cursor = message.message_id

    # --- backfill -------------------------------------------------------------------

    async def backfill(self, client: TelegramClientLike) -> None:
        """One backfill pass over every readable channel. Never raises for a single channel's trouble."""
        for channel in list(self._channels.values()):
            if channel.readable:
                await self._backfill_channel(client, channel)

    async def _backfill_channel(self, client: TelegramClientLike, channel: _Channel) -> None:
        while True:
            try:
                async with channel.lock:
                    if channel.cursor == 0 and not channel.bootstrapped:
                        await self._bootstrap_cursor(client, channel)
                        return
                    async for msg in client.iter_messages(
                        channel.entity,
                        limit=self.config.backfill_limit,
                        min_id=channel.cursor,
                        reverse=True,
                    ):
                        if not await self._backfilled(channel, msg):
                            return
                return
            except FloodError as exc:
                await self._flood_wait(exc, f"backfilling telegram channel {channel.name}")
            except _SESSION_DEAD as exc:
                raise _session_dead(exc) from exc
            except _CHANNEL_GONE as exc:
                channel.readable = False
                log.error(
                    "telegram channel %s (%d) is no longer readable by this account (%s); "
                    "skipping it until restart",
                    channel.name,
                    channel.peer_id,
                    type(exc).__name__,
                )
                return
            except (RPCError, OSError, ConnectionError, TimeoutError) as exc:
                log.warning(
                    "telegram channel %s: backfill failed (%s: %s); retrying at the next pass",
                    channel.name,
                    type(exc).__name__,
                    exc,
                )
                return

    async def _backfilled(self, channel: _Channel, msg: Any) -> bool:
        """Deliver one backfilled message; False stops this channel's pass (order matters)."""
        if msg.id <= channel.cursor:
            return True  # a client ignoring min_id must not make us go backwards
        if not isinstance(msg, types.Message):
            # Service messages (pins, title changes) carry no signal but still move the cursor.
            await self.cursors.set(channel.peer_id, msg.id)
            channel.cursor = msg.id
            return True
        try:
            message = to_channel_message(msg, channel.name)
        except ValueError as exc:
            log.error("telegram channel %s: skipping unreadable message: %s", channel.name, exc)
            return True
        return await self._deliver_logged(channel, message, advance=True)

    async def _bootstrap_cursor(self, client: TelegramClientLike, channel: _Channel) -> None:
        # A channel seen for the first time: start after its newest message rather than
        # replaying its whole history (old signals are not to be traded).
        latest = 0
        async for msg in client.iter_messages(channel.entity, limit=1):
            latest = int(msg.id)
        if latest:
            await self.cursors.set(channel.peer_id, latest)
            channel.cursor = latest
        # An empty channel stays at 0, and from now on is backfilled from its first message.
        channel.bootstrapped = True
        log.info(
            "telegram channel %s (%d) has no cursor yet: starting after message %d; "
            "its history is not replayed",
            channel.name,
            channel.peer_id,
            latest,
        )

    async def _flood_wait(self, exc: FloodError, doing: str) -> None:
        seconds = float(getattr(exc, "seconds", 0) or 0)
        delay = seconds + self._jitter()
        log.warning("telegram flood wait while %s: waiting %.1f s", doing, delay)
        await self._sleep(delay)

    async def _wait_for_next_backfill(self, client: TelegramClientLike) -> None:
        reconnected = asyncio.ensure_future(self._reconnected.wait())
        # Shielded: cancelling our waiter must never cancel the client's own future.
        gone = asyncio.shield(client.disconnected)
        waiters: set[asyncio.Future[Any]] = {reconnected, gone}
        try:
            done, _ = await asyncio.wait(
                waiters,
                timeout=self.config.backfill_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            reconnected.cancel()
            gone.cancel()
        if gone in done:
            error = gone.exception() if not gone.cancelled() else None
            if isinstance(error, _SESSION_DEAD):
                raise _session_dead(error) from error
            raise TelegramSourceError(
                "telegram client disconnected and gave up reconnecting"
                + (f": {type(error).__name__}: {error}" if error else "")
            ) from error
        if reconnected in done:
            self._reconnected.clear()
            log.info("telegram client reconnected: backfilling every channel")


def _session_dead(exc: BaseException) -> TelegramSessionDead:
    return TelegramSessionDead(
        f"telegram session is dead ({type(exc).__name__}: {exc}); it was revoked, or used "
        "from two places at once. Create a new StringSession with an interactive login."
    )


def _to_ns(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1) * 1000


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value
