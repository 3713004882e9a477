"""Stub factories for the broker tests (one place, per STYLE.md).

`FakeRpcConnection` stands in for the SDK's `RpcMetaApiConnectionInstance`: same
method names, parameter names, kinds and defaults (checked against the real
class by test_metaapi_drift.py), backed by a `PaperBroker`. `raise_next` makes
the next call of a method raise a given (real SDK) exception, optionally after
executing the trade.
"""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from typing import Any

from contracts.broker import OrderRequest
from services.execution.broker.metaapi import MetaApiBroker, MetaApiConfig, MetaApiConnectionPool
from services.paper.broker import PaperBroker, PaperBrokerConfig
from services.sims.metaapi.shapes import order_dict, position_dict
from services.sims.metaapi.trades import paper_trade

_ids = itertools.count(1)

TOKEN = "eyJhbGciOi.fake-secret-token.sig"  # shaped like an API (JWT) token
ACCOUNT_ID = "acc-1"


def order(client_id: str = "c1", **kw: Any) -> OrderRequest:
    """A valid XAUUSD market buy of 0.1 lot unless told otherwise."""
    fields: dict[str, Any] = {"symbol": "XAUUSD", "side": "buy", "volume": 0.1}
    fields.update(kw)
    return OrderRequest(client_id=client_id, **fields)


def paper(**kw: Any) -> PaperBroker:
    return PaperBroker(PaperBrokerConfig(**kw))


