"""From a draft to a checked ticket: resolve readings, zones, side, and refuse unsafe ones.

A ticket is executable only when its levels agree: the stop on the loss
side of the entry, every target on the profit side, the side word (if any)
matching both. A message that breaks this is `Rejected` with the values in
the reason, never guessed at: copying a fat-fingered stop loses money.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.signals import OpenSignal, Rejected

from .levels import Draft, Num
from .numbers import closest, expand_abbreviation, reference_price

_MAX_SL_DISTANCE = 0.5  # a stop more than 50 % away from the entry is a typo
_MAX_ZONE_RATIO = 1.2  # zone edges further apart are two unrelated numbers
_MAX_TP_RATIO = 10.0


@dataclass(frozen=True, slots=True)
class Levels:
    """Resolved prices of a draft."""

    entry: float | None
    entry_range: tuple[float, float] | None
    sl: float | None
    tps: tuple[float, ...]
    extras: tuple[float, ...]
    side: str | None


def _value(num: Num, ref: float | None) -> float:
    value = num[0]
    if ref is None:
        return value
    if num[2]:
        value = closest((value, *num[2]), ref)
    return expand_abbreviation(value, ref)


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-4 else f"{v:.10f}".rstrip("0")


def resolve(d: Draft) -> Levels | Rejected:
    """Prices of the draft with abbreviations expanded and loose numbers placed."""
    nums = [n for n in d.entries]
    if d.sl is not None:
        nums.append(d.sl)
    nums.extend(n for _, n in d.tps)
    nums.extend(n for _, n, _ in d.loose)
    ref = reference_price([n[0] for n in nums])
    entries = [_value(n, ref) for n in d.entries]
    entry: float | None = None
    zone: tuple[float, float] | None = None
    sl = _value(d.sl, ref) if d.sl is not None else None
    tps = [(pos, _value(n, ref)) for pos, n in d.tps]
    if entries:
        lo, hi = min(entries), max(entries)
        if lo == hi:
            entry = entries[0]
        elif lo <= 0 or hi / lo > _MAX_ZONE_RATIO:
            return Rejected(
                reason=f"entry prices {_fmt(entries[0])} and {_fmt(entries[1])} are too far apart "
                "to be one zone",
                rule="zone_edges_apart",
            )
        elif d.entry_zone_line and not d.layered and _inside(lo, hi, sl, [t for _, t in tps]):
            # "Price Open @ 4097_4000" with targets inside: a typo, not a zone
            entry = entries[0]
        else:
            zone = (lo, hi)
    side = d.side
    lo_e = zone[0] if zone else entry
    hi_e = zone[1] if zone else entry
    if d.loose:
        side_hint = side or _infer(lo_e, hi_e, sl, [t for _, t in tps])
        for pos, n, hint in d.loose:
            v = _value(n, ref)
            role = hint
            if side_hint in ("buy", "sell") and lo_e is not None and hi_e is not None:
                profit = v > hi_e if side_hint == "buy" else v < lo_e
                loss = v < lo_e if side_hint == "buy" else v > hi_e
                role = "tp" if profit else "sl" if loss else None
            if role == "sl" and sl is None:
                sl = v
            elif role == "tp" or (role is None and sl is not None and lo_e is None):
                tps.append((pos, v))
    tps.sort(key=lambda t: t[0])
    seen: set[float] = set()
    unique: list[float] = []
    for _, t in tps:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    extras = tuple(_value((x, "", ()), ref) for x in d.extras)
    return Levels(entry, zone, sl, tuple(unique), extras, side)


def _inside(lo: float, hi: float, sl: float | None, tps: list[float]) -> bool:
    if sl is not None and lo < sl < hi:
        return True
    return any(lo < t < hi for t in tps)


def _infer(lo: float | None, hi: float | None, sl: float | None, tps: list[float]) -> str | None:
    """The side the levels imply, "?" when they contradict, None when they say nothing."""
    votes: set[str] = set()
    if lo is not None and hi is not None:
        if sl is not None:
            votes.add("buy" if sl < lo else "sell" if sl > hi else "?")
        for t in tps:
            votes.add("buy" if t > lo else "sell" if t < hi else "?")
    elif sl is not None and tps:
        for t in tps:
            votes.add("buy" if t > sl else "sell" if t < sl else "?")
    if not votes:
        return None
    return votes.pop() if len(votes) == 1 else "?"


def check(lv: Levels, side_word: str | None) -> str | Rejected:
    """The ticket's side, or why it is refused."""
    lo = lv.entry_range[0] if lv.entry_range else lv.entry
    hi = lv.entry_range[1] if lv.entry_range else lv.entry
    geometry = _infer(lo, hi, lv.sl, list(lv.tps))
    if geometry == "?":
        return Rejected(reason=_contradiction(lv, side_word), rule="levels_contradict")
    side = side_word or geometry
    if side is None:
        return Rejected(reason="no side: neither written nor implied by the levels", rule="no_side")
    if geometry is not None and geometry != side:
        return Rejected(
            reason=f"side {side} but the stop/targets lie on the {geometry} side of the entry "
            f"({_levels(lv)})",
            rule="side_contradicts_levels",
        )
    ref = lo if lo is not None else None
    if ref is not None and ref > 0:
        if lv.sl is not None and abs(lv.sl - ref) / ref > _MAX_SL_DISTANCE:
            return Rejected(
                reason=f"stop {_fmt(lv.sl)} is implausibly far from entry {_fmt(ref)}",
                rule="sl_implausible",
            )
        for t in lv.tps:
            if not (ref / _MAX_TP_RATIO * 2 <= t <= ref * _MAX_TP_RATIO):
                return Rejected(
                    reason=f"target {_fmt(t)} is implausibly far from entry {_fmt(ref)}",
                    rule="tp_implausible",
                )
    return side


