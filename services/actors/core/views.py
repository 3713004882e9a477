"""Read views for the `status`, `positions` and `settings` verbs: plain dicts, no secrets.

No token material ever leaves through a view: an account shows whether a
token is held and under which key version, nothing more.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .state import Leg, UserState, day_of


def status_view(state: UserState, now_ns: int | None = None) -> dict[str, Any]:
    """The user at a glance. With `now_ns`, today's figures read zero on a new day."""
    account = state.account
    today = state.today
    same_day = now_ns is None or day_of(now_ns) == today.day
    live = state.live_legs()
    return {
        "user_id": state.user_id,
        "registered": state.registered,
        "display_name": state.display_name,
        "status": state.status,
        "account": None
        if account is None
        else {
            "account_id": account.account_id,
            "broker": account.broker,
            "has_token": account.token is not None,
            "key_version": account.token.key_version if account.token else None,
        },
        "subscriptions": {
            sub.channel: msgspec.to_builtins(sub.overrides) if sub.overrides else None
            for sub in state.subscriptions
        },
        "open_positions": sum(1 for leg in live if leg.status == "open"),
        "pending": sum(1 for leg in live if leg.status != "open"),
        "today": {
            "day": today.day if same_day else day_of(now_ns or 0),
            "orders": today.orders if same_day else 0,
            "refusals": today.refusal_counts() if same_day else {},
            "realised_pnl": round(today.realised_pnl, 2) if same_day else 0.0,
        },
        "balance": state.balance,
        "equity": state.equity,
        "version": state.version,
    }


def positions_view(state: UserState) -> list[dict[str, Any]]:
    """The live legs: open positions and orders waiting for risk, execution or the market."""
    return [_leg_view(leg) for leg in state.legs if leg.live]


def _leg_view(leg: Leg) -> dict[str, Any]:
    return {
        "intent_id": leg.intent_id,
        "signal_id": leg.signal_id,
        "leg": leg.leg,
        "account_id": leg.account_id,
        "symbol": leg.symbol,
        "signal_symbol": leg.signal_symbol,
        "side": leg.side,
        "order_type": leg.order_type,
        "volume": leg.volume,
        "remaining": leg.remaining,
        "entry": leg.entry,
        "sl": leg.sl,
        "tp": leg.tp,
        "status": leg.status,
        "position_id": leg.position_id,
        "order_id": leg.order_id,
    }


def settings_view(state: UserState) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.to_builtins(state.settings)
    return result
