"""Execution and the paper exchange on real NATS and Postgres, each as its own NATS
user (`execution`, `paper`: least-privilege permissions from infra/nats_config.py).

In-process for most scenarios; as real subprocesses (`sigrelay service NAME`)
where a kill matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest

from contracts import subjects
from contracts.broker import OrderRequest, Position
from contracts.envelope import encode, new_id, now_ns
from contracts.orders import ExecutionReport, OrderIntent, Quote, RiskVerdict
from eventstore import EventStore
from eventstore.migrate import migrate
from services.execution.broker.paper_client import PaperBrokerClient
from services.execution.events import OrderSubmitting, account_stream
from services.execution.executor import ExecutionConfig
from services.execution.faults import FAULT_ENV, KILL_AFTER_BROKER_ACCEPT
from services.execution.ids import client_id_for
from services.execution.service import RECONCILE_SUBJECT, ExecutionService
from services.paper.exchange import PaperExchangeConfig
from services.paper.service import PaperExchangeService
from services.runtime.service import ServiceContext
from tests.support import inprocess
from tests.support.processes import start_service, stop
from tests.support.streams import reports_in_stream
from tests.unit.execution.stubs import StubDirectory, SwitchedBroker

pytestmark = pytest.mark.integration

_reports = msgspec.json.Decoder(ExecutionReport)
_quotes = msgspec.json.Decoder(Quote)


def intent(
    intent_id: str | None = None,
    *,
    user: str = "u1",
    action: str = "open",
    volume: float = 0.1,
    **kw: Any,
) -> OrderIntent:
    fields: dict[str, Any] = {
        "symbol": "XAUUSD",
        "side": "buy",
        "order_type": "market",
    }
    fields.update(kw)
    return OrderIntent(
        id=new_id(),
        ts=now_ns(),
        intent_id=intent_id or f"sig1:{user}:1:{action}:{new_id()}",
        user_id=user,
        account_id=f"paper-{user}",
        broker="paper",
        action=action,  # type: ignore[arg-type]
        signal_id="sig1",
        volume=volume,
        **fields,
    )


def verdict(order: OrderIntent, *, approved: bool = True) -> RiskVerdict:
    return RiskVerdict(
        id=new_id(),
        ts=now_ns(),
        correlation_id=order.signal_id,
        causation_id=order.id,
        intent=order,
        approved=approved,
        code="" if approved else "max_lot",
    )


class Stack:
    """Paper exchange and execution in this process, plus an admin connection."""

    def __init__(self, server: Any, database_url: str, home: Path) -> None:
        self.server = server
        self.database_url = database_url
        self.home = home
        self.reports: list[ExecutionReport] = []
        self._running: dict[str, tuple[list[asyncio.Task[Any]], ServiceContext]] = {}
        self.paper: PaperExchangeService | None = None
        self.execution: ExecutionService | None = None

    async def open(self) -> None:
        await migrate(self.database_url)
        self.admin = await nats.connect(self.server.admin_url, name="tests-execution-admin")
        self.js = self.admin.jetstream()
        self.log = await EventStore.connect(self.database_url, producer="tests")
        self._sub = await self.admin.subscribe(f"{subjects.REPORT}.>", cb=self._on_report)

    async def _on_report(self, msg: Any) -> None:
        self.reports.append(_reports.decode(msg.data))

    async def _context(self, name: str) -> ServiceContext:
        return await inprocess.open_context(
            name,
            nats_url=self.server.url_for(name),
            database_url=self.database_url,
            home=self.home,
            pool_max=10,
        )

    async def start_paper(self, config: PaperExchangeConfig | None = None) -> None:
        ctx = await self._context("paper")
        self.paper = PaperExchangeService(config or PaperExchangeConfig(tick_interval_s=0.05))
        self._running["paper"] = (inprocess.start(self.paper, ctx, relay_poll_s=None), ctx)
        await asyncio.wait_for(self.paper.ready.wait(), 10)

    async def start_execution(
        self, config: ExecutionConfig | None = None, *, directory: Any = None
    ) -> None:
        ctx = await self._context("execution")
        self.execution = ExecutionService(
            config or ExecutionConfig(workers=16), directory=directory
        )
        self._running["execution"] = (inprocess.start(self.execution, ctx), ctx)
        await asyncio.wait_for(self.execution.ready.wait(), 10)

    async def stop(self, name: str) -> None:
        tasks, ctx = self._running.pop(name)
        await inprocess.stop(tasks, ctx)

    async def close(self) -> None:
        for name in list(self._running):
            await self.stop(name)
        await self._sub.unsubscribe()
        await self.admin.close()
        await self.log.close()

    # --- acting as risk, operator and the outside world ------------------------------

    async def send(self, v: RiskVerdict, msg_id: str | None = None) -> None:
        await self.js.publish(
            subjects.verdict(v.intent.user_id),
            encode(v),
            headers={"Nats-Msg-Id": msg_id or v.id},
        )

    async def report_for(self, intent_id: str, status: str | None = None) -> ExecutionReport:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            for r in self.reports:
                if r.intent_id == intent_id and (status is None or r.status == status):
                    return r
            await asyncio.sleep(0.02)
        raise AssertionError(f"no report for {intent_id}; have {self.reports}")

    def client(self, account: str) -> PaperBrokerClient:
        return PaperBrokerClient(self.admin, account, timeout_s=5.0)

    async def stream_reports(self, user: str) -> list[ExecutionReport]:
        return await reports_in_stream(self.js, user)


@pytest.fixture
async def stack(isolated_nats: Any, database_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    s = Stack(isolated_nats, database_url, tmp_path / "home")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


# --- the paper exchange ----------------------------------------------------------------


async def test_paper_exchange_when_running_then_quotes_on_prices_xauusd(stack: Stack) -> None:
    got: asyncio.Queue[Quote] = asyncio.Queue()

    async def on_quote(msg: Any) -> None:
        await got.put(_quotes.decode(msg.data))

    sub = await stack.admin.subscribe(subjects.prices("XAUUSD"), cb=on_quote)
    await stack.start_paper()

    first = await asyncio.wait_for(got.get(), 5)
    second = await asyncio.wait_for(got.get(), 5)

    await sub.unsubscribe()
    assert first.symbol == "XAUUSD"
    assert 0 < first.bid < first.ask
    assert (first.pip_size, first.pip_value_per_lot) == (0.1, 10.0)
    assert (first.min_volume, first.max_volume, first.volume_step) == (0.01, 100.0, 0.01)
    assert second.ts > first.ts


async def test_paper_exchange_when_restarted_then_books_rebuilt_from_log(stack: Stack) -> None:
    await stack.start_paper()
    client = stack.client("paper-rebuild")
    quote = await client.quote("XAUUSD")
    await client.place_order(
        OrderRequest(client_id="keep1", symbol="XAUUSD", side="buy", volume=0.3)
    )
    await client.place_order(
        OrderRequest(
            client_id="pend1",
            symbol="XAUUSD",
            side="buy",
            volume=0.2,
            order_type="limit",
            price=round(quote.ask - 50, 2),
        )
    )
    [pos] = await client.positions()
    await client.close_position(pos.position_id, 0.1)
    before = (await client.positions(), await client.orders(), await client.account_info())

    await stack.stop("paper")
    await stack.start_paper()
    after = (await client.positions(), await client.orders(), await client.account_info())

    assert [(p.position_id, p.volume, p.open_price) for p in after[0]] == [
        (p.position_id, p.volume, p.open_price) for p in before[0]
    ]
    assert after[1] == before[1]
    assert after[2].balance == before[2].balance
    again = await client.place_order(
        OrderRequest(client_id="keep1", symbol="XAUUSD", side="buy", volume=0.3)
    )
    assert again.duplicate and again.position_id == pos.position_id
    assert len(await client.positions()) == 1


# --- execution -------------------------------------------------------------------------


async def test_open_intent_for_paper_account_then_filled_and_reported_with_price(
    stack: Stack,
) -> None:
    await stack.start_paper()
    await stack.start_execution()
    order = intent(volume=0.2, sl=1500.0, tp=2500.0)

    await stack.send(verdict(order))
    report = await stack.report_for(order.intent_id)

    assert report.status == "filled"
    assert report.price is not None and report.price > 0
    assert (report.volume, report.sl, report.tp) == (0.2, 1500.0, 2500.0)
    assert (report.broker_code, report.broker_code_name) == (10009, "TRADE_RETCODE_DONE")
    assert report.reason == "done"
    assert report.submitted_ns > 0 and report.reported_ns >= report.submitted_ns
    found = await stack.client("paper-u1").find_by_client_id(client_id_for(order.intent_id))
    assert isinstance(found, Position)
    assert (found.position_id, found.open_price) == (report.position_id, report.price)


async def test_rejected_verdict_then_nothing_sent_and_no_report(stack: Stack) -> None:
    await stack.start_paper()
    await stack.start_execution()
    refused = intent()
    accepted = intent()

    await stack.send(verdict(refused, approved=False))
    await stack.send(verdict(accepted))
    await stack.report_for(accepted.intent_id)

    assert [r.intent_id for r in stack.reports] == [accepted.intent_id]
    assert len(await stack.client("paper-u1").positions()) == 1


async def test_duplicate_verdict_when_redelivered_then_one_position_one_report(
    stack: Stack,
) -> None:
    await stack.start_paper()
    await stack.start_execution()
    order = intent()
    v = verdict(order)

    # three copies that JetStream cannot de-duplicate (distinct message ids)
    for copy in range(3):
        await stack.send(v, msg_id=f"{v.id}:{copy}")
    await stack.report_for(order.intent_id)
    await asyncio.sleep(1.0)

    assert len(await stack.client("paper-u1").positions()) == 1
    assert [r.intent_id for r in await stack.stream_reports("u1")] == [order.intent_id]
    assert stack.execution is not None and stack.execution.core is not None
    assert stack.execution.core.duplicates == 2


async def test_modify_then_partial_close_then_full_close_reported(stack: Stack) -> None:
    await stack.start_paper()
    await stack.start_execution()
    opened = intent(volume=0.3)
    await stack.send(verdict(opened))
    filled = await stack.report_for(opened.intent_id)
    follow = {"target_intent_id": opened.intent_id, "side": None}
    modify = intent(action="modify", sl=1000.0, tp=3000.0, **follow)
    half = intent(action="close", close_fraction=0.5, **follow)
    rest = intent(action="close", **follow)

    for v in (modify, half, rest):
        await stack.send(verdict(v))
    modified = await stack.report_for(modify.intent_id)
    partly = await stack.report_for(half.intent_id)
    closed = await stack.report_for(rest.intent_id)

    assert (modified.status, modified.sl, modified.tp) == ("modified", 1000.0, 3000.0)
    assert modified.position_id == filled.position_id
    # half of 0.3 is 0.15: on the 0.01 step exactly
    assert (partly.status, partly.volume, partly.remaining_volume) == ("closed", 0.15, 0.15)
    assert partly.profit is not None
    assert (closed.status, closed.volume, closed.remaining_volume) == ("closed", 0.15, 0.0)
    assert await stack.client("paper-u1").positions() == []


async def test_pending_order_when_cancelled_then_reported_cancelled(stack: Stack) -> None:
    await stack.start_paper()
    await stack.start_execution()
    quote = await stack.client("paper-u1").quote("XAUUSD")
    pending = intent(order_type="limit", price=round(quote.ask - 100, 2))
    await stack.send(verdict(pending))
    accepted = await stack.report_for(pending.intent_id)
    cancel = intent(action="cancel", target_intent_id=pending.intent_id, side=None)

    await stack.send(verdict(cancel))
    cancelled = await stack.report_for(cancel.intent_id)

    assert accepted.status == "accepted" and accepted.order_id
    assert (cancelled.status, cancelled.order_id) == ("cancelled", accepted.order_id)
    assert await stack.client("paper-u1").orders() == []


async def test_broker_refusal_then_rejected_with_code_and_reason(stack: Stack) -> None:
    await stack.start_paper()
    await stack.start_execution()
    too_small = intent(volume=0.001)
    unknown_target = intent(action="close", target_intent_id="never-opened", side=None)

    await stack.send(verdict(too_small))
    await stack.send(verdict(unknown_target))
    small = await stack.report_for(too_small.intent_id)
    orphan = await stack.report_for(unknown_target.intent_id)

    assert (small.status, small.broker_code) == ("rejected", 10014)
    assert "0.001" in small.reason and "minimum 0.01" in small.reason
    assert (orphan.status, orphan.broker_code) == ("rejected", 4753)
    assert "never-opened" in orphan.reason


async def test_paper_exchange_down_then_failed_after_retries(stack: Stack) -> None:
    await stack.start_execution(
        ExecutionConfig(workers=4, not_connected_attempts=2, not_connected_base_s=0.05)
    )
    order = intent()

    await stack.send(verdict(order))
    report = await stack.report_for(order.intent_id)

    assert report.status == "failed"
    assert "no paper exchange answers" in report.reason


async def test_reconcile_when_closed_behind_our_back_then_missing_at_broker(
    stack: Stack,
) -> None:
    await stack.start_paper()
    await stack.start_execution()
    order = intent()
    await stack.send(verdict(order))
    filled = await stack.report_for(order.intent_id)
    client = stack.client("paper-u1")
    assert filled.position_id is not None
    await client.close_position(filled.position_id)  # by hand, at the broker
    await client.place_order(
        OrderRequest(client_id="manual1", symbol="EURUSD", side="sell", volume=1)
    )

    reply = await stack.admin.request(
        RECONCILE_SUBJECT, json.dumps({"account_id": "paper-u1"}).encode(), timeout=10
    )
    again = await stack.admin.request(RECONCILE_SUBJECT, b"{}", timeout=10)

    body = json.loads(reply.data)
    assert body["ok"] is True
    [result] = body["data"]["results"]
    kinds = sorted((d["kind"], d["new"]) for d in result["differences"])
    assert kinds == [("missing_at_broker", True), ("unknown_at_broker", True)]
    recorded = [e.type for e in await stack.log.read_stream(account_stream("paper-u1"))].count(
        "execution.reconciliation_difference"
    )
    assert recorded == 2
    second = json.loads(again.data)["data"]["results"][0]
    assert [d["new"] for d in second["differences"]] == [False, False]


# --- a crash between broker and report ----------------------------------------------------


async def _wait_healthy(nc: Any, name: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            await nc.request(f"{subjects.CTL_SERVICE}.{name}.health", b"{}", timeout=0.5)
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not become healthy in {within_s}s")


async def _wait_exit(proc: Any, within_s: float) -> int:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            return int(code)
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {proc.pid} still running after {within_s}s")


async def test_kill_after_broker_accept_then_restart_one_position_one_report(
    isolated_nats: Any, database_url: str, tmp_path: Path
) -> None:
    await migrate(database_url)
    home = tmp_path / "home"
    admin = await nats.connect(isolated_nats.admin_url, name="tests-kill")
    js = admin.jetstream()
    store = await EventStore.connect(database_url, producer="tests")
    procs = []
    try:
        paper = start_service(
            "paper",
            nats_url=isolated_nats.url_for("paper"),
            database_url=database_url,
            home=home,
        )
        procs.append(paper)
        doomed = start_service(
            "execution",
            nats_url=isolated_nats.url_for("execution"),
            database_url=database_url,
            home=home,
            extra_env={FAULT_ENV: KILL_AFTER_BROKER_ACCEPT},
        )
        procs.append(doomed)
        await _wait_healthy(admin, "paper")
        await _wait_healthy(admin, "execution")
        order = intent(user="k1")
        cid = client_id_for(order.intent_id)
        v = verdict(order)
        await js.publish(subjects.verdict("k1"), encode(v), headers={"Nats-Msg-Id": v.id})

        code = await _wait_exit(doomed, 30)

        assert code == -9, f"execution exited with {code}, not SIGKILL"
        client = PaperBrokerClient(admin, "paper-k1")
        assert isinstance(await client.find_by_client_id(cid), Position)
        types = [e.type for e in await store.read_stream(account_stream("paper-k1"))]
        assert types == ["execution.submitting"]  # sent, outcome not recorded
        assert await reports_in_stream(js, "k1") == []

        survivor = start_service(
            "execution",
            nats_url=isolated_nats.url_for("execution"),
            database_url=database_url,
            home=home,
        )
        procs.append(survivor)
        deadline = time.monotonic() + 30
        reports: list[ExecutionReport] = []
        while time.monotonic() < deadline and not reports:
            reports = await reports_in_stream(js, "k1")
        await asyncio.sleep(2.0)  # the redelivered verdict arrives too: it must add nothing
        reports = await reports_in_stream(js, "k1")

        positions = await client.positions()
        assert [p.client_id for p in positions] == [cid]
        assert [(r.intent_id, r.status) for r in reports] == [(order.intent_id, "filled")]
        assert reports[0].position_id == positions[0].position_id
        assert reports[0].price == positions[0].open_price
        types = [e.type for e in await store.read_stream(account_stream("paper-k1"))]
        assert types == ["execution.submitting", "execution.reported"]
    finally:
        for proc in procs:
            stop(proc)
        await admin.close()
        await store.close()


# --- recovery at start: one unreachable account holds only its own orders ------------


async def _until(what: str, check: Any, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {within_s}s")
        await asyncio.sleep(0.02)


async def _in_flight(stack: Stack, order: OrderIntent) -> OrderSubmitting:
    """What a crash between the broker call and its report leaves: a submitting record."""
    sub = OrderSubmitting(
        id=new_id(),
        ts=now_ns(),
        correlation_id=order.signal_id,
        intent=order,
        client_id=client_id_for(order.intent_id),
        verdict_id=new_id(),
    )
    await stack.log.append(
        account_stream(order.account_id),
        0,
        [sub],
        idempotency_key=order.intent_id,
        processed=[("execution", order.intent_id)],
    )
    return sub


async def test_recovery_when_one_account_unreachable_then_others_trade_and_it_waits_its_turn(
    stack: Stack,
) -> None:
    # arrange: two accounts with an order in flight; u2's had executed at its broker,
    # and u2's terminal does not answer (calls hang) when execution starts
    near = SwitchedBroker("paper-u1")
    far = SwitchedBroker("paper-u2")
    near_sent = await _in_flight(stack, intent(user="u1"))
    far_sent = await _in_flight(stack, intent(user="u2"))
    await far.paper.place_order(
        OrderRequest(client_id=far_sent.client_id, symbol="XAUUSD", side="buy", volume=0.1)
    )
    far.switch("hang")
    config = ExecutionConfig(
        workers=4,
        not_connected_base_s=0.001,
        not_connected_max_s=0.002,
        recovery_backoff_base_s=0.01,
        recovery_backoff_max_s=0.05,
    )
    await stack.start_execution(
        config, directory=StubDirectory({"paper-u1": near, "paper-u2": far})
    )
    execution = stack.execution
    assert execution is not None

    # act: new orders for both accounts while u2 is unreachable
    near_new, far_new = intent(user="u1"), intent(user="u2")
    await stack.send(verdict(near_new))
    near_report = await stack.report_for(near_new.intent_id)
    await stack.send(verdict(far_new))
    await _until("taken", lambda: execution.approved == 2)
    far.switch("down")
    await _until(
        "retried",
        lambda: any(r["attempts"] >= 2 for r in execution.stats()["recovering"]),
    )
    recovering = execution.stats()["recovering"]

    # assert: u1 traded at once; u2 waits, listed in health, nothing new sent for it
    assert near_report.status == "filled"
    assert (await stack.report_for(near_sent.intent.intent_id)).status == "filled"
    assert [r["account_id"] for r in recovering] == ["paper-u2"]
    assert recovering[0]["since"] and recovering[0]["since_ns"] <= now_ns()
    assert "paper-u2 is not connected" in recovering[0]["last_error"]
    assert [c for c in far.calls if c[0] != "find_by_client_id"] == []
    assert all(r.intent_id != far_new.intent_id for r in stack.reports)

    # act: u2's terminal is back
    far.switch("up")
    far_new_report = await stack.report_for(far_new.intent_id)
    far_sent_report = await stack.report_for(far_sent.intent.intent_id)

    # assert: the order in flight was looked up, not resent; the queued one went after
    assert far_sent_report.status == "filled"
    assert far_new_report.status == "filled"
    up_calls = [(name, args) for name, mode, args in far.calls if mode == "up"]
    assert up_calls[0] == ("find_by_client_id", (far_sent.client_id,))
    placed = [args[0].client_id for name, args in up_calls if name == "place_order"]
    assert placed == [client_id_for(far_new.intent_id)]
    positions = await far.paper.positions()
    assert sorted(p.client_id for p in positions) == sorted(
        [far_sent.client_id, client_id_for(far_new.intent_id)]
    )
    stored = await stack.stream_reports("u2")
    assert sorted(r.intent_id for r in stored) == sorted(
        [far_sent.intent.intent_id, far_new.intent_id]
    )
    assert execution.stats()["recovering"] == []


async def test_outcome_unknown_while_trading_then_account_recovered_before_its_next_order(
    stack: Stack,
) -> None:
    # arrange: u3's broker carries out an order, the answer is lost and its terminal
    # goes away, so the order cannot be looked up
    broker = SwitchedBroker("paper-u3")
    config = ExecutionConfig(
        workers=4,
        not_connected_base_s=0.001,
        not_connected_max_s=0.002,
        recovery_backoff_base_s=0.01,
        recovery_backoff_max_s=0.05,
    )
    await stack.start_execution(config, directory=StubDirectory({"paper-u3": broker}))
    execution = stack.execution
    assert execution is not None
    lost, after = intent(user="u3"), intent(user="u3")
    broker.lose_next_answer("place_order", then="down")

    # act
    await stack.send(verdict(lost))
    await _until(
        "retried",
        lambda: any(r["attempts"] >= 2 for r in execution.stats()["recovering"]),
    )
    await stack.send(verdict(after))
    # both wait in u3's queue: `after`, and `lost` delivered again after its nak
    await _until("queued", lambda: execution.stats()["queued"] >= 2)
    placed_while_down = [c for c in broker.calls if c[0] == "place_order" and c[1] != "up"]
    broker.switch("up")
    after_report = await stack.report_for(after.intent_id)
    lost_report = await stack.report_for(lost.intent_id)

    # assert: nothing was sent while the lost order was unknown; it was found, not resent
    assert placed_while_down == []
    assert (lost_report.status, after_report.status) == ("filled", "filled")
    positions = await broker.paper.positions()
    assert sorted(p.client_id for p in positions) == sorted(
        [client_id_for(lost.intent_id), client_id_for(after.intent_id)]
    )
    stored = await stack.stream_reports("u3")
    assert sorted(r.intent_id for r in stored) == sorted([lost.intent_id, after.intent_id])
    assert execution.stats()["recovering"] == []
