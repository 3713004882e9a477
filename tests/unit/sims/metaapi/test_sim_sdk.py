"""The real metaapi-cloud-sdk against the in-process stand-in, through the production redirect."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import socketio
from metaapi_cloud_sdk.clients.error_handler import (
    TooManyRequestsException,
    UnauthorizedException,
)

from contracts.broker import NotConnected, OutcomeUnknown, Position
from services.execution.broker.metaapi import MetaApiBroker, MetaApiConfig, MetaApiConnectionPool
from services.execution.broker.metaapi_endpoint import api_factory_for, redirected_api
from services.sims.metaapi.cli import call
from services.sims.metaapi.server import MetaApiSim
from tests.unit.broker.conftest import MetaApiEnv
from tests.unit.broker.stubs import TOKEN, order


async def control(path: str, body: dict[str, Any]) -> Any:
    """The CLI's control call, off the loop that runs the in-process stand-in."""
    return await asyncio.to_thread(call, path, body)


def _retry_in(metadata: dict[str, str]) -> float:
    retry = datetime.fromisoformat(metadata["recommendedRetryTime"].replace("Z", "+00:00"))
    return retry.timestamp() - time.time()


async def test_account_when_first_used_then_opened_with_balance(
    sim: MetaApiEnv, account_id: str
) -> None:
    info = await sim.broker(account_id).account_info()

    assert (info.balance, info.equity, info.currency, info.leverage) == (
        10_000.0,
        10_000.0,
        "USD",
        100.0,
    )
    assert info.margin_free == 10_000.0


