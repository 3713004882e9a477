"""The whole NATS permission table, row by row, against the real nats-server started
with the generated configuration (infra/nats_config.py).

Each row is one user and one thing it must or must not do: publish a subject,
subscribe to one, or make a JetStream call (create, read and ack its own durable,
take or delete another service's). A new rule in `PERMISSIONS` gets a row here.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from contracts.subjects import STREAMS, inbox_prefix
from eventstore.migrate import migrate
from infra.embedded import EmbeddedNats
from infra.nats_config import ANY_DURABLE, PERMISSIONS
from services.audit import tools
from services.runtime.ctl import request
from services.runtime.host import run_service
from services.runtime.settings import RuntimeSettings
from tests.support.nats_users import ServiceClient, Watcher, as_service, mapped

pytestmark = pytest.mark.integration

SERVICE_USERS = [user for user, role in PERMISSIONS.items() if role["serves"]]
ALL_USERS = list(PERMISSIONS)


@pytest.fixture
async def admin(isolated_nats: EmbeddedNats) -> AsyncIterator[NATS]:
    # a server of the test's own: durables other tests left (audit's, say) would
    # otherwise be bound to here, with their messages
    conn = await nats.connect(isolated_nats.admin_url, name="test-admin")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def client_for(
    isolated_nats: EmbeddedNats,
) -> AsyncIterator[Callable[..., Awaitable[ServiceClient]]]:
    opened: list[ServiceClient] = []

    async def open_as(user: str) -> ServiceClient:
        client = await as_service(isolated_nats, user)
        opened.append(client)
        return client

    try:
        yield open_as
    finally:
        for client in opened:
            await client.close()


def tagged(subject: str) -> str:
    """`subject` with its last token made unique, so rows never see each other's messages."""
    return subject.replace("*", uuid.uuid4().hex[:8])


# --- publish -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pub:
    user: str
    subject: str
    allowed: bool


PUBLISH = [
    Pub("ingest", "signals.raw.chan", True),
    Pub("ingest", "signals.parsed.chan", True),
    Pub("ingest", "orders.intent.u1", False),
    Pub("ingest", "ctl.user.status.u1", False),
    Pub("actors", "orders.intent.u1", True),
    Pub("actors", "audit.control.u1", True),
    Pub("actors", "orders.verdict.u1", False),
    Pub("risk", "orders.verdict.u1", True),
    Pub("risk", "events.risk.r1", True),
    Pub("risk", "events.user.u1", False),
    Pub("execution", "orders.report.u1", True),
    Pub("execution", "broker.paper.acc.place", True),
    Pub("execution", "prices.XAUUSD", False),
    Pub("paper", "prices.XAUUSD", True),
    Pub("paper", "orders.report.u1", False),
    Pub("audit", "dlq.audit", True),
    Pub("audit", "dlq.risk", False),
    Pub("audit", "ctl.user.status.u1", False),
    Pub("audit", "events.user.u1", False),
    Pub("ctl", "ctl.user.status.u1", True),
    Pub("ctl", "ctl.sys.health", True),
    Pub("ctl", "$SRV.PING", True),
    Pub("ctl", "signals.raw.chan", False),
    Pub("ctl", "$JS.API.STREAM.DELETE.SIGNALS", False),
]


@pytest.mark.parametrize(
    "row", [pytest.param(r, id=f"{r.user}-pub-{r.subject}-{r.allowed}") for r in PUBLISH]
)
async def test_publish_then_as_the_table_says(
    isolated_nats: EmbeddedNats, admin: NATS, client_for, row: Pub
):
    watcher = await Watcher(admin).start()
    client = await client_for(row.user)
    marker = uuid.uuid4().hex.encode()

    await client.nc.publish(row.subject, marker)
    errors = await client.permission_errors(
        row.subject,
        mapped(row.subject, isolated_nats.partitions),
        wait_s=0.0 if row.allowed else 5.0,
    )

    if row.allowed:
        assert errors == [] and marker in await watcher.payloads()
    else:
        assert errors, f"{row.user} published on {row.subject} without a permissions violation"
        assert marker not in await watcher.payloads()


# --- subscribe ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sub:
    user: str
    pattern: str  # what the user subscribes to
    sample: str  # a subject in `pattern` that admin publishes on (`*`: a fresh token)
    allowed: bool


def _inbox_rows() -> list[Sub]:
    rows = []
    for user in ALL_USERS:
        own = inbox_prefix(user)
        other = inbox_prefix("ctl" if user != "ctl" else "audit")
        rows += [
            # replies and stream deliveries of every other client
            Sub(user, "_INBOX.>", "_INBOX.*", False),
            Sub(user, f"{other}.>", f"{other}.*", False),
            Sub(user, f"{own}.>", f"{own}.*", True),
        ]
    return rows


