"""Stub factories for the risk tests (unit and integration): intents, reports,
quotes, user events and views, each with sensible defaults to override."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from contracts.orders import ExecutionReport, OrderIntent, Quote
from contracts.settings import RiskLimits, TradingHours, UserSettings
from contracts.users import AccountLinked, Paused, Resumed, SettingsChanged, Stopped, UserRegistered
from services.risk.checks import RiskView
from services.risk.events import KillSwitchSet, ReportApplied, RiskDecided
from services.risk.projection import MarketState, UserExposure, evolve

USER = "u1"
ACCOUNT = "acc-1"
SECOND = 1_000_000_000
NOW = 1_767_780_000 * SECOND  # Wednesday 2026-01-07 10:00 UTC

_ids = itertools.count(1)


def at(text: str, zone: str = "UTC") -> int:
    """Unix ns of a local wall-clock time, e.g. at("2026-03-09 09:45", "America/New_York")."""
    local = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))
    return int(local.timestamp()) * SECOND


def intent(**changes: Any) -> OrderIntent:
    n = next(_ids)
    fields: dict[str, Any] = {
        "id": f"msg-{n}",
        "ts": NOW,
        "intent_id": f"i-{n}",
        "user_id": USER,
        "account_id": ACCOUNT,
        "broker": "paper",
        "action": "open",
        "signal_id": f"gold:{n}",
        "symbol": "XAUUSD",
        "signal_symbol": "XAUUSD",
        "side": "buy",
        "volume": 0.1,
        "price": 2650.0,
        "sl": 2640.0,
        "tp": 2670.0,
    }
    fields.update(changes)
    return OrderIntent(**fields)


def close(target: OrderIntent, **changes: Any) -> OrderIntent:
    return intent(
        action="close", target_intent_id=target.intent_id, side=target.side, volume=0.0, **changes
    )


def modify(target: OrderIntent, sl: float | None, **changes: Any) -> OrderIntent:
    return intent(
        action="modify", target_intent_id=target.intent_id, side=None, volume=0.0, sl=sl, **changes
    )


def report(of: OrderIntent, status: str, **changes: Any) -> ExecutionReport:
    n = next(_ids)
    fields: dict[str, Any] = {
        "id": f"rep-{n}",
        "ts": NOW,
        "intent_id": of.intent_id,
        "user_id": of.user_id,
        "account_id": of.account_id,
        "signal_id": of.signal_id,
        "action": of.action,
        "status": status,
        "symbol": of.symbol,
        "side": of.side,
        "reported_ns": NOW,
    }
    fields.update(changes)
    return ExecutionReport(**fields)


def quote(
    symbol: str = "XAUUSD", bid: float = 2650.0, spread_pips: float = 2.0, **changes: Any
) -> Quote:
    pip = changes.pop("pip_size", 0.1)
    fields: dict[str, Any] = {
        "id": f"q-{next(_ids)}",
        "ts": NOW,
        "symbol": symbol,
        "bid": bid,
        "ask": bid + spread_pips * pip,
        "pip_size": pip,
        "pip_value_per_lot": 1.0,
    }
    fields.update(changes)
    return Quote(**fields)


def limits(**changes: Any) -> RiskLimits:
    return RiskLimits(**changes)


def hours(**changes: Any) -> TradingHours:
    return TradingHours(**changes)


def _env(n: int | None = None) -> dict[str, Any]:
    return {"id": f"ev-{next(_ids) if n is None else n}", "ts": NOW}


def registered(user_id: str = USER) -> UserRegistered:
    return UserRegistered(**_env(), user_id=user_id)


def linked(account_id: str = ACCOUNT) -> AccountLinked:
    return AccountLinked(**_env(), account_id=account_id, broker="paper")


def settings_changed(**risk: Any) -> SettingsChanged:
    return SettingsChanged(**_env(), settings=UserSettings(risk=RiskLimits(**risk)))


def paused(reason: str = "") -> Paused:
    return Paused(**_env(), reason=reason)


def stopped(reason: str = "") -> Stopped:
    return Stopped(**_env(), reason=reason)


def resumed() -> Resumed:
    return Resumed(**_env())


def kill(on: bool = True, reason: str = "test", user_id: str | None = USER) -> KillSwitchSet:
    return KillSwitchSet(**_env(), on=on, reason=reason, user_id=user_id)


def decided(
    verdict_intent: OrderIntent, approved: bool = True, decided_ns: int = NOW
) -> RiskDecided:
    from contracts.orders import RiskVerdict

    verdict = RiskVerdict(
        id=f"v-{verdict_intent.intent_id}",
        ts=decided_ns,
        intent=verdict_intent,
        approved=approved,
        code="" if approved else "max_lot",
        decided_ns=decided_ns,
    )
    return RiskDecided(**_env(), verdict=verdict)


def applied(rep: ExecutionReport) -> ReportApplied:
    return ReportApplied(**_env(), report=rep)


def user(*events: Any, **risk: Any) -> UserExposure:
    """An active user with a linked account, risk limits `risk`, then `events` folded."""
    state = UserExposure(user_id=USER)
    for event in (registered(), linked(), settings_changed(**risk), *events):
        state = evolve(state, event)
    return state


def view(
    state: UserExposure | None = None,
    now_ns: int = NOW,
    market: MarketState | None = None,
    **kw: Any,
) -> RiskView:
    return RiskView(
        user=user() if state is None else state,
        now_ns=now_ns,
        market=market or MarketState(),
        **kw,
    )


def market(*quotes: Quote, kill_switch: bool = False, reason: str = "") -> MarketState:
    return MarketState(
        kill_switch=kill_switch, kill_reason=reason, quotes={q.symbol: q for q in quotes}
    )


def replace(obj: Any, **changes: Any) -> Any:
    return msgspec.structs.replace(obj, **changes)
