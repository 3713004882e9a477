"""The public JSON shape of a parse result (shared/signals/README.md).

`{"kind", ...fields}`; `also` (further instructions) and `n_signals`
(several tickets in one message) only when present; `rule` and other
audit-only fields are left out.
"""

from __future__ import annotations

from typing import Any

from contracts.signals import (
    CancelSignal,
    CloseSignal,
    Instruction,
    ModifySignal,
    OpenSignal,
    Rejected,
)

KINDS = frozenset(("open", "modify", "close", "cancel", "noise", "rejected"))


def _range(r: tuple[float, float] | None) -> list[float] | None:
    return [r[0], r[1]] if r is not None else None


def _fields(result: Instruction) -> dict[str, Any]:
    if isinstance(result, OpenSignal):
        out: dict[str, Any] = {
            "kind": "open",
            "symbol": result.symbol,
            "side": result.side,
            "order_type": result.order_type,
            "entry": result.entry,
            "entry_range": _range(result.entry_range),
            "sl": result.sl,
            "tps": list(result.tps),
            "sl_pips": result.sl_pips,
            "tp_pips": list(result.tp_pips) if result.tp_pips is not None else None,
        }
        if result.extra_entries:
            out["extra_entries"] = list(result.extra_entries)
        return out
    if isinstance(result, ModifySignal):
        value = result.value
        out = {
            "kind": "modify",
            "action": result.action,
            "symbol": result.symbol,
            "value": list(value) if isinstance(value, tuple) else value,
        }
        if result.action == "set_levels":
            out["entry"] = result.entry
            out["entry_range"] = _range(result.entry_range)
            out["sl"] = result.sl
            out["tps"] = list(result.tps)
        if result.sl_pips is not None:
            out["pips"] = result.sl_pips
        return out
    if isinstance(result, CloseSignal):
        return {
            "kind": "close",
            "symbol": result.symbol,
            "fraction": result.fraction,
            "which": result.which,
        }
    if isinstance(result, CancelSignal):
        return {"kind": "cancel", "symbol": result.symbol, "side": result.side}
    if isinstance(result, Rejected):
        return {"kind": "rejected", "reason": result.reason}
    return {"kind": "noise"}


def to_public(result: Instruction) -> dict[str, Any]:
    """The public JSON object of a result."""
    out = _fields(result)
    if result.also:
        out["also"] = [to_public(a) for a in result.also]
        if isinstance(result, OpenSignal):
            n = 1 + sum(1 for a in result.also if isinstance(a, OpenSignal))
            if n > 1:
                out["n_signals"] = n
    return out
