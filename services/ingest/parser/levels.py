"""Reading a ticket: which number is the entry, the stop, a target.

A small state machine walks the tokens. A label (or a side word, for the
entry) opens a slot; the next number fills it, even past words and line
breaks ("Stoploss" / "0.7530"). A target slot keeps taking numbers that are
joined to the previous one, or that stand alone on the following lines
(a list under "Targets:"), until a blank line or another label. Numbers no
slot claims are kept as `loose` when they stand alone on a line or behind
an emoji marker: geometry decides later whether they are targets or the
stop. Lines reporting an outcome ("TP1 hit +35 pips") are skipped whole.
"""

from __future__ import annotations

import re

from . import tokens as tk
from .numbers import expand_tail, ratio_ok

# the text between two numbers of one zone or list
_JOIN_RE = re.compile(
    r"[\s\-–—/_•~&,|()\[\]{}@:=.]*(?:(?:to|or|and|b/n|đến|до|i|y)(?![a-z]))?[\s\-–—/_•~&,|()\[\]{}@]*"
)
_INDEX_PRICE_RE = re.compile(r"\d\.\d{3,}")

_NONE, _ENTRY, _ADD, _SL, _SL_DONE, _TP = range(6)

# A number as read: (value, raw text, other readings)
Num = tuple[float, str, tuple[float, ...]]


class Draft:
    """What one signal's tokens say, before geometry checks it. Internal, mutable."""

    __slots__ = (
        "add_extra",
        "conflict",
        "entries",
        "entry_zone_line",
        "extras",
        "first_pos",
        "has_limit",
        "labels",
        "layered",
        "loose",
        "market",
        "order",
        "side",
        "side_pos",
        "sl",
        "sl_pips",
        "sl_withheld",
        "symbol",
        "symbols",
        "tag",
        "tp_pips",
        "tps",
    )

    def __init__(self) -> None:
        self.side: str | None = None
        self.side_pos = -1
        self.conflict = False
        self.order: str | None = None
        self.has_limit = False
        self.market = False
        self.symbol: str | None = None
        self.symbols: list[str] = []
        self.tag: str | None = None
        self.entries: list[Num] = []
        self.entry_zone_line = False  # two prices joined on one line ("4097_4000")
        self.layered = False  # entries from several lines or side words
        self.add_extra = False
        self.extras: list[float] = []
        self.sl: Num | None = None
        self.sl_withheld = False
        self.sl_pips: float | None = None
        self.tps: list[tuple[int, Num]] = []
        self.tp_pips: list[float] = []
        self.loose: list[tuple[int, Num, str | None]] = []
        self.labels = 0  # SL/TP/entry labels seen
        self.first_pos = -1

    @property
    def has_levels(self) -> bool:
        return bool(self.entries or self.sl or self.tps or self.loose)

    @property
    def has_exits(self) -> bool:
        """A stop or a target, as a price or in pips."""
        return bool(self.sl or self.tps or self.sl_pips is not None or self.tp_pips or self.loose)


def _line_kinds(tokens: list[tk.Token]) -> list[set[int]]:
    lines: list[set[int]] = [set()]
    for tok in tokens:
        if tok[0] == tk.NL:
            lines.append(set())
        else:
            lines[-1].add(tok[0])
    return lines


def _joined(text: str, prev: tk.Token | None, tok: tk.Token) -> bool:
    if prev is None:
        return False
    gap = text[prev[2] : tok[1]]
    return "\n" not in gap and _JOIN_RE.fullmatch(gap) is not None


def _num(tok: tk.Token) -> Num:
    raw: str
    alts: tuple[float, ...]
    raw, alts = tok[4]  # type: ignore[misc]
    return (tok[3], raw, alts)  # type: ignore[return-value]


def _chain(prev: Num, tok: tk.Token) -> Num | None:
    """The number of `tok` read as the next member of a zone or list after `prev`."""
    _, raw, alts = _num(tok)
    full = expand_tail(prev[1], raw)
    if full is None:
        return None
    return (float(full), full, alts)


