"""The audit service on real NATS and Postgres: everything recorded once,
redeliveries appending nothing, verify catching a row changed behind its
back, no plaintext secret stored, and the story of a signal explained."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats
import psycopg
import pytest
from nats.aio.client import Client as NATS

from contracts import subjects
from contracts.envelope import encode
from contracts.ingest import ParsedSignal, RawMessage
from contracts.orders import ExecutionReport, OrderIntent, RiskVerdict
from contracts.signals import OpenSignal
from contracts.users import SignalHandled, SignalRefused
from eventstore import EventStore
from eventstore.migrate import migrate
from eventstore.pg import configure
from services.audit import tools
from services.audit.chain import AuditKeys, VerifyReport
from services.audit.keys import derive, keys_for_verifying
from services.audit.records import build_record
from services.audit.service import AuditService, consumer_specs
from services.audit.writer import AuditWriter
from services.runtime.service import ServiceContext
from services.runtime.streams import ensure_streams
from tests.support import inprocess
from tests.support.audit_forge import forge_with_sha256

pytestmark = pytest.mark.integration

SECOND = 1_000_000_000
T0 = 1_790_000_000 * SECOND
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
WRITER_KEYS = AuditKeys([derive("audit:writer-test", bytes(range(32)))])


@dataclass
class Running:
    service: AuditService
    tasks: list[asyncio.Task[Any]]
    ctx: ServiceContext

    async def stop(self) -> None:
        await inprocess.stop(self.tasks, self.ctx)


async def start_audit(isolated_nats: Any, database_url: str, home: Path) -> Running:
    ctx = await inprocess.open_context(
        "audit", nats_url=isolated_nats.url_for("audit"), database_url=database_url, home=home
    )
    service = AuditService()
    return Running(service, inprocess.start(service, ctx, relay_poll_s=None), ctx)


@pytest.fixture
async def audit(isolated_nats, database_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    await migrate(database_url)
    running = await start_audit(isolated_nats, database_url, tmp_path)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def admin(isolated_nats) -> AsyncIterator[NATS]:
    nc = await nats.connect(isolated_nats.admin_url, name="test-admin")
    try:
        yield nc
    finally:
        await nc.close()


async def publish(
    nc: NATS, subject: str, body: bytes | msgspec.Struct, msg_id: str, **headers: str
) -> None:
    data = body if isinstance(body, bytes) else encode(body)
    await nc.jetstream().publish(subject, data, headers={"Nats-Msg-Id": msg_id, **headers})


async def verify(database_url: str, audit: Running) -> VerifyReport:
    """`sigrelay audit verify` as an operator with the service's keys runs it."""
    return await tools.verify(database_url, keys_for_verifying({}, audit.ctx.settings.home))


async def recorded(database_url: str) -> int:
    return await tools.count(database_url)


