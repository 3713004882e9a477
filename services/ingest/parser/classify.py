"""Deciding what a message is: a ticket, a management instruction, levels only, or noise.

Order of the decision:
1. Instructions that lead the message ("Chốt sell", then a new ticket) come
   first; the ticket after them goes into `also`.
2. A ticket: a side word with a price or a stop/target, or a symbol with an
   entry and levels whose geometry implies the side. Unsafe ones are
   `Rejected`. Several tickets in one message: the first, the rest in `also`.
3. Management prose anywhere ("We move the stop loss to 1248").
4. A bare alert ("Gold buy now") unless it is speculative, a report or a question.
5. Levels without a side: the details half of an alert (`set_levels`),
   targets only (`set_tp`), a lone stop (`set_sl`).
6. Everything else is noise.
"""

from __future__ import annotations

import re

from contracts.signals import (
    CancelSignal,
    CloseSignal,
    Instruction,
    ModifySignal,
    Noise,
    OpenSignal,
    ParseContext,
    Rejected,
)

from . import levels as lv
from . import manage
from . import tokens as tk
from .geometry import Levels, build_open, resolve
from .manage import Found
from .normalize import normalize
from .numbers import expand_abbreviation

_MAX_CHARS = 20_000  # longer messages are articles; their head is enough
_WEAK_MAX_WORDS = 12

_REPORT_RE = re.compile(
    r"(?<![:=])(?<![:=] )[+-][ \t]?\d+(?:\.\d+)?[ \t]?\.?[ \t]?(?:pips?|pts|points?)(?![a-z])"
    r"|(?<![a-z])(?:hit|done|closed|results?|running|profit(?:s)?[ \t]+(?:made|booked)|"
    r"trade[ \t]+of[ \t]+the[ \t]+day)(?![a-z])"
)
_SPECULATIVE_RE = re.compile(
    r"(?<![a-zа-яё\u00c0-\u024f\u1e00-\u1eff])(?:looking|look[ \t]for|watch\w*|waiting|wait[ \t]for|"
    r"expect\w*|may|might|could|possible|possibly|maybe|perhaps|probably|może|может|có[ \t]thể|idea|"
    r"plan|bias|analysis|outlook|forecast|prediction|if|when|once|would|think|"
    r"recommend\w*|should)(?![a-zа-яё\u00c0-\u024f\u1e00-\u1eff])"
)
_NOT_NL_RE = re.compile(r"[^\n]")
_SET_SL_WORDS = frozenset(("place", "placed", "put", "new", "updated", "update", "now", "adjusted"))
_PRIORITY = {"add_entry": 1}


def parse_text(text: str, context: ParseContext | None) -> Instruction:
    """The classification of one message (may raise on a bug; `parse` guards it)."""
    norm = normalize(text[:_MAX_CHARS])
    if not norm:
        return Noise(rule="empty")
    tokens = tk.tokenize(norm)
    found = manage.find(norm)
    groups = _split(norm, tokens)
    draft = lv.read(norm, groups[0])
    symbol = _message_symbol(tokens) or _context_symbol(context)

    ticket_draft, ticket_text = draft, norm
    if found:
        # the ticket is read without the instructions' words ("chốt sell buy 4142")
        ticket_text = _blank(norm, found)
        ticket_draft = lv.read(ticket_text, _split(ticket_text, tk.tokenize(ticket_text))[0])
    ticket = _open(ticket_draft, ticket_text, symbol, context)
    if ticket is not None and (ticket_draft.entries or ticket_draft.has_exits):
        first = draft.first_pos if draft.first_pos >= 0 else len(norm)
        leading = [f for f in found if f.start <= first]
        if leading:
            return _instructions(leading, draft, symbol, context, [ticket])
        extra = [_open(lv.read(norm, g), norm, None, context) for g in groups[1:]]
        more = tuple(t for t in extra if isinstance(t, OpenSignal))
        return _with_also(ticket, more) if more else ticket

    if found:
        return _instructions(found, draft, symbol, context, [])
    if ticket is not None:
        return ticket
    return _levels_only(draft, tokens, symbol)