class FakeRpcConnection:
    """Hand-written fake of RpcMetaApiConnectionInstance (the subset the adapter calls)."""

    def __init__(self, broker: PaperBroker) -> None:
        self.paper = broker
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.closed = False
        self._raise: dict[str, deque[tuple[BaseException, bool]]] = defaultdict(deque)

    def raise_next(self, method: str, exc: BaseException, *, execute: bool = False) -> None:
        self._raise[method].append((exc, execute))

    # ---- lifecycle
    async def connect(self) -> None:
        self.calls.append(("connect", ()))

    async def wait_synchronized(self, timeout_in_seconds: float = 300) -> None:
        self.calls.append(("wait_synchronized", (timeout_in_seconds,)))

    async def close(self) -> None:
        self.closed = True

    # ---- trades
    async def create_market_buy_order(
        self, symbol, volume, stop_loss=None, take_profit=None, options=None
    ):
        return self._send(
            "create_market_buy_order",
            "ORDER_TYPE_BUY",
            symbol,
            volume,
            None,
            stop_loss,
            take_profit,
            options,
        )

    async def create_market_sell_order(
        self, symbol, volume, stop_loss=None, take_profit=None, options=None
    ):
        return self._send(
            "create_market_sell_order",
            "ORDER_TYPE_SELL",
            symbol,
            volume,
            None,
            stop_loss,
            take_profit,
            options,
        )

    async def create_limit_buy_order(
        self, symbol, volume, open_price, stop_loss=None, take_profit=None, options=None
    ):
        return self._send(
            "create_limit_buy_order",
            "ORDER_TYPE_BUY_LIMIT",
            symbol,
            volume,
            open_price,
            stop_loss,
            take_profit,
            options,
        )

    async def create_limit_sell_order(
        self, symbol, volume, open_price, stop_loss=None, take_profit=None, options=None
    ):
        return self._send(
            "create_limit_sell_order",
            "ORDER_TYPE_SELL_LIMIT",
            symbol,
            volume,
            open_price,
            stop_loss,
            take_profit,
            options,
        )

    async def create_stop_buy_order(
        self, symbol, volume, open_price, stop_loss=None, take_profit=None, options=None
    ):
        return self._send(
            "create_stop_buy_order",
            "ORDER_TYPE_BUY_STOP",
            symbol,
            volume,
            open_price,
            stop_loss,
            take_profit,
            options,
        )

    async def create_stop_sell_order(
        self, symbol, volume, open_price, stop_loss=None, take_profit=None, options=None
    ):
        return self._send(
            "create_stop_sell_order",
            "ORDER_TYPE_SELL_STOP",
            symbol,
            volume,
            open_price,
            stop_loss,
            take_profit,
            options,
        )

    async def modify_position(
        self,
        position_id,
        stop_loss=None,
        take_profit=None,
        trailing_stop_loss=None,
        stop_price_base=None,
    ):
        trade = {
            "actionType": "POSITION_MODIFY",
            "positionId": position_id,
            "stopLoss": stop_loss,
            "takeProfit": take_profit,
        }
        return self._run("modify_position", trade, position_id, stop_loss, take_profit)

    async def close_position(self, position_id, options=None):
        trade = {"actionType": "POSITION_CLOSE_ID", "positionId": position_id, **(options or {})}
        return self._run("close_position", trade, position_id)

    async def close_position_partially(self, position_id, volume, options=None):
        trade = {
            "actionType": "POSITION_PARTIAL",
            "positionId": position_id,
            "volume": volume,
            **(options or {}),
        }
        return self._run("close_position_partially", trade, position_id, volume)

    async def cancel_order(self, order_id):
        return self._run(
            "cancel_order", {"actionType": "ORDER_CANCEL", "orderId": order_id}, order_id
        )

    async def modify_order(
        self, order_id, open_price, stop_loss=None, take_profit=None, options=None
    ):
        trade = {
            "actionType": "ORDER_MODIFY",
            "orderId": order_id,
            "openPrice": open_price,
            "stopLoss": stop_loss,
            "takeProfit": take_profit,
        }
        return self._run("modify_order", trade, order_id, open_price, stop_loss, take_profit)

    # ---- reads
    async def get_positions(self, options=None):
        self._read("get_positions")
        return [position_dict(p) for p in self.paper.book.positions()]

    async def get_position(self, position_id, options=None):
        self._read("get_position", position_id)
        for p in self.paper.book.positions():
            if p.position_id == str(position_id):
                return position_dict(p)
        from metaapi_cloud_sdk.clients.error_handler import NotFoundException

        raise NotFoundException(f"Position {position_id} not found")

    async def get_orders(self, options=None):
        self._read("get_orders")
        return [order_dict(o) for o in self.paper.book.orders()]

    async def get_order(self, order_id, options=None):
        self._read("get_order", order_id)
        for o in self.paper.book.orders():
            if o.order_id == str(order_id):
                return order_dict(o)
        from metaapi_cloud_sdk.clients.error_handler import NotFoundException

        raise NotFoundException(f"Order {order_id} not found")

    async def get_account_information(self, options=None):
        self._read("get_account_information")
        info = self.paper.book.account()
        return {
            "balance": info.balance,
            "equity": info.equity,
            "currency": info.currency,
            "freeMargin": info.margin_free,
            "margin": info.margin,
            "leverage": info.leverage,
        }

    async def get_symbol_specification(self, symbol):
        self._read("get_symbol_specification", symbol)
        spec = self.paper.book.spec(symbol)
        return {
            "symbol": symbol,
            "digits": spec.digits,
            "point": spec.point,
            "pipSize": spec.pip_size,
            "contractSize": spec.contract_size,
            "minVolume": spec.min_volume,
            "maxVolume": spec.max_volume,
            "volumeStep": spec.volume_step,
        }

    async def get_symbol_price(self, symbol, keep_subscription=False):
        self._read("get_symbol_price", symbol)
        q = self.paper.book.last_quote(symbol)
        return {
            "symbol": symbol,
            "bid": q.bid,
            "ask": q.ask,
            "time": q.time,
            "profitTickValue": self.paper.book.spec(symbol).tick_value,
        }

    # ---- plumbing
    def _read(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if self._raise[method]:
            exc, _ = self._raise[method].popleft()
            raise exc

    def _send(self, method, action, symbol, volume, open_price, stop_loss, take_profit, options):
        trade = {
            "actionType": action,
            "symbol": symbol,
            "volume": volume,
            "openPrice": open_price,
            "stopLoss": stop_loss,
            "takeProfit": take_profit,
            **(options or {}),
        }
        return self._run(method, trade, symbol, volume, open_price, stop_loss, take_profit, options)

    def _run(self, method: str, trade: dict[str, Any], *args: Any) -> dict[str, Any]:
        self.calls.append((method, args))
        pending = self._raise[method].popleft() if self._raise[method] else None
        if pending is not None and not pending[1]:
            raise pending[0]
        sent = {k: v for k, v in trade.items() if v is not None}
        response = paper_trade(self.paper.book, sent, sent.get("clientId") or f"srv{next(_ids)}")
        if pending is not None:  # executed, then the answer was lost
            raise pending[0]
        from metaapi_cloud_sdk.clients.metaapi.trade_exception import TradeException

        if response["stringCode"] not in (
            "ERR_NO_ERROR",
            "TRADE_RETCODE_PLACED",
            "TRADE_RETCODE_DONE",
            "TRADE_RETCODE_DONE_PARTIAL",
            "TRADE_RETCODE_NO_CHANGES",
        ):  # what the SDK does with a failure code
            raise TradeException(
                response["message"], response["numericCode"], response["stringCode"]
            )
        return response


class FakeAccount:
    def __init__(self, conn: FakeRpcConnection, state: str = "DEPLOYED") -> None:
        self.state = state
        self.id = ACCOUNT_ID
        self._conn = conn

    def get_rpc_connection(self) -> FakeRpcConnection:
        return self._conn


class FakeAccountApi:
    def __init__(self, account: FakeAccount) -> None:
        self.account = account
        self.error: BaseException | None = None

    async def get_account(self, account_id):
        if self.error is not None:
            raise self.error
        return self.account


class FakeApi:
    """Stands in for `MetaApi`: what the pool touches."""

    def __init__(self, conn: FakeRpcConnection) -> None:
        self.metatrader_account_api = FakeAccountApi(FakeAccount(conn))
        self.closed = False

    def close(self) -> None:
        self.closed = True


def stub_broker(
    broker: PaperBroker | None = None, **config: Any
) -> tuple[MetaApiBroker, FakeRpcConnection, FakeApi]:
    """A MetaApiBroker over a FakeRpcConnection; must be called inside the event loop."""
    conn = FakeRpcConnection(broker or paper())
    api = FakeApi(conn)
    cfg = MetaApiConfig(route_sdk_logs=False, shutdown_grace_s=0.0, **config)
    pool = MetaApiConnectionPool(cfg, api_factory=lambda token, opts: api)
    broker = MetaApiBroker(token=TOKEN, account_id=ACCOUNT_ID, pool=pool)
    broker._owns_pool = True  # so that broker.close() closes this private stub pool
    return broker, conn, api