async def wait_recorded(database_url: str, n: int, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while (found := await recorded(database_url)) < n:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{found} records after {within}s, expected {n}")
        await asyncio.sleep(0.05)


async def sql(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(query, params or None)
        return await cur.fetchall() if cur.description else []


def intent(user: str, leg: int = 1, signal_id: str = "gold:501") -> OrderIntent:
    return OrderIntent(
        id=f"oi-{user}-{leg}",
        ts=T0 + 2 * SECOND,
        correlation_id=signal_id,
        causation_id="ps-1",
        intent_id=f"{signal_id}:{user}:{leg}:open",
        user_id=user,
        account_id=f"acc-{user}",
        broker="paper",
        action="open",
        signal_id=signal_id,
        leg=leg,
        symbol="XAUUSD",
        side="buy",
        volume=0.1,
        price=4357.0,
        sl=4340.0,
        tp=4365.0,
    )


# --- recording ----------------------------------------------------------------------


async def test_messages_on_every_stream_then_each_recorded_once_with_user_and_trace(
    audit: Running, admin: NATS, database_url: str
):
    messages = [
        ("signals.raw.gold", b'{"type": "signal.raw", "id": "r1", "ts": 1}', "r1"),
        ("signals.parsed.gold", b'{"type": "signal.parsed", "id": "p1", "ts": 2}', "p1"),
        ("orders.intent.u1", encode(intent("u1")), "i1"),
        ("orders.verdict.u1", b'{"type": "order.verdict", "id": "v1", "ts": 3}', "v1"),
        ("orders.report.u1", b'{"type": "order.report", "id": "x1", "ts": 4}', "x1"),
        ("events.user.u1", b'{"type": "user.paused", "id": "e1", "ts": 5}', "e1"),
        ("audit.control.u2", b'{"verb": "pause"}', "c1"),
        ("dlq.risk", b"this is not json {", "d1"),
    ]
    for subject, body, msg_id in messages:
        await publish(admin, subject, body, msg_id, traceparent=TRACEPARENT)
    # the same de-duplication id again: JetStream keeps one message, audit one record
    await publish(admin, "orders.intent.u1", encode(intent("u1")), "i1")

    await wait_recorded(database_url, len(messages))
    await asyncio.sleep(0.3)  # would a duplicate arrive late?

    rows = await sql(
        database_url,
        "SELECT subject, type, user_id, trace_id, chain, payload IS NULL, raw_text"
        " FROM audit_records ORDER BY subject",
    )
    assert len(rows) == len(messages)
    by_subject = {r[0]: r for r in rows}
    assert by_subject["orders.intent.u1"][1:5] == ("order.intent", "u1", TRACE, "user:u1")
    assert by_subject["signals.parsed.gold"][2] is None
    assert by_subject["signals.parsed.gold"][4] == "system"
    assert by_subject["audit.control.u2"][1:3] == ("untyped", "u2")
    assert by_subject["dlq.risk"][1] == "unparsed" and by_subject["dlq.risk"][5] is True
    assert by_subject["dlq.risk"][6] == "this is not json {"
    assert (await verify(database_url, audit)).ok


async def test_consumer_restarted_from_the_start_then_nothing_recorded_twice(
    isolated_nats, audit: Running, admin: NATS, database_url: str, tmp_path: Path
):
    for i in range(50):
        await publish(admin, f"orders.intent.u{i % 5}", encode(intent(f"u{i % 5}", i)), f"i{i}")
    await wait_recorded(database_url, 50)
    await audit.stop()
    # forget every acknowledgement: the new consumers redeliver the whole streams
    js = admin.jetstream()
    for spec in consumer_specs():
        with contextlib.suppress(Exception):
            await js.delete_consumer(spec.stream, spec.durable)
    await publish(admin, "orders.intent.u9", encode(intent("u9")), "late")

    second = await start_audit(isolated_nats, database_url, tmp_path)
    try:
        await wait_recorded(database_url, 51)
        deadline = asyncio.get_running_loop().time() + 10
        while second.service.writer is None or second.service.writer.duplicates < 50:
            assert asyncio.get_running_loop().time() < deadline, second.service.stats()
            await asyncio.sleep(0.05)
    finally:
        await second.stop()

    assert await recorded(database_url) == 51
    positions = await sql(
        database_url, "SELECT count(DISTINCT (stream, stream_seq)) FROM audit_records"
    )
    assert positions == [(51,)]
    report = await verify(database_url, audit)
    assert report.ok and report.records == 51 and report.chains == 6


async def test_awkward_json_then_stored_and_verified(
    audit: Running, admin: NATS, database_url: str
):
    body = {
        "type": "order.report",
        "id": "awk",
        "ts": T0,
        "user_id": "u.1",
        "numbers": [1e20, 1.5e-7, 0.1, -0.0, 100.0, 2**70, 12345678901234567890],
        "text": '€ 中文 \u0000 \\ " \n end',
        "nested": {"z": {"y": [{"x": None}]}, "a": True},
    }

    await publish(admin, "orders.report.u_1", msgspec.json.encode(body), "awk")
    await wait_recorded(database_url, 1)

    report = await verify(database_url, audit)
    assert report.ok, report
    (user,) = (await sql(database_url, "SELECT user_id FROM audit_records"))[0]
    assert user == "u.1"


# --- tamper evidence ------------------------------------------------------------------


async def test_row_changed_directly_in_postgres_then_verify_names_it(
    audit: Running, admin: NATS, database_url: str
):
    for i in range(10):
        await publish(admin, f"orders.report.u{i % 3}", encode(intent(f"u{i % 3}", i)), f"r{i}")
    await wait_recorded(database_url, 10)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        await sql(database_url, "UPDATE audit_records SET subject = 'x' WHERE seq = 4")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        await sql(database_url, "DELETE FROM audit_records WHERE seq = 4")
    assert (await verify(database_url, audit)).ok
    (subject,) = (await sql(database_url, "SELECT subject FROM audit_records WHERE seq = 7"))[0]

    # a superuser switches the guard off and edits one payload
    await sql(
        database_url,
        "ALTER TABLE audit_records DISABLE TRIGGER audit_records_no_change;"
        " UPDATE audit_records SET payload = jsonb_set(payload, '{volume}', '5.0') WHERE seq = 7;"
        " ALTER TABLE audit_records ENABLE TRIGGER audit_records_no_change",
    )
    report = await verify(database_url, audit)

    assert not report.ok and report.records == 10
    brk = report.first_break
    assert brk is not None and brk.seq == 7 and brk.subject == subject and brk.chain == "global"
    assert brk.expected != brk.found


async def test_superuser_rewrites_a_row_and_recomputes_later_hashes_then_verify_with_key_fails(
    audit: Running, admin: NATS, database_url: str
):
    for i in range(10):
        await publish(admin, f"orders.report.u{i % 3}", encode(intent(f"u{i % 3}", i)), f"r{i}")
    await wait_recorded(database_url, 10)
    untouched = await verify(database_url, audit)
    assert untouched.ok and untouched.authentic, untouched.note

    # a superuser edits seq 4, then recomputes every later link with plain SHA-256:
    # all the database holds, and all the code says, without the audit key
    await sql(
        database_url,
        "ALTER TABLE audit_records DISABLE TRIGGER audit_records_no_change;"
        " UPDATE audit_records SET payload = jsonb_set(payload, '{volume}', '5.0') WHERE seq = 4",
    )
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        configure(conn)  # jsonb as the bytes the verifier reads
        cur = await conn.execute(f"SELECT {tools._VERIFY_COLUMNS} FROM audit_records ORDER BY seq")
        rows = [tools._sealed(r) for r in await cur.fetchall()]
    for row in forge_with_sha256(rows, 3, rows[3].record)[3:]:
        await sql(
            database_url,
            "UPDATE audit_records SET prev_hash = %s, hash = %s, global_prev_hash = %s,"
            " global_hash = %s WHERE seq = %s",
            row.prev_hash,
            row.hash,
            row.global_prev_hash,
            row.global_hash,
            row.seq,
        )
    await sql(database_url, "ALTER TABLE audit_records ENABLE TRIGGER audit_records_no_change")

    report = await verify(database_url, audit)
    assert not report.ok and not report.authentic
    brk = report.first_break
    assert brk is not None and brk.seq == 4 and brk.problem == "record content changed"

    # without the key the links still hold together: verify says what it cannot prove
    unkeyed = await tools.verify(database_url, None)
    assert unkeyed.ok and not unkeyed.authentic and "cannot verify authenticity" in unkeyed.note


async def test_row_deleted_directly_in_postgres_then_verify_reports_the_gap(
    audit: Running, admin: NATS, database_url: str
):
    for i in range(6):
        await publish(admin, "orders.intent.u1", encode(intent("u1", i)), f"i{i}")
    await wait_recorded(database_url, 6)

    await sql(
        database_url,
        "SET session_replication_role = replica; DELETE FROM audit_records WHERE seq = 3;"
        " SET session_replication_role = origin",
    )
    report = await verify(database_url, audit)

    assert not report.ok and report.first_break is not None
    assert report.first_break.seq == 4 and "missing" in report.first_break.problem


# --- secrets --------------------------------------------------------------------------


async def test_control_payload_with_token_then_no_plaintext_token_in_the_table(
    audit: Running, admin: NATS, database_url: str
):
    jwt = "eyJhbGciOiJSUzUxMiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
    body = {
        "type": "ctl.request",
        "id": "c1",
        "ts": T0,
        "verb": "link_account",
        "request": {"account_id": "acc-1", "token": "PLAINTEXT-METAAPI-TOKEN"},
        "note": f"pasted {jwt} by mistake",
    }

    await publish(
        admin,
        "audit.control.u1",
        msgspec.json.encode(body),
        "c1",
        Authorization="Bearer SECRETHEADERVALUE1",
    )
    await wait_recorded(database_url, 1)

    leaks = await sql(
        database_url,
        "SELECT seq FROM audit_records WHERE audit_records::text LIKE ANY (%s)",
        ["%PLAINTEXT-METAAPI-TOKEN%", f"%{jwt}%", "%SECRETHEADERVALUE1%"],
    )
    assert leaks == []
    (account,) = (
        await sql(database_url, "SELECT payload #>> '{request,account_id}' FROM audit_records")
    )[0]
    assert account == "acc-1"
    assert (await verify(database_url, audit)).ok


# --- explain and export -----------------------------------------------------------------


async def publish_signal_story(admin: NATS) -> None:
    raw = RawMessage(
        id="raw:gold:501:0",
        ts=T0 + 100_000_000,
        correlation_id="gold:501:0",
        channel="gold",
        message_id=501,
        date_ns=T0,
        text="XAUUSD BUY NOW 4357\nSL 4340\nTP1 4365",
    )
    edit = msgspec.structs.replace(
        raw,
        id="raw:gold:501:9",
        correlation_id="gold:501:9",
        edit_ns=T0 + 9,
        text=raw.text + "\nTP2 4380",
    )
    other = msgspec.structs.replace(
        raw, id="raw:gold:5010:0", correlation_id="gold:5010:0", message_id=5010
    )
    parsed = ParsedSignal(
        id="ps-1",
        ts=T0 + 500_000_000,
        correlation_id="gold:501",
        causation_id=raw.id,
        signal_id="gold:501",
        channel="gold",
        message_id=501,
        posted_ns=T0,
        result=OpenSignal(
            symbol="XAUUSD",
            side="buy",
            entry=4357.0,
            sl=4340.0,
            tps=(4365.0,),
            rule="ticket.market",
        ),
        text=raw.text,
    )
    i1, i2 = intent("u1"), intent("u2")
    handled = SignalHandled(
        id="sh-1",
        ts=T0 + 2 * SECOND,
        correlation_id="gold:501",
        signal_id="gold:501",
        revision=1,
        message_id=501,
        kind="open",
        intents=(i1,),
    )
    refused = SignalRefused(
        id="sr-3",
        ts=T0 + 2 * SECOND,
        correlation_id="gold:501",
        signal_id="gold:501",
        revision=1,
        message_id=501,
        code="paused",
        reason="user u3 is paused",
    )
    approve = RiskVerdict(
        id="rv-1", ts=T0 + 3 * SECOND, correlation_id="gold:501", intent=i1, approved=True
    )
    reject = RiskVerdict(
        id="rv-2",
        ts=T0 + 3 * SECOND,
        correlation_id="gold:501",
        intent=i2,
        approved=False,
        code="max_lot",
        reason="lot 0.1 above the user's maximum 0.05",
    )
    filled = ExecutionReport(
        id="er-1",
        ts=T0 + 4 * SECOND,
        correlation_id="gold:501",
        intent_id=i1.intent_id,
        user_id="u1",
        account_id="acc-u1",
        signal_id="gold:501",
        action="open",
        status="filled",
        price=4357.2,
        volume=0.1,
        reason="opened 0.1 lot XAUUSD buy at 4357.2",
    )
    story = [
        (subjects.raw("gold"), raw),
        (subjects.raw("gold"), edit),
        (subjects.raw("gold"), other),
        (subjects.parsed("gold"), parsed),
        (subjects.intent("u1"), i1),
        (subjects.intent("u2"), i2),
        (subjects.stream_events("user-u1"), handled),
        (subjects.stream_events("user-u3"), refused),
        (subjects.verdict("u1"), approve),
        (subjects.verdict("u2"), reject),
        (subjects.report("u1"), filled),
    ]
    for subject, message in story:
        await publish(admin, subject, message, message.id, traceparent=TRACEPARENT)


async def test_explain_when_signal_went_through_every_hop_then_tells_its_story(
    audit: Running, admin: NATS, database_url: str
):
    await publish_signal_story(admin)
    await wait_recorded(database_url, 11)

    story = await tools.explain(database_url, "gold:501")

    assert [r["text"].count("TP") for r in story["raw"]] == [1, 2]  # the post and its edit
    assert story["raw"][1]["edited"] is True
    (parsed,) = story["parsed"]
    assert parsed["rule"] == "ticket.market" and parsed["kind"] == "open"
    assert set(story["users"]) == {"u1", "u2", "u3"}
    u1, u2, u3 = (story["users"][u] for u in ("u1", "u2", "u3"))
    assert u1["decisions"][0]["decision"] == "handled"
    (leg,) = u1["legs"]
    assert leg["verdict"]["approved"] is True
    assert leg["report"]["status"] == "filled" and "4357.2" in leg["report"]["reason"]
    assert leg["latency_ms"] == {
        "parsed_to_intent": 1500.0,
        "intent_to_verdict": 1000.0,
        "verdict_to_report": 1000.0,
        "parsed_to_report": 3500.0,
    }
    assert u1["latency_ms"]["raw_to_parsed"] == 400.0
    assert u1["latency_ms"]["posted_to_first_report"] == 4000.0
    assert u2["legs"][0]["verdict"] == {
        **u2["legs"][0]["verdict"],
        "approved": False,
        "code": "max_lot",
    }
    assert u2["legs"][0]["report"] is None
    assert u3["decisions"] == [{**u3["decisions"][0], "decision": "refused", "code": "paused"}]
    assert story["trace_ids"] == [TRACE]
    assert all("5010" not in json.dumps(r) for r in story["raw"])


async def test_explain_for_one_user_then_only_that_users_part(
    audit: Running, admin: NATS, database_url: str
):
    await publish_signal_story(admin)
    await wait_recorded(database_url, 11)

    story = await tools.explain(database_url, "gold:501", "u2")

    assert set(story["users"]) == {"u2"}
    assert len(story["raw"]) == 2 and len(story["parsed"]) == 1


async def test_export_then_one_json_line_per_record_with_hashes(
    audit: Running, admin: NATS, database_url: str
):
    await publish_signal_story(admin)
    await wait_recorded(database_url, 11)
    out = io.StringIO()

    written = await tools.export(database_url, None, out)

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert written == 11 == len(lines)
    assert [line["seq"] for line in lines] == list(range(1, 12))
    assert all(len(line["global_hash"]) == 64 for line in lines)
    assert lines[1]["global_prev_hash"] == lines[0]["global_hash"]


# --- the writer alone -------------------------------------------------------------------


async def test_writer_when_postgres_refuses_one_record_then_others_recorded_and_it_kept_as_text(
    database_url: str,
):
    await migrate(database_url)
    store = await EventStore.connect(database_url, min_size=1, max_size=2)
    writer = AuditWriter(store.pool, keys=WRITER_KEYS)
    good = [
        build_record(f"orders.intent.u{i}", encode(intent(f"u{i}")), None, "ORDERS", i)
        for i in (1, 3)
    ]
    # jsonb cannot hold \u0000; the record builder never makes one, a future bug might
    poison = msgspec.structs.replace(good[0], stream_seq=2, payload_json=b'{"text":"a\\u0000b"}')
    task = asyncio.create_task(writer.run())
    try:
        await asyncio.wait_for(
            asyncio.gather(*(writer.submit(r) for r in (good[0], poison, good[1]))), 10
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()

    rows = await sql(
        database_url, "SELECT stream_seq, payload IS NULL, raw_text FROM audit_records ORDER BY seq"
    )
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[1][1] is True and "a\\u0000b" in rows[1][2]
    assert writer.kept_as_text == 1
    assert (await tools.verify(database_url, WRITER_KEYS)).ok


async def test_stream_recreated_then_new_messages_at_old_positions_still_recorded(
    isolated_nats, audit: Running, admin: NATS, database_url: str, tmp_path: Path
):
    await publish(admin, "orders.intent.u1", encode(intent("u1", 1)), "before")
    await wait_recorded(database_url, 1)
    await audit.stop()
    js = admin.jetstream()
    await js.delete_stream("ORDERS")
    await ensure_streams(js)
    await publish(admin, "orders.intent.u1", encode(intent("u1", 2)), "after")  # seq 1 again

    second = await start_audit(isolated_nats, database_url, tmp_path)
    try:
        await wait_recorded(database_url, 2)
    finally:
        await second.stop()

    rows = await sql(
        database_url, "SELECT stream, stream_seq, msg_id FROM audit_records ORDER BY seq"
    )
    assert rows == [("ORDERS", 1, "oi-u1-1"), ("ORDERS@oi-u1-2", 1, "oi-u1-2")]
    assert (await verify(database_url, audit)).ok


def cli_verify(database_url: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIGRELAY_", "DATABASE_URL"))}
    env.update(SIGRELAY_HOME=str(home), DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, "-m", "services.runtime.cli", "audit", "verify", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_verify_with_the_key_then_0_and_without_it_3_saying_it_cannot_verify(
    audit: Running, admin: NATS, database_url: str, tmp_path: Path
):
    for i in range(3):
        await publish(admin, "orders.intent.u1", encode(intent("u1", i)), f"c{i}")
    await wait_recorded(database_url, 3)

    keyed = await asyncio.to_thread(cli_verify, database_url, audit.ctx.settings.home)
    assert keyed.returncode == 0, keyed.stderr
    assert json.loads(keyed.stdout)["authentic"] is True

    keyless = await asyncio.to_thread(cli_verify, database_url, tmp_path / "no-key-here")
    assert keyless.returncode == 3, keyless.stderr
    assert json.loads(keyless.stdout)["ok"] is True
    assert "cannot verify authenticity" in keyless.stderr
    assert not (tmp_path / "no-key-here" / "master.key").exists()
