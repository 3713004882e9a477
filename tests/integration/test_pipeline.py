"""The whole pipeline in one process, on real NATS and Postgres: a channel
message becomes orders at the paper broker, one trace runs through every
service, the audit trail explains it, and no secret leaks on the way."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import msgspec
import nats
import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.channels import ChannelDirectory, ChannelInfo, save_directory
from contracts.subjects import inbox_prefix
from eventstore.migrate import migrate
from services.audit import tools
from services.demo.observer import BusObserver
from services.demo.run import latest_prices
from services.ingest.inject import ScriptLine, inject
from services.runtime.host import run_service
from services.runtime.pg_roles import role_name
from services.runtime.settings import RuntimeSettings
from services.runtime.tracing import init_tracing
from tests.support.control import ctl, wait_serving

pytestmark = pytest.mark.integration

SERVICES = ("ingest", "actors", "risk", "paper", "execution", "audit")
TOKEN = "tok-PIPELINE-" + "z" * 40
EXPORTER = InMemorySpanExporter()


@pytest.fixture
async def pipeline(isolated_nats, database_url: str, tmp_path: Path):
    init_tracing("tests", home=tmp_path, env={}, exporter=EXPORTER)
    EXPORTER.clear()
    await migrate(database_url)
    home = tmp_path / "home"
    save_directory(home, ChannelDirectory(channels={"gold": ChannelInfo(default_symbol="XAUUSD")}))
    key = "kp:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    env = {
        "SIGRELAY_HOME": str(home),
        "DATABASE_URL": database_url,
        "NATS_URL": isolated_nats.admin_url,
        "SIGRELAY_MASTER_KEYS": key,
        **{f"NATS_URL_{s.upper()}": isolated_nats.url_for(s) for s in SERVICES},
    }
    settings = RuntimeSettings.from_env(env)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_service(s, settings, stop=stop)) for s in SERVICES]
    ctl_nc = await nats.connect(isolated_nats.url_for("ctl"), inbox_prefix=inbox_prefix("ctl"))
    admin = await nats.connect(isolated_nats.admin_url)
    try:
        await wait_serving(ctl_nc, "u1")
        yield ctl_nc, admin, database_url
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        await ctl_nc.close()
        await admin.close()


async def wait_for(predicate, within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_signal_flows_end_to_end_then_one_trace_and_explain_shows_every_hop(pipeline):
    nc, admin, database_url = pipeline
    for verb, body in (
        ("register", {}),
        ("link_account", {"account_id": "paper"}),
        ("subscribe", {"channel": "gold"}),
        ("settings", {"lot": 0.02}),
    ):
        assert (await ctl(nc, verb, "u1", **body))["ok"]
    observer = BusObserver()
    await observer.start(admin)
    price = (await latest_prices(admin, ("XAUUSD",)))["XAUUSD"]
    text = f"XAUUSD BUY NOW {price:.2f}\nSL {price - 15:.2f}\nTP1 {price + 8:.2f}\nTP2 {price + 20:.2f}"

    (entry,) = await inject(
        admin, [ScriptLine(channel="gold", id=777, text=text)], default_channel="gold"
    )
    await wait_for(lambda: observer.figures.reports.get("filled", 0) >= 2)

    # the fills are on the bus before the actor has applied both: ask until it has
    deadline = asyncio.get_running_loop().time() + 30
    while (status := (await ctl(nc, "status", "u1"))["data"])["open_positions"] < 2:
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.05)
    assert status["open_positions"] == 2
    assert sum(observer.figures.reports.values()) == 2  # one per TP leg, no more
    spans = EXPORTER.get_finished_spans()
    ingest_span = next(
        s for s in spans if s.attributes.get("sigrelay.message_id") == entry["raw"]["id"]
    )
    trace_id = ingest_span.context.trace_id
    names = {s.name for s in spans if s.context.trace_id == trace_id}
    for hop in (
        "ingest signals.raw",
        "actors signals.parsed",
        "risk orders.intent",
        "execution orders.verdict",
        "actors orders.report",
    ):
        assert hop in names, (hop, sorted(names))

    story: dict = {}

    async def explained() -> bool:
        nonlocal story
        story = await tools.explain(database_url, "gold:777", "u1")
        legs = story.get("users", {}).get("u1", {}).get("legs", [])
        return len(legs) == 2 and all(leg.get("report") for leg in legs)

    for _ in range(100):
        if await explained():
            break
        await asyncio.sleep(0.1)
    legs = story["users"]["u1"]["legs"]
    (parsed,) = story["parsed"]
    assert story["raw"] and parsed["kind"] == "open" and parsed["rule"]
    assert all(leg["intent"] and leg["verdict"] and leg["report"] for leg in legs)
    assert f"{trace_id:032x}" in story["trace_ids"]


async def test_control_request_with_token_then_no_plaintext_in_audit_or_spans(pipeline):
    nc, _admin, database_url = pipeline
    assert (await ctl(nc, "register", "u2"))["ok"]
    assert (await ctl(nc, "link_account", "u2", account_id="acc-777", token=TOKEN))["ok"]

    async def recorded() -> int:
        with psycopg.connect(database_url) as conn:
            (n,) = conn.execute(
                "SELECT count(*) FROM audit_records WHERE subject = 'audit.control.u2'"
            ).fetchone()
            return int(n)

    for _ in range(100):
        if await recorded() >= 2:
            break
        await asyncio.sleep(0.1)
    with psycopg.connect(database_url) as conn:
        (leaks,) = conn.execute(
            "SELECT count(*) FROM audit_records WHERE coalesce(payload::text, '') LIKE %s"
            " OR coalesce(raw_text, '') LIKE %s OR coalesce(headers::text, '') LIKE %s",
            (f"%{TOKEN[:16]}%",) * 3,
        ).fetchone()
        (controls,) = conn.execute(
            "SELECT count(*) FROM audit_records WHERE subject = 'audit.control.u2'"
        ).fetchone()
    assert controls >= 2 and leaks == 0
    for span in EXPORTER.get_finished_spans():
        assert TOKEN[:16] not in msgspec.json.encode(dict(span.attributes or {})).decode()

    # every service connects with its own least-privilege role (some may still be starting)
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None
        wanted = {role_name(str(row[0]), s) for s in SERVICES}

    def connected() -> set[str]:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database()"
            ).fetchall()
            return {str(r[0]) for r in rows}

    await wait_for(lambda: wanted <= connected())
