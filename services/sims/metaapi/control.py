"""The stand-in's own control endpoints: plain JSON over HTTP under `/_sim/`.

| route | body | answer |
| --- | --- | --- |
| `POST /_sim/price` | `{symbol, bid, ask?}` (ask: bid + the symbol's spread) | `{symbol, bid, ask, accounts}`: accounts in which it fired something |
| `POST /_sim/disconnect` | `{seconds?}` | `{dropped, refused_until}`: every websocket dropped, new ones refused for `seconds` |
| `POST /_sim/throttle` | `{seconds}` | `{until}`: requests answered 429 until then |
| `POST /_sim/fail` | `{type, error, message, ...}` | `{}`: the next request of `type` is answered with that processingError |
| `GET /_sim/state` | | quotes, accounts (balance, positions, orders), connections, subscriptions |

Errors are `{"error": "..."}` with status 400, naming the field and the value.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from .accounts import SimAccounts
from .faults import Faults
from .rpc import Gateway


class _BadRequest(Exception):
    pass


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest(f"the body must be a JSON object, not {body!r}")
    return body


def _seconds(body: dict[str, Any], *, required: bool) -> float:
    value = body.get("seconds")
    if value is None and not required:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadRequest(f"seconds must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise _BadRequest(f"seconds must be zero or more, not {value!r}")
    return float(value)


def _price(body: dict[str, Any], key: str, *, required: bool) -> float | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadRequest(f"{key} must be a number, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise _BadRequest(f"{key} must be a positive price, not {value!r}")
    return float(value)


def routes(accounts: SimAccounts, faults: Faults, gateway: Gateway) -> list[web.RouteDef]:
    def handler(fn: Any) -> Any:
        async def handle(request: web.Request) -> web.Response:
            try:
                return web.json_response(await fn(request))
            except (_BadRequest, ValueError) as exc:
                return web.json_response({"error": str(exc)}, status=400)

        return handle

    async def price(request: web.Request) -> dict[str, Any]:
        body = await _body(request)
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise _BadRequest(f"symbol must be a symbol name, not {symbol!r}")
        bid = _price(body, "bid", required=True)
        ask = _price(body, "ask", required=False)
        assert bid is not None
        if ask is not None and ask < bid:
            raise _BadRequest(f"ask {ask} of {symbol} is below its bid {bid}")
        acted = accounts.set_price(symbol, bid, ask)
        quote = accounts.exchange.quotes[symbol]
        return {"symbol": symbol, "bid": quote.bid, "ask": quote.ask, "accounts": acted}

    async def disconnect(request: web.Request) -> dict[str, Any]:
        seconds = _seconds(await _body(request), required=False)
        dropped = await gateway.drop_all(seconds)
        return {"dropped": dropped, "refused_until": faults.refused_until}

    async def throttle(request: web.Request) -> dict[str, Any]:
        seconds = _seconds(await _body(request), required=True)
        return {"until": faults.throttle(seconds)}

    async def fail(request: web.Request) -> dict[str, Any]:
        body = await _body(request)
        kind, error, message = (
            body.pop("type", None),
            body.pop("error", None),
            body.pop("message", ""),
        )
        if not isinstance(kind, str) or not isinstance(error, str):
            raise _BadRequest(f"type and error must be strings, found {kind!r} and {error!r}")
        faults.fail_next(kind, error=error, message=str(message), **body)
        return {}

    async def state(request: web.Request) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for account_id, acct in accounts.accounts.items():
            info = accounts.account_information(account_id)
            out[account_id] = {
                "state": acct.state,
                "balance": info["balance"],
                "equity": info["equity"],
                "positions": accounts.positions(account_id),
                "orders": accounts.orders(account_id),
            }
        return {
            "quotes": accounts.quotes(),
            "accounts": out,
            "connections": gateway.connections,
            "subscriptions": gateway.subscriptions,
            "throttled_until": faults.throttled_until,
            "refused_until": faults.refused_until,
        }

    return [
        web.post("/_sim/price", handler(price)),
        web.post("/_sim/disconnect", handler(disconnect)),
        web.post("/_sim/throttle", handler(throttle)),
        web.post("/_sim/fail", handler(fail)),
        web.get("/_sim/state", handler(state)),
    ]
