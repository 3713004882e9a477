"""Stub factories for the Telegram source tests: real Telethon objects, a fake client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from telethon import utils
from telethon.crypto import AuthKey
from telethon.sessions import StringSession
from telethon.tl.types import (
    InputPeerChannel,
    Message,
    MessageActionPinMessage,
    MessageFwdHeader,
    MessageReplyHeader,
    MessageService,
    PeerChannel,
    PeerUser,
)

from services.ingest.sources.base import ChannelMessage
from services.ingest.sources.telegram import TelegramConfig

GOLD = 1234567890  # bare channel ids, as Telegram sends them in PeerChannel
FOREX = 2233445566
GOLD_ID = utils.get_peer_id(PeerChannel(GOLD))  # -1001234567890
FOREX_ID = utils.get_peer_id(PeerChannel(FOREX))
T0 = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def message(
    msg_id: int,
    text: str = "",
    *,
    channel: int = GOLD,
    date: datetime | None = None,
    edit_date: datetime | None = None,
    reply_to: int | None = None,
    forwarded: bool = False,
    grouped_id: int | None = None,
) -> Message:
    """A real `telethon.tl.types.Message`, keyword arguments only (sdk-notes B8)."""
    return Message(
        id=msg_id,
        peer_id=PeerChannel(channel),
        date=date or T0 + timedelta(seconds=msg_id),
        message=text or f"signal {msg_id}",
        edit_date=edit_date,
        reply_to=MessageReplyHeader(reply_to_msg_id=reply_to) if reply_to is not None else None,
        fwd_from=MessageFwdHeader(date=T0, from_id=PeerUser(42)) if forwarded else None,
        grouped_id=grouped_id,
        post=True,
    )


def service_message(msg_id: int, *, channel: int = GOLD) -> MessageService:
    return MessageService(
        id=msg_id,
        peer_id=PeerChannel(channel),
        date=T0 + timedelta(seconds=msg_id),
        action=MessageActionPinMessage(),
    )


def session_string() -> str:
    """A well-formed StringSession string with a dummy auth key (no account behind it)."""
    session = StringSession()
    session.set_dc(2, "149.154.167.51", 443)
    session.auth_key = AuthKey(bytes(256))
    return session.save()


def config(**overrides: Any) -> TelegramConfig:
    values: dict[str, Any] = {
        "api_id": 12345,
        "api_hash": "0123456789abcdef0123456789abcdef",
        "session": "1AbCdEfSeSsIoNsTrInG==",
        "channels": ["@Gold_Signals"],
        "backfill_interval_s": 3600.0,
    }
    values.update(overrides)
    return TelegramConfig(**values)


class FakeClient:
    """Stands in for `TelegramClient`: same method names and call styles (the drift test pins them).

    `history` maps a marked channel id to its messages; `errors` is a queue of
    exceptions `iter_messages` raises, one per call, before reading.
    """

    def __init__(
        self,
        *,
        usernames: dict[str, int] | None = None,
        history: dict[int, list[Any]] | None = None,
        authorized: bool = True,
        resolve_errors: dict[str | int, BaseException] | None = None,
    ) -> None:
        self.usernames = usernames if usernames is not None else {"gold_signals": GOLD}
        self.history = history if history is not None else {}
        self.authorized = authorized
        self.resolve_errors = resolve_errors or {}
        self.errors: list[BaseException] = []
        self.handlers: list[tuple[Callable[[Any], Any], Any]] = []
        self.removed: list[tuple[Callable[[Any], Any], Any]] = []
        self.iter_calls: list[dict[str, Any]] = []
        self.connected = False
        self.disconnect_calls = 0
        self.on_reconnect: Callable[[], None] = lambda: None
        self._disconnected: asyncio.Future[None] | None = None
        self.started = False

    async def connect(self) -> None:
        self.connected = True
        self._disconnected = asyncio.get_running_loop().create_future()

    async def is_user_authorized(self) -> bool:
        return self.authorized

    async def get_input_entity(self, peer: Any) -> Any:
        if peer in self.resolve_errors:
            raise self.resolve_errors[peer]
        if isinstance(peer, str):
            if peer not in self.usernames:
                raise ValueError(f'No user has "{peer}" as username')
            return InputPeerChannel(channel_id=self.usernames[peer], access_hash=7)
        return InputPeerChannel(channel_id=utils.resolve_id(peer)[0], access_hash=7)

    async def get_peer_id(self, peer: Any, add_mark: bool = True) -> int:
        return utils.get_peer_id(peer, add_mark=add_mark)

    async def get_dialogs(self, limit: float | None = None) -> list[Any]:
        return []

    def iter_messages(
        self, entity: Any, limit: float | None = None, *, min_id: int = 0, reverse: bool = False
    ) -> AsyncIterator[Any]:
        self.iter_calls.append(
            {"entity": entity, "limit": limit, "min_id": min_id, "reverse": reverse}
        )
        return self._iter(entity, limit, min_id, reverse)

    async def _iter(
        self, entity: Any, limit: float | None, min_id: int, reverse: bool
    ) -> AsyncIterator[Any]:
        if self.errors:
            raise self.errors.pop(0)
        peer_id = utils.get_peer_id(entity)
        found = sorted(
            (m for m in self.history.get(peer_id, []) if m.id > min_id),
            key=lambda m: m.id,
            reverse=not reverse,
        )
        if limit is not None:
            found = found[: int(limit)]
        for m in found:
            yield m

    def add_event_handler(self, callback: Callable[[Any], Any], event: Any = None) -> None:
        self.handlers.append((callback, event))

    def remove_event_handler(self, callback: Callable[[Any], Any], event: Any = None) -> int:
        self.removed.append((callback, event))
        return 1

    def disconnect(self) -> Any:
        self.disconnect_calls += 1
        self.connected = False

        async def done() -> None:
            return None

        return done()

    @property
    def disconnected(self) -> asyncio.Future[None]:
        assert self._disconnected is not None, "disconnected read before connect()"
        return self._disconnected

    def drop_for_good(self, error: BaseException | None = None) -> None:
        """Simulate Telethon giving up: the `disconnected` future completes."""
        assert self._disconnected is not None
        if error is None:
            self._disconnected.set_result(None)
        else:
            self._disconnected.set_exception(error)

    def post(self, msg: Any) -> None:
        self.history.setdefault(utils.get_peer_id(msg.peer_id), []).append(msg)

    def start(self, *args: Any, **kwargs: Any) -> None:  # never to be called by the source
        self.started = True
        raise AssertionError("the source must never call start(): it prompts on stdin")


async def dispatch(client: FakeClient, update: Any) -> int:
    """Run `update` through the builders the source registered, as Telethon would. Returns hits."""
    hits = 0
    for callback, builder in client.handlers:
        await builder.resolve(None)
        event = builder.build(update)
        if event is not None and builder.filter(event):
            hits += 1
            await callback(event)
    return hits


class RecordingSink:
    """A sink that records what it accepted; `fail_on` makes it refuse some message ids."""

    def __init__(self) -> None:
        self.accepted: list[ChannelMessage] = []
        self.fail_on: set[int] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0

    async def __call__(self, message: ChannelMessage) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if message.message_id in self.fail_on:
                raise RuntimeError(f"sink refuses {message.message_id}")
            self.accepted.append(message)
        finally:
            self.in_flight -= 1

    @property
    def ids(self) -> list[int]:
        return [m.message_id for m in self.accepted]
