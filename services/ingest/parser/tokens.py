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

_END = r"(?![a-zа-яё\u00c0-\u024f\u1e00-\u1eff])"
_NB = r"(?<![a-zа-яё\u00c0-\u024f\u1e00-\u1eff0-9])"
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


def _guarded(rule: str) -> str:
    """`rule` behind a test of its first character, derived from the rule itself.

    A rule that cannot start with the character at hand would fail anyway, so
    the tokens stay the same; the test fails faster than most rules do.
    """
    chars = first_chars(rule)
    if chars is None:
        return rule
    return "(?=[" + "".join(re.escape(c) for c in sorted(chars)) + "])" + rule


_LETTER_ALTERNATIVES = "|".join(_guarded(rule) for rule in _LETTER_RULES)
# Alternatives are grouped behind a one-character guard (a digit, a letter)
# so that most positions fail after one test: this halves the scan time.
_PATTERN = "|".join(
    (
        r"(?P<nl>\n)",
        # Every number rule starts where no number goes on: that test is made once
        # for all of them, and the possessive `_DIGITS` is read once for both units.
        rf"(?=\d){_NUMSTART}(?:"
        r"(?P<skip>(?:(?:19|20)\d{2}[./-][01]?\d[./-][0-3]?\d|[0-3]?\d[./-][01]?\d[./-](?:19|20)\d{2}"
        r"|[0-3]?\d/[01]?\d/\d{2}|\d{1,2}-[a-z]{3}-\d{2,4}|\d{1,2}:\d{2}(?::\d{2})?)(?![\d.]\d|\d)"
        rf"|{_DIGITS}(?: ?%| ?(?:lots?(?! ?size)|x|usd|dollars?|doller|k)(?![a-z]))"
        r"|\d{1,2} ?(?:m|min|mins|h|hr|hrs|hours?|d|days?|w|weeks?|м|мин|ч)(?![a-zа-я]))"
        rf"|(?P<pips>{_DIGITS}(?: ?[-/,] ?{_DIGITS})*+\.? ?(?:pips?|pts|points?|giá){_END})"
        r"|(?P<num>\d+(?:\.\d+)?(?:\.x+" + _END + ")?))",
        # the "#" before its lookbehind: most positions then fail on one character
        r"(?P<hashnum>#(?<![a-z0-9]#)\d+)",
        rf"(?=[#$]?[^\W\d_]){_NB}(?:{_LETTER_ALTERNATIVES})",
        rf"(?P<mark>[{SL_MARK}{TP_MARK}])",
        r"(?P<word>[^\W\d_]+)",
    )
)
_TOKEN_RE = re.compile(_PATTERN)
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
    # branches in order of frequency (numbers, words, newlines are 2/3 of all matches)
    for m in _TOKEN_RE.finditer(text):
        group = m.lastgroup
        if group == "num":
            _number(text, m, out)
        elif group == "word":
            word = m.group()
            if word not in fillers:
                append((WORD, m.start(), m.end(), word, None))
        elif group == "nl":
            append((NL, m.start(), m.end(), "\n", None))
        elif group is None or group in _DROPPED:
            continue
        elif group == "tp":
            idx = m.group("tpi") or m.group("tpj")
            append((TP, m.start(), m.end(), int(idx) if idx else None, None))
        elif group == "side":
            word = m.group("sw").lstrip("#")
            side = "buy" if word in lx.BUY_SET else "sell"
            append((SIDE, m.start(), m.end(), side, m.group("order")))
        elif group in _SYMBOL_GROUPS:
            append((SYM, m.start(), m.end(), _symbol(group, m.group(group)), None))
        elif group == "pips":
            start = m.start()
            raw = m.group("pips")
            values = tuple(float(v) for v in _PIP_VALUES_RE.findall(raw))
            if "giá" in raw:  # Vietnamese: one "giá" is ten pips
                values = tuple(v * 10 for v in values)
            append((PIPS, start, m.end(), values, _signed(text, start)))
        elif group == "tag":
            name = m.group("tag")[1:]
            if name in lx.TAG_STOPWORDS:
                continue
            kind = TAG if m.group("tag")[0] == "#" else SYM
            append((kind, m.start(), m.end(), name.upper(), None))
        elif group == "mark":
            mark = "sl" if m.group("mark") == SL_MARK else "tp"
            append((MARK, m.start(), m.end(), mark, None))
        else:
            append((_KINDS[group], m.start(), m.end(), m.group(group), None))
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