def read(text: str, tokens: list[tk.Token]) -> Draft:
    """The draft of one signal from its tokens."""
    d = Draft()
    kinds = _line_kinds(tokens)
    report = [tk.REPORT in k for k in kinds]
    bare = [bool(k) and k <= {tk.NUM, tk.MARK} for k in kinds]
    tp1_seen = False
    line = 0
    slot = _NONE
    slot_line = -1
    slot_values = 0  # values the open slot has taken
    value_line = -1  # line of the slot's last value
    last: tk.Token | None = None  # the slot's last number token
    last_num: Num | None = None
    ignore_line = False
    mark: str | None = None
    prev_kind = tk.NL
    blank = False
    words = 0
    for tok in tokens:
        kind = tok[0]
        if kind == tk.NL:
            if prev_kind == tk.NL and not blank:
                blank = True
                if slot in (_TP, _ENTRY, _ADD) and slot_values:
                    slot = _NONE
            line += 1
            ignore_line = False
            mark = None
            prev_kind = kind
            continue
        if report[line]:
            prev_kind = kind
            continue
        if kind == tk.NUM:
            if ignore_line or tk.signed_before(text, tok[1]) == "+":
                prev_kind = kind
                continue
            num = _num(tok)
            if (mark is not None and slot not in (_TP,)) or (
                slot in (_SL_DONE, _NONE) and bare[line] and (d.labels or d.entries)
            ):
                d.loose.append((tok[1], num, mark))
                slot = _NONE
            elif slot == _ENTRY:
                joined = _joined(text, last, tok) and last_num is not None
                if not d.entries:
                    d.entries.append(num)
                elif joined and last_num is not None:
                    chained = _chain(last_num, tok)
                    if chained is not None:
                        d.entries.append(chained)
                        num = chained
                        d.entry_zone_line = True
                elif bare[line] and line != value_line and blank is False:
                    d.entries.append(num)
                    d.layered = True
                else:
                    d.extras.append(num[0])
                slot_values += 1
                value_line = line
            elif slot == _ADD:
                if slot_values and _joined(text, last, tok) and last_num is not None:
                    chained = _chain(last_num, tok)
                    num = chained or num
                if d.add_extra:
                    d.extras.append(num[0])
                else:
                    d.entries.append(num)
                    d.layered = True
                slot_values += 1
                value_line = line
            elif slot == _SL:
                d.sl = num
                slot = _SL_DONE
            elif slot == _TP:
                accept = False
                if slot_values == 0:
                    accept = True
                    if last is None and _INDEX_PRICE_RE.fullmatch(num[1]):
                        # "TP 3.4408": the target's index, then the price
                        num = (num[0], num[1], (*num[2], float(num[1].split(".")[1])))
                elif line == value_line and _joined(text, last, tok) and last_num is not None:
                    chained = _chain(last_num, tok)
                    if chained is not None:
                        num, accept = chained, True
                elif line != value_line and bare[line]:
                    accept = True
                if accept:
                    d.tps.append((tok[1], num))
                    slot_values += 1
                    value_line = line
            elif not d.entries and not d.labels:
                # a price in the headline, before any label: the entry
                d.entries.append(num)
                slot, slot_values, value_line = _ENTRY, 1, line
            if d.first_pos < 0:
                d.first_pos = tok[1]
            last, last_num = tok, num
            mark = None
        elif kind == tk.SIDE:
            side = tok[3]
            order = tok[4]
            if d.side is None:
                d.side = side  # type: ignore[assignment]
                d.side_pos = tok[1]
                if order:
                    d.order = order  # type: ignore[assignment]
                if not d.entries:
                    slot, slot_line, slot_values, last = _ENTRY, line, 0, None
            else:
                if side != d.side:
                    d.conflict = True
                if d.entries:
                    d.add_extra = prev_kind == tk.MORE
                    slot, slot_line, slot_values, last = _ADD, line, 0, None
                    if order and not d.add_extra:
                        d.order = order  # type: ignore[assignment]
                elif slot != _ENTRY:
                    slot, slot_line, slot_values, last = _ENTRY, line, 0, None
            if d.first_pos < 0:
                d.first_pos = tok[1]
        elif kind == tk.TP:
            if tok[3] == 1:
                if tp1_seen and d.tps:
                    break  # the ticket repeated in a second layout
                tp1_seen = True
            slot, slot_line, slot_values, last = _TP, line, 0, None
            words = 0
            d.labels += 1
            if d.first_pos < 0:
                d.first_pos = tok[1]
        elif kind == tk.SL:
            d.labels += 1
            if d.sl is None and not d.sl_withheld and d.sl_pips is None:
                slot, slot_line, last = _SL, line, None
            else:
                slot = _NONE
            if d.first_pos < 0:
                d.first_pos = tok[1]
        elif kind == tk.ENTRY:
            d.labels += 1
            if not d.entries:
                slot, slot_line, slot_values, last = _ENTRY, line, 0, None
            elif slot != _ENTRY:
                slot = _NONE
            if d.first_pos < 0:
                d.first_pos = tok[1]
        elif kind == tk.PIPS:
            if not tok[4] and not ignore_line:
                if slot == _SL:
                    d.sl_pips = tok[3][0]  # type: ignore[index]
                    slot = _SL_DONE
                elif slot == _TP and slot_values == 0:
                    d.tp_pips.extend(tok[3])  # type: ignore[arg-type]
        elif kind == tk.NOSL:
            d.sl_withheld = True
            d.labels += 1
            if slot == _SL:
                slot = _NONE
        elif kind == tk.HELD:
            if slot == _SL:
                d.sl_withheld = True
                slot = _SL_DONE
        elif kind == tk.RUNNER:
            if slot == _SL:
                d.sl_withheld = True
                slot = _SL_DONE
            elif slot == _TP and tok[3] == "every":
                slot = _NONE
        elif kind == tk.LIMIT:
            if not (slot == _ADD and d.add_extra):
                d.has_limit = True
        elif kind == tk.MARKET:
            d.market = True
        elif kind == tk.IGNL:
            ignore_line = True
        elif kind == tk.SYM:
            sym = tok[3]
            if d.symbol is None:
                d.symbol = sym  # type: ignore[assignment]
            d.symbols.append(sym)  # type: ignore[arg-type]
        elif kind == tk.TAG:
            if d.tag is None:
                d.tag = tok[3]  # type: ignore[assignment]
        elif kind == tk.MARK:
            mark = tok[3]  # type: ignore[assignment]
        elif kind == tk.WORD and slot == _TP and value_line == line:
            slot = _NONE
        if kind != tk.NL:
            blank = False
            if kind not in (tk.MARK, tk.NUM):
                mark = None
            if kind == tk.WORD and slot == _TP and slot_values == 0:
                words += 1
                if words > 2:  # a comment after the label, not its price
                    slot = _NONE
        prev_kind = kind
    del slot_line
    return d


__all__ = ["Draft", "Num", "ratio_ok", "read"]