SUBSCRIBE = [
    # audit reads streams only: no control request reaches it, so it can answer none
    Sub("audit", "ctl.>", "ctl.p.0.status.*", False),
    Sub("audit", "ctl.p.>", "ctl.p.0.link_account.*", False),
    Sub("audit", "signals.raw.>", "signals.raw.*", False),
    Sub("audit", "ctl.svc.audit.>", "ctl.svc.audit.*", True),
    Sub("audit", "ctl.sys.>", "ctl.sys.*", True),
    Sub("actors", "ctl.p.>", "ctl.p.0.status.*", True),
    Sub("actors", "prices.>", "prices.*", True),
    Sub("risk", "ctl.p.>", "ctl.p.0.status.*", False),
    Sub("risk", "ctl.svc.execution.>", "ctl.svc.execution.*", False),
    # a JetStream publish is a request: a core subscriber of a stream subject could
    # answer it with a forged acknowledgement
    Sub("risk", "orders.intent.>", "orders.intent.*", False),
    Sub("execution", "orders.verdict.>", "orders.verdict.*", False),
    Sub("actors", "signals.parsed.>", "signals.parsed.*", False),
    Sub("execution", "broker.events.>", "broker.events.*", True),
    Sub("paper", "broker.paper.>", "broker.paper.*.place", True),
    Sub("ingest", "broker.paper.>", "broker.paper.*.place", False),
    Sub("ctl", "ctl.sys.>", "ctl.sys.*", False),
    *_inbox_rows(),
]


@pytest.mark.parametrize(
    "row", [pytest.param(r, id=f"{r.user}-sub-{r.pattern}-{r.allowed}") for r in SUBSCRIBE]
)
async def test_subscribe_then_as_the_table_says(admin: NATS, client_for, row: Sub):
    client = await client_for(row.user)
    sample = tagged(row.sample)
    marker = uuid.uuid4().hex.encode()

    # a message admin sends after the sample on a subject the user may read: the server
    # keeps one publisher's order, so once it is here the sample would be too
    fence = await client.nc.subscribe(f"{inbox_prefix(row.user)}.fence.{uuid.uuid4().hex}")

    # no callback: the client queues a message on its subscription as it reads it off the
    # socket, in the server's order, so when the fence has arrived the sample is queued
    # already (a callback runs later, on its own task, and could still be pending)
    sub = await client.nc.subscribe(row.pattern)
    errors = await client.permission_errors(row.pattern, wait_s=0.0 if row.allowed else 5.0)
    await _sample_then_fence(admin, sample, marker, fence)
    got = []
    while sub.pending_msgs:
        got.append((await sub.next_msg(timeout=1)).data)

    if row.allowed:
        assert errors == [] and marker in got
    else:
        assert errors, f"{row.user} subscribed to {row.pattern} without a permissions violation"
        assert marker not in got, f"{row.user} received {sample} through {row.pattern}"


async def _sample_then_fence(admin: NATS, sample: str, marker: bytes, fence) -> None:
    """Publish the sample, then the fence, until the fence arrives.

    Core NATS delivers at most once: a message sent while either connection is
    re-establishing itself (a loaded machine can miss a write deadline) is gone,
    fence and sample alike. So a lost fence means another round, not a verdict;
    a sample the user may not read is refused in every round.
    """
    for _round in range(5):
        await admin.publish(sample, marker)
        await admin.publish(fence.subject, b"fence")
        await admin.flush()
        try:
            await fence.next_msg(timeout=3)
            return
        except nats.errors.TimeoutError:
            continue
    raise AssertionError(
        f"no fence in 5 rounds on {fence.subject}: admin stats {admin.stats},"
        f" client connected={fence._conn.is_connected} stats {fence._conn.stats}"
    )


# --- JetStream ---------------------------------------------------------------------------


def owned_durables() -> list[tuple[str, str, str]]:
    """(user, stream, durable) for every durable in the table; a made-up name for ANY."""
    return [
        (user, stream, durable if durable != ANY_DURABLE else f"{user}-test-{stream.lower()}")
        for user, role in PERMISSIONS.items()
        for stream, durables in role["consume"].items()
        for durable in durables
    ]


def first_subject(stream: str) -> str:
    return next(s for s in STREAMS if s.name == stream).subjects[0]


async def test_table_names_a_durable_for_every_stream_a_user_consumes():
    for user, role in PERMISSIONS.items():
        for stream, durables in role["consume"].items():
            assert durables, f"{user} consumes {stream} without a durable in the table"


