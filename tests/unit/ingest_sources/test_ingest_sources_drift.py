"""Drift guard: the Telethon surface the adapter calls still has the shape the adapter assumes.

Run against the installed Telethon; a Telethon upgrade that renames a
parameter or turns a coroutine into a plain method fails here, not in production.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

import pytest
import telethon
from ingest_sources_stubs import (
    GOLD,
    FakeClient,
    RecordingSink,
    config,
    message,
    session_string,
)
from telethon import TelegramClient, events
from telethon.network.mtprotosender import MTProtoSender
from telethon.sessions import StringSession
from telethon.tl.types import UpdateNewChannelMessage

from services.ingest.sources.base import InMemoryCursorStore
from services.ingest.sources.telegram import (
    TelegramSessionDead,
    TelegramSource,
    telethon_client_factory,
)

# method -> (is a coroutine function, parameters the adapter passes: name -> kind)
USED: dict[str, tuple[bool, dict[str, inspect._ParameterKind]]] = {
    "connect": (True, {}),
    "is_user_authorized": (True, {}),
    "get_input_entity": (True, {"peer": inspect.Parameter.POSITIONAL_OR_KEYWORD}),
    "get_peer_id": (True, {"peer": inspect.Parameter.POSITIONAL_OR_KEYWORD}),
    "get_dialogs": (True, {}),
    "iter_messages": (
        False,
        {
            "entity": inspect.Parameter.POSITIONAL_OR_KEYWORD,
            "limit": inspect.Parameter.POSITIONAL_OR_KEYWORD,
            "min_id": inspect.Parameter.KEYWORD_ONLY,
            "reverse": inspect.Parameter.KEYWORD_ONLY,
        },
    ),
    "add_event_handler": (
        False,
        {
            "callback": inspect.Parameter.POSITIONAL_OR_KEYWORD,
            "event": inspect.Parameter.POSITIONAL_OR_KEYWORD,
        },
    ),
    "remove_event_handler": (
        False,
        {
            "callback": inspect.Parameter.POSITIONAL_OR_KEYWORD,
            "event": inspect.Parameter.POSITIONAL_OR_KEYWORD,
        },
    ),
    "disconnect": (False, {}),
}


def _params(func: Any) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(func).parameters.items() if n != "self"}


def test_telethon_is_the_1x_line() -> None:
    assert telethon.__version__.startswith("1.")


@pytest.mark.parametrize("name", sorted(USED))
def test_drift_real_client_method_has_the_parameters_and_call_style_used(name: str) -> None:
    is_coroutine, used = USED[name]
    real = getattr(TelegramClient, name)

    params = _params(real)

    assert inspect.iscoroutinefunction(real) is is_coroutine
    for param, kind in used.items():
        assert param in params, f"TelegramClient.{name} lost parameter {param!r}"
        assert params[param].kind == kind, f"TelegramClient.{name}({param}) changed kind"
    required = {
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    assert required <= set(used), f"TelegramClient.{name} now requires {required - set(used)}"


def test_drift_iter_messages_defaults_mean_whole_range_oldest_last() -> None:
    params = _params(TelegramClient.iter_messages)

    assert params["min_id"].default == 0
    assert params["reverse"].default is False
    assert params["limit"].default is None


def test_drift_get_peer_id_marks_by_default() -> None:
    assert _params(TelegramClient.get_peer_id)["add_mark"].default is True


@pytest.mark.parametrize("name", sorted(USED))
def test_drift_fake_client_matches_the_real_signature(name: str) -> None:
    real, fake = _params(getattr(TelegramClient, name)), _params(getattr(FakeClient, name))

    for param, spec in fake.items():
        assert param in real, f"FakeClient.{name} has {param!r}, TelegramClient does not"
        assert spec.kind == real[param].kind
        assert spec.default == real[param].default or real[param].default is None
    assert inspect.iscoroutinefunction(getattr(FakeClient, name)) is USED[name][0]


def test_drift_disconnected_is_a_property() -> None:
    assert isinstance(inspect.getattr_static(TelegramClient, "disconnected"), property)


def test_drift_reconnect_hook_still_exists() -> None:
    # The adapter overrides this private coroutine to learn about reconnects.
    assert inspect.iscoroutinefunction(TelegramClient._handle_auto_reconnect)
    assert "auto_reconnect_callback" in inspect.signature(MTProtoSender.__init__).parameters


def test_drift_client_constructor_accepts_the_options_passed() -> None:
    params = inspect.signature(TelegramClient.__init__).parameters

    for option in ("session", "api_id", "api_hash", "flood_sleep_threshold", "receive_updates"):
        assert option in params
    assert "catch_up" in params


@pytest.mark.parametrize(
    "builder", [events.NewMessage, events.MessageEdited, events.MessageDeleted]
)
def test_drift_event_builders_take_chats(builder: type) -> None:
    assert "chats" in inspect.signature(builder).parameters


async def test_factory_builds_a_real_client_offline_from_the_string_session() -> None:
    client: Any = telethon_client_factory(config(session=session_string()), lambda: None)

    assert isinstance(client, TelegramClient)
    assert client.flood_sleep_threshold == 60
    assert client.session.dc_id == 2
    assert not client.is_connected()


async def test_factory_when_session_string_malformed_then_session_dead_without_echoing_it() -> None:
    broken = session_string()[:-20]

    with pytest.raises(TelegramSessionDead, match="not a valid Telethon StringSession") as info:
        telethon_client_factory(config(session=broken), lambda: None)

    assert broken not in str(info.value)


async def test_factory_client_reports_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    client: Any = telethon_client_factory(
        config(session=session_string()), lambda: calls.append("reconnected")
    )

    with caplog.at_level(logging.WARNING):
        await client._handle_auto_reconnect()  # its get_me fails offline and is only logged

    assert calls == ["reconnected"]


async def test_wiring_through_a_real_never_connected_client_dispatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Private Telethon API (sdk-notes B8.3), pinned to 1.x: the registered handlers
    # fire through the client's own dispatch, chat filtering included.
    real = TelegramClient(StringSession(), 1, "0" * 32)
    fake = FakeClient()
    sink = RecordingSink()
    source = TelegramSource(config(), InMemoryCursorStore(), client_factory=lambda _c, _r: fake)
    monkeypatch.setattr(fake, "add_event_handler", real.add_event_handler)
    monkeypatch.setattr(fake, "remove_event_handler", real.remove_event_handler)
    monkeypatch.setattr(source, "backfill", _no_backfill)

    task = asyncio.create_task(source.run(sink))
    for _ in range(50):
        await asyncio.sleep(0)
    for msg in (message(5, "BUY"), message(6, channel=GOLD + 1)):  # the second is elsewhere
        update = UpdateNewChannelMessage(message=msg, pts=1, pts_count=1)
        update._entities = {}
        await real._dispatch_update(update)

    assert sink.ids == [5]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert real.list_event_handlers() == []


async def _no_backfill(_client: Any) -> None:
    return None
