"""Per-service Postgres roles on a real server: each may do what its service
does and nothing else; set-up is idempotent; a URL that may not create roles
falls back with a warning."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import stat
import uuid
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest
from psycopg import sql

from eventstore import EventStore
from eventstore.migrate import migrate
from infra.embedded import load_passwords
from services.audit import tools
from services.audit.keys import keys_for_verifying
from services.runtime.pg_roles import READONLY, ensure_roles, role_name, with_credentials
from services.runtime.settings import RuntimeSettings
from services.runtime.supervisor import Supervisor
from tests.support.events import deposited

pytestmark = pytest.mark.integration


def run(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []


def refused(url: str, query: str, *params: Any) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
        run(url, query, *params)
    return str(info.value)


AUDIT_ROW = (
    "INSERT INTO audit_records (seq, recorded_at, subject, stream, stream_seq, type, msg_id,"
    " chain, chain_seq, prev_hash, hash, global_prev_hash, global_hash)"
    " VALUES (1, now(), 's', 'S', 1, 't', 'm', 'system', 1, '\\x00', '\\x00', '\\x00', '\\x00')"
)


@pytest.fixture
async def access(database_url: str, tmp_path: Path):
    await migrate(database_url)
    return await ensure_roles(database_url, tmp_path)


async def test_audit_role_may_insert_and_select_but_never_update_delete_or_truncate(access):
    url = access.url_for("audit")

    run(url, AUDIT_ROW)
    assert run(url, "SELECT count(*) FROM audit_records") == [(1,)]
    # refused by privilege, before the append-only trigger is even reached
    for statement in (
        "UPDATE audit_records SET subject = 'x'",
        "DELETE FROM audit_records",
        "TRUNCATE audit_records",
        "ALTER TABLE audit_records DISABLE TRIGGER audit_records_no_change",
    ):
        message = refused(url, statement)
        assert "append-only" not in message
        assert "audit_records" in message
    assert "user_keys" in refused(url, "SELECT * FROM user_keys")
    assert "events" in refused(url, "SELECT * FROM events")


async def test_ingest_role_may_not_read_the_vault_or_the_audit_log(access):
    url = access.url_for("ingest")

    for table in ("user_keys", "account_claims", "audit_records", "partition_leases"):
        assert table in refused(url, f"SELECT * FROM {table}")
    assert "permission denied for schema public" in refused(url, "CREATE TABLE mine (x int)")
    store = await EventStore.connect(url, min_size=1, max_size=1, producer="ingest")
    try:
        result = await store.append("account-1", 0, [deposited(1), deposited(2)])
        assert result.last_version == 2
        assert len(await store.read_stream("account-1")) == 2
    finally:
        await store.close()


async def test_execution_reads_data_keys_but_only_actors_change_them(access):
    execution, actors = access.url_for("execution"), access.url_for("actors")

    run(execution, "SELECT * FROM user_keys")
    assert "user_keys" in refused(execution, "DELETE FROM user_keys")
    run(actors, "DELETE FROM user_keys WHERE user_id = 'nobody'")


async def test_readonly_role_reads_the_logs_and_writes_nothing(access):
    url = access.url_for(READONLY)

    assert run(url, "SELECT count(*) FROM audit_records") == [(0,)]
    run(url, "SELECT count(*) FROM events")
    assert "events" in refused(
        url, "INSERT INTO events (stream, version, type, data) VALUES ('s', 1, 't', '{}')"
    )
    assert "user_keys" in refused(url, "SELECT * FROM user_keys")


async def test_set_up_twice_then_same_passwords_file_0600_and_roles_still_work(
    access, database_url: str, tmp_path: Path
):
    path = tmp_path / "postgres" / "passwords.json"
    first = path.read_text()

    again = await ensure_roles(database_url, tmp_path)

    assert path.read_text() == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert again.url_for("audit") == access.url_for("audit")
    run(again.url_for("audit"), AUDIT_ROW)
    assert not again.fallback


async def test_service_connected_with_its_own_role_then_migrate_is_a_no_op_and_no_warning(
    access, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    url = access.url_for("risk")

    with caplog.at_level(logging.WARNING):
        assert await migrate(url) == []
        mine = await ensure_roles(url, tmp_path / "elsewhere")

    assert mine.url_for("risk") == url and mine.fallback.startswith("connected as role")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_url_that_may_not_create_roles_then_falls_back_to_it_with_a_warning(
    access, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    plain = f"operator_{uuid.uuid4().hex[:12]}"
    run(database_url, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(plain)).as_string())
    try:
        url = with_credentials(database_url, plain, "unused")

        with caplog.at_level(logging.WARNING, logger="sigrelay.pg_roles"):
            fallback = await ensure_roles(url, tmp_path / "operator")

        assert fallback.url_for("audit") == url and "may not create roles" in fallback.fallback
        assert any("without per-service least privilege" in r.message for r in caplog.records)
    finally:
        run(database_url, sql.SQL("DROP ROLE {}").format(sql.Identifier(plain)).as_string())


def test_role_name_fits_postgres_identifiers():
    assert role_name("sigrelay", "audit") == "sigrelay_audit"
    assert len(role_name("d" * 80, "execution")) == 63


async def test_supervised_service_gets_its_role_url_and_records_audit_messages_with_it(
    isolated_nats, database_url: str, tmp_path: Path
):
    env = {
        "SIGRELAY_HOME": str(tmp_path / "home"),
        "DATABASE_URL": database_url,
        "NATS_URL": isolated_nats.admin_url,
        "NATS_URL_AUDIT": isolated_nats.url_for("audit"),
        "SIGRELAY_MASTER_KEYS": "ks:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    settings = RuntimeSettings.from_env(env)
    supervisor = Supervisor(settings, ["audit"])
    await supervisor.prepare()
    supervisor.start_children()
    nc = await nats.connect(isolated_nats.admin_url)
    try:
        await supervisor.wait_ready(nc)
        child = supervisor.child("audit")
        assert child.proc is not None
        child_env = child_environment(child.proc.pid)
        database = run(database_url, "SELECT current_database()")[0][0]
        role = role_name(database, "audit")
        assert child_env["DATABASE_URL"].startswith(f"postgresql://{role}:")
        await nc.jetstream().publish("signals.raw.gold", b"{}", headers={"Nats-Msg-Id": "r1"})
        await wait_until(lambda: run(database_url, "SELECT count(*) FROM audit_records")[0][0])
        # the record was written by the audit role, which could not now change it
        assert role in {r[0] for r in run(database_url, "SELECT usename FROM pg_stat_activity")}
        keys = keys_for_verifying(env, settings.home)
        report = await tools.verify(database_url, keys)
        assert report.ok and report.authentic, report.note
        log_text = (settings.home / "logs" / "audit.log").read_text()
        for password in load_passwords(settings.home / "postgres" / "passwords.json", ()).values():
            assert password not in log_text
    finally:
        await nc.close()
        await supervisor.shutdown()


def child_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


async def wait_until(predicate: Any, within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_role_widened_by_hand_then_next_set_up_takes_it_back(
    access, database_url: str, tmp_path: Path
):
    role = role_name(access.database, "ingest")
    run(
        database_url,
        sql.SQL("ALTER ROLE {} CREATEDB CREATEROLE").format(sql.Identifier(role)).as_string(),
    )
    run(database_url, f"GRANT SELECT ON user_keys TO {role}")

    await ensure_roles(database_url, tmp_path)

    flags = run(
        database_url, "SELECT rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s", role
    )
    assert flags == [(False, False)]
    assert "user_keys" in refused(access.url_for("ingest"), "SELECT * FROM user_keys")
