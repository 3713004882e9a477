"""A local fake of the MetaApi cloud, good enough for the real SDK's RPC path.

- REST (provisioning: `get_account`) is answered at the httpx level: `rest_patch()`
  replaces `HttpClient._make_request` with one that sends through an
  `httpx.MockTransport`.
- The websocket is a python-socketio 4.x `AsyncServer` on 127.0.0.1 (the SDK's
  4.6.1 client speaks Engine.IO 3), reached through the SDK's test hook
  `api._metaapi_websocket_client.set_url(...)`.
- Trades are executed by a `PaperBroker`, so the contract tests see the same
  behaviour through the SDK as from the paper broker directly.

Leans on private hooks pinned to metaapi-cloud-sdk 29.1.1 / python-socketio 4.6.1
(see /work/shared/sdk-notes.md A13). Emits go through `_emit_internal` because
`AsyncServer.emit()` passes bare coroutines to `asyncio.wait`, which Python 3.11
rejects.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict, deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import socketio  # type: ignore[import-untyped]
from aiohttp import web
from metaapi_cloud_sdk import MetaApi
from metaapi_cloud_sdk.clients.http_client import HttpClient

from services.execution.broker.paper import PaperBroker
from services.execution.broker.port import BrokerError, OrderRequest

_PENDING = {
    "ORDER_TYPE_BUY_LIMIT": ("buy", "limit"),
    "ORDER_TYPE_SELL_LIMIT": ("sell", "limit"),
    "ORDER_TYPE_BUY_STOP": ("buy", "stop"),
    "ORDER_TYPE_SELL_STOP": ("sell", "stop"),
}


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts or 0.0, UTC).isoformat().replace("+00:00", "Z")


class FakeMetaApiServer:
    """One fake MetaApi account (`account_id`) backed by `paper`.

    Error injection (one-shot, per request type, in order):
    `fail_next(type, error=..., message=..., **extra)` answers with `processingError`;
    `drop_next(type, execute=True|False)` sends no answer (the SDK times out),
    after executing the trade or not.
    """

    def __init__(self, paper: PaperBroker, *, account_id: str = "acc-1", token: str) -> None:
        self.paper = paper
        self.account_id = account_id
        self._token = token
        self.requests: list[dict[str, Any]] = []
        self.rest_requests: list[httpx.Request] = []
        self.unhandled: list[str] = []
        self._faults: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self.sio = socketio.AsyncServer(async_mode="aiohttp")
        self._app = web.Application()
        self.sio.attach(self._app, socketio_path="ws")
        self.sio.on("connect", self._on_connect)
        self.sio.on("request", self._on_request)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> FakeMetaApiServer:
        self._runner = web.AppRunner(self._app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runner.cleanup(), 5)
            self._runner = None
        # engineio starts a service task it keeps no handle to
        for task in asyncio.all_tasks():
            coro = task.get_coro()
            frame = getattr(coro, "cr_frame", None)
            if frame is not None and frame.f_locals.get("self") is self.sio.eio:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api_factory(self, token: str, opts: dict[str, Any]) -> Any:
        """Builds the real `MetaApi` object pointed at this server."""
        api = MetaApi(token, opts)  # type: ignore[arg-type]
        api._metaapi_websocket_client.set_url(self.url)
        return api

    # ---- fault injection ------------------------------------------------------------

    def fail_next(self, request_type: str, *, error: str, message: str, **extra: Any) -> None:
        self._faults[request_type].append({"error": error, "message": message, **extra})

    def drop_next(self, request_type: str, *, execute: bool = False) -> None:
        self._faults[request_type].append({"drop": True, "execute": execute})

    def clear_faults(self) -> None:
        self._faults.clear()

    # ---- REST -----------------------------------------------------------------------

    @contextlib.contextmanager
    def rest_patch(self) -> Iterator[None]:
        """Route every SDK REST call to `handle_rest` for the duration."""
        transport = httpx.MockTransport(self.handle_rest)
        original = HttpClient._make_request

        async def _make_request(client_self: HttpClient, options: dict[str, Any]) -> Any:
            async with httpx.AsyncClient(transport=transport) as client:
                req = client.build_request(
                    options.get("method", "GET"),
                    options["url"],
                    params=options.get("params"),
                    headers=options.get("headers"),
                    json=options.get("body"),
                )
                return await client.send(req)

        HttpClient._make_request = _make_request  # type: ignore[assignment,method-assign]
        try:
            yield
        finally:
            HttpClient._make_request = original  # type: ignore[method-assign]

    def handle_rest(self, request: httpx.Request) -> httpx.Response:
        self.rest_requests.append(request)
        if request.headers.get("auth-token") != self._token:
            return httpx.Response(
                401, json={"error": "UnauthorizedError", "message": "Invalid auth token"}
            )
        path = request.url.path
        if request.method == "GET" and path.startswith("/users/current/accounts/"):
            account_id = path.rsplit("/", 1)[-1]
            if account_id != self.account_id:
                return httpx.Response(
                    404,
                    json={"error": "NotFoundError", "message": f"Account {account_id} not found"},
                )
            return httpx.Response(200, json=self.account_json())
        self.unhandled.append(f"REST {request.method} {request.url}")
        return httpx.Response(404, json={"error": "NotFoundError", "message": "no such route"})

    def account_json(self) -> dict[str, Any]:
        return {
            "_id": self.account_id,
            "name": "fake",
            "login": "50123",
            "server": "Fake-Demo",
            "type": "cloud-g2",
            "magic": 0,
            "state": "DEPLOYED",
            "connectionStatus": "CONNECTED",
            "region": "vint-hill",
            "reliability": "regular",
            "accountReplicas": [],
        }

    # ---- websocket ------------------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any]) -> bool:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        return query.get("auth-token", [""])[0] == self._token

    async def _emit(self, sid: str, event: str, data: dict[str, Any]) -> None:
        await self.sio._emit_internal(sid, event, data, "/", None)

    async def _on_request(self, sid: str, data: dict[str, Any]) -> None:
        self.requests.append(data)
        kind = data.get("type", "")
        base = {
            "type": "response",
            "accountId": data.get("accountId"),
            "requestId": data.get("requestId"),
        }
        faults = self._faults.get(kind)
        if faults:
            fault = faults.popleft()
            if fault.get("drop"):
                if fault.get("execute") and kind == "trade":
                    paper_trade(self.paper, data["trade"])
                return
            await self._emit(sid, "processingError", {"requestId": data["requestId"], **fault})
            return
        try:
            payload = self._answer(kind, data)
        except _NotFound as err:
            await self._emit(
                sid,
                "processingError",
                {"requestId": data["requestId"], "error": "NotFoundError", "message": str(err)},
            )
            return
        await self._emit(sid, "response", {**base, **payload})
        if kind == "subscribe":
            await self._emit(
                sid,
                "synchronization",
                {
                    "type": "authenticated",
                    "accountId": data.get("accountId"),
                    "instanceIndex": data.get("instanceIndex", 0),
                    "host": "ps-mpa-0",
                    "replicas": 1,
                    "sessionId": data.get("sessionId"),
                },
            )

    def _answer(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        book = self.paper.book
        if kind in ("subscribe", "waitSynchronized", "unsubscribe"):
            return {}
        if kind == "trade":
            return {"response": paper_trade(self.paper, data["trade"])}
        if kind == "getPositions":
            return {"positions": [position_dict(p) for p in book.positions()]}
        if kind == "getPosition":
            for p in book.positions():
                if p.position_id == str(data.get("positionId")):
                    return {"position": position_dict(p)}
            raise _NotFound(f"Position {data.get('positionId')} not found")
        if kind == "getOrders":
            return {"orders": [order_dict(o) for o in book.orders()]}
        if kind == "getOrder":
            for o in book.orders():
                if o.order_id == str(data.get("orderId")):
                    return {"order": order_dict(o)}
            raise _NotFound(f"Order {data.get('orderId')} not found")
        if kind == "getAccountInformation":
            info = book.account()
            return {
                "accountInformation": {
                    "platform": "mt5",
                    "type": "ACCOUNT_TRADE_MODE_DEMO",
                    "broker": "Fake",
                    "currency": info.currency,
                    "server": "Fake-Demo",
                    "balance": info.balance,
                    "equity": info.equity,
                    "margin": info.margin,
                    "freeMargin": info.margin_free,
                    "leverage": info.leverage,
                    "marginLevel": None,
                    "tradeAllowed": True,
                    "login": 50123,
                }
            }
        if kind == "getSymbolSpecification":
            spec = book.spec(data["symbol"])
            return {
                "specification": {
                    "symbol": spec.symbol,
                    "digits": spec.digits,
                    "point": spec.point,
                    "pipSize": spec.pip_size,
                    "tickSize": spec.point,
                    "contractSize": spec.contract_size,
                    "minVolume": spec.min_volume,
                    "maxVolume": spec.max_volume,
                    "volumeStep": spec.volume_step,
                    "executionMode": "SYMBOL_TRADE_EXECUTION_MARKET",
                    "tradeMode": "SYMBOL_TRADE_MODE_FULL",
                }
            }
        if kind == "getSymbolPrice":
            quote = book.last_quote(data["symbol"])
            tick = book.spec(data["symbol"]).tick_value
            return {
                "price": {
                    "symbol": quote.symbol,
                    "bid": quote.bid,
                    "ask": quote.ask,
                    "time": _iso(quote.time),
                    "brokerTime": _iso(quote.time)[:23].replace("T", " "),
                    "profitTickValue": tick,
                    "lossTickValue": tick,
                }
            }
        self.unhandled.append(f"ws {kind}")
        return {}


class _NotFound(Exception):
    pass


_client_ids = itertools.count(1)


def paper_trade(paper: PaperBroker, trade: dict[str, Any]) -> dict[str, Any]:
    """Execute a MetaApi trade dict on the paper book; the MetaApi trade response."""
    book = paper.book
    action = trade["actionType"]
    try:
        if action in ("ORDER_TYPE_BUY", "ORDER_TYPE_SELL") or action in _PENDING:
            side, order_type = _PENDING.get(
                action, ("buy" if action == "ORDER_TYPE_BUY" else "sell", "market")
            )
            result = book.place(
                OrderRequest(
                    client_id=trade.get("clientId") or f"srv{next(_client_ids)}",
                    symbol=trade["symbol"],
                    side=side,  # type: ignore[arg-type]
                    order_type=order_type,  # type: ignore[arg-type]
                    volume=trade["volume"],
                    price=trade.get("openPrice"),
                    sl=trade.get("stopLoss"),
                    tp=trade.get("takeProfit"),
                    comment=trade.get("comment"),
                )
            )
        elif action == "POSITION_MODIFY":
            result = book.modify_position(
                str(trade["positionId"]), trade.get("stopLoss"), trade.get("takeProfit")
            )
        elif action == "POSITION_CLOSE_ID":
            result = book.close_position(str(trade["positionId"]))
        elif action == "POSITION_PARTIAL":
            result = book.close_position(str(trade["positionId"]), trade["volume"])
        elif action == "ORDER_CANCEL":
            result = book.cancel_order(str(trade["orderId"]))
        elif action == "ORDER_MODIFY":
            result = book.modify_order(
                str(trade["orderId"]),
                trade["openPrice"],
                trade.get("stopLoss"),
                trade.get("takeProfit"),
            )
        else:
            return {"numericCode": 10013, "stringCode": "TRADE_RETCODE_INVALID", "message": action}
    except BrokerError as err:
        return {
            "numericCode": err.broker_code,
            "stringCode": err.broker_code_name,
            "message": err.reason,
        }
    response: dict[str, Any] = {
        "numericCode": result.broker_code,
        "stringCode": result.broker_code_name,
        "message": result.reason,
    }
    if result.order_id:
        response["orderId"] = result.order_id
    if result.position_id:
        response["positionId"] = result.position_id
    return response


def position_dict(p: Any) -> dict[str, Any]:
    out = {
        "id": p.position_id,
        "type": "POSITION_TYPE_BUY" if p.side == "buy" else "POSITION_TYPE_SELL",
        "symbol": p.symbol,
        "magic": 0,
        "time": _iso(p.open_time),
        "openPrice": p.open_price,
        "currentPrice": p.current_price,
        "volume": p.volume,
        "profit": p.profit,
        "swap": 0,
        "commission": 0,
        "clientId": p.client_id,
        "comment": p.comment,
    }
    if p.sl is not None:
        out["stopLoss"] = p.sl
    if p.tp is not None:
        out["takeProfit"] = p.tp
    return out


def order_dict(o: Any) -> dict[str, Any]:
    out = {
        "id": o.order_id,
        "type": f"ORDER_TYPE_{o.side.upper()}_{o.order_type.upper()}",
        "state": "ORDER_STATE_PLACED",
        "symbol": o.symbol,
        "magic": 0,
        "time": _iso(o.open_time),
        "openPrice": o.price,
        "volume": o.volume,
        "currentVolume": o.volume,
        "clientId": o.client_id,
        "comment": o.comment,
    }
    if o.sl is not None:
        out["stopLoss"] = o.sl
    if o.tp is not None:
        out["takeProfit"] = o.tp
    return out
