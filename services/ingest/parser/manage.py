"""Management prose: breakeven, stop moves, closes and cancels, in several languages.

Each finder returns `Found` items with the span of the words that gave the
instruction, so the classifier can tell an instruction that leads a message
("Chốt sell / Buy vàng 4327") from one in a ticket's footer ("SL to BE
whenever profit 20 pips"). An instruction is void when its clause is
conditional, advice or a question ("if 15M closes above", "always take
partials", "how much did you close?"), or a past-tense report by a member
("I closed some profits this time").
"""

from __future__ import annotations

import re
from typing import NamedTuple

_W = r"(?![a-zа-яё\u00c0-\u024f\u1e00-\u1eff])"
_B = r"(?<![a-zа-яё\u00c0-\u024f\u1e00-\u1eff])"
_SL = r"(?:sl|stop[ \t]?loss|stoploss|stop|стоп\w*)"


class Found(NamedTuple):
    """One instruction found in the text: span, action, details."""

    start: int
    end: int
    action: str  # be, move_sl, move_entry, add_entry, close, cancel
    value: float | None = None
    fraction: float | None = None
    which: str | None = None
    side: str | None = None


_BE_RE = re.compile(
    rf"{_B}(?<!buy )(?<!sell ){_SL}[ \t]*(?:to|at|on|@|->|=>|=|về|ve|na|в|w|tới)?[ \t]*(?:the[ \t]+)?"
    rf"(?:be|b\.e\.?|b/e|breakeven|break[ \t]?even|entry|entries|entry[ \t]price|open(?:ing)?[ \t]price|"
    rf"bu|бу|безубыт\w*|hòa[ \t]?vốn|hoà[ \t]?vốn|an[ \t]toàn){_W}"
    rf"|{_B}(?:set|move|put|make|moving|setting|ustaw\w*)[ \t]+(?:[a-z]+[ \t]+){{0,2}}?"
    rf"(?:be|b/e|breakeven|break[ \t]?even){_W}"
    rf"|{_B}(?:breakeven|break[ \t]even|безубыт\w*|risk[ \t-]?free|hòa[ \t]?vốn|hoà[ \t]?vốn|b/e|"
    rf"zabezpiecz\w*|(?:в|на)[ \t]бу){_W}"
)
_MOVE_SL_RE = re.compile(
    rf"{_B}(?:move|moving|moved|shift|change|adjust|update|put|make|max|trail|modify|correct|raise|"
    rf"lower|dời|dịch|rời|двига\w*|перенос\w*|передвига\w*|переставля\w*|przesu\w*|ustaw\w*|new)"
    rf"[ \t]+(?:[^\W\d]+[ \t]+){{0,3}}?{_SL}{_W}"
    rf"|{_B}(?:sl|stop[ \t]?loss|stoploss)[ \t]*(?:to|->|=>)[ \t]*(?=\d)"
)
_MOVE_ENTRY_RE = re.compile(
    rf"{_B}(?:change|move|modify|update|new|adjust)[ \t]+(?:the[ \t]+)?entry(?:[ \t]price)?{_W}"
)
_ADD_ENTRY_RE = re.compile(
    rf"{_B}(?:add(?:[ \t]+more)?(?:[ \t]+(?:buy|sell|entry|position))?|vào[ \t]thêm|"
    rf"перезаход\w*|re-?enter\w*|dobieramy|double[ \t]up){_W}"
)
_CLOSE_RE = re.compile(
    rf"{_B}(?:close|closed|closing|cerrar|exit|chốt|đóng|tỉa|закр\w*|выйд\w*|выходим|зафикс\w*|"
    rf"фиксир\w*|zamyk\w*|zamkn\w*|secure|securing|book(?:ing)?[ \t]+(?:some[ \t]+|partial[ \t]+)?profits?|"
    rf"take[ \t]+(?:(?:some|more|partial|the|half|\d+%)[ \t]+)*(?:profits?|partials?)"
    rf"(?=[ \t]*(?:now|here|ok|and|$|[.!,]))|take[ \t]+(?:some|partials?|half)){_W}",
    re.M,
)
_CANCEL_RE = re.compile(
    rf"{_B}(?:cancel\w*|delete[ \t]+(?:all[ \t]+)?(?:the[ \t]+)?(?:pending|orders?|limits?|entry|"
    rf"entries|setup|signal|trade)|remove[ \t]+(?:all[ \t]+)?(?:the[ \t]+)?(?:pending|orders?|limits?)|"
    rf"(?:not|no[ \t]longer)[ \t]valid|invalid(?:ated)?|отмен\w*|hủy|huỷ|anuluj\w*){_W}"
)
# words after "close" that make it something else: "close to TP4", "close your eyes"
_CLOSE_NOT_AFTER = re.compile(
    r"[ \t]*(?:to|your|above|below|under|over|near|weekly|daily|candle|proximity|call|out|by|"
    r"the[ \t]+(?:candle|day|week|gap|market))(?![a-z])"
)
_CLOSE_NOT_BEFORE = re.compile(
    r"(?:candle|daily|weekly|day|week|market|session|bar|h\d|\d+[mh]|m\d+|i|we|i've|we've|"
    r"have|has|had|they|you've|who|trades?)[ \t]*$"
)
_VOID_RE = re.compile(
    rf"{_B}(?:if|when|whenever|once|after|until|unless|in[ \t]case|always|recommend\w*|suggest\w*|"
    rf"should|never|remember|zalecam|polecam|radzę|jeśli|gdy|если|когда|nếu|khi|nên){_W}"
)
_REPORT_AFTER_RE = re.compile(r"[ \t]+(?:with|in|at|on)(?![a-z])")
_CLAUSE_END = re.compile(r"[.!?;\n]")
_NUMBER_AFTER = re.compile(r"[^\n\d]{0,25}?(\d+(?:\.\d+)?)(?![\d%])")
_SIDE_RE = re.compile(rf"{_B}(buys?|long|sells?|shorts?|mua|bán){_W}")
_PCT_RE = re.compile(r"(\d{1,3}(?:\.\d+)?)[ \t]?%")
_HALF_RE = re.compile(rf"{_B}(?:half|1/2|nửa|половин\w*|połow\w*){_W}")
_FULL_RE = re.compile(
    rf"{_B}(?:all|full|fully|everything|entire|toàn[ \t]bộ|hết|все|всё|wszystk\w*|całość){_W}"
)
_PART_RE = re.compile(
    rf"{_B}(?:partials?|partially|some|part|bớt|phần|частич\w*|часть|częściow\w*|most|more){_W}"
)
_LEG_RE = re.compile(
    rf"{_B}(?:(?P<worst>worst|giá[ \t]xấu|xấu|bad|худш\w*)|(?P<first>first[ \t]entr\w*)|"
    rf"(?P<last>last[ \t]entr\w*)){_W}"
)


