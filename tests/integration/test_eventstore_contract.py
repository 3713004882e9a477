"""Contract tests of the event store against a real Postgres."""

from __future__ import annotations

import asyncio

import msgspec
import psycopg
import pytest

from eventstore import (
    ANY_VERSION,
    AppendRefused,
    AppendResult,
    ConcurrencyError,
    EventRegistry,
    EventStore,
    OutboxMessage,
    UnknownEventType,
    request,
)
from eventstore.group_commit import GroupCommitter
from eventstore.migrate import migrate
from tests.support.events import Balance, Deposited, Withdrawn, deposited, evolve, withdrawn

pytestmark = pytest.mark.integration

REGISTRY = EventRegistry(Deposited, Withdrawn)


@pytest.fixture
async def store(database_url: str):
    await migrate(database_url)
    es = await EventStore.connect(database_url, min_size=2, max_size=8)
    yield es
    await es.close()


async def test_two_writers_at_same_expected_version_then_exactly_one_wins(store: EventStore):
    await store.append("acct-1", 0, [deposited(10)])

    outcomes = await asyncio.gather(
        store.append("acct-1", 1, [deposited(1)]),
        store.append("acct-1", 1, [withdrawn(2)]),
        return_exceptions=True,
    )

    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    losses = [o for o in outcomes if isinstance(o, ConcurrencyError)]
    assert len(wins) == 1 and len(losses) == 1
    assert losses[0].stream == "acct-1" and losses[0].expected == 1 and losses[0].actual == 2
    assert "expected version 1" in str(losses[0]) and "version 2" in str(losses[0])
    assert [e.version for e in await store.read_stream("acct-1")] == [1, 2]


async def test_append_to_missing_stream_with_nonzero_version_then_concurrency_error(
    store: EventStore,
):
    with pytest.raises(ConcurrencyError, match="does not exist"):
        await store.append("acct-ghost", 3, [deposited(1)])


async def test_reappend_with_same_idempotency_key_then_nothing_appended_twice(store: EventStore):
    first = await store.append("acct-2", 0, [deposited(5)], idempotency_key="sig-1:u2")

    again = await store.append("acct-2", 0, [deposited(5)], idempotency_key="sig-1:u2")

    assert not first.duplicate and again.duplicate
    assert again.first_version == first.first_version == 1
    assert len(await store.read_stream("acct-2")) == 1


async def test_processed_message_when_redelivered_then_no_second_effect(store: EventStore):
    out = OutboxMessage(subject="events.test.x", msg_id="m1", payload=b"{}")
    first = await store.append(
        "acct-3", ANY_VERSION, [deposited(1)], processed=[("risk", "msg-9")], outbox=[out]
    )

    again = await store.append(
        "acct-3", ANY_VERSION, [deposited(1)], processed=[("risk", "msg-9")], outbox=[out]
    )

    assert not first.duplicate and again.duplicate
    assert len(await store.read_stream("acct-3")) == 1
    assert await store.is_processed("risk", "msg-9")
    async with store.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM outbox")
        assert (await cur.fetchone())[0] == 1


async def test_concurrent_appends_to_many_streams_then_read_all_in_global_order(
    store: EventStore,
):
    async def writer(stream: str) -> None:
        for i in range(20):
            await store.append(stream, i, [deposited(i)])

    await asyncio.gather(*(writer(f"acct-w{n}") for n in range(6)))

    events = [e async for e in store.read_all(0)]
    positions = [e.position for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions) == 120
    for n in range(6):
        versions = [e.version for e in events if e.stream == f"acct-w{n}"]
        assert versions == list(range(1, 21))
    tail = [e async for e in store.read_all(positions[59])]
    assert [e.position for e in tail] == positions[60:]


async def test_batch_with_one_stale_request_then_only_that_one_fails(store: EventStore):
    await store.append("acct-b1", 0, [deposited(1)])

    results = await store.append_batch(
        [
            request("acct-b1", 0, [deposited(2)]),  # stale: the stream is at 1
            request("acct-b2", 0, [deposited(3)]),
            request("acct-b2", 1, [withdrawn(1)]),  # chains on the previous request
        ]
    )

    assert isinstance(results[0], ConcurrencyError)
    assert [getattr(r, "last_version", None) for r in results[1:]] == [1, 2]
    assert len(await store.read_stream("acct-b1")) == 1
    assert len(await store.read_stream("acct-b2")) == 2


async def test_large_batch_goes_through_copy_and_reads_back_intact(store: EventStore):
    tricky = 'tab\there, newline\nthere, back\\slash, quote" and ünïcode ✓'
    reqs = [request(f"acct-c{i}", 0, [deposited(i)], metadata={"note": tricky}) for i in range(200)]

    results = await store.append_batch(reqs)

    assert all(not isinstance(r, Exception) and r.last_version == 1 for r in results)
    events = await store.read_stream("acct-c7")
    assert REGISTRY.decode(events[0]).amount == 7
    assert msgspec.json.decode(events[0].metadata)["note"] == tricky


