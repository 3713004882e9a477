"""What the paper exchange does on its own reaches the user as execution reports.

The paper exchange and execution run on real NATS (each as its own
least-privilege user) and Postgres, in this process or as `sigrelay service`
processes where a SIGKILL matters; the market is frozen (a tick an hour) and
moved by the test-only control `broker.paper.control.set_quote`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from contracts import paper_wire as wire
from contracts import subjects
from contracts.envelope import encode, new_id, now_ns
from contracts.orders import ExecutionReport, OrderIntent, RiskVerdict
from eventstore import EventStore
from eventstore.migrate import migrate
from services.execution.broker.paper_client import PaperBrokerClient
from services.execution.events import account_stream
from services.execution.executor import ExecutionConfig
from services.execution.service import ExecutionService
from services.paper.exchange import PaperExchangeConfig
from services.paper.service import PaperExchangeService
from services.runtime.service import ServiceContext
from tests.support import inprocess
from tests.support.processes import start_service, stop
from tests.support.streams import reports_in_stream

pytestmark = pytest.mark.integration

_reports = msgspec.json.Decoder(ExecutionReport)
FROZEN = PaperExchangeConfig(tick_interval_s=3600.0)  # only the control moves the market


def _limit(user: str, price: float, sl: float, tp: float) -> OrderIntent:
    return OrderIntent(
        id=new_id(),
        ts=now_ns(),
        correlation_id="sig-limit",
        intent_id=f"sig-limit:{user}:1:open",
        user_id=user,
        account_id=f"paper-{user}",
        broker="paper",
        action="open",
        signal_id="sig-limit",
        symbol="XAUUSD",
        side="buy",
        order_type="limit",
        price=price,
        sl=sl,
        tp=tp,
        volume=0.1,
    )


class Stack:
    """Paper exchange and execution in this process, plus an admin connection."""

    def __init__(self, server: Any, database_url: str, home: Path) -> None:
        self.server = server
        self.database_url = database_url
        self.home = home
        self._running: dict[str, tuple[list[asyncio.Task[Any]], ServiceContext]] = {}
        self.execution: ExecutionService | None = None

    async def open(self) -> None:
        await migrate(self.database_url)
        self.admin = await nats.connect(self.server.admin_url, name="tests-broker-events")
        self.js = self.admin.jetstream()
        self.log = await EventStore.connect(self.database_url, producer="tests")

    async def _context(self, name: str) -> ServiceContext:
        return await inprocess.open_context(
            name,
            nats_url=self.server.url_for(name),
            database_url=self.database_url,
            home=self.home,
            pool_max=10,
        )

    async def start_paper(self, *, control: bool = True) -> None:
        ctx = await self._context("paper")
        paper = PaperExchangeService(FROZEN, control=control)
        self._running["paper"] = (inprocess.start(paper, ctx, relay_poll_s=None), ctx)
        await asyncio.wait_for(paper.ready.wait(), 10)

    async def start_execution(self, *, sweep_s: float = 0.1) -> None:
        ctx = await self._context("execution")
        self.execution = ExecutionService(ExecutionConfig(workers=8, broker_events_sweep_s=sweep_s))
        self._running["execution"] = (inprocess.start(self.execution, ctx, relay_poll_s=0.05), ctx)
        await asyncio.wait_for(self.execution.ready.wait(), 10)

    async def stop(self, name: str) -> None:
        tasks, ctx = self._running.pop(name)
        await inprocess.stop(tasks, ctx)

    async def close(self) -> None:
        for name in list(self._running):
            await self.stop(name)
        await self.admin.close()
        await self.log.close()

    async def send(self, intent: OrderIntent) -> None:
        v = RiskVerdict(
            id=new_id(),
            ts=now_ns(),
            correlation_id=intent.signal_id,
            causation_id=intent.id,
            intent=intent,
            approved=True,
        )
        await self.js.publish(
            subjects.verdict(intent.user_id), encode(v), headers={"Nats-Msg-Id": v.id}
        )

    async def set_quote(self, bid: float, ask: float) -> dict[str, Any]:
        args = wire.SetQuoteArgs(symbol="XAUUSD", bid=round(bid, 2), ask=round(ask, 2))
        msg = await self.admin.request(wire.CONTROL_SET_QUOTE, msgspec.json.encode(args), 5)
        reply: dict[str, Any] = msgspec.json.decode(msg.data)
        return reply

    async def reports(self, user: str) -> list[ExecutionReport]:
        """Every report JetStream holds for the user (what the actors and risk consume)."""
        return await reports_in_stream(self.js, user)

    async def wait_status(self, user: str, intent_id: str, status: str) -> ExecutionReport:
        deadline = time.monotonic() + 15.0
        seen: list[ExecutionReport] = []
        while time.monotonic() < deadline:
            seen = await self.reports(user)
            for report in seen:
                if report.intent_id == intent_id and report.status == status:
                    return report
        raise AssertionError(f"no {status} report for {intent_id}; have {seen}")


@pytest.fixture
async def stack(isolated_nats: Any, database_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    s = Stack(isolated_nats, database_url, tmp_path / "home")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_limit_filled_then_stop_loss_across_restart_then_one_report_each(
    stack: Stack,
) -> None:
    await stack.start_paper()
    await stack.start_execution()
    client = PaperBrokerClient(stack.admin, "paper-b1")
    ask = (await client.quote("XAUUSD")).ask
    price = round(ask - 10, 2)
    order = _limit("b1", price, sl=round(price - 10, 2), tp=round(price + 50, 2))
    await stack.send(order)
    accepted = await stack.wait_status("b1", order.intent_id, "accepted")

    await stack.set_quote(price - 0.5, price - 0.3)  # the market comes down to the limit
    filled = await stack.wait_status("b1", order.intent_id, "filled")

    [position] = await client.positions()
    assert (filled.action, filled.order_id, filled.position_id) == (
        "open",
        accepted.order_id,
        position.position_id,
    )
    assert filled.price == position.open_price == round(price - 0.3, 2)
    assert (filled.sl, filled.tp, filled.volume) == (order.sl, order.tp, 0.1)

    await stack.stop("execution")  # the stop loss is hit while execution is away
    assert order.sl is not None
    await stack.set_quote(order.sl - 1.0, order.sl - 0.8)
    assert await client.positions() == []
    await stack.start_execution()
    closed = await stack.wait_status("b1", order.intent_id, "closed")

    assert (closed.position_id, closed.remaining_volume) == (position.position_id, 0.0)
    assert closed.price == round(order.sl - 1.0, 2)
    assert closed.reason == f"stop loss hit at {closed.price}"
    assert closed.profit == round((closed.price - position.open_price) * 0.1 * 100, 2)
    await asyncio.sleep(1.0)  # several more polls: they must add nothing
    await stack.stop("execution")
    await stack.start_execution()
    await asyncio.sleep(1.0)
    reports = await stack.reports("b1")
    assert [(r.intent_id, r.status) for r in reports] == [
        (order.intent_id, "accepted"),
        (order.intent_id, "filled"),
        (order.intent_id, "closed"),
    ]
    types = [e.type for e in await stack.log.read_stream(account_stream("paper-b1"))]
    assert types == [
        "execution.submitting",
        "execution.reported",
        "execution.broker_event",
        "execution.broker_event",
    ]


async def test_take_profit_hit_then_closed_report_with_profit(stack: Stack) -> None:
    await stack.start_paper()
    await stack.start_execution()
    client = PaperBrokerClient(stack.admin, "paper-b2")
    ask = (await client.quote("XAUUSD")).ask
    price = round(ask - 5, 2)
    order = _limit("b2", price, sl=round(price - 20, 2), tp=round(price + 5, 2))
    await stack.send(order)
    await stack.wait_status("b2", order.intent_id, "accepted")

    await stack.set_quote(price - 0.2, price)
    await stack.wait_status("b2", order.intent_id, "filled")
    assert order.tp is not None
    await stack.set_quote(order.tp + 0.5, order.tp + 0.7)
    closed = await stack.wait_status("b2", order.intent_id, "closed")

    assert closed.reason == f"take profit hit at {round(order.tp + 0.5, 2)}"
    assert closed.profit is not None and closed.profit > 0
    assert closed.remaining_volume == 0.0


async def test_no_sweep_for_an_hour_then_the_exchange_notice_brings_fill_and_stop_loss(
    stack: Stack,
) -> None:
    await stack.start_paper()
    await stack.start_execution(sweep_s=3600.0)  # only the notices can bring these
    await stack.admin.publish(subjects.broker_events_notice("paper"), b"not a list")  # ignored
    client = PaperBrokerClient(stack.admin, "paper-b4")
    ask = (await client.quote("XAUUSD")).ask
    price = round(ask - 5, 2)
    order = _limit("b4", price, sl=round(price - 10, 2), tp=round(price + 50, 2))
    await stack.send(order)
    await stack.wait_status("b4", order.intent_id, "accepted")

    await stack.set_quote(price - 0.2, price)
    await stack.wait_status("b4", order.intent_id, "filled")
    assert order.sl is not None
    await stack.set_quote(order.sl - 1.0, order.sl - 0.8)
    closed = await stack.wait_status("b4", order.intent_id, "closed")

    assert closed.reason == f"stop loss hit at {round(order.sl - 1.0, 2)}"
    assert stack.execution is not None
    stats = stack.execution.stats()
    assert stats["broker_event_notices"] >= 2


async def test_pending_order_untouched_by_market_then_only_accepted(stack: Stack) -> None:
    await stack.start_paper()
    await stack.start_execution()
    client = PaperBrokerClient(stack.admin, "paper-b3")
    ask = (await client.quote("XAUUSD")).ask
    order = _limit("b3", round(ask - 50, 2), sl=round(ask - 60, 2), tp=round(ask + 10, 2))
    await stack.send(order)
    await stack.wait_status("b3", order.intent_id, "accepted")

    await stack.set_quote(ask - 20, ask - 19.8)  # lower, but not to the limit
    await asyncio.sleep(1.0)

    reports = await stack.reports("b3")
    assert [r.status for r in reports] == ["accepted"]
    assert len(await client.orders()) == 1


async def test_set_quote_when_control_off_then_refused(stack: Stack) -> None:
    await stack.start_paper(control=False)

    reply = await stack.set_quote(1900.0, 1900.2)

    assert reply["ok"] is False
    assert wire.CONTROL_ENV in reply["error"]["reason"]


async def _wait_healthy(nc: Any, name: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            await nc.request(f"{subjects.CTL_SERVICE}.{name}.health", b"{}", timeout=0.5)
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not become healthy in {within_s}s")


async def test_processes_when_execution_killed_between_fill_and_stop_loss_then_each_once(
    isolated_nats: Any, database_url: str, tmp_path: Path
) -> None:
    stack = Stack(isolated_nats, database_url, tmp_path / "home")
    await stack.open()
    procs = []

    def execution() -> Any:
        proc = start_service(
            "execution",
            nats_url=isolated_nats.url_for("execution"),
            database_url=database_url,
            home=stack.home,
            extra_env={"SIGRELAY_EXECUTION_BROKER_EVENTS_S": "0.1"},
        )
        procs.append(proc)
        return proc

    try:
        procs.append(
            start_service(
                "paper",
                nats_url=isolated_nats.url_for("paper"),
                database_url=database_url,
                home=stack.home,
                extra_env={wire.CONTROL_ENV: "1", "SIGRELAY_PAPER_TICK_S": "3600"},
            )
        )
        first = execution()
        await _wait_healthy(stack.admin, "paper")
        await _wait_healthy(stack.admin, "execution")
        client = PaperBrokerClient(stack.admin, "paper-p1")
        ask = (await client.quote("XAUUSD")).ask
        price = round(ask - 10, 2)
        order = _limit("p1", price, sl=round(price - 10, 2), tp=round(price + 50, 2))
        await stack.send(order)
        await stack.wait_status("p1", order.intent_id, "accepted")
        await stack.set_quote(price - 0.5, price - 0.3)
        await stack.wait_status("p1", order.intent_id, "filled")

        first.kill()  # SIGKILL: no clean shutdown
        first.wait(10)
        assert order.sl is not None
        await stack.set_quote(order.sl - 1.0, order.sl - 0.8)
        execution()
        await stack.wait_status("p1", order.intent_id, "closed")
        await asyncio.sleep(1.0)

        reports = await stack.reports("p1")
        assert [(r.intent_id, r.status) for r in reports] == [
            (order.intent_id, "accepted"),
            (order.intent_id, "filled"),
            (order.intent_id, "closed"),
        ]
    finally:
        for proc in procs:
            stop(proc)
        await stack.close()
