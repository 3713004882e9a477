"""The websocket: MetaApi's RPC protocol on a python-socketio 4.x server (Engine.IO 3).

The SDK (python-socketio 4.6 client) connects to `<url>/ws` with the query
`auth-token=<token>&clientId=...&protocol=3`, emits `request` events
`{type, accountId, requestId, application, instanceIndex?, ...}` and waits for a
`response` `{type: 'response', accountId, requestId, ...payload}` or a
`processingError` `{requestId, error: '<Name>Error', message, ...}`. A
`subscribe` is also answered with a `synchronization` packet of type
`authenticated` (that is what makes the SDK's instance connected), and every
subscribed instance gets a `status` packet every `status_interval_s`, because the
SDK declares an instance disconnected after 60 s without one.

Emits go through `_emit_internal`: `AsyncServer.emit()` hands bare coroutines to
`asyncio.wait`, which Python 3.11 refuses (sdk-notes A1/A13).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qs

import socketio

from . import shapes
from .accounts import Invalid, NotFound, SimAccounts
from .faults import Faults
from .ledger import Ledger, public

log = logging.getLogger(__name__)

# request types answered with nothing but the envelope
_EMPTY = frozenset(
    {
        "subscribe",
        "unsubscribe",
        "waitSynchronized",
        "removeApplication",
        "subscribeToMarketData",
        "unsubscribeFromMarketData",
        "refreshMarketDataSubscriptions",
        "saveUptime",
        "refreshTerminalState",
        "refreshSymbolQuotes",
    }
)


class Gateway:
    """The socket.io server and what it knows about each connection."""

    def __init__(
        self, accounts: SimAccounts, faults: Faults, *, status_interval_s: float = 20.0
    ) -> None:
        self.accounts = accounts
        self.faults = faults
        self.status_interval_s = status_interval_s
        self.sio = socketio.AsyncServer(async_mode="aiohttp")
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("request", self._on_request)
        self.requests: list[dict[str, Any]] = []  # every request received, for tests
        self.unhandled: list[str] = []
        self._tokens: dict[str, str] = {}  # sid -> token
        self._subscribed: dict[str, set[tuple[str, int]]] = {}  # sid -> (account, instance)
        self._subscriptions = 0
        self._changed = asyncio.Condition()
        self._status_task: asyncio.Task[None] | None = None

    # ---- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._status_task = asyncio.create_task(self._status_loop())

    async def stop(self) -> None:
        if self._status_task is not None:
            self._status_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._status_task
            self._status_task = None

    @property
    def connections(self) -> int:
        return len(self._tokens)

    @property
    def subscriptions(self) -> int:
        """How many `subscribe` handshakes have completed since the start."""
        return self._subscriptions

    async def wait_connections(self, count: int) -> None:
        """Until at least `count` websockets are connected (the SDK opens one per instance
        index; tests await its reconnect). A reconnected socket answers RPC at once; the
        SDK subscribes again later, after a random pause of up to 5 s."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self._tokens) >= count)

    async def drop_all(self, refuse_s: float = 0.0) -> int:
        """Disconnect every websocket; refuse new ones for `refuse_s` seconds."""
        if refuse_s > 0:
            self.faults.refuse(refuse_s)
        sids = list(self._tokens)
        for sid in sids:
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid)
        return len(sids)

    # ---- socket.io events -----------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any]) -> bool:
        if self.faults.refusing():
            return False
        query = parse_qs(environ.get("QUERY_STRING", ""))
        async with self._changed:
            self._tokens[sid] = query.get("auth-token", [""])[0]
            self._subscribed[sid] = set()
            self._changed.notify_all()
        return True

    async def _on_disconnect(self, sid: str) -> None:
        self._tokens.pop(sid, None)
        self._subscribed.pop(sid, None)

    async def _emit(self, sid: str, event: str, data: dict[str, Any]) -> None:
        await self.sio._emit_internal(sid, event, data, "/", None)

    async def _error(self, sid: str, request_id: Any, error: dict[str, Any]) -> None:
        await self._emit(sid, "processingError", {"requestId": request_id, **error})

    async def _on_request(self, sid: str, data: dict[str, Any]) -> None:
        self.requests.append(data)
        kind = data.get("type", "")
        request_id = data.get("requestId")
        account_id = str(data.get("accountId"))
        token = self._tokens.get(sid, "")
        if not token or token.startswith("bad"):
            await self._error(
                sid,
                request_id,
                {"error": "UnauthorizedError", "message": "Invalid auth-token: not authorized"},
            )
            return
        throttled = self.faults.too_many_requests(kind)
        if throttled is not None:
            await self._error(sid, request_id, throttled)
            return
        fault = self.faults.take(kind)
        if fault is not None:
            if not fault.get("drop"):
                await self._error(sid, request_id, fault)
                return
            if fault.get("execute") and kind == "trade":
                with contextlib.suppress(Exception):
                    self.accounts.trade(account_id, data["trade"])
            if fault.get("disconnect_s") is not None:
                await self.drop_all(fault["disconnect_s"])
            return
        if self.accounts.get(account_id).state != "DEPLOYED":
            await self._error(
                sid,
                request_id,
                {
                    "error": "NotAuthenticatedError",
                    "message": f"Account {account_id} is not deployed",
                },
            )
            return
        try:
            payload = self._answer(kind, account_id, data)
        except NotFound as err:
            await self._error(sid, request_id, {"error": "NotFoundError", "message": str(err)})
            return
        except Invalid as err:
            await self._error(
                sid,
                request_id,
                {"error": "ValidationError", "message": str(err), "details": err.details},
            )
            return
        except (KeyError, ValueError, TypeError) as err:
            await self._error(
                sid,
                request_id,
                {
                    "error": "ValidationError",
                    "message": f"Validation failed for {kind}: {err!r}",
                    "details": [],
                },
            )
            return
        envelope = {"type": "response", "accountId": data.get("accountId"), "requestId": request_id}
        await self._emit(sid, "response", {**envelope, **payload})
        if kind == "subscribe":
            instance = int(data.get("instanceIndex") or 0)
            await self._emit(
                sid,
                "synchronization",
                {
                    "type": "authenticated",
                    "accountId": data.get("accountId"),
                    "instanceIndex": instance,
                    "host": shapes.HOST,
                    "replicas": 1,
                    "sessionId": data.get("sessionId"),
                },
            )
            if sid in self._subscribed:
                self._subscribed[sid].add((account_id, instance))
            self._subscriptions += 1

    def _answer(self, kind: str, account_id: str, data: dict[str, Any]) -> dict[str, Any]:
        accts = self.accounts
        if kind in _EMPTY:
            return {}
        if kind == "trade":
            return {"response": accts.trade(account_id, data["trade"])}
        if kind == "getAccountInformation":
            return {"accountInformation": accts.account_information(account_id)}
        if kind == "getPositions":
            return {"positions": accts.positions(account_id)}
        if kind == "getPosition":
            return {"position": accts.position(account_id, str(data["positionId"]))}
        if kind == "getOrders":
            return {"orders": accts.orders(account_id)}
        if kind == "getOrder":
            return {"order": accts.order(account_id, str(data["orderId"]))}
        if kind == "getSymbolSpecification":
            return {"specification": accts.specification(account_id, data["symbol"])}
        if kind == "getSymbolPrice":
            return {"price": accts.price(account_id, data["symbol"])}
        if kind == "getSymbols":
            return {"symbols": sorted(accts.exchange.table)}
        if kind == "getServerTime":
            now = accts.exchange.now
            return {"serverTime": {"time": shapes.iso(now), "brokerTime": shapes.broker_time(now)}}
        if kind.startswith(("getHistoryOrdersBy", "getDealsBy")):
            return self._history(kind, accts.get(account_id).ledger, data)
        self.unhandled.append(kind)
        raise Invalid(f"Request type {kind} is not supported by the stand-in", [])

    @staticmethod
    def _history(kind: str, ledger: Ledger, data: dict[str, Any]) -> dict[str, Any]:
        deals = kind.startswith("getDealsBy")
        items = ledger.deals if deals else ledger.history_orders
        if kind.endswith("ByTicket"):
            chosen = [
                i for i in items if str(i.get("orderId" if deals else "id")) == str(data["ticket"])
            ]
        elif kind.endswith("ByPosition"):
            chosen = [i for i in items if str(i.get("positionId")) == str(data["positionId"])]
        elif kind.endswith("ByTimeRange"):
            chosen = Ledger.in_range(
                items,
                shapes.parse_time(data["startTime"]),
                shapes.parse_time(data["endTime"]),
                int(data.get("offset") or 0),
                int(data.get("limit") or 1000),
            )
        else:
            raise Invalid(f"Request type {kind} is not supported by the stand-in", [])
        return {"deals" if deals else "historyOrders": public(chosen), "synchronizing": False}

    # ---- status packets -------------------------------------------------------------

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval_s)
            for sid, subscribed in list(self._subscribed.items()):
                for account_id, instance in list(subscribed):
                    with contextlib.suppress(Exception):
                        await self._emit(
                            sid,
                            "synchronization",
                            {
                                "type": "status",
                                "connected": True,
                                "authenticated": True,
                                "accountId": account_id,
                                "instanceIndex": instance,
                                "host": shapes.HOST,
                            },
                        )
