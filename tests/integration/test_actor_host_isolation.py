"""One user's bad state refuses that user only: the ActorHost on a real event log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.settings import LotSizing, UserSettings
from contracts.users import (
    USER_EVENTS,
    AccountLinked,
    SettingsChanged,
    SignalHandled,
    SignalRefused,
    Subscribed,
    UserRegistered,
    user_stream,
)
from eventstore import EventRegistry, EventStore
from eventstore.group_commit import GroupCommitter
from eventstore.migrate import migrate
from eventstore.records import AppendRequest
from services.actors.host import ActorHost
from services.actors.replay import replay_user
from tests.unit.actors.factories import CHANNEL, SECOND, T0, open_signal, parsed, quote

REGISTRY = EventRegistry(*USER_EVENTS)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    await migrate(database_url)
    es = await EventStore.connect(database_url, min_size=1, max_size=4)
    try:
        yield es
    finally:
        await es.close()


async def follower(store: EventStore, user: str, settings: UserSettings | None = None) -> None:
    """A user who follows the channel, written straight to the log (no control plane)."""
    events: list[object] = [
        UserRegistered(id=f"{user}-1", ts=T0, user_id=user),
        AccountLinked(id=f"{user}-2", ts=T0, account_id=f"paper-{user}", broker="paper"),
        Subscribed(id=f"{user}-3", ts=T0, channel=CHANNEL),
    ]
    if settings is not None:
        events.append(SettingsChanged(id=f"{user}-4", ts=T0, settings=settings))
    await store.append(user_stream(user), 0, events)  # type: ignore[arg-type]


async def test_signal_when_one_users_settings_make_planning_raise_then_others_still_get_intents(
    store: EventStore,
) -> None:
    # a lot from before settings had bounds: sizing it overflows
    huge = UserSettings(lot=LotSizing(mode="fixed", fixed_lot=1e308, max_lot=1e308))
    await follower(store, "bad", huge)
    await follower(store, "good")
    committer = GroupCommitter(store)
    committer.start()
    host = ActorHost(store, committer, partitions=1, owned=[0])
    try:
        await host.start()
        host.quotes.update(quote())
        signal = parsed(open_signal(), posted_ns=T0)

        decided = await host.on_signal(signal, T0 + SECOND)

        good = [REGISTRY.decode(r) for r in await store.read_stream(user_stream("good"))]
        bad = [REGISTRY.decode(r) for r in await store.read_stream(user_stream("bad"))]
    finally:
        await committer.stop()
    assert decided == 2
    assert isinstance(good[-1], SignalHandled) and good[-1].intents
    assert isinstance(bad[-1], SignalRefused)
    assert bad[-1].code == "internal"
    assert "OverflowError" in bad[-1].reason and "bad" in bad[-1].reason
    assert host.stats.refusals == {"internal": 1}


async def test_signal_when_one_users_stream_cannot_be_read_then_others_still_get_intents(
    store: EventStore,
) -> None:
    await follower(store, "broken")
    await follower(store, "fine")
    # an event its reader cannot decode (a lot that is not a number)
    corrupt = (
        b'{"type":"user.settings_changed","id":"b-4","ts":1,"settings":{"lot":{"fixed_lot":"big"}}}'
    )
    (written,) = await store.append_batch(
        [
            AppendRequest(
                stream=user_stream("broken"),
                expected_version=3,
                types=("user.settings_changed",),
                payloads=(corrupt,),
            )
        ]
    )
    assert not isinstance(written, Exception)
    committer = GroupCommitter(store)
    committer.start()
    host = ActorHost(store, committer, partitions=1, owned=[0])
    try:
        await host.start()
        host.quotes.update(quote())

        decided = await host.on_signal(parsed(open_signal(), posted_ns=T0), T0 + SECOND)

        fine = [REGISTRY.decode(r) for r in await store.read_stream(user_stream("fine"))]
    finally:
        await committer.stop()
    assert decided == 1
    assert isinstance(fine[-1], SignalHandled) and fine[-1].intents
    assert host.stats.unreadable == 1 and "broken" not in host.slots


async def test_replay_of_settings_from_before_the_bounds_then_the_field_out_of_bounds_is_named(
    store: EventStore,
) -> None:
    huge = UserSettings(lot=LotSizing(mode="fixed", fixed_lot=1e308, max_lot=1e308))
    await follower(store, "old", huge)
    await follower(store, "new")

    old = await replay_user(store, "old")
    new = await replay_user(store, "new")

    assert old["settings_out_of_bounds"]["field"] == "lot.fixed_lot"
    assert "100" in old["settings_out_of_bounds"]["message"]
    assert new["settings_out_of_bounds"] is None
