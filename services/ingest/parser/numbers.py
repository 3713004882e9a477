"""Price arithmetic: shorthand tails, abbreviated prices, choosing between readings.

Channels abbreviate in two ways. A zone or list shares its leading digits
("4562/68", "105.70-85", "0.00002150 - 2180"): the tail replaces the last
digits of the written number before it. A level far from any other shares
the leading digits of the trade's price ("Entry 4071.27 Tp 69" means 4069,
"sl 40" under a 4346 buy means 4340): the short number completes the
reference's integer part, nearest to it.
"""

from __future__ import annotations

import math


def ratio_ok(a: float, b: float, limit: float = 2.0) -> bool:
    """Whether two positive prices are within a factor `limit` of each other."""
    if a <= 0 or b <= 0:
        return False
    r = a / b
    return 1 / limit <= r <= limit


def expand_tail(prev_raw: str, raw: str) -> str | None:
    """The full written form of `raw` read as a tail of `prev_raw`, or None.

    Returns `raw` itself when it is already a price of the same size.
    """
    try:
        prev, value = float(prev_raw), float(raw)
    except ValueError:
        return None
    point = prev_raw.find(".")
    decimals = len(prev_raw) - point - 1 if point >= 0 else 0
    # "105.70-85": an integer no longer than the decimals is a tail, whatever its size
    if ratio_ok(prev, value) and not (raw.isdigit() and 0 < len(raw) <= decimals):
        return raw
    if "." in raw or not raw.isdigit():
        return None
    digits = prev_raw.replace(".", "")
    if len(raw) >= len(digits):
        return None
    merged = digits[: len(digits) - len(raw)] + raw
    if point >= 0:
        merged = merged[:point] + "." + merged[point:]
    try:
        if ratio_ok(float(merged), prev, 1.2):
            return merged
    except ValueError:
        return None
    return None


def int_digits(value: float) -> int:
    """Digits of the integer part (0 for values below 1)."""
    whole = int(abs(value))
    return len(str(whole)) if whole else 0


def expand_abbreviation(value: float, ref: float) -> float:
    """`value` completed with the leading digits of `ref`, when it is short for it.

    Only when at least two leading digits are missing and the reference is a
    price of 100 or more; otherwise `value` is returned unchanged.
    """
    if ref < 100 or value <= 0 or value >= ref / 5:
        return value
    k = int_digits(value)
    if k == 0 or k > int_digits(ref) - 2:
        return value
    unit = 10**k
    base = math.floor(ref / unit) * unit
    best = value
    best_gap = math.inf
    for step in (-unit, 0, unit):
        candidate = base + step + value
        gap = abs(candidate - ref)
        if gap < best_gap:
            best, best_gap = candidate, gap
    return round(best, 10)


def closest(values: tuple[float, ...], ref: float) -> float:
    """The value nearest `ref` in ratio (the first one on a tie)."""
    best = values[0]
    best_gap = math.inf
    for v in values:
        if v <= 0:
            continue
        gap = abs(math.log(v / ref))
        if gap < best_gap - 1e-12:
            best, best_gap = v, gap
    return best


def reference_price(values: list[float]) -> float | None:
    """A typical price of the message: the median of its largest-magnitude values."""
    positive = [v for v in values if v > 0]
    if not positive:
        return None
    digits = [int_digits(v) for v in positive]  # once per value: it formats a string
    top = max(digits)
    bucket = sorted(v for v, k in zip(positive, digits, strict=True) if k == top)
    return bucket[len(bucket) // 2]
