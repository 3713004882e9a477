"""The risk checks: pure functions `(intent, view) -> Refusal | None`, and
`evaluate(intent, view) -> RiskVerdict`, which runs them in a fixed order.

The order (the first refusal wins):

 1. `check_well_formed`    an open names a side and a positive, finite volume
 2. `check_user_known`     risk knows the user (fail closed: NO_ACCOUNT)
 3. `check_account`        the intent is for the user's linked account (NO_ACCOUNT)
 4. `check_stopped`        a stopped user gets no orders at all (STOPPED)
 5. `check_paused`         a paused user gets no new positions (PAUSED)
    -- an intent that REDUCES risk (close, cancel, an SL moved towards the
       price or set where there was none) is approved here: getting out must
       stay possible under a kill switch, past the daily loss limit, outside
       trading hours, on a symbol blocked since, in a wide spread or a burst --
 6. `check_global_kill`    the operator's kill switch for everyone (KILL_SWITCH)
 7. `check_user_kill`      the kill switch of this user (KILL_SWITCH)
 8. `check_symbol_blocked` (SYMBOL_BLOCKED)                                  opens
 9. `check_symbol_allowed` (SYMBOL_NOT_ALLOWED)                              opens
10. `check_trading_hours`  in the user's IANA time zone (OUTSIDE_TRADING_HOURS) opens
11. `check_rate`           approvals in the last 60 s (RATE_LIMITED)
12. `check_max_lot`        (MAX_LOT)                                         opens
13. `check_open_positions` total (MAX_OPEN_POSITIONS)                        opens
14. `check_symbol_positions` per symbol (MAX_SYMBOL_POSITIONS)               opens
15. `check_symbol_volume`  (MAX_SYMBOL_VOLUME)                               opens
16. `check_daily_loss`     amount and % of the day's opening balance (DAILY_LOSS_LIMIT) opens
17. `check_spread`         from the latest quote (SPREAD_TOO_WIDE; no fresh quote: NO_PRICE) opens

Who the user is comes first, then the switches, then what does not depend
on exposure, then exposure. A modify that does not reduce risk (a wider SL,
a TP change) meets the switches and the rate limit only.

Fail closed: an unknown user, an unknown time zone or a missing quote when a
spread limit is set refuse the order, naming what is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from contracts.orders import OrderIntent, RiskVerdict
from contracts.refusals import RefusalCode
from contracts.settings import TradingHours
from services.risk.projection import (
    MarketState,
    UserExposure,
    day_figures,
    day_of,
    open_count,
    orders_in_window,
    symbol_volume,
    user_zone,
)

_EPSILON = 1e-9
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    code: RefusalCode
    reason: str  # plain words naming the values involved


class RiskView(msgspec.Struct, frozen=True, kw_only=True):
    """What a check may look at: the user's exposure, the market and the time of the decision."""

    user: UserExposure | None
    now_ns: int
    market: MarketState = MarketState()
    max_quote_age_s: float = 60.0


Check = Callable[[OrderIntent, RiskView], Refusal | None]


def _lots(value: float) -> str:
    return f"{value:g} lot" if value == 1 else f"{value:g} lots"


def _money(value: float) -> str:
    return f"{value:,.2f}"


# --- 1-5: the intent and the user ----------------------------------------------------


def check_well_formed(intent: OrderIntent, view: RiskView) -> Refusal | None:
    if intent.action != "open":
        return None
    if intent.side is None:
        return Refusal(
            code=RefusalCode.NO_SIDE,
            reason=f"open intent {intent.intent_id} on {intent.symbol} names no side (buy or sell)",
        )
    if not math.isfinite(intent.volume) or intent.volume <= 0:
        return Refusal(
            code=RefusalCode.LOT_BELOW_MINIMUM,
            reason=f"open intent {intent.intent_id} on {intent.symbol} has volume {intent.volume!r}; it must be above 0",
        )
    return None


def check_user_known(intent: OrderIntent, view: RiskView) -> Refusal | None:
    # No RefusalCode says "unknown user"; NO_ACCOUNT is the closest: risk has no
    # account (and so no limits) on record for this user, and will not guess.
    user = view.user
    if user is None or user.status == "unknown":
        return Refusal(
            code=RefusalCode.NO_ACCOUNT,
            reason=f"user {intent.user_id} is not known to risk (no registration seen), so no limits apply; refused until it is",
        )
    if user.status == "deleted":
        return Refusal(
            code=RefusalCode.NO_ACCOUNT, reason=f"user {intent.user_id} has been deleted"
        )
    return None