def _levels(lv: Levels) -> str:
    entry = (
        f"{_fmt(lv.entry_range[0])}-{_fmt(lv.entry_range[1])}"
        if lv.entry_range
        else _fmt(lv.entry)
        if lv.entry is not None
        else "none"
    )
    sl = _fmt(lv.sl) if lv.sl is not None else "none"
    tps = ",".join(_fmt(t) for t in lv.tps) or "none"
    return f"entry {entry}, sl {sl}, tps {tps}"


def _contradiction(lv: Levels, side_word: str | None) -> str:
    return f"stop and targets are not on opposite sides of the entry ({_levels(lv)})"


def order_type(d: Draft, lv: Levels) -> str:
    """`limit` only when the text says so and names a price; `stop` for stop entries."""
    has_price = lv.entry is not None or lv.entry_range is not None
    if d.order in ("stop",) and has_price:
        return "stop"
    if d.order in ("above", "over", "below", "under") and has_price:
        breakout = (lv.side == "buy") == (d.order in ("above", "over"))
        return "stop" if breakout else "limit"
    if (d.order == "limit" or d.has_limit) and has_price:
        return "limit"
    return "market"


def build_open(d: Draft, symbol: str | None, rule: str) -> OpenSignal | Rejected:
    """The checked ticket of a draft."""
    lv = resolve(d)
    if isinstance(lv, Rejected):
        return lv
    if d.conflict and d.side is not None and lv.sl is None and not lv.tps:
        return Rejected(reason="both buy and sell written, and no levels to tell", rule="two_sides")
    side = check(lv, None if d.conflict else d.side)
    if isinstance(side, Rejected):
        return side
    lv = Levels(lv.entry, lv.entry_range, lv.sl, lv.tps, lv.extras, side)
    return OpenSignal(
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        order_type=order_type(d, lv),  # type: ignore[arg-type]
        entry=lv.entry,
        entry_range=lv.entry_range,
        sl=lv.sl,
        tps=lv.tps,
        sl_pips=d.sl_pips,
        tp_pips=tuple(d.tp_pips) if d.tp_pips else None,
        extra_entries=lv.extras,
        sl_withheld=d.sl_withheld,
        rule=rule,
    )
