"""The tokenizer: one compiled regex pass over the normalised text.

Every token is a plain tuple `(kind, start, end, a, b)` (fast to build and
compare); what `a` and `b` hold depends on the kind, see the constants.
Anything the grammar does not name (punctuation, emoji leftovers) is
skipped, except that the raw text between two numbers is kept reachable
through the offsets, so zones can be told from lists.
"""

from __future__ import annotations

import re

from . import lexicon as lx
from .firstchars import first_chars
from .normalize import SL_MARK, TP_MARK

Token = tuple[int, int, int, object, object]

NL = 0  # newline
NUM = 1  # a=value (float), b=(raw text, alternative values)
PIPS = 2  # a=tuple of pip distances, b=signed (a result like "+60 pips")
SIDE = 3  # a="buy"/"sell", b=order word after the side ("limit", "stop", "above", ...)
LIMIT = 4
MARKET = 5
TP = 6  # a=the target's index or None
SL = 7
NOSL = 8  # "no sl"
ENTRY = 9
RUNNER = 10  # "open", "hold", "trailing stop"
HELD = 11  # "vip", "later": the level is withheld
IGNL = 12  # a label whose numbers are not prices (lot, risk, signal no, ...)
REPORT = 13  # "hit", "done": the line reports an outcome
SYM = 14  # a=symbol
TAG = 15  # a=symbol read from a hashtag (weak)
MARK = 16  # a="sl"/"tp" from an emoji
MORE = 17  # "more", "add", "and": qualifies a following side word
WORD = 18  # an unknown word (a=the word)

_LETTERS = r"a-zа-яё\u00c0-\u024f\u1e00-\u1eff"
_END = rf"(?![{_LETTERS}])"
_NB = rf"(?<![{_LETTERS}0-9])"
_NUMSTART = r"(?<!\d)(?<!\d\.)"
# A number that is never given back: what may follow it (a unit, a separator)
# cannot start with a digit or ".", so backtracking into it could not succeed;
# possessive quantifiers skip those retries (a quarter of the number scan).
_DIGITS = r"\d++(?:\.\d++)?+"

# The grammar rules that start at a word, in order of priority.
_LETTER_RULES = (
    rf"(?P<side>(?P<sw>#?(?:{lx.BUY_WORDS}|{lx.SELL_WORDS}){_END})"
    rf"(?: ?(?P<order>limit|stop|above|below|over|under){_END})?(?: ?\d{{1,2}}(?= ?[@:]))?)",
    rf"(?P<nosl>no ?(?:sl|stop(?: ?loss)?){_END})",
    rf"(?P<entry>(?:{lx.ENTRY_LABEL}){_END})",
    rf"(?P<tp>(?:{lx.TP_LABEL}){_END}(?: ?(?:targets?|orders?|levels?){_END})?"
    r"(?:(?P<tpi>\d{1,2})(?![\d.,]\d|\d)| (?P<tpj>[1-9]|1\d|20)(?!\d)(?= ?[:)=@#(_]? ?\(? ?\d| ?:))?)",
    rf"(?P<sl>(?:{lx.SL_LABEL}){_END}(?: ?level{_END})?)",
    rf"(?P<runner>(?:{lx.RUNNER}){_END})",
    rf"(?P<held>(?:{lx.WITHHELD}){_END})",
    rf"(?P<limit>(?:{lx.LIMIT}){_END})",
    rf"(?P<market>(?:{lx.MARKET}){_END})",
    rf"(?P<ignl>(?:{lx.IGNORE_LABEL}){_END})",
    rf"(?P<report>(?:{lx.REPORT}){_END})",
    rf"(?P<fx>#?(?:{lx.CURRENCIES})[ /_.\-]?(?:{lx.CURRENCIES})(?<=(?P<last>[a-z]))(?P=last)?"
    r"(?:\.[a-z]{1,3})?(?![a-z0-9]))",
    r"(?P<crypto>[#$]?[a-z][a-z0-9]{1,9}?(?:[/\-_]?(?:usdt|usdc|busd|usd|btc)|[/\-_](?:eth|bnb|perp)))"
    r"(?:\.[a-z]{1,3})?(?![a-z0-9])",
    rf"(?P<index>#?(?:{lx.INDEX_PREFIX}) ?\d{{2,4}})(?:\.[a-z]{{1,3}})?(?![\d.a-z])",
    r"(?P<synth>(?:volatility|vol|vix) ?\d{2,3}(?: ?\(1s\))?(?: ?index)?"
    r"|(?:boom|crash) ?\d{3,4}(?: ?index)?|step ?index|jump ?\d{2,3}(?: ?index)?)",
    rf"(?P<alias>#?(?:{lx.ALIAS_RE})(?:\.[a-z]{{1,3}})?(?![a-z0-9]))",
    r"(?P<tag>[#$][a-z][a-z0-9]{1,11}(?![a-z0-9]))",
    rf"(?P<more>(?:{lx.MORE}){_END})",
    r"(?P<tfx>[mhdw]\d{1,2}(?![\d.]))",
)
_WORD_RULE = r"(?P<word>[^\W\d_]+)"
_NUMBER_RULES = (
    r"(?=\d)(?:"
    rf"(?P<skip>{_NUMSTART}(?:(?:19|20)\d{{2}}[./-][01]?\d[./-][0-3]?\d|[0-3]?\d[./-][01]?\d[./-](?:19|20)\d{{2}}"
    r"|[0-3]?\d/[01]?\d/\d{2}|\d{1,2}-[a-z]{3}-\d{2,4}|\d{1,2}:\d{2}(?::\d{2})?)(?![\d.]\d|\d)"
    rf"|(?<!\d)(?<!\d\.)(?:{_DIGITS} ?%|{_DIGITS} ?(?:lots?(?! ?size)|x|usd|dollars?|doller|k)(?![a-z])"
    r"|\d{1,2} ?(?:m|min|mins|h|hr|hrs|hours?|d|days?|w|weeks?|м|мин|ч)(?![a-zа-я])))"
    rf"|(?P<pips>{_NUMSTART}{_DIGITS}(?: ?[-/,] ?{_DIGITS})*+\.? ?(?:pips?|pts|points?|giá){_END})"
    rf"|(?P<num>{_NUMSTART}\d+(?:\.\d+)?(?:\.x+{_END})?))"
)
# The first scan: every place a token can start. Its alternatives start with
# different characters, so at most one applies at a position; a letter run
# (`run`) or a "#"/"$" before a letter (`sigil`) is then read with the
# letter rules below, as the one grammar regex used to.
_SCAN_RE = re.compile(
    "|".join(
        (
            r"(?P<nl>\n)",
            _NUMBER_RULES,
            r"(?P<hashnum>(?<![a-z0-9])#\d+)",
            r"(?P<run>[^\W\d_]+)",
            r"(?P<sigil>[#$](?=[^\W\d_]))",
            rf"(?P<mark>[{SL_MARK}{TP_MARK}])",
        )
    )
)
# Letter rules apply only at the start of a word: not after these characters (`_NB`).
_WORD_BEFORE = first_chars(f"[{_LETTERS}0-9]") or frozenset()
_SIGIL_RE = re.compile("|".join(_LETTER_RULES))


