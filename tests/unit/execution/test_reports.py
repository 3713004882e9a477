"""Report mapping: every broker outcome to its report status, code and plain words,
and the retry policy that decides when an outcome is final."""

from __future__ import annotations

from typing import Any, cast

import pytest

from contracts.broker import (
    AuthFailed,
    BrokerError,
    BrokerOrderResult,
    NotConnected,
    OutcomeUnknown,
    Rejected,
    RetryLater,
)
from services.execution.directory import NoBroker
from services.execution.executor import (
    ExecutionConfig,
    ExecutionCore,
    OutcomeStillUnknown,
    order_request,
)
from services.execution.ids import client_id_for
from services.execution.reports import report_failure, report_success, status_for_error

from .stubs import ScriptedBroker, intent, submitting

TIMES = {"causation_id": "v1", "submitted_ns": 100, "reported_ns": 200}


@pytest.mark.parametrize(
    ("error", "status", "code", "name", "reason"),
    [
        (
            Rejected("volume 0.001 for XAUUSD is below the minimum 0.01", broker_code=10014),
            "rejected",
            10014,
            None,
            "volume 0.001 for XAUUSD is below the minimum 0.01",
        ),
        (
            Rejected("", broker_code=10019, broker_code_name="TRADE_RETCODE_NO_MONEY"),
            "rejected",
            10019,
            "TRADE_RETCODE_NO_MONEY",
            "not enough free margin for this order",
        ),
        (
            AuthFailed("the MetaApi token was refused"),
            "rejected",
            None,
            None,
            "the MetaApi token was refused",
        ),
        (
            RetryLater("", broker_code=10024, broker_code_name="TRADE_RETCODE_TOO_MANY_REQUESTS"),
            "failed",
            10024,
            "TRADE_RETCODE_TOO_MANY_REQUESTS",
            "too many requests to the broker",
        ),
        (NotConnected("the terminal is offline"), "failed", None, None, "the terminal is offline"),
        (
            OutcomeUnknown("", broker_code=-7, broker_code_name="ERR_TRADE_TIMED_OUT"),
            "failed",
            -7,
            "ERR_TRADE_TIMED_OUT",
            "the trade timed out and may still have executed",
        ),
        (NoBroker("no MetaApi token resolver"), "failed", None, None, "no MetaApi token resolver"),
    ],
)
def test_report_when_broker_error_then_status_code_and_reason(
    error: BrokerError, status: str, code: int | None, name: str | None, reason: str
) -> None:
    report = report_failure(intent(), error, **TIMES)

    assert report.status == status == status_for_error(error)
    assert (report.broker_code, report.broker_code_name) == (code, name)
    assert report.reason == reason
    assert (report.intent_id, report.user_id, report.account_id) == (
        "sig1:u1:1:open",
        "u1",
        "paper-u1",
    )
    assert (report.submitted_ns, report.reported_ns, report.causation_id) == (100, 200, "v1")


def test_report_when_market_open_filled_then_filled_with_price_and_done() -> None:
    result = BrokerOrderResult(
        status="filled",
        order_id="7",
        position_id="7",
        fill_price=2001.5,
        volume=0.1,
        broker_code=10009,
        broker_code_name="TRADE_RETCODE_DONE",
    )

    report = report_success(submitting(), result, **TIMES)

    assert (report.status, report.price, report.volume, report.position_id) == (
        "filled",
        2001.5,
        0.1,
        "7",
    )
    assert (report.sl, report.tp, report.reason) == (1900.0, 2100.0, "done")


def test_report_when_pending_placed_then_accepted_at_its_price() -> None:
    order = intent(order_type="limit", price=1950.0)
    result = BrokerOrderResult(status="accepted", order_id="8", volume=0.1, broker_code=10008)

    report = report_success(submitting(order), result, **TIMES)

    assert (report.status, report.price, report.order_id, report.reason) == (
        "accepted",
        1950.0,
        "8",
        "order placed",
    )


def test_report_when_partial_close_then_closed_with_remaining_and_profit() -> None:
    order = intent("sig1:u1:1:close", action="close", target_intent_id="sig1:u1:1:open")
    sub = submitting(order, position_id="7", volume=0.05, volume_before=0.2)
    result = BrokerOrderResult(
        status="filled", position_id="7", fill_price=2010.0, volume=0.05, profit=12.5
    )

    report = report_success(sub, result, **TIMES)

    assert (report.status, report.volume, report.remaining_volume, report.profit) == (
        "closed",
        0.05,
        0.15,
        12.5,
    )


@pytest.mark.parametrize(("action", "status"), [("modify", "modified"), ("cancel", "cancelled")])
def test_report_when_follow_up_done_then_its_status(action: str, status: str) -> None:
    order = intent(f"sig1:u1:1:{action}", action=action, target_intent_id="sig1:u1:1:open")
    result = BrokerOrderResult(status="accepted", broker_code=10025)

    report = report_success(submitting(order, position_id="7"), result, **TIMES)

    assert (report.status, report.reason) == (status, "nothing to change")


# --- the retry policy that leads to those reports -------------------------------------


