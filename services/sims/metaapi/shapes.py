"""The JSON shapes MetaApi sends for positions, orders, prices and the rest.

Field names and enum strings are MetaApi's (metaapi_cloud_sdk.metaapi.models:
MetatraderPosition, MetatraderOrder, MetatraderAccountInformation, ...). Times are
ISO-8601 UTC strings with milliseconds; the SDK turns every `*time*` key into a
datetime, except `brokerTime`, which stays the broker's "YYYY-MM-DD HH:MM:SS.mmm".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts.broker import AccountInfo, PendingOrder, Position, Quote, SymbolSpec

PLATFORM = "mt5"
SERVER = "Sigrelay-Sim"
HOST = "ps-mpa-sim-0"


def iso(ts: float | None) -> str:
    stamp = datetime.fromtimestamp(ts or 0.0, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def broker_time(ts: float | None) -> str:
    return iso(ts)[:23].replace("T", " ")


def parse_time(value: Any) -> float:
    """Seconds from an ISO-8601 string as the SDK sends it (`2026-12-02T07:00:00.000Z`)."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"time {value!r} is not an ISO-8601 string")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def position_dict(p: Position) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": p.position_id,
        "platform": PLATFORM,
        "type": "POSITION_TYPE_BUY" if p.side == "buy" else "POSITION_TYPE_SELL",
        "symbol": p.symbol,
        "magic": 0,
        "time": iso(p.open_time),
        "brokerTime": broker_time(p.open_time),
        "updateTime": iso(p.open_time),
        "openPrice": p.open_price,
        "currentPrice": p.current_price,
        "currentTickValue": None,
        "volume": p.volume,
        "profit": p.profit,
        "unrealizedProfit": p.profit,
        "realizedProfit": 0,
        "swap": 0,
        "commission": 0,
        "reason": "POSITION_REASON_EXPERT",
    }
    if p.client_id is not None:
        out["clientId"] = p.client_id
    if p.comment is not None:
        out["comment"] = p.comment
    if p.sl is not None:
        out["stopLoss"] = p.sl
    if p.tp is not None:
        out["takeProfit"] = p.tp
    return out


def order_dict(o: PendingOrder) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": o.order_id,
        "platform": PLATFORM,
        "type": f"ORDER_TYPE_{o.side.upper()}_{o.order_type.upper()}",
        "state": "ORDER_STATE_PLACED",
        "symbol": o.symbol,
        "magic": 0,
        "time": iso(o.open_time),
        "brokerTime": broker_time(o.open_time),
        "openPrice": o.price,
        "volume": o.volume,
        "currentVolume": o.volume,
        "reason": "ORDER_REASON_EXPERT",
        "fillingMode": "ORDER_FILLING_RETURN",
        "expirationType": "ORDER_TIME_GTC",
    }
    if o.client_id is not None:
        out["clientId"] = o.client_id
    if o.comment is not None:
        out["comment"] = o.comment
    if o.sl is not None:
        out["stopLoss"] = o.sl
    if o.tp is not None:
        out["takeProfit"] = o.tp
    return out


def account_information(info: AccountInfo, *, login: int, name: str) -> dict[str, Any]:
    return {
        "platform": PLATFORM,
        "type": "ACCOUNT_TRADE_MODE_DEMO",
        "broker": "Sigrelay Sim",
        "currency": info.currency,
        "server": SERVER,
        "balance": info.balance,
        "equity": info.equity,
        "margin": info.margin,
        "freeMargin": info.margin_free,
        "leverage": info.leverage,
        "marginLevel": round(info.equity / info.margin * 100, 2) if info.margin else None,
        "marginMode": "ACCOUNT_MARGIN_MODE_RETAIL_HEDGING",
        "tradeAllowed": True,
        "investorMode": False,
        "name": name,
        "login": login,
        "credit": 0,
    }


def specification(spec: SymbolSpec) -> dict[str, Any]:
    return {
        "symbol": spec.symbol,
        "digits": spec.digits,
        "point": spec.point,
        "pipSize": spec.pip_size,
        "tickSize": spec.point,
        "contractSize": spec.contract_size,
        "minVolume": spec.min_volume,
        "maxVolume": spec.max_volume,
        "volumeStep": spec.volume_step,
        "fillingModes": ["SYMBOL_FILLING_FOK", "SYMBOL_FILLING_IOC"],
        "executionMode": "SYMBOL_TRADE_EXECUTION_MARKET",
        "tradeMode": "SYMBOL_TRADE_MODE_FULL",
        "stopsLevel": 0,
        "freezeLevel": 0,
        "allowedOrderTypes": [
            "SYMBOL_ORDER_MARKET",
            "SYMBOL_ORDER_LIMIT",
            "SYMBOL_ORDER_STOP",
            "SYMBOL_ORDER_SL",
            "SYMBOL_ORDER_TP",
        ],
        "allowedExpirationModes": ["SYMBOL_EXPIRATION_GTC"],
    }


def price(quote: Quote, tick_value: float | None) -> dict[str, Any]:
    return {
        "symbol": quote.symbol,
        "bid": quote.bid,
        "ask": quote.ask,
        "time": iso(quote.time),
        "brokerTime": broker_time(quote.time),
        "profitTickValue": tick_value,
        "lossTickValue": tick_value,
    }