def _clause(text: str, start: int, end: int) -> tuple[int, int]:
    left = max(text.rfind(c, 0, start) for c in ".!?;\n") + 1
    m = _CLAUSE_END.search(text, end)
    return left, (m.start() if m else len(text))


def _void(text: str, start: int, end: int) -> bool:
    left, right = _clause(text, start, end)
    if right < len(text) and text[right] == "?":
        return True
    return _VOID_RE.search(text, left, right) is not None


def _value_after(text: str, end: int) -> float | None:
    m = _NUMBER_AFTER.match(text, end)
    return float(m.group(1)) if m else None


def _side(word: str) -> str:
    return "buy" if word.startswith(("buy", "long", "mua")) else "sell"


# Cheap literal pre-checks (no lookbehind, so the regex engine skips fast):
# most tickets hold no management words at all. Every alternative starts with
# a literal so that the engine scans for their first characters in C.
_BE_HINT = re.compile(
    r"be(?![a-z])|b\.e|b/e|break|entr|open ?price|бу|безубыт|hòa|hoà|an toàn|risk.?free|zabezp"
)
_MOVE_HINT = re.compile(
    r"mov|shift|chang|adjust|updat|put|make|max|trail|modif|correct|rais|lower|dời|dịch|rời|"
    r"двига|перенос|передвига|переставля|przesu|ustaw|new|sl ?(?:to|->|=>)|loss ?(?:to|->|=>)"
)
_ADD_HINT = re.compile(r"add|vào thêm|перезаход|enter|dobieramy|double")
_CLOSE_HINT = re.compile(
    r"clos|cerrar|exit|chốt|đóng|tỉa|закр|выйд|выход|фикс|zamyk|zamkn|secur|book|take"
)
_CANCEL_HINT = re.compile(r"cancel|delete|remove|valid|отмен|hủy|huỷ|anuluj")
# All five hints in one flat alternation (still literal-led, so still a fast
# scan): one pass rules out the two thirds of messages that hold none of them.
_ANY_HINT = re.compile(
    "|".join(h.pattern for h in (_BE_HINT, _MOVE_HINT, _ADD_HINT, _CLOSE_HINT, _CANCEL_HINT))
)