def _rules_by_first_char() -> dict[str, re.Pattern[str]]:
    """For each first letter, a regex of only the letter rules that can start with it.

    A rule that cannot start with the letter would fail there anyway, and the
    rest keep their order, so the first rule that matches is the same: at a
    word, only a handful of rules are tried instead of all nineteen.
    """
    starts = [first_chars(rule) for rule in _LETTER_RULES]
    if any(chars is None for chars in starts):
        raise ValueError("every letter rule must start with a known set of characters")
    compiled: dict[tuple[int, ...], re.Pattern[str]] = {}
    by_char: dict[str, re.Pattern[str]] = {}
    for ch in set().union(*starts):  # type: ignore[arg-type]
        if ch in "#$":
            continue
        rules = tuple(i for i, chars in enumerate(starts) if ch in chars)  # type: ignore[operator]
        if rules not in compiled:
            alternatives = [_LETTER_RULES[i] for i in rules]
            compiled[rules] = re.compile("|".join((*alternatives, _WORD_RULE)))
        by_char[ch] = compiled[rules]
    return by_char


_RULES_BY_FIRST = _rules_by_first_char()
_STRIP_RE = re.compile(r"[\s#$/_.\-]+")
_PIP_VALUES_RE = re.compile(r"\d+(?:\.\d+)?")
_SYNTH_RE = re.compile(r"(volatility|vol|vix|boom|crash|step|jump)\s?(\d*)")

_KINDS = {
    "nl": NL,
    "pips": PIPS,
    "num": NUM,
    "side": SIDE,
    "nosl": NOSL,
    "entry": ENTRY,
    "tp": TP,
    "sl": SL,
    "runner": RUNNER,
    "held": HELD,
    "limit": LIMIT,
    "market": MARKET,
    "ignl": IGNL,
    "report": REPORT,
    "more": MORE,
    "mark": MARK,
    "word": WORD,
}


def _symbol(group: str, raw: str) -> str:
    if group == "alias":
        key = raw.lstrip("#").split(".")[0]
        key = re.sub(r"\s+", " ", key)
        return lx.ALIASES.get(key) or lx.ALIASES.get(key.replace(" ", ""), key.upper())
    if group == "synth":
        m = _SYNTH_RE.match(raw)
        if m is None:
            return raw.upper()
        name = "VOLATILITY" if m.group(1) in ("vol", "vix") else m.group(1).upper()
        if m.group(1) in ("vol", "vix", "volatility"):
            name = "VOLATILITY"
        return f"{name} {m.group(2)} INDEX" if m.group(2) else f"{name} INDEX"
    text = raw.split(".")[0] if group != "crypto" or "." in raw else raw
    symbol = _STRIP_RE.sub("", text).upper()
    if group == "fx" and len(symbol) == 7:  # a doubled last letter: "usdchff"
        symbol = symbol[:6]
    return symbol


