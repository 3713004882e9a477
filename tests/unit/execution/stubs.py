"""Stub factories for the execution unit tests (one place, per STYLE.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from contracts.broker import NotConnected, OutcomeUnknown
from contracts.orders import OrderIntent
from services.execution.events import OrderSubmitting
from services.execution.ids import client_id_for


def intent(intent_id: str = "sig1:u1:1:open", **kw: Any) -> OrderIntent:
    fields: dict[str, Any] = {
        "id": "i1",
        "ts": 1,
        "correlation_id": "sig1",
        "user_id": "u1",
        "account_id": "paper-u1",
        "broker": "paper",
        "action": "open",
        "signal_id": "sig1",
        "symbol": "XAUUSD",
        "side": "buy",
        "volume": 0.1,
        "sl": 1900.0,
        "tp": 2100.0,
    }
    fields.update(kw)
    return OrderIntent(intent_id=intent_id, **fields)


def submitting(order: OrderIntent | None = None, **kw: Any) -> OrderSubmitting:
    order = order or intent()
    return OrderSubmitting(
        id="s1",
        ts=10,
        intent=order,
        client_id=client_id_for(order.intent_id),
        verdict_id="v1",
        **kw,
    )


class ScriptedBroker:
    """A `PaperBroker` whose next calls raise scripted errors, optionally after executing.

    `script("place_order", RetryLater(...))` makes the next place_order raise;
    with `execute=True` the call is carried out first (an answer lost on the way).
    """

    def __init__(self) -> None:
        from services.paper.broker import PaperBroker

        self.paper = PaperBroker()
        self.calls: list[str] = []
        self._script: dict[str, list[tuple[Exception, bool]]] = {}

    def script(self, method: str, exc: Exception, *, execute: bool = False) -> None:
        self._script.setdefault(method, []).append((exc, execute))

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.paper, name)

        async def call(*args: Any, **kw: Any) -> Any:
            self.calls.append(name)
            queued = self._script.get(name)
            if queued:
                exc, execute = queued.pop(0)
                if execute:
                    await target(*args, **kw)
                raise exc
            return await target(*args, **kw)

        return call


class SwitchedBroker:
    """A `PaperBroker` behind a switch, for an account whose terminal goes away:
    `"up"` serves calls, `"down"` raises `NotConnected`, `"hang"` keeps calls waiting
    until the switch moves. `lose_next_answer(method, then)`: the next such call is
    carried out, its answer lost (`OutcomeUnknown`), and the switch moves to `then`.
    Every call is recorded as (method, mode, args)."""

    def __init__(self, account_id: str, mode: str = "up") -> None:
        from services.paper.broker import PaperBroker

        self.account_id = account_id
        self.paper = PaperBroker()
        self.mode = mode
        self.calls: list[tuple[str, str, tuple[Any, ...]]] = []
        self._moved = asyncio.Event()
        self._lose: dict[str, str] = {}

    def lose_next_answer(self, method: str, then: str) -> None:
        self._lose[method] = then

    def switch(self, mode: str) -> None:
        self.mode = mode
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.paper, name)

        async def call(*args: Any, **kw: Any) -> Any:
            self.calls.append((name, self.mode, args))
            while self.mode == "hang":
                await self._moved.wait()
            if self.mode == "down":
                raise NotConnected(f"the terminal of account {self.account_id} is not connected")
            result = await target(*args, **kw)
            then = self._lose.pop(name, None)
            if then is not None:
                self.switch(then)
                raise OutcomeUnknown(f"the answer of {name} on {self.account_id} was lost")
            return result

        return call


class StubDirectory:
    """A `BrokerDirectory` handing out the given broker of each account."""

    def __init__(self, brokers: dict[str, Any]) -> None:
        self.brokers = brokers

    async def broker_for(self, account_id: str, user_id: str) -> Any:
        return self.brokers[account_id]

    async def close(self) -> None:
        pass