async def test_snapshot_plus_tail_equals_full_fold(store: EventStore):
    amounts = [5, -2, 7, -1, 3, 9, -4]
    for i, amount in enumerate(amounts):
        event = deposited(amount) if amount > 0 else withdrawn(-amount)
        await store.append("acct-s", i, [event])
    full = Balance()
    for recorded in await store.read_stream("acct-s"):
        full = evolve(full, REGISTRY.decode(recorded))

    partial = Balance()
    for recorded in await store.read_stream("acct-s"):
        if recorded.version > 4:
            break
        partial = evolve(partial, REGISTRY.decode(recorded))
    await store.save_snapshot("acct-s", 4, partial)
    await store.save_snapshot("acct-s", 2, Balance(total=-999))  # older: must not replace

    snap = await store.load_snapshot("acct-s")
    assert snap is not None and snap.version == 4
    state = msgspec.json.decode(snap.data, type=Balance)
    for recorded in await store.read_stream("acct-s", from_version=snap.version + 1):
        state = evolve(state, REGISTRY.decode(recorded))
    assert state == full and full.total == sum(amounts)


async def test_read_of_unknown_event_type_then_clear_error(store: EventStore):
    await store.append("acct-u", 0, [deposited(1)])
    narrow = EventRegistry(Withdrawn)

    (recorded,) = await store.read_stream("acct-u")
    with pytest.raises(UnknownEventType) as err:
        narrow.decode(recorded)

    message = str(err.value)
    assert "acct-u@1" in message and "'test.deposited'" in message and "test.withdrawn" in message


async def test_migrate_twice_then_second_applies_nothing(database_url: str):
    await migrate(database_url)
    assert await migrate(database_url) == []


async def test_group_commit_when_many_writers_then_one_commit_and_each_gets_its_result(
    store: EventStore,
):
    await store.append("acct-g0", 0, [deposited(1)])
    committer = GroupCommitter(store, linger_s=0.01)
    committer.start()
    try:
        results = await asyncio.gather(
            *(committer.submit(request(f"acct-g{i}", 0, [deposited(i)])) for i in range(50))
        )
    finally:
        await committer.stop()

    assert isinstance(results[0], ConcurrencyError)  # acct-g0 already had an event
    assert all(r.last_version == 1 for r in results[1:])
    assert committer.commits == 1


def unstorable(stream: str, expected_version: int = 0):
    """An append Postgres refuses: jsonb cannot hold a NUL character."""
    good = request(stream, expected_version, [deposited(1)])
    return msgspec.structs.replace(good, payloads=(msgspec.json.encode({"memo": "a\x00b"}),))


async def test_group_commit_when_one_request_unstorable_then_the_others_commit_and_it_alone_fails(
    store: EventStore,
):
    await store.append("acct-b0", 0, [deposited(1)])
    requests = [request(f"acct-b{i}", 0, [deposited(i)]) for i in range(60)]
    requests[20] = unstorable("acct-b20")
    # behind the refused one, in the same stream: it expected it to be written
    requests.append(request("acct-b20", 1, [deposited(2)]))
    committer = GroupCommitter(store)
    committer.start()
    try:
        results = await committer.submit_many(requests)  # one batch: queued at once
    finally:
        await committer.stop()

    refused, chained = results[20], results[60]
    assert isinstance(refused, AppendRefused) and refused.stream == "acct-b20"
    assert isinstance(refused.__cause__, psycopg.DataError)
    assert "acct-b20" in str(refused) and "\\u0000" not in str(refused)
    assert isinstance(chained, ConcurrencyError) and chained.actual is None
    assert isinstance(results[0], ConcurrencyError)  # acct-b0 had an event already
    good = [r for i, r in enumerate(results[:60]) if i not in (0, 20)]
    assert all(isinstance(r, AppendResult) and r.last_version == 1 for r in good)
    for i in range(1, 60):
        expected = [] if i == 20 else [1]
        assert [e.version for e in await store.read_stream(f"acct-b{i}")] == expected


async def test_group_commit_when_the_database_is_gone_then_every_caller_gets_the_error(
    database_url: str,
):
    await migrate(database_url)
    gone = await EventStore.connect(database_url, min_size=1, max_size=2)
    await gone.close()
    committer = GroupCommitter(gone)
    committer.start()
    try:
        outcomes = await asyncio.gather(
            *(committer.submit(request(f"acct-z{i}", 0, [deposited(i)])) for i in range(10)),
            return_exceptions=True,
        )
    finally:
        await committer.stop()

    assert all(isinstance(o, psycopg.OperationalError) for o in outcomes), outcomes
