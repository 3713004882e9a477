from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from ingest_sources_stubs import (
    FOREX,
    FOREX_ID,
    GOLD,
    GOLD_ID,
    T0,
    FakeClient,
    RecordingSink,
    config,
    dispatch,
    message,
    service_message,
)
from telethon.errors import (
    AuthKeyDuplicatedError,
    AuthKeyUnregisteredError,
    ChannelPrivateError,
    FloodWaitError,
    UsernameNotOccupiedError,
)
from telethon.tl.types import (
    UpdateDeleteChannelMessages,
    UpdateEditChannelMessage,
    UpdateNewChannelMessage,
)

from services.ingest.sources.base import InMemoryCursorStore, SignalSource
from services.ingest.sources.telegram import (
    TelegramConfig,
    TelegramSessionDead,
    TelegramSource,
    TelegramSourceError,
)


class Sleeps:
    """An injected sleep that records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_source(
    client: FakeClient,
    cursors: InMemoryCursorStore | None = None,
    *,
    sleep: Sleeps | None = None,
    **cfg: Any,
) -> tuple[TelegramSource, InMemoryCursorStore]:
    store = cursors if cursors is not None else InMemoryCursorStore({GOLD_ID: 100})

    def factory(_config: TelegramConfig, on_reconnect: Callable[[], None]) -> FakeClient:
        client.on_reconnect = on_reconnect
        return client

    source = TelegramSource(
        config(**cfg),
        store,
        client_factory=factory,
        sleep=sleep or Sleeps(),
        clock=lambda: 42,
        jitter=lambda: 0.25,
    )
    return source, store


async def start(source: TelegramSource, sink: RecordingSink) -> asyncio.Task[None]:
    """Run the source in a task until it has done its start-up backfill."""
    task = asyncio.create_task(source.run(sink))
    for _ in range(200):
        await asyncio.sleep(0)
        if task.done():
            break
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def new(msg: Any) -> UpdateNewChannelMessage:
    return UpdateNewChannelMessage(message=msg, pts=1, pts_count=1)


# --- start-up -----------------------------------------------------------------------------


def test_telegram_source_satisfies_the_signal_source_port() -> None:
    source, _ = make_source(FakeClient())

    assert isinstance(source, SignalSource)


async def test_run_when_session_not_authorized_then_fails_loudly_without_prompting() -> None:
    client = FakeClient(authorized=False)
    source, _ = make_source(client)

    with pytest.raises(TelegramSessionDead, match="not authorized"):
        await source.run(RecordingSink())

    assert client.started is False
    assert client.disconnect_calls == 1


async def test_run_resolves_channels_once_to_marked_ids_and_registers_three_handlers() -> None:
    client = FakeClient(usernames={"gold_signals": GOLD, "fx_vip": FOREX})
    source, _ = make_source(client, channels=["@Gold_Signals", "fx_vip", str(GOLD_ID)])

    task = await start(source, RecordingSink())

    assert source.channels == {GOLD_ID: "gold_signals", FOREX_ID: "fx_vip"}
    kinds = sorted(type(builder).__name__ for _, builder in client.handlers)
    assert kinds == ["MessageDeleted", "MessageEdited", "NewMessage"]
    for _, builder in client.handlers:
        await builder.resolve(None)
        assert builder.chats == {GOLD_ID, FOREX_ID}
    await stop(task)
    assert len(client.removed) == 3
    assert client.disconnect_calls == 1


@pytest.mark.parametrize(
    "error",
    [
        ChannelPrivateError(request=None),
        UsernameNotOccupiedError(request=None),
        ValueError('No user has "gone" as username'),
    ],
)
async def test_run_when_one_channel_unreadable_then_logs_and_reads_the_others(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient(resolve_errors={"gone": error})
    source, _ = make_source(client, channels=["gone", "gold_signals"])

    with caplog.at_level(logging.ERROR):
        task = await start(source, RecordingSink())

    assert source.channels == {GOLD_ID: "gold_signals"}
    assert "'gone' cannot be read by this account" in caplog.text
    assert type(error).__name__ in caplog.text
    await stop(task)


async def test_run_when_no_channel_readable_then_error() -> None:
    client = FakeClient(usernames={})
    source, _ = make_source(client, channels=["nope"])

    with pytest.raises(TelegramSourceError, match="none of the configured telegram channels"):
        await source.run(RecordingSink())


async def test_run_when_flood_wait_while_resolving_then_waits_and_retries() -> None:
    class FloodOnce(FakeClient):
        floods = 1

        async def get_input_entity(self, peer: Any) -> Any:
            if self.floods:
                self.floods -= 1
                raise FloodWaitError(request=None, capture=30)
            return await super().get_input_entity(peer)

    sleeps = Sleeps()
    source, _ = make_source(FloodOnce(), sleep=sleeps)

    task = await start(source, RecordingSink())

    assert sleeps.delays == [30.25]
    assert source.channels == {GOLD_ID: "gold_signals"}
    await stop(task)


# --- live updates through the real event builders ---------------------------------------


async def test_live_new_message_then_sink_gets_it_and_contiguous_cursor_advances() -> None:
    client = FakeClient()
    source, cursors = make_source(client)
    sink = RecordingSink()
    task = await start(source, sink)

    hits = await dispatch(client, new(message(101, "BUY GOLD 2350")))

    assert hits == 1
    assert sink.ids == [101]
    assert sink.accepted[0].channel == "gold_signals"
    assert sink.accepted[0].text == "BUY GOLD 2350"
    assert await cursors.get(GOLD_ID) == 101
    await stop(task)


async def test_live_message_from_another_channel_then_filtered_out() -> None:
    client = FakeClient()
    source, _ = make_source(client)
    sink = RecordingSink()
    task = await start(source, sink)

    hits = await dispatch(client, new(message(101, channel=FOREX)))

    assert hits == 0
    assert sink.accepted == []
    await stop(task)


async def test_live_edit_then_new_revision_delivered_once() -> None:
    client = FakeClient()
    source, _ = make_source(client)
    sink = RecordingSink()
    task = await start(source, sink)
    edited = message(101, "BUY GOLD 2351", edit_date=T0 + timedelta(minutes=1))

    await dispatch(client, new(message(101, "BUY GOLD 2350")))
    await dispatch(client, UpdateEditChannelMessage(message=edited, pts=2, pts_count=1))
    await dispatch(client, UpdateEditChannelMessage(message=edited, pts=3, pts_count=1))

    assert [(m.message_id, m.text) for m in sink.accepted] == [
        (101, "BUY GOLD 2350"),
        (101, "BUY GOLD 2351"),
    ]
    assert sink.accepted[1].edit_date_ns is not None
    await stop(task)


async def test_live_delete_then_deleted_messages_delivered_without_moving_cursor() -> None:
    client = FakeClient()
    source, cursors = make_source(client)
    sink = RecordingSink()
    task = await start(source, sink)

    hits = await dispatch(
        client, UpdateDeleteChannelMessages(channel_id=GOLD, messages=[90, 91], pts=4, pts_count=2)
    )

    assert hits == 1
    assert [(m.message_id, m.deleted, m.date_ns) for m in sink.accepted] == [
        (90, True, 42),
        (91, True, 42),
    ]
    assert await cursors.get(GOLD_ID) == 100
    await stop(task)


async def test_live_message_after_a_gap_then_delivered_but_cursor_waits_for_backfill() -> None:
    client = FakeClient()
    source, cursors = make_source(client)
    sink = RecordingSink()
    task = await start(source, sink)
    for msg_id in (101, 102, 103, 104):
        client.post(message(msg_id))

    await dispatch(client, new(message(104)))  # 101-103 were dropped by Telegram

    assert sink.ids == [104]
    assert await cursors.get(GOLD_ID) == 100

    await source.backfill(client)

    assert sink.ids == [104, 101, 102, 103]  # 104 not delivered twice
    assert await cursors.get(GOLD_ID) == 104
    await stop(task)


async def test_live_handlers_when_concurrent_then_one_channel_never_runs_the_sink_twice_at_once() -> (
    None
):
    client = FakeClient()
    source, _ = make_source(client)
    sink = RecordingSink()
    sink.delay = 0.001
    task = await start(source, sink)

    await asyncio.gather(*(dispatch(client, new(message(i))) for i in range(101, 111)))

    assert sink.max_in_flight == 1
    assert sorted(sink.ids) == list(range(101, 111))
    await stop(task)


async def test_live_when_sink_refuses_then_cursor_stays_and_backfill_retries() -> None:
    client = FakeClient()
    source, cursors = make_source(client)
    sink = RecordingSink()
    task = await start(source, sink)
    client.post(message(101))
    sink.fail_on = {101}

    await dispatch(client, new(message(101)))

    assert sink.ids == []
    assert await cursors.get(GOLD_ID) == 100
    sink.fail_on = set()
    await source.backfill(client)
    assert sink.ids == [101]
    assert await cursors.get(GOLD_ID) == 101
    await stop(task)


# --- backfill ----------------------------------------------------------------------------


async def test_backfill_at_start_then_gap_delivered_exactly_once_in_order_and_cursor_advanced() -> (
    None
):
    client = FakeClient(history={GOLD_ID: [message(i) for i in range(95, 111)]})
    source, cursors = make_source(client)
    sink = RecordingSink()

    task = await start(source, sink)
    await source.backfill(client)

    assert sink.ids == list(range(101, 111))
    assert await cursors.get(GOLD_ID) == 110
    first = client.iter_calls[0]
    assert (first["min_id"], first["reverse"]) == (100, True)
    assert client.iter_calls[1]["min_id"] == 110
    await stop(task)


async def test_backfill_when_message_edited_meanwhile_then_edit_delivered_as_new_revision() -> None:
    client = FakeClient()
    source, _ = make_source(client, cursors=InMemoryCursorStore({GOLD_ID: 100}))
    sink = RecordingSink()
    task = await start(source, sink)
    await dispatch(client, new(message(102, "SELL EURUSD")))  # gap: cursor stays at 100
    client.post(message(101))
    client.post(message(102, "SELL EURUSD 1.0850", edit_date=T0 + timedelta(minutes=5)))

    await source.backfill(client)

    assert [(m.message_id, m.edit_date_ns is not None) for m in sink.accepted] == [
        (102, False),
        (101, False),
        (102, True),
    ]
    await stop(task)


async def test_backfill_when_sink_refuses_then_stops_channel_and_resumes_in_order_later() -> None:
    client = FakeClient(history={GOLD_ID: [message(i) for i in range(101, 105)]})
    sink = RecordingSink()
    sink.fail_on = {102}
    source, cursors = make_source(client)

    task = await start(source, sink)

    assert sink.ids == [101]
    assert await cursors.get(GOLD_ID) == 101
    sink.fail_on = set()
    await source.backfill(client)
    assert sink.ids == [101, 102, 103, 104]
    await stop(task)


async def test_backfill_when_service_message_then_skipped_but_cursor_moves_past_it() -> None:
    client = FakeClient(history={GOLD_ID: [message(101), service_message(102), message(103)]})
    source, cursors = make_source(client)
    sink = RecordingSink()

    task = await start(source, sink)

    assert sink.ids == [101, 103]
    assert await cursors.get(GOLD_ID) == 103
    await stop(task)


async def test_backfill_when_flood_wait_then_waits_seconds_plus_jitter_and_retries() -> None:
    client = FakeClient(history={GOLD_ID: [message(i) for i in range(101, 104)]})
    client.errors = [FloodWaitError(request=None, capture=2)]
    sleeps = Sleeps()
    source, cursors = make_source(client, sleep=sleeps)
    sink = RecordingSink()

    task = await start(source, sink)

    assert not task.done()  # did not crash
    assert sleeps.delays == [2.25]
    assert sink.ids == [101, 102, 103]
    assert await cursors.get(GOLD_ID) == 103
    assert len(client.iter_calls) == 2  # the failed attempt and the retry
    await stop(task)


async def test_backfill_when_channel_turns_private_then_skipped_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = FakeClient(
        usernames={"gold_signals": GOLD, "fx_vip": FOREX},
        history={FOREX_ID: [message(11, channel=FOREX)]},
    )
    client.errors = [ChannelPrivateError(request=None)]
    source, _ = make_source(
        client,
        cursors=InMemoryCursorStore({GOLD_ID: 100, FOREX_ID: 10}),
        channels=["gold_signals", "fx_vip"],
    )
    sink = RecordingSink()

    with caplog.at_level(logging.ERROR):
        task = await start(source, sink)

    assert sink.ids == [11]
    assert source.channels == {FOREX_ID: "fx_vip"}
    assert "gold_signals" in caplog.text and "no longer readable" in caplog.text
    await stop(task)


@pytest.mark.parametrize(
    "error", [AuthKeyUnregisteredError(request=None), AuthKeyDuplicatedError(request=None)]
)
async def test_backfill_when_session_dead_then_run_stops_with_clear_error(
    error: BaseException,
) -> None:
    client = FakeClient()
    client.errors = [error]
    source, _ = make_source(client)

    with pytest.raises(TelegramSessionDead, match="session is dead") as info:
        await source.run(RecordingSink())

    assert type(error).__name__ in str(info.value)
    assert client.disconnect_calls == 1


async def test_backfill_when_connection_error_then_logged_and_retried_next_pass() -> None:
    client = FakeClient(history={GOLD_ID: [message(101)]})
    client.errors = [ConnectionError("reset by peer")]
    source, _ = make_source(client)
    sink = RecordingSink()

    task = await start(source, sink)
    assert not task.done()
    assert sink.ids == []
    await source.backfill(client)
    assert sink.ids == [101]
    await stop(task)


async def test_first_sight_of_a_channel_then_cursor_starts_at_newest_and_history_not_replayed() -> (
    None
):
    client = FakeClient(history={GOLD_ID: [message(i) for i in range(1, 51)]})
    source, cursors = make_source(client, cursors=InMemoryCursorStore())
    sink = RecordingSink()

    task = await start(source, sink)
    client.post(message(51))
    await source.backfill(client)

    assert sink.ids == [51]
    assert await cursors.get(GOLD_ID) == 51
    await stop(task)


async def test_backfill_limit_then_long_gap_worked_off_over_passes_oldest_first() -> None:
    client = FakeClient(history={GOLD_ID: [message(i) for i in range(101, 111)]})
    source, cursors = make_source(client, backfill_limit=4)
    sink = RecordingSink()

    task = await start(source, sink)
    assert sink.ids == [101, 102, 103, 104]
    await source.backfill(client)
    await source.backfill(client)

    assert sink.ids == list(range(101, 111))
    assert await cursors.get(GOLD_ID) == 110
    await stop(task)


# --- the run loop --------------------------------------------------------------------------


async def test_run_when_client_reconnects_then_backfills_at_once() -> None:
    client = FakeClient()
    source, _ = make_source(client)
    sink = RecordingSink()
    task = await start(source, sink)
    client.post(message(101))

    client.on_reconnect()
    for _ in range(50):
        await asyncio.sleep(0)

    assert sink.ids == [101]
    await stop(task)


async def test_run_backfills_every_interval() -> None:
    client = FakeClient()
    source, _ = make_source(client, backfill_interval_s=0.01)
    sink = RecordingSink()
    task = await start(source, sink)
    client.post(message(101))

    for _ in range(500):  # up to 5 s on a slow machine; normally a few ms
        if sink.ids:
            break
        await asyncio.sleep(0.01)

    assert sink.ids == [101]
    assert len(client.iter_calls) >= 2
    await stop(task)


async def test_run_when_client_gives_up_for_good_then_raises() -> None:
    client = FakeClient()
    source, _ = make_source(client)
    task = await start(source, RecordingSink())

    client.drop_for_good(AuthKeyUnregisteredError(request=None))

    with pytest.raises(TelegramSessionDead):
        await task


async def test_run_when_client_disconnects_without_error_then_raises_source_error() -> None:
    client = FakeClient()
    source, _ = make_source(client)
    task = await start(source, RecordingSink())

    client.drop_for_good()

    with pytest.raises(TelegramSourceError, match="gave up reconnecting"):
        await task


# --- config --------------------------------------------------------------------------------


def test_config_repr_and_str_never_show_session_or_api_hash() -> None:
    cfg = config()

    for text in (repr(cfg), str(cfg), f"{cfg}", repr([cfg])):
        assert cfg.session not in text
        assert cfg.api_hash not in text
    assert "gold_signals" in repr(cfg).lower()


def test_config_when_unknown_field_then_error_names_it() -> None:
    raw = {
        "api_id": 1,
        "api_hash": "h",
        "session": "s",
        "channels": ["c"],
        "backfil_interval_s": 5,
    }

    with pytest.raises(msgspec.ValidationError, match="backfil_interval_s"):
        msgspec.convert(raw, TelegramConfig)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("session", "", "session is empty"),
        ("channels", [], "channels is empty"),
        ("backfill_interval_s", 0, "backfill_interval_s"),
        ("api_id", 0, "api_id"),
    ],
)
def test_config_when_invalid_then_error_says_what(field: str, value: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        config(**{field: value})
