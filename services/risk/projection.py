"""The exposure projection: what risk knows about one user, as a pure fold.

`evolve(exposure, event) -> exposure` folds, for one user:

- the user's own events (`user-<id>`, on the bus as `events.user.<id>`):
  registered, account linked/unlinked, settings changed (the `RiskLimits`),
  paused / stopped / resumed, deleted;
- risk's own records (`risk-<id>`): `RiskDecided` (an approved open adds
  pending exposure, an approved modify/close/cancel is remembered until its
  report; every approval counts towards the rate limit), `ReportApplied`
  (open positions, volumes per symbol, realised P&L today, balance and
  equity) and the user's `KillSwitchSet`.

`evolve_market(market, event)` folds what is shared by every user: quotes
(latest per symbol, for the spread check) and the global kill switch.

The two halves of a user's state come from two streams and do not depend on
each other (state and limits vs exposure), so a rebuild folds `user-<id>`
and then `risk-<id>` without caring how they interleaved. The one coupling
is the time zone that says when a trading day starts: a rebuild uses the
latest one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from contracts.orders import ExecutionReport, OrderIntent, Quote, Side
from contracts.settings import RiskLimits
from contracts.users import (
    AccountLinked,
    AccountUnlinked,
    Paused,
    Resumed,
    SettingsChanged,
    Stopped,
    UserDeleted,
    UserRegistered,
)
from services.risk.events import KillSwitchSet, ReportApplied, RiskDecided

UserStatus = Literal["unknown", "active", "paused", "stopped", "deleted"]
Stage = Literal["pending", "working", "open"]

RATE_WINDOW_NS = 60 * 1_000_000_000
"""The rate limit counts approvals in the last 60 s: (now - 60 s, now]."""

_EPSILON = 1e-9

USER_STATE_EVENTS: tuple[type[Any], ...] = (
    UserRegistered,
    AccountLinked,
    AccountUnlinked,
    SettingsChanged,
    Paused,
    Stopped,
    Resumed,
    UserDeleted,
)
"""The events of `user-<id>` that change what risk knows; the others are skipped."""


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """One open leg, keyed by the intent that opened it.

    `pending`: approved, no report yet; `working`: a pending order at the
    broker; `open`: filled. All three count as exposure.
    """

    intent_id: str
    symbol: str
    signal_symbol: str = ""
    side: Side | None = None
    volume: float
    sl: float | None = None
    stage: Stage = "pending"
    position_id: str | None = None


class UserExposure(msgspec.Struct, frozen=True, kw_only=True, tag="risk.exposure"):
    """Everything risk knows about one user (the projection's state and its snapshot)."""

    user_id: str
    # from user-<id>
    status: UserStatus = "unknown"
    status_reason: str = ""
    account_id: str | None = None
    limits: RiskLimits = RiskLimits()
    # from risk-<id>
    kill_switch: bool = False
    kill_reason: str = ""
    positions: dict[str, Position] = {}
    actions: dict[str, str] = {}  # approved modify/close/cancel intent id -> target open intent id
    recent_orders_ns: tuple[int, ...] = ()  # approval times within the rate window
    day: str = ""  # the trading day (YYYY-MM-DD in the user's zone) of the figures below
    day_open_balance: float | None = None
    realised_today: float = 0.0
    balance: float | None = None
    equity: float | None = None
    # the shell's cursor into user-<id>, kept here so that a snapshot carries it
    user_version: int = 0


class MarketState(msgspec.Struct, frozen=True, kw_only=True):
    """What every user shares: the global kill switch and the latest quote per symbol."""

    kill_switch: bool = False
    kill_reason: str = ""
    quotes: dict[str, Quote] = {}

    def quote_for(self, intent: OrderIntent) -> Quote | None:
        """The latest quote for an intent's symbol (canonical name first, then the broker's)."""
        quotes = self.quotes
        return quotes.get(intent.signal_symbol) or quotes.get(intent.symbol)


# --- time --------------------------------------------------------------------------


def user_zone(limits: RiskLimits) -> str:
    """The IANA zone a user's trading day is counted in: their trading hours' zone, else UTC."""
    return limits.trading_hours.timezone if limits.trading_hours is not None else "UTC"


def local_time(ns: int, zone: str) -> datetime:
    """The wall-clock time in `zone` at unix time `ns`; unknown zones fall back to UTC."""
    try:
        tz: Any = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = UTC
    return datetime.fromtimestamp(ns / 1e9, tz)


def day_of(ns: int, zone: str) -> str:
    return local_time(ns, zone).date().isoformat()


def day_figures(exposure: UserExposure, today: str) -> tuple[float | None, float]:
    """(opening balance, realised P&L) of `today`; a day with no report yet starts at the last balance."""
    if exposure.day == today:
        return exposure.day_open_balance, exposure.realised_today
    if exposure.day and exposure.day > today:  # a clock behind the last report: keep what we have
        return exposure.day_open_balance, exposure.realised_today
    return exposure.balance, 0.0


# --- exposure queries ----------------------------------------------------------------


def open_count(exposure: UserExposure, symbol: str | None = None) -> int:
    if symbol is None:
        return len(exposure.positions)
    return sum(1 for p in exposure.positions.values() if p.symbol == symbol)


def symbol_volume(exposure: UserExposure, symbol: str) -> float:
    return sum(p.volume for p in exposure.positions.values() if p.symbol == symbol)


def orders_in_window(exposure: UserExposure, now_ns: int) -> int:
    """Approvals with a time in (now - 60 s, now] (later ones, from a clock ahead, count too)."""
    floor = now_ns - RATE_WINDOW_NS
    return sum(1 for t in exposure.recent_orders_ns if t > floor)


# --- the fold -------------------------------------------------------------------------


def evolve(exposure: UserExposure, event: Any) -> UserExposure:
    """Fold one event into a user's exposure; events risk does not use leave it unchanged."""
    replace = msgspec.structs.replace
    if isinstance(event, RiskDecided):
        return _decided(exposure, event)
    if isinstance(event, ReportApplied):
        return _reported(exposure, event.report)
    if isinstance(event, SettingsChanged):
        return replace(exposure, limits=event.settings.risk)
    if isinstance(event, KillSwitchSet):
        return replace(exposure, kill_switch=event.on, kill_reason=event.reason if event.on else "")
    if exposure.status == "deleted":
        return exposure  # deletion is for good: nothing brings the user back
    if isinstance(event, UserRegistered):
        status: UserStatus = "active" if exposure.status == "unknown" else exposure.status
        return replace(exposure, status=status)
    if isinstance(event, AccountLinked):
        return replace(exposure, account_id=event.account_id)
    if isinstance(event, AccountUnlinked):
        if exposure.account_id == event.account_id:
            return replace(exposure, account_id=None)
        return exposure
    if isinstance(event, Paused):
        return replace(exposure, status="paused", status_reason=event.reason)
    if isinstance(event, Stopped):
        return replace(exposure, status="stopped", status_reason=event.reason)
    if isinstance(event, Resumed):
        return replace(exposure, status="active", status_reason="")
    if isinstance(event, UserDeleted):
        return replace(exposure, status="deleted", status_reason="user deleted", account_id=None)
    return exposure


def evolve_market(market: MarketState, event: Any) -> MarketState:
    """Fold a quote or a global kill-switch event into the shared market state."""
    if isinstance(event, Quote):
        return msgspec.structs.replace(market, quotes={**market.quotes, event.symbol: event})
    if isinstance(event, KillSwitchSet) and event.user_id is None:
        return msgspec.structs.replace(
            market, kill_switch=event.on, kill_reason=event.reason if event.on else ""
        )
    return market


def _decided(exposure: UserExposure, event: RiskDecided) -> UserExposure:
    verdict = event.verdict
    if not verdict.approved:
        return exposure
    intent = verdict.intent
    at = verdict.decided_ns or event.ts
    floor = at - RATE_WINDOW_NS
    recent = (*(t for t in exposure.recent_orders_ns if t > floor), at)
    if intent.action == "open":
        position = Position(
            intent_id=intent.intent_id,
            symbol=intent.symbol,
            signal_symbol=intent.signal_symbol,
            side=intent.side,
            volume=intent.volume,
            sl=intent.sl,
            stage="pending",
        )
        return msgspec.structs.replace(
            exposure,
            recent_orders_ns=recent,
            positions={**exposure.positions, intent.intent_id: position},
        )
    target = intent.target_intent_id or ""
    return msgspec.structs.replace(
        exposure, recent_orders_ns=recent, actions={**exposure.actions, intent.intent_id: target}
    )


def _reported(exposure: UserExposure, report: ExecutionReport) -> UserExposure:
    exposure = _account_figures(exposure, report)
    positions = dict(exposure.positions)
    actions = dict(exposure.actions)
    status = report.status
    if report.action == "open":
        key: str | None = report.intent_id
    else:
        key = actions.get(report.intent_id) or _by_position_id(positions, report.position_id)
        if status in ("modified", "closed", "cancelled", "rejected", "failed"):
            actions.pop(report.intent_id, None)
    found = positions.get(key) if key else None
    if found is not None and key is not None:
        replace = msgspec.structs.replace
        if status == "accepted":
            positions[key] = replace(
                found, stage="working", position_id=report.position_id or found.position_id
            )
        elif status == "filled":
            positions[key] = replace(
                found,
                stage="open",
                volume=report.volume if report.volume else found.volume,
                position_id=report.position_id or found.position_id,
                sl=report.sl if report.sl is not None else found.sl,
            )
        elif status == "modified":
            positions[key] = replace(found, sl=report.sl if report.sl is not None else found.sl)
        elif status == "closed":
            left = _remaining(found, report)
            if left > _EPSILON:
                positions[key] = replace(found, volume=left)
            else:
                del positions[key]
        elif status == "cancelled" or (
            status in ("rejected", "failed") and report.action == "open"
        ):
            del positions[key]
    return msgspec.structs.replace(exposure, positions=positions, actions=actions)


def _remaining(position: Position, report: ExecutionReport) -> float:
    if report.remaining_volume is not None:
        return report.remaining_volume
    if report.volume is not None:
        return position.volume - report.volume
    return 0.0  # a close that names no volume closed it all


def _by_position_id(positions: dict[str, Position], position_id: str | None) -> str | None:
    if position_id is None:
        return None
    for key, position in positions.items():
        if position.position_id == position_id:
            return key
    return None


def _account_figures(exposure: UserExposure, report: ExecutionReport) -> UserExposure:
    """Roll the trading day if the report starts a new one; take its P&L, balance and equity."""
    at = report.reported_ns or report.ts
    day = day_of(at, user_zone(exposure.limits))
    open_balance, realised = exposure.day_open_balance, exposure.realised_today
    current_day = exposure.day
    if not current_day or day > current_day:
        current_day, open_balance, realised = day, exposure.balance, 0.0
    if report.status == "closed" and report.profit is not None and day == current_day:
        realised += report.profit
    balance = report.balance if report.balance is not None else exposure.balance
    equity = report.equity if report.equity is not None else exposure.equity
    if open_balance is None and report.balance is not None and day == current_day:
        # first balance ever seen: the day opened at it, before this report's own P&L
        profit = report.profit if report.status == "closed" and report.profit else 0.0
        open_balance = report.balance - profit
    return msgspec.structs.replace(
        exposure,
        day=current_day,
        day_open_balance=open_balance,
        realised_today=realised,
        balance=balance,
        equity=equity,
    )
