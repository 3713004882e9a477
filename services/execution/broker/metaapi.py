"""`MetaApiBroker`: the broker port on a real MT5 account through metaapi-cloud-sdk.

One broker per account; connections come from a `MetaApiConnectionPool` shared
across accounts. Every SDK exception is turned into a port outcome
(`metaapi_errors.map_sdk_error`).

Idempotency: MetaApi does not deduplicate client ids, so the broker does. A
client id placed by this process returns its first result. After an
`OutcomeUnknown` the next `place_order` with that client id looks it up at the
broker first (`find_by_client_id`) and only sends when nothing is found. After
a process restart the caller must reconcile with `find_by_client_id` itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from contracts import broker_codes as codes
from contracts.broker import (
    MAX_CLIENT_ID_PLUS_COMMENT,
    AccountInfo,
    AuthFailed,
    BrokerError,
    BrokerOrderResult,
    NotConnected,
    OrderRequest,
    OrderStatus,
    OrderType,
    OutcomeUnknown,
    PendingOrder,
    Position,
    Quote,
    Rejected,
    Side,
    SymbolSpec,
    found_as_result,
)

from .metaapi_errors import map_sdk_error, redact
from .metaapi_pool import MetaApiConfig, MetaApiConnectionPool, cancel_sdk_tasks, fingerprint

__all__ = [
    "MetaApiBroker",
    "MetaApiConfig",
    "MetaApiConnectionPool",
    "cancel_sdk_tasks",
]

T = TypeVar("T")

_ORDER_TYPES: dict[str, tuple[Side, OrderType]] = {
    "ORDER_TYPE_BUY_LIMIT": ("buy", "limit"),
    "ORDER_TYPE_SELL_LIMIT": ("sell", "limit"),
    "ORDER_TYPE_BUY_STOP": ("buy", "stop"),
    "ORDER_TYPE_SELL_STOP": ("sell", "stop"),
    "ORDER_TYPE_BUY_STOP_LIMIT": ("buy", "stop"),
    "ORDER_TYPE_SELL_STOP_LIMIT": ("sell", "stop"),
}


class _Secret:
    """Holds the token; prints as '<secret>'."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


