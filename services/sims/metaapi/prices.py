"""Starting prices of the stand-in's market, on the paper broker's symbol table.

The symbols, their specifications and spreads are the paper broker's
(`paper_feed.DEFAULT_SYMBOLS`); only the levels differ: the paper broker's are
fixed test levels, the stand-in opens near where markets trade now, so a signal
copied from a real channel lands within reach of its entry.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec

from services.paper.feed import DEFAULT_SYMBOLS, PaperSymbol

# bids, late 2026
DEFAULT_BIDS: dict[str, float] = {
    "XAUUSD": 4350.0,
    "XAGUSD": 55.0,
    "EURUSD": 1.16,
    "GBPUSD": 1.33,
    "AUDUSD": 0.66,
    "NZDUSD": 0.58,
    "USDCAD": 1.39,
    "USDCHF": 0.80,
    "EURGBP": 0.87,
    "USDJPY": 155.0,
    "EURJPY": 180.0,
    "GBPJPY": 206.0,
    "US30": 47000.0,
    "NAS100": 25000.0,
    "GER40": 24000.0,
    "BTCUSD": 90000.0,
}


def load_bids(path: str | Path) -> dict[str, float]:
    """The default bids overridden by a JSON file `{"SYMBOL": bid, ...}`."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"--prices {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"--prices {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"--prices {path}: expected an object symbol -> bid, found {raw!r}")
    bids = dict(DEFAULT_BIDS)
    for symbol, bid in raw.items():
        if symbol not in DEFAULT_SYMBOLS:
            known = ", ".join(sorted(DEFAULT_SYMBOLS))
            raise ValueError(f"--prices {path}: unknown symbol {symbol!r} (known: {known})")
        if isinstance(bid, bool) or not isinstance(bid, int | float) or not bid > 0:
            raise ValueError(
                f"--prices {path}: bid of {symbol} must be a positive number, not {bid!r}"
            )
        if not math.isfinite(bid):
            raise ValueError(f"--prices {path}: bid of {symbol} must be finite, not {bid!r}")
        bids[symbol] = float(bid)
    return bids


def spread(symbol: str) -> float:
    """The symbol's usual spread in price units."""
    paper = DEFAULT_SYMBOLS[symbol]
    return round(paper.spread_points * paper.spec.point, paper.spec.digits)


def market_table(bids: dict[str, float]) -> dict[str, PaperSymbol]:
    """The paper symbol table with each symbol's walk starting so its first bid is `bids[s]`
    (the walk starts from the mid; the first quote is mid minus half the spread)."""
    table = {}
    for name, paper in DEFAULT_SYMBOLS.items():
        bid = bids.get(name, paper.start_price)
        table[name] = msgspec.structs.replace(paper, start_price=bid + spread(name) / 2)
    return table
