"""The risk service in-process on real NATS (as the `risk` user) and Postgres:
verdicts over the bus for paused users, kill switches, daily loss, spread,
blocked symbols and trading hours; one verdict per intent whatever the
redeliveries; exposure rebuilt from the log after a restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from contracts import subjects
from contracts.envelope import encode, now_ns
from contracts.orders import OrderIntent, RiskVerdict
from contracts.refusals import RefusalCode
from contracts.users import user_stream
from eventstore import EventStore, request
from eventstore.migrate import migrate
from services.risk.core import RiskConfig
from services.risk.events import CONTROL_STREAM, risk_stream
from services.risk.service import RiskService
from tests.support import inprocess
from tests.unit.risk.stubs import (
    at,
    close,
    hours,
    intent,
    linked,
    paused,
    quote,
    registered,
    report,
    settings_changed,
)

pytestmark = pytest.mark.integration

_verdicts = msgspec.json.Decoder(RiskVerdict)


class Risk:
    """A running RiskService plus an admin connection acting as actors, execution and operator."""

    def __init__(self, nats_server: Any, database_url: str, home: Path) -> None:
        self.nats_server = nats_server
        self.database_url = database_url
        self.home = home
        self.verdicts: dict[str, list[RiskVerdict]] = {}
        self.service: RiskService | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        self.admin = await nats.connect(self.nats_server.admin_url, name="tests-risk-admin")
        self.js = self.admin.jetstream()
        self.log = await EventStore.connect(self.database_url, producer="tests")
        self._sub = await self.admin.subscribe(f"{subjects.VERDICT}.>", cb=self._on_verdict)

    async def start(
        self, clock: Callable[[], int] | None = None, *, market_view_wait_s: float = 0.0
    ) -> RiskService:
        self._ctx = await inprocess.open_context(
            "risk",
            nats_url=self.nats_server.url_for("risk"),
            database_url=self.database_url,
            home=self.home,
            pool_max=10,
        )
        # no price feed here unless a test publishes quotes: take intents at once
        service = RiskService(RiskConfig(market_view_wait_s=market_view_wait_s), clock=clock)
        self._tasks = inprocess.start(service, self._ctx)
        await asyncio.wait_for(service.ready.wait(), 10)
        self.service = service
        return service

    async def stop(self) -> None:
        await inprocess.stop(self._tasks, self._ctx)
        self._tasks = []

    async def close(self) -> None:
        if self._tasks:
            await self.stop()
        await self._sub.unsubscribe()
        await self.admin.close()
        await self.log.close()

    async def _on_verdict(self, msg: Any) -> None:
        verdict = _verdicts.decode(msg.data)
        self.verdicts.setdefault(verdict.intent.intent_id, []).append(verdict)

    # --- acting as the other services ---------------------------------------------

    async def user_events(self, user_id: str, *events: Any, publish: bool = True) -> None:
        """Append to user-<id> as the actor would, then put them on events.user.<id>."""
        await self.log.append(user_stream(user_id), -1, list(events))
        if publish:
            for event in events:
                await self.js.publish(
                    subjects.stream_events(user_stream(user_id)),
                    encode(event),
                    headers={"Nats-Msg-Id": event.id},
                )

    async def seed(self, user_id: str = "u1", **risk: Any) -> None:
        await self.user_events(
            user_id, registered(user_id), linked(), settings_changed(**risk), publish=False
        )

    async def send(self, order: OrderIntent, msg_id: str | None = None) -> None:
        await self.js.publish(
            subjects.intent(order.user_id),
            encode(order),
            headers={"Nats-Msg-Id": msg_id or order.id},
        )

    async def verdict(self, order: OrderIntent, within: float = 10.0) -> RiskVerdict:
        await self.send(order)
        return await self.wait_verdict(order.intent_id, within)

    async def wait_verdict(self, intent_id: str, within: float = 10.0) -> RiskVerdict:
        deadline = time.monotonic() + within
        while intent_id not in self.verdicts:
            assert time.monotonic() < deadline, f"no verdict for {intent_id}"
            await asyncio.sleep(0.01)
        return self.verdicts[intent_id][0]

    async def ctl(self, verb: str, **body: Any) -> dict[str, Any]:
        reply = await self.admin.request(
            f"{subjects.CTL_SERVICE}.risk.{verb}", json.dumps(body).encode(), timeout=5
        )
        answer: dict[str, Any] = json.loads(reply.data)
        return answer

    async def exposure_until(self, user_id: str, ok: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + 10
        while True:
            reply = await self.ctl("exposure", user_id=user_id)
            if ok(reply["data"]["exposure"]):
                return
            assert time.monotonic() < deadline, f"exposure never matched: {reply}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def risk(isolated_nats, database_url: str, tmp_path: Path) -> AsyncIterator[Risk]:
    await migrate(database_url)
    harness = Risk(isolated_nats, database_url, tmp_path / "home")
    await harness.open()
    try:
        yield harness
    finally:
        await harness.close()


def _fresh(**changes: Any) -> OrderIntent:
    return intent(ts=now_ns(), **changes)


async def test_paused_user_then_open_rejected_with_code_paused(risk: Risk):
    await risk.seed()
    await risk.start()
    assert (await risk.verdict(_fresh())).approved

    await risk.user_events("u1", paused("on holiday"))
    await risk.exposure_until("u1", lambda e: e["status"] == "paused")
    verdict = await risk.verdict(_fresh())

    assert not verdict.approved and verdict.code == RefusalCode.PAUSED
    assert "on holiday" in verdict.reason


async def test_global_kill_switch_then_opens_rejected_closes_approved_and_recorded(risk: Risk):
    await risk.seed()
    await risk.start()
    opened = _fresh()
    assert (await risk.verdict(opened)).approved

    reply = await risk.ctl("kill_switch", on=True, reason="NFP in 2 minutes")
    refused = await risk.verdict(_fresh())
    allowed = await risk.verdict(close(opened, ts=now_ns()))

    assert reply["ok"] and reply["data"]["scope"] == "global"
    assert refused.code == RefusalCode.KILL_SWITCH and "NFP in 2 minutes" in refused.reason
    assert allowed.approved
    recorded = await risk.log.read_stream(CONTROL_STREAM)
    assert [e.type for e in recorded] == ["risk.kill_switch"]


async def test_user_kill_switch_then_only_that_user_rejected(risk: Risk):
    await risk.seed("u1")
    await risk.seed("u2")
    await risk.start()

    reply = await risk.ctl("kill_switch", on=True, reason="chargeback", user_id="u1")
    mine = await risk.verdict(_fresh(user_id="u1"))
    theirs = await risk.verdict(_fresh(user_id="u2"))

    assert reply["ok"] and reply["data"]["scope"] == "user"
    assert mine.code == RefusalCode.KILL_SWITCH and theirs.approved
    types = [e.type for e in await risk.log.read_stream(risk_stream("u1"))]
    assert types[0] == "risk.kill_switch"


async def test_kill_switch_bad_request_then_error_reply(risk: Risk):
    await risk.start()
    reply = await risk.ctl("kill_switch", reason="no on field")
    assert reply["ok"] is False and reply["error"]["code"] == "missing_field"
    assert reply["error"]["field"] == "on"


async def test_kill_switch_with_nul_in_reason_then_invalid_value_naming_it(risk: Risk):
    await risk.start()
    reply = await risk.ctl("kill_switch", on=True, reason="NFP\x00")
    assert reply["ok"] is False and reply["error"]["code"] == "invalid_value"
    assert reply["error"]["field"] == "reason"


async def test_daily_loss_reached_then_open_rejected(risk: Risk):
    await risk.seed(daily_loss_limit=100.0)
    await risk.start()
    opened = _fresh()
    assert (await risk.verdict(opened)).approved
    loss = report(
        opened,
        "closed",
        profit=-150.0,
        balance=850.0,
        volume=0.1,
        ts=now_ns(),
        reported_ns=now_ns(),
    )

    await risk.js.publish(subjects.report("u1"), encode(loss), headers={"Nats-Msg-Id": loss.id})
    await risk.exposure_until("u1", lambda e: e["realised_today"] == -150.0)
    verdict = await risk.verdict(_fresh())

    assert verdict.code == RefusalCode.DAILY_LOSS_LIMIT and "150.00" in verdict.reason


async def test_spread_too_wide_then_open_rejected(risk: Risk):
    await risk.seed(max_spread_pips=3.0)
    service = await risk.start()
    assert service.core is not None
    # quotes have no subject the risk user may read yet: fed to the core directly
    service.core.apply_quote(quote("XAUUSD", spread_pips=7.5, ts=now_ns()))

    verdict = await risk.verdict(_fresh())

    assert verdict.code == RefusalCode.SPREAD_TOO_WIDE and "7.5 pips" in verdict.reason


async def test_intent_waiting_when_risk_starts_then_decided_with_the_market_in_view(risk: Risk):
    # the spread check needs a quote; the feed's first one arrives after risk starts
    await risk.seed(max_spread_pips=3.0)
    order = _fresh()
    await risk.send(order)  # waiting in the stream before risk runs
    await risk.start(market_view_wait_s=10.0)

    async def feed() -> None:
        while True:
            await asyncio.sleep(0.3)
            tight = quote("XAUUSD", spread_pips=1.0, ts=now_ns())
            await risk.admin.publish(subjects.prices("XAUUSD"), encode(tight))

    feeding = asyncio.create_task(feed())
    try:
        verdict = await risk.wait_verdict(order.intent_id, within=15.0)
    finally:
        feeding.cancel()

    assert verdict.approved, verdict  # not refused no_price for want of a quote


async def test_symbol_blocked_then_open_rejected(risk: Risk):
    await risk.seed(blocked_symbols=("XAUUSD",))
    await risk.start()

    verdict = await risk.verdict(_fresh(symbol="XAUUSD.m", signal_symbol="XAUUSD"))

    assert verdict.code == RefusalCode.SYMBOL_BLOCKED


async def test_outside_trading_hours_in_user_zone_then_open_rejected(risk: Risk):
    ny = "America/New_York"
    await risk.seed(trading_hours=hours(timezone=ny, start="09:00", end="17:00"))
    evening = at("2026-01-07 20:00", ny)
    await risk.start(clock=lambda: evening)

    verdict = await risk.verdict(_fresh())

    assert verdict.code == RefusalCode.OUTSIDE_TRADING_HOURS
    assert "Wednesday 20:00 America/New_York" in verdict.reason


async def test_unknown_user_then_rejected_fail_closed(risk: Risk):
    await risk.start()
    verdict = await risk.verdict(_fresh(user_id="ghost"))
    assert not verdict.approved and verdict.code == RefusalCode.NO_ACCOUNT


async def test_redelivered_intent_then_exactly_one_verdict(risk: Risk):
    await risk.seed()
    service = await risk.start()
    order = _fresh()

    await risk.send(order, msg_id="first")
    await risk.wait_verdict(order.intent_id)
    await risk.send(order, msg_id="second")  # a new JetStream message: not de-duplicated by NATS
    deadline = time.monotonic() + 10
    while service.stats()["duplicates"] < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # let a second verdict arrive, if there were one

    assert len(risk.verdicts[order.intent_id]) == 1 and risk.verdicts[order.intent_id][0].approved
    info = await risk.js.stream_info("ORDERS", subjects_filter=subjects.verdict("u1"))
    assert info.state.subjects == {subjects.verdict("u1"): 1}
    decided = [e for e in await risk.log.read_stream(risk_stream("u1")) if e.type == "risk.decided"]
    assert len(decided) == 1


async def test_intent_on_another_users_subject_then_dead_lettered(risk: Risk):
    await risk.seed()
    await risk.start()
    dlq = await risk.admin.subscribe(subjects.dead_letter("risk"))
    order = _fresh(user_id="u1")

    await risk.js.publish(subjects.intent("u2"), encode(order), headers={"Nats-Msg-Id": order.id})
    msg = await dlq.next_msg(timeout=10)

    assert "arrived on 'orders.intent.u2'" in msg.headers["Sigrelay-Error"]
    assert order.intent_id not in risk.verdicts


async def test_restart_then_exposure_rebuilt_from_the_log(risk: Risk):
    await risk.seed(max_open_positions=1)
    await risk.start()
    assert (await risk.verdict(_fresh())).approved
    await risk.stop()

    await risk.start()
    verdict = await risk.verdict(_fresh())

    assert verdict.code == RefusalCode.MAX_OPEN_POSITIONS


async def test_burst_across_users_then_one_verdict_each(risk: Risk):
    users, per_user = 100, 40
    await risk.log.append_batch(
        [
            request(
                user_stream(f"b{n}"),
                -1,
                [registered(f"b{n}"), linked(), settings_changed(max_orders_per_minute=None)],
            )
            for n in range(users)
        ]
    )
    orders = [_fresh(user_id=f"b{n}") for _ in range(per_user) for n in range(users)]
    acks = [
        await risk.js.publish_async(
            subjects.intent(o.user_id), encode(o), headers={"Nats-Msg-Id": o.id}
        )
        for o in orders
    ]
    await asyncio.gather(*acks)

    started = time.perf_counter()
    await risk.start()  # the backlog is waiting: this times risk alone (with its relay)
    deadline = time.monotonic() + 60
    while len(risk.verdicts) < len(orders):
        assert time.monotonic() < deadline, f"{len(risk.verdicts)} of {len(orders)} verdicts"
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started

    print(
        f"\nrisk: {len(orders)} intents -> verdicts in {elapsed:.2f}s, {len(orders) / elapsed:,.0f}/s"
    )
    assert all(len(v) == 1 for v in risk.verdicts.values())
    approved = sum(v[0].approved for v in risk.verdicts.values())
    # default limits: 20 open positions per user, 10 per symbol -> 10 of each user's 40 pass
    assert approved == users * 10