def _id(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _ts(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def position_from_sdk(p: dict[str, Any]) -> Position:
    """A port `Position` from a MetaApi position dict."""
    return Position(
        position_id=str(p["id"]),
        client_id=p.get("clientId"),
        symbol=p["symbol"],
        side="buy" if p.get("type") == "POSITION_TYPE_BUY" else "sell",
        volume=float(p["volume"]),
        open_price=float(p["openPrice"]),
        sl=_opt_float(p.get("stopLoss")) or None,
        tp=_opt_float(p.get("takeProfit")) or None,
        current_price=_opt_float(p.get("currentPrice")),
        profit=float(p.get("profit") or 0.0),
        comment=p.get("comment"),
        open_time=_ts(p.get("time")),
    )


def order_from_sdk(o: dict[str, Any]) -> PendingOrder | None:
    """A port `PendingOrder` from a MetaApi order dict (None for non-pending types)."""
    kind = _ORDER_TYPES.get(o.get("type", ""))
    if kind is None:
        return None
    return PendingOrder(
        order_id=str(o["id"]),
        client_id=o.get("clientId"),
        symbol=o["symbol"],
        side=kind[0],
        order_type=kind[1],
        volume=float(o.get("currentVolume") or o["volume"]),
        price=float(o["openPrice"]),
        sl=_opt_float(o.get("stopLoss")) or None,
        tp=_opt_float(o.get("takeProfit")) or None,
        comment=o.get("comment"),
        open_time=_ts(o.get("time")),
    )


def result_from_sdk(
    resp: dict[str, Any], status: OrderStatus, client_id: str | None = None
) -> BrokerOrderResult:
    """A port result from a successful MetaApi trade response."""
    entry = codes.lookup(resp.get("numericCode"), resp.get("stringCode"))
    return BrokerOrderResult(
        status=status,
        client_id=client_id,
        order_id=_id(resp.get("orderId")),
        position_id=_id(resp.get("positionId")),
        broker_code=entry.numeric,
        broker_code_name=resp.get("stringCode") or entry.name,
        reason=entry.reason,
    )


class MetaApiBroker:
    """One MT account through MetaApi, implementing the `Broker` port.

    Build it inside the running event loop. Without `pool` it makes (and on
    `close()` shuts down) a private one; with a shared pool, `close()` leaves the
    account's connection to the pool (LRU cap and idle timeout, or
    `pool.discard(token, account_id)` when the account is unlinked).
    """

    def __init__(
        self,
        *,
        token: str,
        account_id: str,
        pool: MetaApiConnectionPool | None = None,
        config: MetaApiConfig | None = None,
    ) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "MetaApiBroker must be constructed inside a running event loop"
            ) from None
        if not token:
            raise ValueError(f"MetaApi token for account {account_id} is empty")
        self._token = _Secret(token)
        self.account_id = account_id
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else MetaApiConnectionPool(config)
        self.config = self._pool.config if config is None else config
        self._placed: OrderedDict[str, BrokerOrderResult] = OrderedDict()
        self._unsure: set[str] = set()
        self._specs: dict[str, tuple[float, SymbolSpec]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"MetaApiBroker(account_id={self.account_id!r},"
            f" token={fingerprint(self._token.value)}…)"
        )

    # ---- trading --------------------------------------------------------------------

    async def place_order(self, req: OrderRequest) -> BrokerOrderResult:
        prior = self._placed.get(req.client_id)
        if prior is not None:
            return msgspec.structs.replace(prior, duplicate=True)
        if self.config.reconcile_before_send or req.client_id in self._unsure:
            found = await self.find_by_client_id(req.client_id)
            if found is not None:
                result = found_as_result(found, duplicate=True)
                self._remember(req.client_id, msgspec.structs.replace(result, duplicate=False))
                self._unsure.discard(req.client_id)
                return result
        options: dict[str, Any] = {"clientId": req.client_id}
        if req.comment:
            options["comment"] = req.comment
        if len(req.client_id) + len(req.comment or "") > MAX_CLIENT_ID_PLUS_COMMENT:
            raise Rejected(
                f"client id {req.client_id!r} plus comment {req.comment!r} exceed"
                f" {MAX_CLIENT_ID_PLUS_COMMENT} characters"
            )
        volume = float(req.volume)
        sl, tp = _opt_float(req.sl), _opt_float(req.tp)
        buy = req.side == "buy"

        def send(conn: Any) -> Awaitable[dict[str, Any]]:
            if req.order_type == "market":
                create = conn.create_market_buy_order if buy else conn.create_market_sell_order
                return create(req.symbol, volume, sl, tp, options)
            if req.order_type == "limit":
                create = conn.create_limit_buy_order if buy else conn.create_limit_sell_order
            else:
                create = conn.create_stop_buy_order if buy else conn.create_stop_sell_order
            return create(req.symbol, volume, float(req.price or 0.0), sl, tp, options)

        op = f"place {req.side} {req.order_type} {req.client_id} on {req.symbol}"
        try:
            resp = await self._call(op, send, trade=True)
        except OutcomeUnknown:
            self._unsure.add(req.client_id)
            raise
        self._unsure.discard(req.client_id)
        status: OrderStatus = "filled" if req.order_type == "market" else "accepted"
        result = result_from_sdk(resp, status, req.client_id)
        result = msgspec.structs.replace(result, volume=volume)
        if status == "filled" and result.position_id and self.config.fetch_fill_price:
            result = await self._with_fill_price(result)
        self._remember(req.client_id, result)
        return result

    async def modify_position(
        self, position_id: str, sl: float | None, tp: float | None
    ) -> BrokerOrderResult:
        if sl is None or tp is None:  # keep the current level rather than rely on omission
            current = await self._call(
                f"read position {position_id}", lambda c: c.get_position(position_id)
            )
            sl = sl if sl is not None else _opt_float(current.get("stopLoss"))
            tp = tp if tp is not None else _opt_float(current.get("takeProfit"))
        resp = await self._call(
            f"modify position {position_id}",
            lambda c: c.modify_position(position_id, _opt_float(sl), _opt_float(tp)),
            trade=True,
        )
        result = result_from_sdk(resp, "accepted")
        return msgspec.structs.replace(result, position_id=result.position_id or position_id)

    async def close_position(
        self, position_id: str, volume: float | None = None
    ) -> BrokerOrderResult:
        if volume is None:
            resp = await self._call(
                f"close position {position_id}",
                lambda c: c.close_position(position_id),
                trade=True,
            )
        else:
            resp = await self._call(
                f"close {volume} lots of position {position_id}",
                lambda c: c.close_position_partially(position_id, float(volume)),
                trade=True,
            )
        result = result_from_sdk(resp, "filled")
        return msgspec.structs.replace(
            result, position_id=result.position_id or position_id, volume=volume
        )

    async def cancel_order(self, order_id: str) -> BrokerOrderResult:
        resp = await self._call(
            f"cancel order {order_id}", lambda c: c.cancel_order(order_id), trade=True
        )
        result = result_from_sdk(resp, "accepted")
        return msgspec.structs.replace(result, order_id=result.order_id or order_id)

    async def modify_order(
        self, order_id: str, price: float, sl: float | None = None, tp: float | None = None
    ) -> BrokerOrderResult:
        if sl is None or tp is None:
            current = await self._call(f"read order {order_id}", lambda c: c.get_order(order_id))
            sl = sl if sl is not None else _opt_float(current.get("stopLoss"))
            tp = tp if tp is not None else _opt_float(current.get("takeProfit"))
        resp = await self._call(
            f"modify order {order_id}",
            lambda c: c.modify_order(order_id, float(price), _opt_float(sl), _opt_float(tp)),
            trade=True,
        )
        result = result_from_sdk(resp, "accepted")
        return msgspec.structs.replace(result, order_id=result.order_id or order_id)

    # ---- reading --------------------------------------------------------------------

    async def positions(self) -> list[Position]:
        raw = await self._call("read positions", lambda c: c.get_positions())
        return [position_from_sdk(p) for p in raw]

    async def orders(self) -> list[PendingOrder]:
        raw = await self._call("read orders", lambda c: c.get_orders())
        return [o for o in (order_from_sdk(x) for x in raw) if o is not None]

    async def find_by_client_id(self, client_id: str) -> Position | PendingOrder | None:
        for position in await self.positions():
            if position.client_id == client_id:
                return position
        for order in await self.orders():
            if order.client_id == client_id:
                return order
        return None

    async def account_info(self) -> AccountInfo:
        info = await self._call("read account information", lambda c: c.get_account_information())
        return AccountInfo(
            balance=float(info["balance"]),
            equity=float(info["equity"]),
            currency=str(info.get("currency", "")),
            margin_free=float(info.get("freeMargin", 0.0)),
            margin=float(info.get("margin", 0.0)),
            leverage=_opt_float(info.get("leverage")),
        )

    async def symbol_spec(self, symbol: str) -> SymbolSpec:
        cached = self._specs.get(symbol)
        if cached is not None and time.monotonic() - cached[0] < self.config.spec_cache_s:
            return cached[1]
        raw = await self._call(
            f"read specification of {symbol}", lambda c: c.get_symbol_specification(symbol)
        )
        try:
            price = await self._call(
                f"read price of {symbol}", lambda c: c.get_symbol_price(symbol)
            )
            tick_value = _opt_float(price.get("profitTickValue"))
        except BrokerError:
            tick_value = None
        digits = int(raw["digits"])
        point = float(raw.get("point") or 10.0**-digits)
        pip = raw.get("pipSize")
        spec = SymbolSpec(
            symbol=raw.get("symbol", symbol),
            digits=digits,
            point=point,
            pip_size=float(pip) if pip else (point * 10 if digits in (3, 5) else point),
            contract_size=float(raw.get("contractSize") or 1.0),
            min_volume=float(raw["minVolume"]),
            max_volume=float(raw["maxVolume"]),
            volume_step=float(raw["volumeStep"]),
            tick_value=tick_value,
        )
        self._specs[symbol] = (time.monotonic(), spec)
        return spec

    async def quote(self, symbol: str) -> Quote:
        price = await self._call(f"read price of {symbol}", lambda c: c.get_symbol_price(symbol))
        return Quote(
            symbol=price.get("symbol", symbol),
            bid=float(price["bid"]),
            ask=float(price["ask"]),
            time=_ts(price.get("time")) or time.time(),
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_pool:
            await self._pool.close()
        # with a shared pool the connection stays for the pool's LRU and idle timeout to
        # reclaim: reopening one costs seconds of resynchronization

    # ---- internals ------------------------------------------------------------------

    async def _call(self, op: str, fn: Callable[[Any], Awaitable[T]], *, trade: bool = False) -> T:
        if self._closed:
            raise NotConnected(f"MetaApiBroker for account {self.account_id} is closed")
        token = self._token.value
        try:
            async with self._pool.connection(token, self.account_id) as conn:
                return await fn(conn)
        except BrokerError:
            raise
        except Exception as err:
            mapped = map_sdk_error(err, op=op, trade=trade, secret=token)
            if isinstance(mapped, AuthFailed):
                await self._pool.discard(token, self.account_id, drop_api=True)
            elif isinstance(mapped, NotConnected | OutcomeUnknown) and "closed" in str(err):
                await self._pool.discard(token, self.account_id)
            leaked = redact(str(err), token) != str(err)
            raise mapped from (None if leaked else err)

    async def _with_fill_price(self, result: BrokerOrderResult) -> BrokerOrderResult:
        position_id = result.position_id or ""
        try:
            pos = await self._call(
                f"read position {position_id}", lambda c: c.get_position(position_id)
            )
        except BrokerError:
            return result  # the fill is certain; its price is a nicety
        return msgspec.structs.replace(
            result,
            fill_price=_opt_float(pos.get("openPrice")),
            volume=_opt_float(pos.get("volume")),
        )

    def _remember(self, client_id: str, result: BrokerOrderResult) -> None:
        self._placed[client_id] = result
        while len(self._placed) > self.config.placed_cache_size:
            self._placed.popitem(last=False)