def _core(**config: Any) -> tuple[ExecutionCore, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    settings = {"not_connected_base_s": 0.5, "not_connected_max_s": 2.0, **config}
    core = ExecutionCore(
        cast(Any, None),
        cast(Any, None),
        cast(Any, None),
        ExecutionConfig(**settings),
        sleep=sleep,
    )
    return core, slept


async def test_send_when_retry_later_then_waits_its_retry_after_and_sends_again() -> None:
    core, slept = _core()
    broker = ScriptedBroker()
    broker.script("place_order", RetryLater("busy", retry_after_s=1.5))
    broker.script("place_order", RetryLater("busy", retry_after_s=60.0))

    outcome = await core.send(cast(Any, broker), submitting(), recovering=False)

    assert isinstance(outcome, BrokerOrderResult) and outcome.status == "filled"
    assert slept == [1.5, 5.0]  # the broker's wait, capped at retry_later_max_s
    assert broker.calls == ["place_order"] * 3


async def test_send_when_not_connected_throughout_then_backs_off_and_gives_up() -> None:
    core, slept = _core(not_connected_attempts=3)
    broker = ScriptedBroker()
    for _ in range(4):
        broker.script("place_order", NotConnected("terminal offline"))

    outcome = await core.send(cast(Any, broker), submitting(), recovering=False)

    assert isinstance(outcome, NotConnected)
    assert report_failure(intent(), outcome, **TIMES).status == "failed"
    assert slept == [0.5, 1.0, 2.0]
    assert await broker.paper.positions() == []


async def test_send_when_outcome_unknown_but_executed_then_found_not_resent() -> None:
    core, _ = _core()
    broker = ScriptedBroker()
    broker.script("place_order", OutcomeUnknown("timed out"), execute=True)
    sub = submitting()

    outcome = await core.send(cast(Any, broker), sub, recovering=False)

    assert isinstance(outcome, BrokerOrderResult) and outcome.duplicate
    assert broker.calls == ["place_order", "find_by_client_id"]
    assert [p.client_id for p in await broker.paper.positions()] == [
        client_id_for(sub.intent.intent_id)
    ]


async def test_send_when_outcome_unknown_and_not_executed_then_looked_up_then_resent() -> None:
    core, _ = _core()
    broker = ScriptedBroker()
    broker.script("place_order", OutcomeUnknown("timed out"))

    outcome = await core.send(cast(Any, broker), submitting(), recovering=False)

    assert isinstance(outcome, BrokerOrderResult) and not outcome.duplicate
    assert broker.calls == ["place_order", "find_by_client_id", "place_order"]
    assert len(await broker.paper.positions()) == 1


async def test_send_when_recovering_then_looks_up_before_any_send() -> None:
    core, _ = _core()
    broker = ScriptedBroker()
    sub = submitting()
    await broker.paper.place_order(order_request(sub.intent, sub.client_id))

    outcome = await core.send(cast(Any, broker), sub, recovering=True)

    assert isinstance(outcome, BrokerOrderResult) and outcome.duplicate
    assert broker.calls == ["find_by_client_id"]


@pytest.mark.parametrize(
    "error", [Rejected("market closed", broker_code=10018), AuthFailed("bad token")]
)
async def test_send_when_final_refusal_then_no_retry(error: BrokerError) -> None:
    core, slept = _core()
    broker = ScriptedBroker()
    broker.script("place_order", error)

    outcome = await core.send(cast(Any, broker), submitting(), recovering=False)

    assert outcome is error
    assert (broker.calls, slept) == (["place_order"], [])


async def test_send_when_outcome_unknown_then_broker_unreachable_then_raises_not_failed() -> None:
    # the order went through but the answer was lost; then nobody can ask the broker
    core, _ = _core(not_connected_attempts=2)
    broker = ScriptedBroker()
    broker.script("place_order", OutcomeUnknown("timed out"), execute=True)
    for _ in range(3):
        broker.script("find_by_client_id", NotConnected("terminal offline"))
    sub = submitting()

    with pytest.raises(OutcomeStillUnknown) as raised:
        await core.send(cast(Any, broker), sub, recovering=False)

    assert isinstance(raised.value.last, NotConnected)
    assert broker.calls == ["place_order"] + ["find_by_client_id"] * 3  # never resent
    assert len(await broker.paper.positions()) == 1  # the position a `failed` would hide


async def test_send_when_recovering_and_broker_unreachable_then_raises_not_failed() -> None:
    core, _ = _core(not_connected_attempts=1)
    broker = ScriptedBroker()
    for _ in range(2):
        broker.script("find_by_client_id", NotConnected("terminal offline"))

    with pytest.raises(OutcomeStillUnknown):
        await core.send(cast(Any, broker), submitting(), recovering=True)

    assert "place_order" not in broker.calls


async def test_send_when_unknown_then_looked_up_absent_then_refused_then_rejected() -> None:
    # once a look-up says the order is not there, the broker's refusal of the resend is final
    core, _ = _core()
    broker = ScriptedBroker()
    broker.script("place_order", OutcomeUnknown("timed out"))
    refusal = Rejected("market closed", broker_code=10018)
    broker.script("place_order", refusal)

    outcome = await core.send(cast(Any, broker), submitting(), recovering=False)

    assert outcome is refusal
    assert broker.calls == ["place_order", "find_by_client_id", "place_order"]
