"""Pure parse results of one channel message, and the context a parse may use.

These are what the signal parser returns; they carry no envelope (the ingest
service wraps a result in a bus message elsewhere). Every result names the
`rule` that produced it, for the audit trail, and may carry further
instructions found in the same message (`also`): a close followed by a new
entry, a partial close plus breakeven, the second of several signals.

The union is tagged by `kind`, so a result round-trips through JSON:
`msgspec.json.decode(data, type=ParseResult)`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop"]
ModifyAction = Literal[
    "move_sl_to_entry",
    "move_sl",
    "set_sl",
    "set_tp",
    "add_entry",
    "move_entry",
    "set_levels",
]
# `all`, `partial`, `buy`, `sell`, or a leg selector of a layered position
CloseWhich = Literal[
    "all",
    "partial",
    "buy",
    "sell",
    "first_entries",
    "worst_entry",
    "worst_entries",
    "last_entry",
    "specific_entry",
]


class OpenSignal(msgspec.Struct, frozen=True, kw_only=True, tag="open", tag_field="kind"):
    """Open a position: a ticket, or a bare alert when the levels follow later.

    `entry` is the single written price (a reference for market orders);
    `entry_range` is `(low, high)` when two prices form a zone, and then
    `entry` is None. `sl_withheld` is set when the text names a stop but
    withholds it ("SL: VIP", "NO SL").
    """

    symbol: str | None = None
    side: Side | None = None
    order_type: OrderType = "market"
    entry: float | None = None
    entry_range: tuple[float, float] | None = None
    sl: float | None = None
    tps: tuple[float, ...] = ()
    sl_pips: float | None = None
    tp_pips: tuple[float, ...] | None = None
    extra_entries: tuple[float, ...] = ()
    sl_withheld: bool = False
    rule: str = ""
    also: tuple[Instruction, ...] = ()


class ModifySignal(msgspec.Struct, frozen=True, kw_only=True, tag="modify", tag_field="kind"):
    """Change an open trade or pending order.

    `value` is the new stop or entry (a price), the new targets (`set_tp`),
    or None when the message gives none ("SL to BE") or one that cannot be
    resolved without the trade ("SL down to 17"). `set_levels` (the details
    half of an alert-then-details pair) fills `entry`/`entry_range`/`sl`/`tps`.
    """

    action: ModifyAction
    symbol: str | None = None
    value: float | tuple[float, ...] | None = None
    entry: float | None = None
    entry_range: tuple[float, float] | None = None
    sl: float | None = None
    tps: tuple[float, ...] = ()
    sl_pips: float | None = None
    rule: str = ""
    also: tuple[Instruction, ...] = ()


class CloseSignal(msgspec.Struct, frozen=True, kw_only=True, tag="close", tag_field="kind"):
    """Close all or part of a position; `fraction` None means "some", unspecified."""

    symbol: str | None = None
    fraction: float | None = None
    which: CloseWhich = "all"
    rule: str = ""
    also: tuple[Instruction, ...] = ()


class CancelSignal(msgspec.Struct, frozen=True, kw_only=True, tag="cancel", tag_field="kind"):
    """Cancel pending orders (of one side when `side` is set)."""

    symbol: str | None = None
    side: Side | None = None
    rule: str = ""
    also: tuple[Instruction, ...] = ()


class Noise(msgspec.Struct, frozen=True, kw_only=True, tag="noise", tag_field="kind"):
    """Nothing to execute: reports, results, ads, chatter, analysis, conditional plans."""

    rule: str = ""
    also: tuple[Instruction, ...] = ()


class Rejected(msgspec.Struct, frozen=True, kw_only=True, tag="rejected", tag_field="kind"):
    """Looks like a trade but cannot be executed safely; `reason` says why, with the values."""

    reason: str
    rule: str = ""
    also: tuple[Instruction, ...] = ()


Instruction = OpenSignal | ModifySignal | CloseSignal | CancelSignal | Noise | Rejected
ParseResult = Instruction


class ParseContext(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the parser may know beyond the text; all of it optional.

    `default_symbol` is the channel's instrument when it trades one only
    (e.g. "XAUUSD"); `reply_to` is the parse result of the message replied
    to; `recent` the channel's latest results, oldest first. The parser uses
    them to name the symbol a message leaves out and to resolve abbreviated
    prices ("SL 33" in a gold channel trading near 4233).
    """

    default_symbol: str | None = None
    reply_to: ParseResult | None = None
    recent: tuple[ParseResult, ...] = ()