def find(text: str) -> list[Found]:
    """Instructions in a normalised text, in order of position; void ones left out."""
    found: list[Found] = []
    if _ANY_HINT.search(text) is None:
        return found
    taken: list[tuple[int, int]] = []
    if _BE_HINT.search(text):
        found.extend(_be(text, taken))
    if _MOVE_HINT.search(text):
        found.extend(_moves(text, taken))
    if _ADD_HINT.search(text):
        for m in _ADD_ENTRY_RE.finditer(text):
            found.append(Found(m.start(), m.end(), "add_entry", _value_after(text, m.end())))
    if _CLOSE_HINT.search(text):
        for m in _CLOSE_RE.finditer(text):
            item = _close(text, m)
            if item is not None:
                found.append(item)
    if _CANCEL_HINT.search(text):
        found.extend(_cancels(text))
    found.sort(key=lambda f: f.start)
    return found


def _be(text: str, taken: list[tuple[int, int]]) -> list[Found]:
    found = []
    for m in _BE_RE.finditer(text):
        if not _void(text, m.start(), m.end()):
            found.append(Found(m.start(), m.end(), "be"))
            taken.append(m.span())
    return found


def _moves(text: str, taken: list[tuple[int, int]]) -> list[Found]:
    found = []
    for m in _MOVE_ENTRY_RE.finditer(text):
        if not _void(text, m.start(), m.end()):
            found.append(Found(m.start(), m.end(), "move_entry", _value_after(text, m.end())))
            taken.append(m.span())
    for m in _MOVE_SL_RE.finditer(text):
        if any(s <= m.end() and m.start() <= e for s, e in taken):
            continue
        if not _void(text, m.start(), m.end()):
            found.append(Found(m.start(), m.end(), "move_sl", _value_after(text, m.end())))
    return found


def _cancels(text: str) -> list[Found]:
    found = []
    for m in _CANCEL_RE.finditer(text):
        if _void(text, m.start(), m.end()):
            continue
        line_end = text.find("\n", m.end())
        rest = text[m.end() : line_end if line_end >= 0 else len(text)]
        s = _SIDE_RE.search(rest)
        found.append(Found(m.start(), m.end(), "cancel", side=_side(s.group(1)) if s else None))
    return found


def _close(text: str, m: re.Match[str]) -> Found | None:
    verb = m.group(0)
    start, end = m.span()
    if verb.startswith("clos") and _CLOSE_NOT_AFTER.match(text, end):
        return None
    if _CLOSE_NOT_BEFORE.search(text, max(0, start - 12), start):
        return None
    if _void(text, start, end):
        return None
    # a provider's "Closed the trade." is an instruction to mirror; a longer
    # message with "closed" is a report ("closed with a loss", "Day closed")
    if verb == "closed" and (len(text.split()) > 4 or _REPORT_AFTER_RE.match(text, end)):
        return None
    left, right = _clause(text, start, end)
    line_end = text.find("\n", end)
    after = text[end : min(right, line_end if line_end >= 0 else len(text))]
    before = text[max(left, start - 15) : start]
    window = before + " " + verb + after
    fraction: float | None
    which: str | None = None
    pct = _PCT_RE.search(window)
    span_end = end
    if pct and 0 < float(pct.group(1)) <= 100:
        fraction = float(pct.group(1)) / 100
    elif _HALF_RE.search(window):
        fraction = 0.5
    elif _FULL_RE.search(window):
        fraction = 1.0
    elif _PART_RE.search(window) or verb.startswith(("secur", "tỉa")):
        fraction = None
        which = "partial"
    else:
        fraction = 1.0
    leg = _LEG_RE.search(window)
    if leg:
        which = (
            "worst_entry"
            if leg.group("worst")
            else "first_entries"
            if leg.group("first")
            else "last_entry"
        )
    elif fraction is not None and fraction < 1:
        which = "partial"
    elif which is None:
        s = _SIDE_RE.match(after, 0) or _SIDE_RE.search(after[:25]) or _SIDE_RE.search(before)
        if s:
            which = _side(s.group(1))
            if s.re is _SIDE_RE and s.string is after:
                span_end = end + s.end()
        else:
            which = "all"
    return Found(start, span_end, "close", fraction=fraction, which=which)
