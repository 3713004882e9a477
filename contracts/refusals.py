"""Why an account did not take a signal, as stable machine-readable codes.

Actors refuse before an intent exists (the user's own settings and state);
risk rejects an intent (limits and live exposure); execution reports broker
refusals with the broker's code. Each refusal also carries plain words.
"""

from __future__ import annotations

from enum import StrEnum


class RefusalCode(StrEnum):
    # actor: the user's state and settings
    PAUSED = "paused"
    STOPPED = "stopped"
    NO_ACCOUNT = "no_account"
    NOT_SUBSCRIBED = "not_subscribed"
    STALE_SIGNAL = "stale_signal"
    TOO_FAR_FROM_PRICE = "too_far_from_price"
    NO_PRICE = "no_price"
    SYMBOL_NOT_MAPPED = "symbol_not_mapped"
    NO_SIDE = "no_side"
    MISSING_SL = "missing_sl"
    LOT_BELOW_MINIMUM = "lot_below_minimum"
    UNSAFE_SIGNAL = "unsafe_signal"  # the parser rejected it
    FOLLOW_UP_DISABLED = "follow_up_disabled"
    NOTHING_TO_MANAGE = "nothing_to_manage"
    ALREADY_DECIDED = "already_decided"
    INTERNAL = "internal"  # deciding failed for this user alone (a fault, not a rule)
    # risk: limits and exposure
    KILL_SWITCH = "kill_switch"
    MAX_LOT = "max_lot"
    MAX_OPEN_POSITIONS = "max_open_positions"
    MAX_SYMBOL_POSITIONS = "max_symbol_positions"
    MAX_SYMBOL_VOLUME = "max_symbol_volume"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    SPREAD_TOO_WIDE = "spread_too_wide"
    SYMBOL_NOT_ALLOWED = "symbol_not_allowed"
    SYMBOL_BLOCKED = "symbol_blocked"
    OUTSIDE_TRADING_HOURS = "outside_trading_hours"
    RATE_LIMITED = "rate_limited"
    # execution
    BROKER_REJECTED = "broker_rejected"
    BROKER_UNAVAILABLE = "broker_unavailable"