_SYMBOL_GROUPS = frozenset(("fx", "crypto", "index", "synth", "alias"))
_DROPPED = frozenset(("skip", "hashnum", "tfx"))


def tokenize(text: str) -> list[Token]:
    """Tokens of a normalised text, in order."""
    out: list[Token] = []
    append = out.append
    fillers = lx.FILLERS
    scan = _SCAN_RE.search
    by_first = _RULES_BY_FIRST
    word_before = _WORD_BEFORE
    pos = 0
    while (m := scan(text, pos)) is not None:
        group = m.lastgroup
        if group == "run":
            start = m.start()
            if not start or text[start - 1] not in word_before:
                rules = by_first.get(text[start])
                if rules is not None:
                    m = rules.match(text, start)  # type: ignore[assignment]  # never None: `word`
                    group = m.lastgroup
        elif group == "sigil":
            start = m.start()
            sigil = (
                None if start and text[start - 1] in word_before else _SIGIL_RE.match(text, start)
            )
            if sigil is None:
                pos = start + 1
                continue
            m, group = sigil, sigil.lastgroup
        pos = m.end()
        # branches in order of frequency (numbers, words, newlines are 2/3 of all matches)
        if group == "num":
            _number(text, m, out)
        elif group == "word" or group == "run":
            word = m.group()
            if word not in fillers:
                append((WORD, m.start(), pos, word, None))
        elif group == "nl":
            append((NL, pos - 1, pos, "\n", None))
        elif group is None or group in _DROPPED:
            continue
        elif group == "tp":
            idx = m.group("tpi") or m.group("tpj")
            append((TP, m.start(), pos, int(idx) if idx else None, None))
        elif group == "side":
            word = m.group("sw").lstrip("#")
            side = "buy" if word in lx.BUY_SET else "sell"
            append((SIDE, m.start(), pos, side, m.group("order")))
        elif group in _SYMBOL_GROUPS:
            append((SYM, m.start(), pos, _symbol(group, m.group(group)), None))
        elif group == "pips":
            start = m.start()
            raw = m.group("pips")
            values = tuple(float(v) for v in _PIP_VALUES_RE.findall(raw))
            if "giá" in raw:  # Vietnamese: one "giá" is ten pips
                values = tuple(v * 10 for v in values)
            append((PIPS, start, pos, values, _signed(text, start)))
        elif group == "tag":
            name = m.group("tag")[1:]
            if name in lx.TAG_STOPWORDS:
                continue
            kind = TAG if m.group("tag")[0] == "#" else SYM
            append((kind, m.start(), pos, name.upper(), None))
        elif group == "mark":
            mark = "sl" if m.group("mark") == SL_MARK else "tp"
            append((MARK, m.start(), pos, mark, None))
        else:
            append((_KINDS[group], m.start(), pos, m.group(group), None))
    return out


def _number(text: str, m: re.Match[str], out: list[Token]) -> None:
    """Appends the token(s) of a matched number, or none for one too long to be a price."""
    start, end = m.span()
    raw = m.group("num")
    if "x" in raw:
        raw = raw.split(".x")[0]
    if len(raw) > 16:  # not a price; and float() of it could overflow later
        return
    if out and out[-1][0] == NUM and _split_number(text, out[-1], raw, start):
        # "SL 1 7786": a decimal point typed as a space; keep both readings
        prev = out.pop()
        head = prev[4][0]  # type: ignore[index]
        out.append((NUM, prev[1], end, prev[3], (head, (float(f"{head}.{raw}"),))))
        return
    dot = raw.find(".")
    if dot >= 4 and len(raw) - dot - 1 == dot and _dot_zone(raw, dot):
        # "Sell 4350.4355": a zone written with a dot between the edges
        out.append((NUM, start, start + dot, float(raw[:dot]), (raw[:dot], ())))
        out.append((NUM, start + dot + 1, end, float(raw[dot + 1 :]), (raw[dot + 1 :], ())))
        return
    out.append((NUM, start, end, float(raw), (raw, ())))


def _dot_zone(raw: str, dot: int) -> bool:
    left, right = int(raw[:dot]), int(raw[dot + 1 :])
    return left > 0 and abs(left - right) / left < 0.02


def _split_number(text: str, prev: Token, raw: str, start: int) -> bool:
    head = prev[4][0]  # type: ignore[index]
    return (
        prev[2] == start - 1
        and text[start - 1] == " "
        and len(head) <= 2
        and head.isdigit()
        and 3 <= len(raw) <= 5
        and raw.isdigit()
        and not text.startswith(" ", start + len(raw))
    )


def signed_before(text: str, start: int) -> str:
    """The sign written right before a number ("+", "-") or "" when none."""
    i = start - 1
    while i >= 0 and text[i] == " ":
        i -= 1
    if i < 0 or text[i] not in "+-":
        return ""
    sign = text[i]
    j = i - 1
    while j >= 0 and text[j] == " ":
        j -= 1
    # "Stop Loss:- 45 pips" is a label separator, not a minus
    if j >= 0 and text[j] in ":=":
        return ""
    return sign


def _signed(text: str, start: int) -> bool:
    return signed_before(text, start) != ""
