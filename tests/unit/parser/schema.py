"""The public result schema of shared/signals/README.md, as a small validator for tests."""

from __future__ import annotations

from typing import Any

_NUMBER = (int, float)
_OPEN_FIELDS = (
    "symbol",
    "side",
    "order_type",
    "entry",
    "entry_range",
    "sl",
    "tps",
    "sl_pips",
    "tp_pips",
)
_ACTIONS = {
    "move_sl_to_entry",
    "move_sl",
    "set_sl",
    "set_tp",
    "add_entry",
    "move_entry",
    "set_levels",
}
_WHICH = {
    "all",
    "partial",
    "buy",
    "sell",
    "first_entries",
    "worst_entry",
    "worst_entries",
    "last_entry",
    "specific_entry",
}


def _num_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, _NUMBER) and not isinstance(v, bool))


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and all(_num_or_none(x) and x is not None for x in v)


def problems(row: dict[str, Any]) -> list[str]:
    """What is wrong with one public result; empty when it validates."""
    kind = row.get("kind")
    out: list[str] = []
    if kind == "open":
        for f in _OPEN_FIELDS:
            if f not in row:
                out.append(f"open lacks {f}")
        if not (row.get("symbol") is None or isinstance(row.get("symbol"), str)):
            out.append("symbol not str/null")
        if row.get("side") not in ("buy", "sell", None):
            out.append(f"side {row.get('side')!r}")
        if row.get("order_type") not in ("market", "limit", "stop"):
            out.append(f"order_type {row.get('order_type')!r}")
        for f in ("entry", "sl", "sl_pips"):
            if not _num_or_none(row.get(f)):
                out.append(f"{f} not a number")
        er = row.get("entry_range")
        if er is not None and not (_numbers(er) and len(er) == 2 and er[0] <= er[1]):
            out.append(f"entry_range {er!r}")
        if er is not None and row.get("entry") is not None:
            out.append("both entry and entry_range")
        if not _numbers(row.get("tps")):
            out.append("tps not a list of numbers")
        if row.get("tp_pips") is not None and not _numbers(row.get("tp_pips")):
            out.append("tp_pips not a list")
    elif kind == "modify":
        if row.get("action") not in _ACTIONS:
            out.append(f"action {row.get('action')!r}")
        v = row.get("value")
        if not (_num_or_none(v) or _numbers(v)):
            out.append(f"value {v!r}")
    elif kind == "close":
        if row.get("which") not in _WHICH:
            out.append(f"which {row.get('which')!r}")
        f = row.get("fraction")
        if not (f is None or (_num_or_none(f) and 0 < f <= 1)):
            out.append(f"fraction {f!r}")
    elif kind == "cancel":
        if row.get("side") not in ("buy", "sell", None):
            out.append(f"side {row.get('side')!r}")
    elif kind == "rejected":
        if not isinstance(row.get("reason"), str) or not row["reason"]:
            out.append("rejected without a reason")
    elif kind != "noise":
        out.append(f"kind {kind!r}")
    for item in row.get("also", ()):
        out.extend(f"also: {p}" for p in problems(item))
    return out
