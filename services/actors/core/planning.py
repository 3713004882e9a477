"""Planning one open signal for one user: symbol, order type and price, levels, legs, lots.

Pure arithmetic over the signal, the user's effective settings, a quote and
the last known balance. A plan that cannot be made safely raises `Refusal`
with a `RefusalCode` and plain words naming the values involved.

Choices (documented in the module so a reader of an intent can trace it):
- Symbols: `aliases` (case-insensitive) turn the channel's name into the
  canonical one quotes are keyed by; `explicit` then maps it to the broker's
  symbol, else `prefix + canonical + suffix`.
- Every open needs a current quote (fail closed): it gives the reference price,
  the pip size for distances and the broker's volume limits.
- Zones: `market` trades now; `zone_mid_limit` / `zone_best_limit` place a limit
  at the midpoint / the better edge for the side, unless the market is already
  at or better than that price, when a market order fills at least as well.
- Lots: `fixed` = fixed_lot; `multiplier` = multiplier × fixed_lot (signals carry
  no lot of their own); `risk_percent` = balance × pct / (|price - SL| in pips ×
  pip value per lot), with `price` the order's price (the current ask/bid for a
  market order). The total is capped at `max_lot`, then rounded down to the
  volume step.
- Split TPs: the total is divided in whole volume steps over one leg per TP,
  remainder steps to the nearest TPs first. When the legs would fall below the
  broker minimum, the farthest TPs are dropped until each leg reaches it; if
  not even one leg does, the signal is refused `lot_below_minimum`. A TP the
  price has already passed opens no leg.
"""

from __future__ import annotations

import math
from typing import Protocol

import msgspec

from contracts.orders import Quote
from contracts.refusals import RefusalCode
from contracts.settings import SymbolMapping, UserSettings
from contracts.signals import OpenSignal

_EPS = 1e-9


class MarketView(Protocol):
    """Latest quotes, by canonical symbol (e.g. "XAUUSD")."""

    def quote(self, symbol: str) -> Quote | None: ...