def check_account(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None:
        return None
    if user.account_id is None:
        return Refusal(
            code=RefusalCode.NO_ACCOUNT,
            reason=f"user {intent.user_id} has no linked account; intent is for account {intent.account_id}",
        )
    if intent.account_id != user.account_id:
        return Refusal(
            code=RefusalCode.NO_ACCOUNT,
            reason=f"intent is for account {intent.account_id} but user {intent.user_id}'s linked account is {user.account_id}",
        )
    return None


def check_stopped(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is not None and user.status == "stopped":
        why = f" ({user.status_reason})" if user.status_reason else ""
        return Refusal(
            code=RefusalCode.STOPPED,
            reason=f"user {intent.user_id} is stopped{why}: no orders at all until resumed, not even a {intent.action}",
        )
    return None


def check_paused(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is not None and user.status == "paused" and intent.action == "open":
        why = f" ({user.status_reason})" if user.status_reason else ""
        return Refusal(
            code=RefusalCode.PAUSED,
            reason=f"user {intent.user_id} is paused{why}: no new positions; follow-ups still apply",
        )
    return None


def reduces_risk(intent: OrderIntent, user: UserExposure | None) -> bool:
    """True for a close, a cancel, or a modify that moves the SL towards the price
    (or sets one where there was none). A TP-only change or a wider SL is not."""
    if intent.action in ("close", "cancel"):
        return True
    if intent.action != "modify" or intent.sl is None:
        return False
    target = None
    if user is not None and intent.target_intent_id:
        target = user.positions.get(intent.target_intent_id)
    side = intent.side or (target.side if target is not None else None)
    old_sl = target.sl if target is not None else None
    if old_sl is None:
        # setting a stop where none is known bounds a loss that was unbounded
        return target is not None
    if side == "buy":
        return intent.sl >= old_sl
    if side == "sell":
        return intent.sl <= old_sl
    return False


# --- 6-7: kill switches ----------------------------------------------------------------


def check_global_kill(intent: OrderIntent, view: RiskView) -> Refusal | None:
    if view.market.kill_switch:
        why = view.market.kill_reason or "no reason given"
        return Refusal(
            code=RefusalCode.KILL_SWITCH,
            reason=f"the global kill switch is on ({why}): only closes and tighter stops pass",
        )
    return None


def check_user_kill(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is not None and user.kill_switch:
        why = user.kill_reason or "no reason given"
        return Refusal(
            code=RefusalCode.KILL_SWITCH,
            reason=f"the kill switch of user {intent.user_id} is on ({why}): only closes and tighter stops pass",
        )
    return None


# --- 8-11: symbols, hours, rate ---------------------------------------------------------


def _names(intent: OrderIntent) -> set[str]:
    return {n.upper() for n in (intent.symbol, intent.signal_symbol) if n}


def check_symbol_blocked(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None or intent.action != "open" or not user.limits.blocked_symbols:
        return None
    blocked = {s.upper() for s in user.limits.blocked_symbols}
    hit = _names(intent) & blocked
    if hit:
        return Refusal(
            code=RefusalCode.SYMBOL_BLOCKED,
            reason=f"symbol {intent.symbol} is blocked for user {intent.user_id} (blocked: {', '.join(sorted(user.limits.blocked_symbols))})",
        )
    return None


def check_symbol_allowed(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None or intent.action != "open" or not user.limits.allowed_symbols:
        return None
    allowed = {s.upper() for s in user.limits.allowed_symbols}
    if not _names(intent) & allowed:
        return Refusal(
            code=RefusalCode.SYMBOL_NOT_ALLOWED,
            reason=f"symbol {intent.symbol} is not among user {intent.user_id}'s allowed symbols ({', '.join(user.limits.allowed_symbols)})",
        )
    return None


def _minutes(text: str) -> int:
    hours, sep, minutes = text.partition(":")
    if not sep:
        raise ValueError(text)
    value = int(hours) * 60 + int(minutes)
    if not 0 <= int(minutes) < 60 or not 0 <= value <= 24 * 60:
        raise ValueError(text)
    return value


def within_hours(hours: TradingHours, now_ns: int) -> tuple[bool, str]:
    """Whether `now_ns` falls in the window, and the local time it was judged at.

    `start`..`end` is half-open, [start, end). `end` before `start` is an
    overnight window whose day is the day it began (22:00-06:00 on Friday runs
    into Saturday morning). `start` equal to `end` is a whole day from `start`.
    Raises ValueError for an unknown zone or a malformed time.
    """
    try:
        zone = ZoneInfo(hours.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {hours.timezone!r}") from exc
    start, end = _minutes(hours.start), _minutes(hours.end)
    local = datetime.fromtimestamp(now_ns / 1e9, zone)
    minute = local.hour * 60 + local.minute
    shown = f"{_DAYS[local.weekday()]} {local:%H:%M} {hours.timezone}"
    if start < end:
        return local.weekday() in hours.days and start <= minute < end, shown
    # overnight (or a whole day when start == end): the part before `end` belongs to yesterday
    if minute >= start:
        return local.weekday() in hours.days, shown
    if minute < end or start == end:
        yesterday = (local - timedelta(days=1)).weekday()
        return yesterday in hours.days, shown
    return False, shown


def check_trading_hours(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None or intent.action != "open" or user.limits.trading_hours is None:
        return None
    hours = user.limits.trading_hours
    try:
        inside, shown = within_hours(hours, view.now_ns)
    except ValueError as exc:
        return Refusal(
            code=RefusalCode.OUTSIDE_TRADING_HOURS,
            reason=f"trading hours of user {intent.user_id} cannot be read ({exc}); refused to be safe",
        )
    if inside:
        return None
    days = ", ".join(_DAYS[d][:3] for d in sorted(hours.days)) or "no days"
    return Refusal(
        code=RefusalCode.OUTSIDE_TRADING_HOURS,
        reason=f"it is {shown}, outside user {intent.user_id}'s trading hours {hours.start}-{hours.end} on {days}",
    )


def check_rate(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None or user.limits.max_orders_per_minute is None:
        return None
    limit = user.limits.max_orders_per_minute
    count = orders_in_window(user, view.now_ns)
    if count >= limit:
        return Refusal(
            code=RefusalCode.RATE_LIMITED,
            reason=f"user {intent.user_id} already has {count} orders in the last 60 s; the limit is {limit} per minute",
        )
    return None


# --- 12-17: exposure ----------------------------------------------------------------


def check_max_lot(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None or intent.action != "open" or user.limits.max_lot_per_order is None:
        return None
    limit = user.limits.max_lot_per_order
    if intent.volume > limit + _EPSILON:
        return Refusal(
            code=RefusalCode.MAX_LOT,
            reason=f"order of {_lots(intent.volume)} is above this account's max {_lots(limit)} per order",
        )
    return None


def check_open_positions(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None or intent.action != "open" or user.limits.max_open_positions is None:
        return None
    limit = user.limits.max_open_positions
    count = open_count(user)
    if count >= limit:
        return Refusal(
            code=RefusalCode.MAX_OPEN_POSITIONS,
            reason=f"user {intent.user_id} has {count} open or pending positions; the max is {limit}",
        )
    return None


def check_symbol_positions(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None or intent.action != "open" or user.limits.max_positions_per_symbol is None:
        return None
    limit = user.limits.max_positions_per_symbol
    count = open_count(user, intent.symbol)
    if count >= limit:
        return Refusal(
            code=RefusalCode.MAX_SYMBOL_POSITIONS,
            reason=f"user {intent.user_id} has {count} open or pending positions on {intent.symbol}; the max per symbol is {limit}",
        )
    return None


def check_symbol_volume(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None or intent.action != "open" or user.limits.max_volume_per_symbol is None:
        return None
    limit = user.limits.max_volume_per_symbol
    held = symbol_volume(user, intent.symbol)
    if held + intent.volume > limit + _EPSILON:
        return Refusal(
            code=RefusalCode.MAX_SYMBOL_VOLUME,
            reason=f"{_lots(intent.volume)} more on {intent.symbol} would make {_lots(round(held + intent.volume, 8))}; the max per symbol is {_lots(limit)}",
        )
    return None


def daily_loss(user: UserExposure, now_ns: int) -> tuple[float, float | None]:
    """(today's loss so far, the day's opening balance): the worst of the realised
    loss, the balance drawdown and the equity drawdown from the opening balance."""
    opening, realised = day_figures(user, day_of(now_ns, user_zone(user.limits)))
    loss = max(0.0, -realised)
    if opening is not None:
        if user.balance is not None:
            loss = max(loss, opening - user.balance)
        if user.equity is not None:
            loss = max(loss, opening - user.equity)
    return loss, opening


def check_daily_loss(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None or intent.action != "open":
        return None
    limits = user.limits
    if limits.daily_loss_limit is None and limits.daily_loss_limit_pct is None:
        return None
    # An unknown opening balance means no report has ever named one: nothing has
    # traded, so there is no loss to measure yet and the % limit cannot bite.
    loss, opening = daily_loss(user, view.now_ns)
    if limits.daily_loss_limit is not None and loss >= limits.daily_loss_limit - _EPSILON:
        return Refusal(
            code=RefusalCode.DAILY_LOSS_LIMIT,
            reason=f"today's loss {_money(loss)} has reached the daily loss limit {_money(limits.daily_loss_limit)}; no new positions until tomorrow",
        )
    if limits.daily_loss_limit_pct is not None and opening is not None and opening > 0:
        cap = opening * limits.daily_loss_limit_pct / 100.0
        if loss >= cap - _EPSILON:
            return Refusal(
                code=RefusalCode.DAILY_LOSS_LIMIT,
                reason=f"today's loss {_money(loss)} has reached {limits.daily_loss_limit_pct:g}% of the day's opening balance {_money(opening)} ({_money(cap)}); no new positions until tomorrow",
            )
    return None


def check_spread(intent: OrderIntent, view: RiskView) -> Refusal | None:
    user = view.user
    if user is None or intent.action != "open" or user.limits.max_spread_pips is None:
        return None
    limit = user.limits.max_spread_pips
    quote = view.market.quote_for(intent)
    name = intent.signal_symbol or intent.symbol
    if quote is None:
        return Refusal(
            code=RefusalCode.NO_PRICE,
            reason=f"no quote for {name} to check the spread against the max {limit:g} pips",
        )
    age_s = (view.now_ns - quote.ts) / 1e9
    if age_s > view.max_quote_age_s:
        return Refusal(
            code=RefusalCode.NO_PRICE,
            reason=f"the latest quote for {name} is {age_s:.0f} s old (max {view.max_quote_age_s:g} s) to check the spread",
        )
    if quote.pip_size <= 0:
        return Refusal(
            code=RefusalCode.NO_PRICE,
            reason=f"the quote for {name} has pip size {quote.pip_size!r}; the spread cannot be measured",
        )
    spread = (quote.ask - quote.bid) / quote.pip_size
    if spread > limit + _EPSILON:
        return Refusal(
            code=RefusalCode.SPREAD_TOO_WIDE,
            reason=f"spread on {name} is {spread:.1f} pips (bid {quote.bid:g}, ask {quote.ask:g}); the max is {limit:g} pips",
        )
    return None


# --- evaluate ----------------------------------------------------------------------

STATE_CHECKS: tuple[Check, ...] = (
    check_well_formed,
    check_user_known,
    check_account,
    check_stopped,
    check_paused,
)
"""Checks every intent meets, even one that reduces risk."""

LIMIT_CHECKS: tuple[Check, ...] = (
    check_global_kill,
    check_user_kill,
    check_symbol_blocked,
    check_symbol_allowed,
    check_trading_hours,
    check_rate,
    check_max_lot,
    check_open_positions,
    check_symbol_positions,
    check_symbol_volume,
    check_daily_loss,
    check_spread,
)
"""Checks an intent meets unless it reduces risk."""


def first_refusal(intent: OrderIntent, view: RiskView) -> tuple[Refusal | None, str]:
    """The first refusal in the documented order, or None and a note on the approval."""
    for check in STATE_CHECKS:
        refusal = check(intent, view)
        if refusal is not None:
            return refusal, ""
    if reduces_risk(intent, view.user):
        return None, f"{intent.action} reduces risk: exposure limits and kill switches do not apply"
    for check in LIMIT_CHECKS:
        refusal = check(intent, view)
        if refusal is not None:
            return refusal, ""
    return None, ""


def evaluate(intent: OrderIntent, view: RiskView) -> RiskVerdict:
    """Risk's verdict on one intent: the first refusal of the checks, or an approval."""
    refusal, note = first_refusal(intent, view)
    return RiskVerdict(
        id=f"verdict-{intent.intent_id}",
        ts=view.now_ns,
        correlation_id=intent.correlation_id,
        causation_id=intent.id,
        intent=intent,
        approved=refusal is None,
        code="" if refusal is None else refusal.code.value,
        reason=note if refusal is None else refusal.reason,
        decided_ns=view.now_ns,
    )
