"""A user's trading settings. Frozen, unknown fields rejected: a typo in a
setting is an error naming the field, never a silent default.

Every field has a documented default, so `UserSettings()` is a complete,
conservative configuration: fixed 0.01 lot, one position per TP, follow-ups
applied, signals older than 2 minutes or 50 pips from the price refused.
"""

from __future__ import annotations

from typing import Literal

import msgspec

LotMode = Literal["fixed", "risk_percent", "multiplier"]
TpMode = Literal["split", "single"]
EntryZonePolicy = Literal["market", "zone_mid_limit", "zone_best_limit"]


class _Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class LotSizing(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How big an order is.

    - `fixed`: `fixed_lot` per signal (split across TP legs);
    - `risk_percent`: risk `risk_percent` % of balance between entry and SL,
      using the symbol's pip value (no SL -> refused: the risk is unbounded);
    - `multiplier`: `multiplier` × the lot the signal names (or `fixed_lot`).
    The result is capped at `max_lot` and rounded down to the broker's step.
    """

    mode: LotMode = "fixed"
    fixed_lot: float = 0.01
    risk_percent: float = 1.0
    multiplier: float = 1.0
    max_lot: float = 1.0


class SymbolMapping(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Signal symbol -> broker symbol: aliases first, then explicit map, else prefix+symbol+suffix.

    e.g. aliases {"GOLD": "XAUUSD"}, suffix ".m" turns XAUUSD into XAUUSD.m;
    explicit {"US30": "DJ30.cash"} wins over the suffix.
    """

    aliases: dict[str, str] = {}
    explicit: dict[str, str] = {}
    prefix: str = ""
    suffix: str = ""


class TakeProfits(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`split`: one position per TP, volume split evenly (a runner-only signal opens one);
    `single`: one position with TP number `tp_number` (1-based; last TP if fewer)."""

    mode: TpMode = "split"
    tp_number: int = 1


class FollowUps(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which channel follow-ups to apply to positions opened from a signal."""

    breakeven: bool = True
    move_sl: bool = True
    set_tp: bool = True
    partial_close: bool = True
    close: bool = True
    cancel: bool = True
    edits: bool = True  # an edited ticket amends SL/TP of what it opened


class TradingHours(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When new orders are allowed, in the user's time zone (IANA name)."""

    timezone: str = "UTC"
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)  # Monday = 0
    start: str = "00:00"
    end: str = "24:00"


class RiskLimits(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Limits the risk service enforces (None = no limit)."""

    max_lot_per_order: float | None = None
    max_open_positions: int | None = 20
    max_positions_per_symbol: int | None = 10
    max_volume_per_symbol: float | None = None
    daily_loss_limit: float | None = None  # in account currency
    daily_loss_limit_pct: float | None = None  # of the day's opening balance
    close_all_on_daily_loss: bool = False
    max_spread_pips: float | None = None
    allowed_symbols: tuple[str, ...] = ()  # empty: every symbol allowed
    blocked_symbols: tuple[str, ...] = ()
    trading_hours: TradingHours | None = None
    max_orders_per_minute: int | None = 60


class UserSettings(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    lot: LotSizing = LotSizing()
    symbols: SymbolMapping = SymbolMapping()
    take_profits: TakeProfits = TakeProfits()
    entry_zone: EntryZonePolicy = "market"
    max_signal_age_s: float = 120.0
    max_entry_distance_pips: float | None = 50.0
    require_sl: bool = True  # refuse an open with no stop loss (fail closed)
    follow_ups: FollowUps = FollowUps()
    risk: RiskLimits = RiskLimits()


class ChannelOverrides(_Settings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-channel overrides of a user's settings; None keeps the user's value."""

    lot: LotSizing | None = None
    take_profits: TakeProfits | None = None
    entry_zone: EntryZonePolicy | None = None
    max_signal_age_s: float | None = None
    max_entry_distance_pips: float | None = None
    follow_ups: FollowUps | None = None


def effective(settings: UserSettings, overrides: ChannelOverrides | None) -> UserSettings:
    """The settings that apply to one channel's signals."""
    if overrides is None:
        return settings
    changes = {
        name: value
        for name in ChannelOverrides.__struct_fields__
        if (value := getattr(overrides, name)) is not None
    }
    return msgspec.structs.replace(settings, **changes) if changes else settings
