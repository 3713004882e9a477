"""What the broker does on its own: paper facts to broker events, broker events to the
report of the intent that opened the leg, and the account state that follows."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.broker import BrokerEvent, BrokerOrderResult, OrderRequest
from contracts.orders import ExecutionReport
from services.execution.account import AccountState
from services.execution.broker_events import report_for_event, report_message
from services.execution.events import BrokerEventRecorded, OrderReported
from services.execution.ids import client_id_for
from services.paper.broker_events import broker_events
from services.paper.exchange import PaperExchange, PaperExchangeConfig
from services.paper.facts import (
    PaperOrderCancelled,
    PaperOrderFilled,
    PaperOrderPlaced,
    PaperPositionClosed,
)

from .stubs import intent, submitting

ACCOUNT = "paper-u1"
LIMIT = intent("sig1:u1:1:open", order_type="limit", price=1990.0, sl=1980.0, tp=2010.0)
CID = client_id_for(LIMIT.intent_id)
T0 = 1_700_000_000.0


def _placed(**kw: Any) -> PaperOrderPlaced:
    fields: dict[str, Any] = {
        "id": "f1",
        "ts": 1,
        "order_id": "7",
        "client_id": CID,
        "symbol": "XAUUSD",
        "side": "buy",
        "order_type": "limit",
        "volume": 0.1,
        "price": 1990.0,
        "open_time": T0,
        "result": BrokerOrderResult(status="accepted", order_id="7"),
    }
    fields.update(kw)
    return PaperOrderPlaced(**fields)


def _closed(reason: str, **kw: Any) -> PaperPositionClosed:
    fields: dict[str, Any] = {
        "id": "f3",
        "ts": 3,
        "position_id": "7",
        "volume": 0.1,
        "price": 1979.9,
        "profit": -101.0,
        "reason": reason,
        "time": T0 + 2,
        "client_id": CID,
        "remaining": 0.0,
    }
    fields.update(kw)
    return PaperPositionClosed(**fields)


def _filled_fact(**kw: Any) -> PaperOrderFilled:
    fields: dict[str, Any] = {
        "id": "f2",
        "ts": 2,
        "order_id": "7",
        "price": 1989.8,
        "margin": 198.98,
        "time": T0 + 1,
        "client_id": CID,
        "volume": 0.1,
    }
    fields.update(kw)
    return PaperOrderFilled(**fields)


def _event(kind: str, seq: int, **kw: Any) -> BrokerEvent:
    fields: dict[str, Any] = {"account_id": ACCOUNT, "seq": seq, "kind": kind, "client_id": CID}
    fields.update(kw)
    return BrokerEvent(**fields)


def _state_with_pending_limit() -> AccountState:
    state = AccountState(ACCOUNT)
    sub = submitting(LIMIT)
    state.apply(sub, 1)
    accepted = ExecutionReport(
        id="r1",
        ts=20,
        correlation_id="sig1",
        intent_id=LIMIT.intent_id,
        user_id="u1",
        account_id=ACCOUNT,
        signal_id="sig1",
        action="open",
        status="accepted",
        symbol="XAUUSD",
        side="buy",
        order_id="7",
        price=1990.0,
        volume=0.1,
        sl=1980.0,
        tp=2010.0,
        submitted_ns=10,
        reported_ns=20,
    )
    state.apply(OrderReported(id="e2", ts=20, report=accepted, client_id=sub.client_id), 2)
    return state


def _recorded(state: AccountState, event: BrokerEvent) -> BrokerEventRecorded:
    found = report_for_event(state, event, reported_ns=99)
    assert found is not None
    return BrokerEventRecorded(id="b", ts=99, event=event, report=found[1], client_id=CID)


# ---- paper facts to broker events -----------------------------------------------------


def test_paper_facts_when_order_filled_then_one_filled_event_numbered_by_version() -> None:
    events = broker_events(ACCOUNT, [(2, _placed()), (3, _filled_fact())])

    assert [(e.seq, e.kind, e.client_id, e.order_id, e.position_id) for e in events] == [
        (3, "filled", CID, "7", "7")
    ]
    assert (events[0].price, events[0].volume, events[0].symbol) == (1989.8, 0.1, "XAUUSD")


def test_paper_facts_when_stop_loss_hit_then_closed_event_with_price_and_profit() -> None:
    [event] = broker_events(ACCOUNT, [(4, _closed("stop_loss"))])

    assert (event.kind, event.cause, event.client_id, event.position_id) == (
        "closed",
        "stop_loss",
        CID,
        "7",
    )
    assert (event.price, event.profit, event.remaining_volume) == (1979.9, -101.0, 0.0)
    assert event.reason == "stop loss hit at 1979.9"


def test_paper_facts_when_take_profit_hit_then_reason_says_take_profit() -> None:
    [event] = broker_events(ACCOUNT, [(4, _closed("take_profit", price=2010.1, profit=201.0))])

    assert (event.cause, event.reason) == ("take_profit", "take profit hit at 2010.1")


def test_paper_facts_when_closed_or_cancelled_by_request_then_no_event() -> None:
    facts = [
        (4, _closed("close")),
        (5, _closed("partial", remaining=0.05)),
        (6, PaperOrderCancelled(id="c", ts=0, order_id="8", reason="cancelled by request")),
    ]

    assert broker_events(ACCOUNT, facts) == []


def test_paper_facts_when_exchange_cancels_for_margin_then_cancelled_event() -> None:
    fact = PaperOrderCancelled(
        id="c",
        ts=5,
        order_id="7",
        reason="no money",
        time=T0 + 1,
        client_id=CID,
        by_broker=True,
    )

    [event] = broker_events(ACCOUNT, [(5, fact)])

    assert (event.kind, event.order_id, event.client_id, event.reason) == (
        "cancelled",
        "7",
        CID,
        "no money",
    )


def test_paper_facts_when_written_before_client_ids_then_taken_from_the_placed_order() -> None:
    events = broker_events(ACCOUNT, [(2, _placed()), (3, _filled_fact(client_id=None))])

    assert events[0].client_id == CID


def test_exchange_when_market_set_below_buy_limit_then_facts_give_a_filled_event() -> None:
    exchange = PaperExchange(PaperExchangeConfig(seed=3), start_time=T0)
    ask = exchange.quotes["XAUUSD"].ask
    price = round(ask - 10, 2)
    request = OrderRequest(
        client_id=CID, symbol="XAUUSD", side="buy", volume=0.1, order_type="limit", price=price
    )
    _, placed = exchange.execute(ACCOUNT, "place_order", msgspec.json.encode(request))

    fired = exchange.set_quote("XAUUSD", price - 0.5, price - 0.3, T0 + 1)

    facts = list(enumerate([*placed, *fired[ACCOUNT]], start=1))
    [event] = broker_events(ACCOUNT, facts)
    assert (event.kind, event.client_id, event.price) == ("filled", CID, price - 0.3)
    assert exchange.quotes["XAUUSD"].ask == price - 0.3


# ---- broker events to reports ---------------------------------------------------------


def test_report_when_pending_order_filled_then_filled_report_for_the_opening_intent() -> None:
    state = _state_with_pending_limit()
    event = _event("filled", 3, order_id="7", position_id="7", price=1989.8, volume=0.1)

    found = report_for_event(state, event, reported_ns=99)

    assert found is not None
    holding, report = found
    assert holding.intent_id == LIMIT.intent_id
    assert (report.intent_id, report.action, report.status) == (LIMIT.intent_id, "open", "filled")
    assert (report.order_id, report.position_id, report.price, report.volume) == (
        "7",
        "7",
        1989.8,
        0.1,
    )
    assert (report.user_id, report.signal_id, report.symbol, report.side) == (
        "u1",
        "sig1",
        "XAUUSD",
        "buy",
    )
    assert (report.sl, report.tp) == (1980.0, 2010.0)
    assert report.causation_id == f"broker-event:{ACCOUNT}:3"


def test_report_when_stop_loss_hit_then_closed_with_reason_profit_and_nothing_left() -> None:
    state = _state_with_pending_limit()
    fill = _event("filled", 3, order_id="7", position_id="7", price=1989.8, volume=0.1)
    state.apply(_recorded(state, fill), 3)
    close = _event(
        "closed",
        5,
        position_id="7",
        price=1979.9,
        volume=0.1,
        remaining_volume=0.0,
        profit=-99.0,
        cause="stop_loss",
        reason="stop loss hit at 1979.9",
    )

    found = report_for_event(state, close, reported_ns=100)

    assert found is not None
    report = found[1]
    assert (report.intent_id, report.status, report.position_id) == (LIMIT.intent_id, "closed", "7")
    assert (report.price, report.profit, report.remaining_volume) == (1979.9, -99.0, 0.0)
    assert report.reason == "stop loss hit at 1979.9"


def test_report_when_fill_already_known_then_none() -> None:
    state = _state_with_pending_limit()
    fill = _event("filled", 3, order_id="7", position_id="7", price=1989.8, volume=0.1)
    state.apply(_recorded(state, fill), 3)

    assert report_for_event(state, fill, reported_ns=100) is None


def test_report_when_event_names_no_holding_of_ours_then_none() -> None:
    state = _state_with_pending_limit()
    stranger = _event("filled", 3, client_id="someone-else", order_id="99", position_id="99")

    assert report_for_event(state, stranger, reported_ns=99) is None


def test_report_when_client_id_lost_then_matched_by_order_id() -> None:
    state = _state_with_pending_limit()
    event = _event("cancelled", 3, client_id=None, order_id="7", reason="no money")

    found = report_for_event(state, event, reported_ns=99)

    assert found is not None
    assert (found[1].status, found[1].order_id, found[1].reason) == ("cancelled", "7", "no money")


def test_report_message_when_broker_event_then_msg_id_carries_the_seq() -> None:
    state = _state_with_pending_limit()
    found = report_for_event(state, _event("filled", 3, order_id="7", price=1.0), reported_ns=9)
    assert found is not None

    message = report_message(found[1], 3)

    assert (message.subject, message.msg_id) == (
        "orders.report.u1",
        f"report:{LIMIT.intent_id}:filled:3",
    )


# ---- the account state after them -----------------------------------------------------


def test_account_when_fill_then_stop_loss_recorded_then_holding_gone_and_cursor_moved() -> None:
    state = _state_with_pending_limit()
    fill = _event("filled", 3, order_id="7", position_id="7", price=1989.8, volume=0.1)

    state.apply(_recorded(state, fill), 3)
    after_fill = state.holdings[LIMIT.intent_id]
    assert (after_fill.pending, after_fill.position_id, after_fill.price) == (False, "7", 1989.8)
    assert state.broker_seq == 3

    close = _event("closed", 6, position_id="7", price=1979.9, volume=0.1, remaining_volume=0.0)
    state.apply(_recorded(state, close), 4)

    assert state.holdings == {}
    assert (state.broker_seq, state.version) == (6, 4)


def test_account_when_broker_cancels_pending_order_then_holding_gone() -> None:
    state = _state_with_pending_limit()
    cancel = _event("cancelled", 3, order_id="7", reason="no money")

    state.apply(_recorded(state, cancel), 3)

    assert state.holdings == {}