@pytest.mark.parametrize(
    ("user", "stream", "durable"),
    [pytest.param(*row, id=f"{row[0]}-own-{row[2]}") for row in owned_durables()],
)
async def test_own_durable_then_created_fetched_acked_and_looked_at(
    admin: NATS, client_for, user: str, stream: str, durable: str
):
    subject = first_subject(stream).replace(">", f"t{uuid.uuid4().hex[:8]}")
    await admin.jetstream().publish(subject, b"payload")
    client = await client_for(user)
    js = client.nc.jetstream(timeout=5)
    try:
        sub = await js.pull_subscribe(subject, durable=durable, stream=stream)
        [msg] = await sub.fetch(1, timeout=5)
        await msg.ack_sync(timeout=5)
        info = await js.consumer_info(stream, durable)
    finally:
        await admin.jetstream().delete_consumer(stream, durable)

    assert msg.data == b"payload"
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == msg.metadata.sequence.stream
    assert client.errors == []


@dataclass(frozen=True)
class Foreign:
    user: str
    stream: str
    durable: str  # another user's durable (or its own, where deleting is the question)


DELETE = [
    # the finding: ingest deleted audit's durable, and audit never knew
    Foreign("ingest", "SIGNALS", "audit_signals_raw"),
    Foreign("ingest", "SIGNALS", "ingest"),  # not even its own: only admin deletes consumers
    Foreign("actors", "SIGNALS", "ingest"),
    Foreign("actors", "ORDERS", "risk"),
    Foreign("actors", "ORDERS", "audit_orders_intent"),
    Foreign("risk", "ORDERS", "execution"),
    Foreign("execution", "ORDERS", "risk-reports"),
    Foreign("audit", "SIGNALS", "ingest"),
    Foreign("ctl", "SIGNALS", "ingest"),
]

TAKE = [
    Foreign("actors", "SIGNALS", "ingest"),
    Foreign("actors", "ORDERS", "execution"),
    Foreign("risk", "ORDERS", "execution"),
    Foreign("execution", "ORDERS", "risk"),
    Foreign("audit", "ORDERS", "risk"),
    Foreign("ingest", "SIGNALS", "audit_signals_raw"),
]


@pytest.fixture
async def victim(admin: NATS) -> AsyncIterator[Callable[[str, str], Awaitable[None]]]:
    """Creates (as admin) the durable a row tries to touch; deletes it afterwards."""
    made: list[tuple[str, str]] = []

    async def make(stream: str, durable: str) -> None:
        await admin.jetstream().add_consumer(
            stream, ConsumerConfig(durable_name=durable, filter_subject=first_subject(stream))
        )
        made.append((stream, durable))

    try:
        yield make
    finally:
        for stream, durable in made:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await admin.jetstream().delete_consumer(stream, durable)


async def refused(client: ServiceClient, call: Awaitable[object], *subjects: str) -> list[str]:
    """Run a JetStream call that the server should refuse; the violations it named."""
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.APIError)):
        await call
    return await client.permission_errors(*subjects, wait_s=5.0)


@pytest.mark.parametrize(
    "row", [pytest.param(r, id=f"{r.user}-delete-{r.durable}") for r in DELETE]
)
async def test_delete_durable_then_refused_and_durable_still_there(
    admin: NATS, client_for, victim, row: Foreign
):
    await victim(row.stream, row.durable)
    client = await client_for(row.user)

    errors = await refused(
        client,
        client.nc.jetstream(timeout=2).delete_consumer(row.stream, row.durable),
        f"$JS.API.CONSUMER.DELETE.{row.stream}.{row.durable}",
    )

    assert errors, f"{row.user} deleted {row.durable} on {row.stream} without a violation"
    info = await admin.jetstream().consumer_info(row.stream, row.durable)
    assert info.name == row.durable


@pytest.mark.parametrize("row", [pytest.param(r, id=f"{r.user}-take-{r.durable}") for r in TAKE])
async def test_another_services_durable_then_cannot_be_read_or_changed(
    admin: NATS, client_for, victim, row: Foreign
):
    await victim(row.stream, row.durable)
    client = await client_for(row.user)
    js = client.nc.jetstream(timeout=2)
    prefix = "$JS.API.CONSUMER"

    errors = await refused(
        client,
        js.pull_subscribe(first_subject(row.stream), durable=row.durable, stream=row.stream),
        f"{prefix}.INFO.{row.stream}.{row.durable}",
    )
    create = await refused(
        client,
        js.add_consumer(
            row.stream,
            ConsumerConfig(
                durable_name=row.durable,
                name=row.durable,
                filter_subject=first_subject(row.stream),
                max_deliver=1,
            ),
        ),
        f"{prefix}.CREATE.{row.stream}.{row.durable}.{first_subject(row.stream)}",
    )

    assert errors and create, f"{row.user} reached {row.durable} on {row.stream}: {client.errors}"
    info = await admin.jetstream().consumer_info(row.stream, row.durable)
    assert info.config.max_deliver != 1


