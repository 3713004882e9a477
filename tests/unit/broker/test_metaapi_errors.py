"""Every SDK exception the adapter can meet maps to the outcome the execution service needs.

The exceptions are the SDK's own classes built with their real constructors
(sdk-notes C1). Most cases raise them from a hand-written fake connection;
the last group goes through the real SDK and the fake server.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from metaapi_cloud_sdk.clients.error_handler import (
    ApiException,
    ForbiddenException,
    InternalException,
    NotFoundException,
    TooManyRequestsException,
    UnauthorizedException,
    ValidationException,
)
from metaapi_cloud_sdk.clients.metaapi.not_connected_exception import NotConnectedException
from metaapi_cloud_sdk.clients.metaapi.not_synchronized_exception import (
    NotSynchronizedException,
)
from metaapi_cloud_sdk.clients.metaapi.trade_exception import TradeException
from metaapi_cloud_sdk.clients.timeout_exception import TimeoutException

from contracts.broker import (
    AuthFailed,
    BrokerError,
    NotConnected,
    OutcomeUnknown,
    Position,
    Rejected,
    RetryLater,
)
from services.execution.broker.metaapi import MetaApiBroker
from services.execution.broker.metaapi_errors import map_sdk_error

from .conftest import MetaApiEnv
from .stubs import ACCOUNT_ID, TOKEN, order, stub_broker


def _iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


TRADE_CASES: list[tuple[str, BaseException, type[BrokerError]]] = [
    (
        "invalid volume",
        TradeException("Invalid volume", 10014, "TRADE_RETCODE_INVALID_VOLUME"),
        Rejected,
    ),
    ("no money", TradeException("No money", 10019, "TRADE_RETCODE_NO_MONEY"), Rejected),
    ("market closed", TradeException("Closed", 10018, "TRADE_RETCODE_MARKET_CLOSED"), Rejected),
    ("requote", TradeException("Requote", 10004, "TRADE_RETCODE_REQUOTE"), RetryLater),
    ("trade timed out", TradeException("Timed out", -7, "ERR_TRADE_TIMED_OUT"), OutcomeUnknown),
    ("no connection", TradeException("No conn", 10031, "TRADE_RETCODE_CONNECTION"), NotConnected),
    ("unknown code", TradeException("Strange", 12345, "WEIRD_CODE"), Rejected),
    (
        "rate limited",
        TooManyRequestsException(
            "Too many",
            {
                "periodInMinutes": 60,
                "requestsPerPeriodAllowed": 10000,
                "recommendedRetryTime": _iso_in(30),
                "type": "LIMIT_REQUEST_RATE_PER_USER",
            },
        ),
        RetryLater,
    ),
    ("sdk timeout", TimeoutException("Request timed out"), OutcomeUnknown),
    ("pending when closed", Exception("MetaApi connection closed"), OutcomeUnknown),
    (
        "used after close",
        Exception("This connection has been closed, please create a new connection"),
        NotConnected,
    ),
    ("terminal down", NotConnectedException("Not connected to broker"), NotConnected),
    ("not synchronized", NotSynchronizedException("Not synchronized"), NotConnected),
    ("bad token", UnauthorizedException("Unauthorized"), AuthFailed),
    ("forbidden", ForbiddenException("Forbidden"), AuthFailed),
    (
        "validation",
        ValidationException(
            "Validation failed",
            [{"parameter": "volume", "value": -1, "message": "must be positive"}],
        ),
        Rejected,
    ),
    ("not found", NotFoundException("Position not found"), Rejected),
    ("transport", ApiException("None", None), RetryLater),
    ("http 503", ApiException("Service Unavailable", 503), RetryLater),
    ("internal on a trade", InternalException("boom"), OutcomeUnknown),
    ("httpx leak", httpx.ConnectTimeout("connect timed out"), NotConnected),
]


@pytest.mark.parametrize(
    ("exc", "expected"), [(e, o) for _, e, o in TRADE_CASES], ids=[n for n, _, _ in TRADE_CASES]
)
async def test_place_when_sdk_raises_then_mapped_outcome(
    exc: BaseException, expected: type[BrokerError]
) -> None:
    broker, conn, _ = stub_broker()
    conn.raise_next("create_market_buy_order", exc)

    with pytest.raises(BrokerError) as caught:
        await broker.place_order(order("e1"))

    assert type(caught.value) is expected
    assert caught.value.reason
    assert conn.paper.book.positions() == []
    await broker.close()


async def test_trade_exception_when_mapped_then_codes_and_plain_words_kept() -> None:
    err = map_sdk_error(
        TradeException("Invalid volume", 10014, "TRADE_RETCODE_INVALID_VOLUME"),
        op="place c1",
        trade=True,
    )

    assert isinstance(err, Rejected)
    assert (err.broker_code, err.broker_code_name) == (10014, "TRADE_RETCODE_INVALID_VOLUME")
    assert err.reason.startswith("the volume is not allowed")


async def test_too_many_requests_when_mapped_then_waits_until_recommended_time() -> None:
    now = time.time()
    when = datetime.fromtimestamp(now + 42, UTC).isoformat()
    err = map_sdk_error(
        TooManyRequestsException("Too many", {"recommendedRetryTime": when}),
        op="place c1",
        trade=True,
        now=now,
    )

    assert isinstance(err, RetryLater)
    assert err.retry_after_s == pytest.approx(42, abs=0.01)


async def test_validation_when_mapped_then_reason_names_the_details() -> None:
    err = map_sdk_error(
        ValidationException(
            "Validation failed", [{"parameter": "volume", "value": -1, "message": "must be > 0"}]
        ),
        op="place c1",
        trade=True,
    )

    assert isinstance(err, Rejected)
    assert "volume: must be > 0 (value -1)" in err.reason
    assert "check error.details" not in err.reason


async def test_timeout_on_a_read_when_mapped_then_retry_not_unknown() -> None:
    broker, conn, _ = stub_broker()
    conn.raise_next("get_positions", TimeoutException("Request timed out"))

    with pytest.raises(RetryLater):
        await broker.positions()
    await broker.close()


async def test_trade_timeout_when_it_executed_then_unknown_and_found_by_client_id() -> None:
    broker, conn, _ = stub_broker()
    conn.raise_next("create_market_buy_order", TimeoutException("timed out"), execute=True)

    with pytest.raises(OutcomeUnknown):
        await broker.place_order(order("t1"))
    found = await broker.find_by_client_id("t1")
    again = await broker.place_order(order("t1"))

    assert isinstance(found, Position)
    assert found.client_id == "t1"
    assert again.duplicate is True
    assert again.position_id == found.position_id
    sends = [c for c in conn.calls if c[0] == "create_market_buy_order"]
    assert len(sends) == 1
    assert len(conn.paper.book.positions()) == 1
    await broker.close()


async def test_trade_timeout_when_it_did_not_execute_then_resend_after_lookup() -> None:
    broker, conn, _ = stub_broker()
    conn.raise_next("create_market_buy_order", TimeoutException("timed out"))

    with pytest.raises(OutcomeUnknown):
        await broker.place_order(order("t2"))
    result = await broker.place_order(order("t2"))

    assert result.duplicate is False
    assert result.status == "filled"
    names = [c[0] for c in conn.calls]
    # the resend is preceded by a lookup at the broker
    assert names.index("get_positions") < len(names) - 1 - names[::-1].index(
        "create_market_buy_order"
    )
    assert len(conn.paper.book.positions()) == 1
    await broker.close()


async def test_error_when_message_holds_the_token_then_redacted_and_unchained() -> None:
    broker, conn, _ = stub_broker()
    conn.raise_next("get_positions", Exception(f"failed for wss://x?auth-token={TOKEN}"))

    with pytest.raises(RetryLater) as caught:
        await broker.positions()

    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert TOKEN not in repr(broker)
    await broker.close()


async def test_unauthorized_when_raised_then_auth_failed_and_sdk_object_dropped() -> None:
    broker, conn, api = stub_broker()
    conn.raise_next("get_account_information", UnauthorizedException("Unauthorized"))

    with pytest.raises(AuthFailed):
        await broker.account_info()

    assert api.closed is True
    await broker.close()


@pytest.mark.parametrize(
    ("state", "error", "expected"),
    [
        ("UNDEPLOYED", None, NotConnected),
        ("DEPLOYED", NotFoundException("Account not found"), AuthFailed),
        ("DEPLOYED", UnauthorizedException("Unauthorized"), AuthFailed),
    ],
)
async def test_connect_when_account_unusable_then_mapped(
    state: str, error: BaseException | None, expected: type[BrokerError]
) -> None:
    broker, _, api = stub_broker()
    api.metatrader_account_api.account.state = state
    api.metatrader_account_api.error = error

    with pytest.raises(expected):
        await broker.account_info()
    await broker.close()


def test_construct_when_no_running_loop_then_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="running event loop"):
        MetaApiBroker(token=TOKEN, account_id=ACCOUNT_ID)


# ---- through the real SDK and the fake server -----------------------------------------


async def test_e2e_rate_limit_when_server_says_too_many_then_retry_later(
    fresh_metaapi: MetaApiEnv,
) -> None:
    broker = fresh_metaapi.broker()
    fresh_metaapi.server.fail_next(
        "trade",
        error="TooManyRequestsError",
        message="Too many requests",
        metadata={"recommendedRetryTime": _iso_in(20), "type": "LIMIT_REQUEST_RATE_PER_USER"},
    )

    with pytest.raises(RetryLater) as caught:
        await broker.place_order(order("rl1"))

    assert caught.value.retry_after_s == pytest.approx(20, abs=2)
    assert fresh_metaapi.server.book(ACCOUNT_ID).positions() == []


async def test_e2e_validation_when_server_refuses_then_rejected_naming_details(
    fresh_metaapi: MetaApiEnv,
) -> None:
    broker = fresh_metaapi.broker()
    fresh_metaapi.server.fail_next(
        "trade",
        error="ValidationError",
        message="Validation failed",
        details=[{"parameter": "stopLoss", "value": -5, "message": "must be positive"}],
    )

    with pytest.raises(Rejected) as caught:
        await broker.place_order(order("val1"))

    assert "stopLoss: must be positive" in caught.value.reason


async def test_e2e_terminal_disconnected_when_server_says_so_then_not_connected(
    fresh_metaapi: MetaApiEnv,
) -> None:
    broker = fresh_metaapi.broker()
    fresh_metaapi.server.fail_next(
        "getPositions", error="NotAuthenticatedError", message="Terminal not connected"
    )

    with pytest.raises(NotConnected):
        await broker.positions()


async def test_e2e_trade_answer_lost_when_executed_then_unknown_then_reconciled(
    fresh_metaapi: MetaApiEnv,
) -> None:
    broker = fresh_metaapi.broker()
    server = fresh_metaapi.server
    server.drop_next("trade", execute=True)

    with pytest.raises(OutcomeUnknown):
        await broker.place_order(order("lost1", comment="sig"))
    found = await broker.find_by_client_id("lost1")
    again = await broker.place_order(order("lost1", comment="sig"))

    assert isinstance(found, Position)
    assert again.duplicate is True
    assert again.position_id == found.position_id
    trades: list[dict[str, Any]] = [r["trade"] for r in server.requests if r["type"] == "trade"]
    sent = [t for t in trades if t.get("clientId") == "lost1"]
    assert len(sent) == 1
    assert (sent[0]["comment"], sent[0]["actionType"]) == ("sig", "ORDER_TYPE_BUY")