def _split(text: str, tokens: list[tk.Token]) -> list[list[tk.Token]]:
    """Token groups of the separate tickets in one message (usually one)."""
    kinds = [tok[0] for tok in tokens]
    if kinds.count(tk.SIDE) + kinds.count(tk.SYM) <= 1:  # fast path: one headline, one ticket
        return [tokens]
    groups: list[list[tk.Token]] = [[]]
    group_symbol: str | None = None
    has_levels = False
    prev_nl = False
    blank_before = False
    for i, tok in enumerate(tokens):
        kind = tok[0]
        if kind == tk.NL:
            blank_before = prev_nl
            prev_nl = True
            groups[-1].append(tok)
            continue
        if prev_nl or i == 0:
            # the first token of a line: does a new ticket start here?
            sides, syms = _line_heads(tokens, i)
            new_symbol = bool(syms) and group_symbol is not None and group_symbol not in syms
            if has_levels and ((blank_before and (sides or new_symbol)) or new_symbol):
                groups.append([])
                has_levels = False
                group_symbol = None
            if group_symbol is None and syms:
                group_symbol = syms[0]
        prev_nl = False
        if kind in (tk.SL, tk.TP):
            has_levels = True
        groups[-1].append(tok)
    return groups


def _line_heads(tokens: list[tk.Token], i: int) -> tuple[bool, list[str]]:
    """Whether the line starting at token `i` has a side word, and its symbols in order."""
    sides = False
    syms: list[str] = []
    for j in range(i, len(tokens)):
        tok = tokens[j]
        kind = tok[0]
        if kind == tk.NL:
            break
        if kind == tk.SIDE:
            sides = True
        elif kind == tk.SYM:
            syms.append(tok[3])  # type: ignore[arg-type]
    return sides, syms


def _message_symbol(tokens: list[tk.Token]) -> str | None:
    tag = None
    for tok in tokens:
        if tok[0] == tk.SYM:
            return tok[3]  # type: ignore[return-value]
        if tok[0] == tk.TAG and tag is None:
            tag = tok[3]
    return tag  # type: ignore[return-value]


def _context_symbol(context: ParseContext | None) -> str | None:
    if context is None:
        return None
    if context.default_symbol:
        return context.default_symbol
    for result in (context.reply_to, *reversed(context.recent)):
        symbol = getattr(result, "symbol", None)
        if symbol:
            return str(symbol)
    return None


def _context_price(context: ParseContext | None) -> float | None:
    """A recent price of the channel, to complete abbreviated prices."""
    if context is None:
        return None
    for result in (context.reply_to, *reversed(context.recent)):
        if isinstance(result, OpenSignal):
            if result.entry is not None:
                return result.entry
            if result.entry_range is not None:
                return result.entry_range[0]
            if result.sl is not None:
                return result.sl
    return None


def _blank(text: str, items: list[Found]) -> str:
    for f in items:
        span = text[f.start : f.end]
        # spans may overlap: blanking twice is blanking once
        blank = _NOT_NL_RE.sub(" ", span) if "\n" in span else " " * len(span)
        text = text[: f.start] + blank + text[f.end :]
    return text


def _open(
    d: lv.Draft, text: str, symbol: str | None, context: ParseContext | None
) -> OpenSignal | Rejected | None:
    """The ticket of a draft, or None when the draft is no ticket."""
    sym = d.symbol or d.tag or symbol or _context_symbol(context)
    if d.side is None:
        if d.symbol and d.entries and (d.sl or d.tps or d.loose):
            return build_open(d, sym, "ticket_sideless")
        return None
    if d.entries or d.has_exits:
        if not d.has_exits and _REPORT_RE.search(text):
            return None
        if not d.labels and not d.entries and _SPECULATIVE_RE.search(text):
            return None
        return build_open(d, sym, "ticket")
    # a bare alert: "Gold buy now", "Buy again"
    if (
        len(text.split()) > _WEAK_MAX_WORDS
        or "?" in text
        or _REPORT_RE.search(text)
        or _SPECULATIVE_RE.search(text)
        or d.conflict
    ):
        return None
    return OpenSignal(symbol=sym, side=d.side, rule="alert")  # type: ignore[arg-type]