@pytest.mark.parametrize(
    ("user", "stream", "allowed"),
    [
        ("actors", "SIGNALS", True),  # names carry the partition set: any name not taken
        ("actors", "ORDERS", True),
        ("risk", "ORDERS", False),
        ("audit", "SIGNALS", False),
        ("ctl", "SIGNALS", False),
    ],
)
async def test_ordered_consumer_then_as_the_table_says(
    admin: NATS, client_for, user: str, stream: str, allowed: bool
):
    subject = first_subject(stream).replace(">", f"t{uuid.uuid4().hex[:8]}")
    await admin.jetstream().publish(subject, b"one")
    client = await client_for(user)
    js = client.nc.jetstream(timeout=2)

    if allowed:
        sub = await js.subscribe(subject, ordered_consumer=True)
        msg = await sub.next_msg(timeout=5)
        await sub.unsubscribe()
        assert msg.data == b"one" and client.errors == []
    else:
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.APIError)):
            await js.subscribe(subject, ordered_consumer=True)
        errors = await client.permission_errors_naming(f"$JS.API.CONSUMER.CREATE.{stream}")
        assert errors, f"{user} made an ordered consumer on {stream}: {client.errors}"


# --- the forged reply --------------------------------------------------------------------


async def test_audit_answering_a_users_status_request_then_impossible_and_actor_host_answers(
    isolated_nats: EmbeddedNats, client_for
):
    """audit once subscribed to `ctl.>` and answered a user's request before the actor
    host, with a reply the client took. The host here answers only once audit's attempt
    has played out, so the first reply is audit's whenever audit can answer at all."""
    user = f"u{uuid.uuid4().hex[:8]}"
    subject = f"ctl.user.status.{user}"
    audit = await client_for("audit")
    actors = await client_for("actors")
    ctl = await client_for("ctl")
    audit_answered = asyncio.Event()

    async def forge(msg: Msg) -> None:
        await msg.respond(b'{"ok": true, "data": "forged"}')
        await audit.nc.flush()
        audit_answered.set()

    async def genuine(msg: Msg) -> None:
        refused = asyncio.ensure_future(audit.permission_errors("ctl.>", wait_s=10.0))
        await asyncio.wait(
            [refused, asyncio.ensure_future(audit_answered.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        await msg.respond(b'{"ok": true, "data": "genuine"}')

    await audit.nc.subscribe("ctl.>", cb=forge)
    await actors.nc.subscribe(mapped(subject, isolated_nats.partitions), cb=genuine)
    await audit.nc.flush()
    await actors.nc.flush()

    reply = await ctl.nc.request(subject, b"{}", timeout=15)

    assert reply.data == b'{"ok": true, "data": "genuine"}'
    assert not audit_answered.is_set()


# --- a durable deleted behind audit's back ---------------------------------------------


async def test_audit_durable_deleted_then_created_again_recording_goes_on_and_health_says_so(
    isolated_nats: EmbeddedNats, database_url: str, tmp_path: Path
):
    """ingest could once delete audit's durable: audit then recorded nothing more and
    `ctl health` showed nothing wrong. Whoever deletes it now (admin), audit makes it again."""
    await migrate(database_url)
    settings = RuntimeSettings.from_env(
        {
            "SIGRELAY_HOME": str(tmp_path / "home"),
            "DATABASE_URL": database_url,
            "NATS_URL": isolated_nats.admin_url,
            "NATS_URL_AUDIT": isolated_nats.url_for("audit"),
        }
    )
    ready, stop = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(run_service("audit", settings, ready=ready, stop=stop))
    admin = await nats.connect(isolated_nats.admin_url, name="test-admin")
    try:
        await asyncio.wait_for(ready.wait(), 60)
        js = admin.jetstream()
        await js.publish("signals.raw.gold", b'{"type": "signal.raw", "id": "r1", "ts": 1}')
        await wait_recorded(database_url, 1)

        await js.delete_consumer("SIGNALS", "audit_signals_raw")
        await js.publish("signals.raw.gold", b'{"type": "signal.raw", "id": "r2", "ts": 2}')
        await wait_recorded(database_url, 2)
        reply = await request(admin, "health", None, {})
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(service, return_exceptions=True), 60)
        await admin.close()

    health = reply["data"]["services"]["audit"]
    assert health["durables_recreated"] == 1 and health["durable_recreated_at"]
    assert await tools.count(database_url) == 2


async def wait_recorded(database_url: str, n: int, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (found := await tools.count(database_url)) < n:
        assert asyncio.get_running_loop().time() < deadline, f"{found} records, expected {n}"
        await asyncio.sleep(0.05)