async def test_market_order_when_price_moves_then_equity_floats_and_tp_closes(
    sim: MetaApiEnv, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGRELAY_METAAPI_URL", sim.server.url)
    broker = sim.broker(account_id)
    quote = await broker.quote("EURUSD")
    placed = await broker.place_order(
        order("tp1", symbol="EURUSD", volume=1.0, tp=round(quote.ask + 0.0050, 5))
    )
    assert placed.fill_price == quote.ask

    await control("/_sim/price", {"symbol": "EURUSD", "bid": round(quote.ask + 0.0020, 5)})
    floating = await broker.account_info()
    await control("/_sim/price", {"symbol": "EURUSD", "bid": round(quote.ask + 0.0060, 5)})
    after = await broker.account_info()

    assert floating.balance == 10_000.0
    assert floating.equity == pytest.approx(10_000.0 + 200.0, abs=0.01)
    assert floating.margin > 0
    assert await broker.positions() == []
    assert after.balance == pytest.approx(10_000.0 + 600.0, abs=0.01)
    assert (after.equity, after.margin) == (after.balance, 0.0)


async def test_limit_order_when_price_crosses_then_filled(
    sim: MetaApiEnv, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGRELAY_METAAPI_URL", sim.server.url)
    broker = sim.broker(account_id)
    quote = await broker.quote("XAUUSD")
    limit = round(quote.ask - 5.0, 2)
    placed = await broker.place_order(order("lim1", order_type="limit", price=limit))
    assert placed.status == "accepted"
    pending_before = await broker.orders()

    await control("/_sim/price", {"symbol": "XAUUSD", "bid": round(limit - 1.0, 2)})

    assert [o.order_id for o in pending_before] == [placed.order_id]
    assert await broker.orders() == []
    [position] = await broker.positions()
    assert (position.position_id, position.client_id, position.side) == (
        placed.order_id,
        "lim1",
        "buy",
    )
    assert position.open_price == pytest.approx(limit - 1.0 + 0.2)  # the ask that crossed


async def test_history_when_position_closed_then_orders_and_deals_by_position(
    sim: MetaApiEnv, account_id: str
) -> None:
    broker = sim.broker(account_id)
    placed = await broker.place_order(order("hist1", symbol="EURUSD", volume=0.5))
    assert placed.position_id is not None
    closed = await broker.close_position(placed.position_id)

    async with sim.pool.connection(TOKEN, account_id) as conn:
        orders = await conn.get_history_orders_by_position(placed.position_id)
        deals = await conn.get_deals_by_position(placed.position_id)
        in_range = await conn.get_deals_by_time_range(
            datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC) + timedelta(minutes=1)
        )

    assert [(o["type"], o["state"]) for o in orders["historyOrders"]] == [
        ("ORDER_TYPE_BUY", "ORDER_STATE_FILLED"),
        ("ORDER_TYPE_SELL", "ORDER_STATE_FILLED"),
    ]
    assert [(d["entryType"], d["clientId"]) for d in deals["deals"]] == [
        ("DEAL_ENTRY_IN", "hist1"),
        ("DEAL_ENTRY_OUT", "hist1"),
    ]
    # closed at the bid right after buying at the ask: the 12-point spread on 0.5 lot
    assert deals["deals"][1]["profit"] == pytest.approx(-0.00012 * 0.5 * 100_000)
    assert closed.status == "filled"
    assert isinstance(deals["deals"][0]["time"], datetime)  # the SDK parsed our ISO time
    assert [d["type"] for d in in_range["deals"]] == [
        "DEAL_TYPE_BALANCE",
        "DEAL_TYPE_BUY",
        "DEAL_TYPE_SELL",
    ]


async def test_token_when_starts_with_bad_then_sdk_unauthorized(sim: MetaApiEnv) -> None:
    api = redirected_api("bad-token", sim.config.sdk_opts(), sim.server.url)
    try:
        with pytest.raises(UnauthorizedException):
            await api.metatrader_account_api.get_account("any")
    finally:
        api.close()


async def test_websocket_when_token_bad_then_processing_error_unauthorized(
    sim: MetaApiEnv,
) -> None:
    client = socketio.AsyncClient(reconnection=False)
    answered = []

    @client.on("processingError")
    async def on_error(data: dict[str, str]) -> None:
        answered.append(data)
        await client.disconnect()

    await client.connect(
        f"{sim.server.url}?auth-token=bad-x&clientId=1&protocol=3", socketio_path="ws"
    )
    await client.emit("request", {"type": "getPositions", "accountId": "a", "requestId": "r1"})
    await client.wait()

    assert [(a["requestId"], a["error"]) for a in answered] == [("r1", "UnauthorizedError")]


async def test_throttle_when_set_then_sdk_too_many_requests_with_retry_time(
    sim: MetaApiEnv, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGRELAY_METAAPI_URL", sim.server.url)
    async with sim.pool.connection(TOKEN, account_id) as conn:
        await control("/_sim/throttle", {"seconds": 30})

        with pytest.raises(TooManyRequestsException) as over_ws:
            await conn.create_market_buy_order("XAUUSD", 0.1, options={"clientId": "thr1"})
        api = redirected_api(TOKEN, sim.config.sdk_opts(), sim.server.url)
        try:
            with pytest.raises(TooManyRequestsException) as over_rest:
                await api.metatrader_account_api.get_account(account_id)
        finally:
            api.close()
        await control("/_sim/throttle", {"seconds": 0})
        positions = await conn.get_positions()

    assert _retry_in(over_ws.value.metadata) == pytest.approx(30, abs=5)
    assert _retry_in(over_rest.value.metadata) == pytest.approx(30, abs=5)
    assert over_rest.value.status_code == 429
    assert positions == []


async def test_disconnect_when_trade_answer_lost_then_reconnected_and_not_duplicated(
    sim: MetaApiEnv, account_id: str
) -> None:
    broker = sim.broker(account_id)
    await broker.account_info()
    gateway = sim.server.gateway
    sockets = gateway.connections  # the SDK's instances 0 and 1, one socket each
    # the trade runs, then every socket drops before the answer; new ones wait 0.5 s
    sim.server.drop_next("trade", execute=True, disconnect_s=0.5)

    with pytest.raises(OutcomeUnknown):
        await broker.place_order(order("disc1"))
    await gateway.wait_connections(sockets)
    again = await broker.place_order(order("disc1"))

    assert again.duplicate is True
    [position] = await broker.positions()
    assert isinstance(position, Position)
    assert (position.client_id, again.position_id) == ("disc1", position.position_id)
    sent = [
        r
        for r in sim.server.requests
        if r["type"] == "trade" and r["trade"].get("clientId") == "disc1"
    ]
    assert len(sent) == 1


async def test_disconnect_command_when_sockets_dropped_then_sdk_reconnects(
    sim: MetaApiEnv, account_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGRELAY_METAAPI_URL", sim.server.url)
    broker = sim.broker(account_id)
    await broker.account_info()
    gateway = sim.server.gateway
    sockets = gateway.connections

    answer = await control("/_sim/disconnect", {"seconds": 0.5})
    dropped_to = gateway.connections
    await gateway.wait_connections(sockets)
    info = await broker.account_info()

    assert answer["dropped"] == sockets >= 2
    assert dropped_to == 0
    assert info.balance == 10_000.0


async def test_same_client_id_when_sent_twice_then_two_positions_as_metaapi(
    sim: MetaApiEnv, account_id: str
) -> None:
    # MetaApi does not deduplicate client ids: the adapter's look-up is what does
    async with sim.pool.connection(TOKEN, account_id) as conn:
        await conn.create_market_buy_order("XAUUSD", 0.1, options={"clientId": "twice1"})
        await conn.create_market_buy_order("XAUUSD", 0.1, options={"clientId": "twice1"})
        positions = await conn.get_positions()

    assert [p["clientId"] for p in positions] == ["twice1", "twice1"]
    assert len({p["id"] for p in positions}) == 2


async def test_undeploy_when_asked_then_account_state_and_rpc_follow(
    sim: MetaApiEnv, account_id: str
) -> None:
    api = redirected_api(TOKEN, sim.config.sdk_opts(), sim.server.url)
    try:
        account = await api.metatrader_account_api.get_account(account_id)
        await account.undeploy()
        undeployed = (account.state, account.connection_status)
        with pytest.raises(NotConnected):
            await sim.broker(account_id).account_info()
        await account.deploy()
        await account.wait_deployed(timeout_in_seconds=5, interval_in_milliseconds=100)
        deployed = (account.state, account.connection_status)
    finally:
        api.close()

    assert undeployed == ("UNDEPLOYED", "DISCONNECTED")
    assert deployed == ("DEPLOYED", "CONNECTED")
    assert (await sim.broker(account_id).account_info()).balance == 10_000.0


async def test_subscribed_instance_when_connected_then_status_packets_keep_coming() -> None:
    # the SDK declares an instance disconnected after 60 s without a status packet
    server = await MetaApiSim(status_interval_s=0.05).start()
    client = socketio.AsyncClient(reconnection=False)
    packets: list[dict[str, Any]] = []
    two_statuses = asyncio.Event()

    @client.on("synchronization")
    async def on_sync(data: dict[str, Any]) -> None:
        packets.append(data)
        if sum(p["type"] == "status" for p in packets) >= 2:
            two_statuses.set()

    try:
        await client.connect(
            f"{server.url}?auth-token=a.b.c&clientId=1&protocol=3", socketio_path="ws"
        )
        await client.emit(
            "request",
            {
                "type": "subscribe",
                "accountId": "st1",
                "requestId": "r1",
                "instanceIndex": 1,
                "sessionId": "s1",
            },
        )
        await asyncio.wait_for(two_statuses.wait(), 30)
    finally:
        await client.disconnect()
        await server.stop()

    assert packets[0] == {
        "type": "authenticated",
        "accountId": "st1",
        "instanceIndex": 1,
        "host": "ps-mpa-sim-0",
        "replicas": 1,
        "sessionId": "s1",
    }
    assert {
        k: packets[1][k]
        for k in ("type", "connected", "authenticated", "accountId", "instanceIndex")
    } == {
        "type": "status",
        "connected": True,
        "authenticated": True,
        "accountId": "st1",
        "instanceIndex": 1,
    }


async def _undeployed(sim: MetaApiEnv, account_id: str) -> None:
    api = redirected_api(TOKEN, sim.config.sdk_opts(), sim.server.url)
    try:
        account = await api.metatrader_account_api.get_account(account_id)
        await account.undeploy()
    finally:
        api.close()


async def test_undeployed_account_when_deploying_is_not_allowed_then_not_connected_saying_how(
    sim: MetaApiEnv, account_id: str
) -> None:
    await _undeployed(sim, account_id)

    with pytest.raises(NotConnected) as refused:
        await sim.broker(account_id).account_info()

    assert "UNDEPLOYED" in refused.value.reason
    assert "SIGRELAY_METAAPI_DEPLOY=1" in refused.value.reason


async def test_undeployed_account_when_deploying_is_allowed_then_deployed_and_trading(
    sim: MetaApiEnv, account_id: str
) -> None:
    await _undeployed(sim, account_id)
    config = msgspec.structs.replace(sim.config, deploy=True, deploy_poll_s=0.05)
    pool = MetaApiConnectionPool(config, api_factory=api_factory_for(sim.server.url))
    broker = MetaApiBroker(token=TOKEN, account_id=account_id, pool=pool, config=config)
    try:
        info = await broker.account_info()
        state = sim.server.accounts.get(account_id).state
    finally:
        await broker.close()
        await pool.close()

    assert info.balance == 10_000.0
    assert state == "DEPLOYED"


def test_metaapi_settings_from_env_then_parsed_or_refused_naming_the_variable() -> None:
    config = MetaApiConfig.from_env(
        {"SIGRELAY_METAAPI_DEPLOY": "yes", "SIGRELAY_METAAPI_MAX_CONNECTIONS": "50"}
    )
    assert (config.deploy, config.max_connections) == (True, 50)
    assert MetaApiConfig.from_env({}).deploy is False
    with pytest.raises(ValueError, match="SIGRELAY_METAAPI_DEPLOY"):
        MetaApiConfig.from_env({"SIGRELAY_METAAPI_DEPLOY": "maybe"})
    with pytest.raises(ValueError, match="SIGRELAY_METAAPI_REQUEST_TIMEOUT_S"):
        MetaApiConfig.from_env({"SIGRELAY_METAAPI_REQUEST_TIMEOUT_S": "-1"})