def _with_also(result: Instruction, more: tuple[Instruction, ...]) -> Instruction:
    import msgspec

    # A message's instructions are a set: the same instruction said twice ("close
    # half now, secure profits") must not become two half-closes (75 % closed).
    kept: list[Instruction] = []
    seen = {_essence(result)}
    for item in (*result.also, *more):
        key = _essence(item)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return msgspec.structs.replace(result, also=tuple(kept))


def _essence(item: Instruction) -> bytes:
    """An instruction without its rule name or nested instructions, for comparison."""
    import msgspec

    return msgspec.json.encode(msgspec.structs.replace(item, rule="", also=()))


def _instructions(
    found: list[Found],
    draft: lv.Draft,
    symbol: str | None,
    context: ParseContext | None,
    also: list[Instruction],
) -> Instruction:
    ordered = sorted(found, key=lambda f: (_PRIORITY.get(f.action, 0), f.start))
    results = [_instruction(f, draft, symbol, context) for f in ordered]
    return _with_also(results[0], (*results[1:], *also))


def _instruction(
    f: Found, draft: lv.Draft, symbol: str | None, context: ParseContext | None
) -> Instruction:
    ref = _context_price(context)

    def price(v: float | None) -> float | None:
        return expand_abbreviation(v, ref) if v is not None and ref is not None else v

    if f.action == "be":
        return ModifySignal(action="move_sl_to_entry", symbol=symbol, rule="breakeven")
    if f.action == "move_sl":
        value = f.value
        if value is None and draft.sl is not None:
            value = draft.sl[0]
        return ModifySignal(action="move_sl", symbol=symbol, value=price(value), rule="move_sl")
    if f.action == "move_entry":
        return ModifySignal(
            action="move_entry", symbol=symbol, value=price(f.value), rule="move_entry"
        )
    if f.action == "add_entry":
        return ModifySignal(
            action="add_entry", symbol=symbol, value=price(f.value), rule="add_entry"
        )
    if f.action == "close":
        return CloseSignal(
            symbol=symbol,
            fraction=f.fraction,
            which=f.which or "all",  # type: ignore[arg-type]
            rule="close",
        )
    return CancelSignal(symbol=symbol, side=f.side, rule="cancel")  # type: ignore[arg-type]


def _levels_only(d: lv.Draft, tokens: list[tk.Token], symbol: str | None) -> Instruction:
    levels = resolve(d)
    if isinstance(levels, Rejected):
        return levels
    sym = d.symbol or d.tag or symbol
    if levels.tps and (levels.entry is not None or levels.entry_range is not None or levels.sl):
        return _set_levels(levels, d, sym)
    if levels.tps and not d.entries:
        return ModifySignal(action="set_tp", symbol=sym, value=levels.tps, rule="set_tp")
    if (levels.sl is not None or d.sl_pips is not None) and not d.entries:
        words = {t[3] for t in tokens if t[0] == tk.WORD}
        if words <= _SET_SL_WORDS:
            return ModifySignal(
                action="set_sl", symbol=sym, value=levels.sl, sl_pips=d.sl_pips, rule="set_sl"
            )
    return Noise(rule="no_instruction")


def _set_levels(levels: Levels, d: lv.Draft, symbol: str | None) -> ModifySignal:
    return ModifySignal(
        action="set_levels",
        symbol=symbol,
        entry=levels.entry,
        entry_range=levels.entry_range,
        sl=levels.sl,
        tps=levels.tps,
        sl_pips=d.sl_pips,
        rule="set_levels",
    )
