"""Order validation rules of the paper broker, with the MT5 codes a real server would use."""

from __future__ import annotations

from contracts import broker_codes as codes
from contracts.broker import Quote, SymbolSpec
from contracts.broker_codes import reject

_EPS = 1e-9


def check_volume(spec: SymbolSpec, volume: float) -> float:
    """The volume rounded to the step, or `Rejected` 10014."""
    steps = volume / spec.volume_step
    whole = round(steps)
    if volume < spec.min_volume - _EPS:
        why = f"is below the minimum {spec.min_volume}"
    elif volume > spec.max_volume + _EPS:
        why = f"is above the maximum {spec.max_volume}"
    elif abs(steps - whole) > 1e-6:
        why = f"is not a multiple of the step {spec.volume_step}"
    else:
        return round(whole * spec.volume_step, 8)
    raise reject(codes.INVALID_VOLUME, f"volume {volume} for {spec.symbol} {why}")


def check_stops(symbol: str, buy: bool, ref: float, sl: float | None, tp: float | None) -> None:
    for name, level, must_be_below in (("stop loss", sl, buy), ("take profit", tp, not buy)):
        if level is None:
            continue
        if level <= 0:
            raise reject(codes.INVALID_STOPS, f"{name} {level} for {symbol} must be positive")
        if must_be_below and level >= ref:
            raise reject(
                codes.INVALID_STOPS,
                f"{name} {level} for a {'buy' if buy else 'sell'} on {symbol} must be below {ref}",
            )
        if not must_be_below and level <= ref:
            raise reject(
                codes.INVALID_STOPS,
                f"{name} {level} for a {'buy' if buy else 'sell'} on {symbol} must be above {ref}",
            )


def check_pending_price(symbol: str, buy: bool, kind: str, price: float, quote: Quote) -> None:
    market = quote.ask if buy else quote.bid
    below = (kind == "limit") == buy  # buy limit and sell stop wait below the market
    if (below and price >= market) or (not below and price <= market):
        side = "buy" if buy else "sell"
        where = "below" if below else "above"
        raise reject(
            codes.INVALID_PRICE,
            f"{side} {kind} at {price} on {symbol} must be {where} the current"
            f" {'ask' if buy else 'bid'} {market}",
        )
