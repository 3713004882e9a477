"""The embedded servers and the NATS configuration: permissions, the control-partition
mapping, attaching to running servers, and the JetStream streams."""

from __future__ import annotations

import asyncio
import os
import random
import stat
import string
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import psycopg
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StorageType

from contracts.partitions import partition_of
from contracts.subjects import CTL_USER, STREAMS
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from infra.nats_config import USERS
from services.runtime.streams import ensure_streams
from tests.support.nats_users import Watcher, as_service, mapped

pytestmark = pytest.mark.integration


@pytest.fixture
async def admin(embedded_nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats.connect(embedded_nats_url, name="test-admin")
    yield conn
    await conn.close()


# --- permissions ---------------------------------------------------------------------


async def test_ingest_publish_on_control_subject_then_refused(
    embedded_nats: EmbeddedNats, admin: NATS
):
    watcher = await Watcher(admin).start()
    ingest = await as_service(embedded_nats, "ingest")
    marker = uuid.uuid4().hex.encode()

    await ingest.nc.publish("ctl.user.status.u1", marker)
    # the server checks the subject after its mapping, and names that one
    errors = await ingest.permission_errors(
        "ctl.user.status.u1", mapped("ctl.user.status.u1", embedded_nats.partitions)
    )
    await ingest.close()

    assert errors, f"no permissions violation for ingest on ctl.user.status.u1: {ingest.errors}"
    assert marker not in await watcher.payloads()


async def test_ingest_publish_on_raw_signal_then_stored_in_signals_stream(
    embedded_nats: EmbeddedNats, embedded_nats_url: str
):
    ingest = await as_service(embedded_nats, "ingest")

    ack = await ingest.nc.jetstream(timeout=5).publish("signals.raw.x", b"hello")
    errors = await ingest.permission_errors("signals.raw.x", wait_s=0.1)
    await ingest.close()

    assert ack.stream == "SIGNALS"
    assert errors == [] and ingest.errors == []


@pytest.mark.parametrize(
    ("service", "subject", "allowed"),
    [
        ("ingest", "signals.parsed.chan", True),
        ("ingest", "dlq.ingest", True),
        ("ingest", "orders.intent.u1", False),
        ("ingest", "dlq.risk", False),
        ("actors", "orders.intent.u1", True),
        ("actors", "events.user.u1", True),
        ("actors", "audit.control.u1", True),
        ("actors", "orders.verdict.u1", False),
        ("actors", "signals.parsed.chan", False),
        ("risk", "orders.verdict.u1", True),
        ("risk", "orders.intent.u1", False),
        ("risk", "orders.report.u1", False),
        ("execution", "orders.report.u1", True),
        ("execution", "orders.verdict.u1", False),
        ("audit", "signals.raw.chan", False),
        ("audit", "events.user.u1", False),
        ("ctl", "ctl.sys.stats", True),
        ("ctl", "ctl.svc.risk.limits", True),
        ("ctl", "signals.raw.chan", False),
        ("ingest", "ctl.p.0.status.u1", False),
        ("risk", "ctl.user.status.u1", False),
        ("ctl", "orders.intent.u1", False),
        ("ctl", "$JS.API.STREAM.DELETE.SIGNALS", False),
        ("risk", "$JS.API.STREAM.DELETE.ORDERS", False),
        ("risk", "$JS.API.STREAM.PURGE.ORDERS", False),
    ],
)
async def test_service_publish_then_allowed_only_by_its_permissions(
    embedded_nats: EmbeddedNats, admin: NATS, service: str, subject: str, allowed: bool
):
    watcher = await Watcher(admin).start()
    client = await as_service(embedded_nats, service)
    marker = uuid.uuid4().hex.encode()

    await client.nc.publish(subject, marker)
    errors = await client.permission_errors(
        subject, mapped(subject, embedded_nats.partitions), wait_s=0.0 if allowed else 2.0
    )
    await client.close()

    if allowed:
        assert errors == [] and marker in await watcher.payloads()
    else:
        assert errors, f"{service} published on {subject} without a permissions violation"
        assert marker not in await watcher.payloads()


async def test_ingest_reading_orders_stream_then_refused(embedded_nats: EmbeddedNats):
    ingest = await as_service(embedded_nats, "ingest")

    with pytest.raises(nats.errors.TimeoutError):
        await ingest.nc.jetstream(timeout=0.5).pull_subscribe(
            "orders.>", durable="snoop", stream="ORDERS"
        )
    errors = await ingest.permission_errors(
        "$JS.API.CONSUMER.INFO.ORDERS.snoop", "$JS.API.CONSUMER.CREATE.ORDERS.snoop.orders.>"
    )
    await ingest.close()

    assert errors


async def test_actors_ordered_push_consumer_on_signals_then_receives(
    embedded_nats: EmbeddedNats, admin: NATS
):
    subject = f"signals.parsed.t{uuid.uuid4().hex[:8]}"
    await admin.jetstream().publish(subject, b"one")
    actors = await as_service(embedded_nats, "actors")

    sub = await actors.nc.jetstream(timeout=5).subscribe(subject, ordered_consumer=True)
    msg = await sub.next_msg(timeout=5)
    await sub.unsubscribe()
    await actors.close()

    assert msg.data == b"one" and actors.errors == []


async def test_service_user_ensures_existing_streams_then_no_error(
    embedded_nats: EmbeddedNats, embedded_nats_url: str
):
    risk = await as_service(embedded_nats, "risk")

    await ensure_streams(risk.nc.jetstream(timeout=5), update=False)
    await risk.close()

    assert risk.errors == []


# --- the control-partition mapping -----------------------------------------------------


def random_user_ids(count: int) -> list[str]:
    alphabet = string.ascii_letters + string.digits + "-_:@" + "éßЖ中"
    rng = random.Random(20261121)
    ids = {f"u{rng.randint(0, 10**9)}" for _ in range(count // 2)}
    while len(ids) < count:
        ids.add("".join(rng.choices(alphabet, k=rng.randint(1, 24))))
    return sorted(ids)


async def assert_control_requests_reach_partition_of_user(server: EmbeddedNats) -> None:
    actors = await as_service(server, "actors")
    ctl = await as_service(server, "ctl")

    async def answer(msg: Msg) -> None:
        await msg.respond(msg.subject.encode())

    await actors.nc.subscribe("ctl.p.*.status.*", cb=answer)
    await actors.nc.flush()
    ids = random_user_ids(200)
    # raw subjects, not ctl_user (which refuses what is not a user id): the server's
    # mapping must agree with partition_of for any token a client may send
    replies = await asyncio.gather(
        *(ctl.nc.request(f"{CTL_USER}.status.{uid}", b"{}", timeout=5) for uid in ids)
    )
    await ctl.close()
    await actors.close()

    got = {uid: reply.data.decode() for uid, reply in zip(ids, replies, strict=True)}
    want = {uid: f"ctl.p.{partition_of(uid, server.partitions)}.status.{uid}" for uid in ids}
    assert got == want
    assert actors.errors == [] and ctl.errors == []


async def test_control_request_then_served_on_partition_of_user(
    embedded_nats: EmbeddedNats, embedded_nats_url: str
):
    await assert_control_requests_reach_partition_of_user(embedded_nats)


async def test_control_request_with_seven_partitions_then_served_on_partition_of_user(
    tmp_path: Path,
):
    server = EmbeddedNats()
    server.start(tmp_path, partitions=7)
    try:
        await assert_control_requests_reach_partition_of_user(server)
    finally:
        server.stop()


# --- attaching to running servers ----------------------------------------------------


async def test_second_nats_start_on_same_home_then_attaches_and_its_stop_leaves_server(
    embedded_nats: EmbeddedNats,
):
    assert embedded_nats.home is not None
    second = EmbeddedNats()

    url = second.start(embedded_nats.home)
    second.stop()

    assert url == embedded_nats.admin_url
    assert second.pid == embedded_nats.pid and not second.started_here
    conn = await nats.connect(embedded_nats.admin_url, allow_reconnect=False)
    await conn.close()


def test_second_postgres_start_on_same_home_then_attaches_and_its_stop_leaves_server(
    embedded_postgres: EmbeddedPostgres,
):
    assert embedded_postgres.home is not None
    second = EmbeddedPostgres()

    url = second.start(embedded_postgres.home)
    second.stop()

    assert url == embedded_postgres.url
    assert second.pid == embedded_postgres.pid and not second.started_here
    with psycopg.connect(embedded_postgres.url) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("sigrelay",)


async def test_nats_kill_then_restart_on_same_port_keeps_streams(tmp_path: Path):
    server = EmbeddedNats()
    url = server.start(tmp_path)
    try:
        conn = await nats.connect(url, allow_reconnect=False)
        await ensure_streams(conn.jetstream())
        await conn.jetstream().publish("events.user.u1", b"kept")
        await conn.close()

        server.kill()
        server.restart()

        conn = await nats.connect(server.admin_url, allow_reconnect=False)
        info = await conn.jetstream().stream_info("EVENTS")
        await conn.close()
    finally:
        server.stop()
    assert server.admin_url == url and info.state.messages == 1


def test_postgres_kill_then_restart_keeps_committed_rows(tmp_path: Path):
    server = EmbeddedPostgres()
    url = server.start(tmp_path)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (id int)")
            conn.execute("INSERT INTO kept VALUES (1)")
        old_pid = server.pid

        server.kill()
        server.restart()

        with psycopg.connect(server.url) as conn:
            rows = conn.execute("SELECT id FROM kept").fetchall()
        new_pid = server.pid
    finally:
        server.stop()
    assert server.url == url and new_pid not in (None, old_pid)
    assert rows == [(1,)]


def test_nats_passwords_kept_private_and_reused(embedded_nats: EmbeddedNats):
    assert embedded_nats.home is not None
    path = embedded_nats.home / "nats" / "passwords.json"

    again = EmbeddedNats()
    again.start(embedded_nats.home)
    again.stop()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((embedded_nats.home / "nats" / "nats.conf").stat().st_mode) == 0o600
    assert again.passwords == embedded_nats.passwords and set(again.passwords) == set(USERS)


# --- Postgres --------------------------------------------------------------------------


def test_embedded_postgres_settings_for_a_durable_log(embedded_postgres: EmbeddedPostgres):
    with psycopg.connect(embedded_postgres.url) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("fsync", "synchronous_commit", "max_connections", "shared_buffers")
        }
        listen = conn.execute("SHOW listen_addresses").fetchone()

    assert settings == {
        "fsync": "on",
        "synchronous_commit": "on",
        "max_connections": "200",
        "shared_buffers": "256MB",
    }
    assert listen == ("127.0.0.1",)
    if os.geteuid() == 0:
        assert (embedded_postgres.data_dir).stat().st_uid != 0


def test_database_url_then_fresh_empty_database(database_url: str):
    with psycopg.connect(database_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()

    assert name is not None and name[0].startswith("test_")
    assert tables == (0,)


# --- streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", STREAMS, ids=lambda s: s.name)
async def test_stream_exists_with_file_storage(js: JetStreamContext, spec):
    info = await js.stream_info(spec.name)

    assert info.config.storage == StorageType.FILE
    assert sorted(info.config.subjects or []) == sorted(spec.subjects)
    assert info.config.max_age == pytest.approx(spec.max_age_s)
    assert info.config.duplicate_window == pytest.approx(spec.duplicate_window_s)


async def test_ensure_streams_after_drift_then_design_restored(js: JetStreamContext):
    info = await js.stream_info("DEADLETTER")
    info.config.max_age = 3600.0
    await js.update_stream(info.config)

    await ensure_streams(js)
    await ensure_streams(js)

    spec = next(s for s in STREAMS if s.name == "DEADLETTER")
    restored = await js.stream_info("DEADLETTER")
    assert restored.config.max_age == pytest.approx(spec.max_age_s)