class Refusal(Exception):
    """A signal this user's actor will not act on; becomes a `SignalRefused`."""

    def __init__(self, code: RefusalCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LegPlan(msgspec.Struct, frozen=True, kw_only=True):
    leg: int  # 1-based TP number in split mode; 1 in single mode
    volume: float
    tp: float | None


class OpenPlan(msgspec.Struct, frozen=True, kw_only=True):
    signal_symbol: str  # canonical
    symbol: str  # the broker's
    side: str
    order_type: str
    price: float  # limit/stop price, or the reference (current) price of a market order
    sl: float | None
    legs: tuple[LegPlan, ...]
    notes: tuple[str, ...] = ()


def num(value: float) -> str:
    """A number as people write it: 120 not 120.0, 0.3 not 0.30000000000000004."""
    return format(round(value, 8), ".12g")


def map_symbol(symbol: str, mapping: SymbolMapping) -> tuple[str, str]:
    """(canonical symbol, broker symbol) for a symbol as the channel wrote it."""
    name = symbol.strip().upper()
    canonical = mapping.aliases.get(name)
    if canonical is None:
        for alias, target in mapping.aliases.items():
            if alias.upper() == name:
                canonical = target
                break
    canonical = (canonical or name).upper()
    broker = mapping.explicit.get(canonical) or mapping.explicit.get(name)
    if broker is None:
        broker = f"{mapping.prefix}{canonical}{mapping.suffix}"
    return canonical, broker


def price_digits(pip_size: float) -> int:
    """Decimals to round computed prices to: a tenth of a pip."""
    if pip_size <= 0:
        return 8
    return max(0, -math.floor(math.log10(pip_size) + _EPS) + 1)


def round_price(value: float, pip_size: float) -> float:
    return round(value, price_digits(pip_size))


def plan_open(
    signal: OpenSignal,
    settings: UserSettings,
    market: MarketView,
    balance: float | None,
    account_id: str,
) -> OpenPlan:
    """The legs one open signal becomes for one user, or a `Refusal`."""
    if signal.side is None:
        raise Refusal(RefusalCode.NO_SIDE, "the signal names no side (buy or sell)")
    side = signal.side
    if not signal.symbol or not signal.symbol.strip():
        raise Refusal(
            RefusalCode.SYMBOL_NOT_MAPPED,
            "the signal names no instrument and its channel has no default symbol",
        )
    canonical, broker_symbol = map_symbol(signal.symbol, settings.symbols)
    if signal.sl is None and signal.sl_pips is None and settings.require_sl:
        detail = "withholds its stop loss" if signal.sl_withheld else "has no stop loss"
        raise Refusal(
            RefusalCode.MISSING_SL,
            f"the {canonical} signal {detail}; this account requires one (require_sl)",
        )
    quote = market.quote(canonical)
    if quote is None:
        raise Refusal(RefusalCode.NO_PRICE, f"no current price for {canonical}")
    pip = quote.pip_size
    current = quote.ask if side == "buy" else quote.bid
    notes: list[str] = []

    order_type, price = _order_price(signal, settings, side, current, pip)
    _check_distance(signal, settings, order_type, price, current, pip, canonical)

    sl = signal.sl
    if sl is None and signal.sl_pips is not None:
        sl = round_price(
            price - signal.sl_pips * pip if side == "buy" else price + signal.sl_pips * pip, pip
        )
    if sl is not None and (sl >= price if side == "buy" else sl <= price):
        where = "above" if side == "buy" else "below"
        raise Refusal(
            RefusalCode.TOO_FAR_FROM_PRICE,
            f"stop loss {num(sl)} is {where} the {side} price {num(price)}: "
            "the price is already past the stop",
        )

    tps = _take_profits(signal, side, price, pip)
    legs_tp = _leg_targets(tps, settings, side, price, notes)
    total = _total_lot(settings, quote, price, sl, balance, account_id, canonical, notes)
    legs = _split(total, legs_tp, quote, canonical, notes)
    return OpenPlan(
        signal_symbol=canonical,
        symbol=broker_symbol,
        side=side,
        order_type=order_type,
        price=price,
        sl=sl,
        legs=legs,
        notes=tuple(notes),
    )


def _order_price(
    signal: OpenSignal, settings: UserSettings, side: str, current: float, pip: float
) -> tuple[str, float]:
    zone = signal.entry_range
    if signal.order_type == "market":
        if zone is None or settings.entry_zone == "market":
            return "market", current
        limit = _zone_price(zone, settings.entry_zone, side, pip)
        marketable = current <= limit if side == "buy" else current >= limit
        return ("market", current) if marketable else ("limit", limit)
    if signal.entry is not None:
        return signal.order_type, signal.entry
    if zone is not None:
        policy = "zone_best_limit" if settings.entry_zone == "zone_best_limit" else "zone_mid_limit"
        return signal.order_type, _zone_price(zone, policy, side, pip)
    raise Refusal(
        RefusalCode.UNSAFE_SIGNAL,
        f"a {side} {signal.order_type} order needs an entry price and the signal gives none",
    )


def _zone_price(zone: tuple[float, float], policy: str, side: str, pip: float) -> float:
    low, high = min(zone), max(zone)
    if policy == "zone_best_limit":
        return low if side == "buy" else high
    return round_price((low + high) / 2, pip)


def _check_distance(
    signal: OpenSignal,
    settings: UserSettings,
    order_type: str,
    price: float,
    current: float,
    pip: float,
    canonical: str,
) -> None:
    limit = settings.max_entry_distance_pips
    if limit is None:
        return
    zone = signal.entry_range
    if zone is not None:
        low, high = min(zone), max(zone)
        distance = max(low - current, current - high, 0.0)
        what = f"entry zone {num(low)}-{num(high)}"
    elif order_type != "market":
        distance = abs(price - current)
        what = f"{order_type} entry {num(price)}"
    elif signal.entry is not None:
        distance = abs(signal.entry - current)
        what = f"entry {num(signal.entry)}"
    else:
        return
    pips = distance / pip
    if pips > limit + _EPS:
        raise Refusal(
            RefusalCode.TOO_FAR_FROM_PRICE,
            f"{what} is {num(round(pips, 1))} pips from the current {canonical} price "
            f"{num(current)}; this account allows at most {num(limit)} pips",
        )


def _take_profits(signal: OpenSignal, side: str, price: float, pip: float) -> tuple[float, ...]:
    if signal.tps:
        return signal.tps
    if signal.tp_pips:
        sign = 1 if side == "buy" else -1
        return tuple(round_price(price + sign * p * pip, pip) for p in signal.tp_pips)
    return ()


def _leg_targets(
    tps: tuple[float, ...], settings: UserSettings, side: str, price: float, notes: list[str]
) -> list[tuple[int, float | None]]:
    """(leg number, TP) of each leg to open, before sizing."""
    if not tps:
        return [(1, None)]
    if settings.take_profits.mode == "single":
        number = min(max(settings.take_profits.tp_number, 1), len(tps))
        targets = [(1, tps[number - 1])]
    else:
        targets = [(i + 1, tp) for i, tp in enumerate(tps)]
    kept: list[tuple[int, float | None]] = [
        (n, tp) for n, tp in targets if (tp > price if side == "buy" else tp < price)
    ]
    if len(kept) < len(targets):
        passed = ", ".join(f"TP{n} {num(tp)}" for n, tp in targets if (n, tp) not in kept)
        if not kept:
            raise Refusal(
                RefusalCode.TOO_FAR_FROM_PRICE,
                f"the {side} price {num(price)} is already past every take profit ({passed})",
            )
        notes.append(f"{passed} already passed by the price {num(price)}: no leg for it")
    return kept


def _total_lot(
    settings: UserSettings,
    quote: Quote,
    price: float,
    sl: float | None,
    balance: float | None,
    account_id: str,
    canonical: str,
    notes: list[str],
) -> float:
    lot = settings.lot
    if lot.mode == "risk_percent":
        if sl is None:
            raise Refusal(
                RefusalCode.MISSING_SL,
                "risk_percent sizing needs a stop loss and the signal has none: the risk is unbounded",
            )
        if balance is None:
            raise Refusal(
                RefusalCode.NO_ACCOUNT,
                f"the balance of account {account_id} is not known yet; "
                "risk_percent sizing needs it",
            )
        pips = abs(price - sl) / quote.pip_size
        risk = balance * lot.risk_percent / 100
        total = risk / (pips * quote.pip_value_per_lot)
        notes.append(
            f"risk {num(lot.risk_percent)}% of {num(balance)} = {num(round(risk, 2))} "
            f"over {num(round(pips, 1))} pips at {num(quote.pip_value_per_lot)}/pip/lot "
            f"= {num(round(total, 4))} lot"
        )
    elif lot.mode == "multiplier":
        total = lot.fixed_lot * lot.multiplier
    else:
        total = lot.fixed_lot
    if total > lot.max_lot + _EPS:
        notes.append(f"lot {num(round(total, 4))} capped at max_lot {num(lot.max_lot)}")
        total = lot.max_lot
    return total


def _split(
    total: float,
    targets: list[tuple[int, float | None]],
    quote: Quote,
    canonical: str,
    notes: list[str],
) -> tuple[LegPlan, ...]:
    step = quote.volume_step if quote.volume_step > 0 else 0.01
    steps = math.floor(total / step + _EPS)
    keep = len(targets)
    while keep and (steps // keep) * step < quote.min_volume - _EPS:
        keep -= 1
    if keep == 0:
        raise Refusal(
            RefusalCode.LOT_BELOW_MINIMUM,
            f"lot {num(round(total, 6))} is below the broker minimum {num(quote.min_volume)} "
            f"for {canonical}",
        )
    if keep < len(targets):
        dropped = ", ".join(f"TP{n}" for n, _ in targets[keep:])
        notes.append(
            f"lot {num(steps * step)} split over {len(targets)} legs falls below the minimum "
            f"{num(quote.min_volume)}: {dropped} dropped"
        )
    base, extra = divmod(steps, keep)
    legs = []
    for index, (number, tp) in enumerate(targets[:keep]):
        count = base + (1 if index < extra else 0)
        volume = min(round(count * step, 8), quote.max_volume)
        legs.append(LegPlan(leg=number, volume=volume, tp=tp))
    return tuple(legs)
