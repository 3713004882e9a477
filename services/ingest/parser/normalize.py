"""Text normalisation: one lower-case, plain-ASCII-punctuation form of a message.

Channels write with math-bold letters, superscript digits, no-break spaces,
emoji bullets, Slack shortcodes, markdown residue and decimal commas. All
of that is folded here so the tokenizer sees one notation. Two kinds of
emoji keep a meaning: the red ones that mark a stop and the green/blue ones
that mark a target in label-less tickets; they become the private-use
markers `SL_MARK` and `TP_MARK`.
"""

from __future__ import annotations

import re
import unicodedata

SL_MARK = "\ue001"
TP_MARK = "\ue002"

_SL_EMOJI = "🔴🔻🛑❌🚫⛔🅾🔺📛⭕"
_TP_EMOJI = "✅🔹🔵💰🎯🔷✔☑🟢"
_SHORTCODE_SL = {"x", "red_circle", "small_red_triangle_down", "no_entry", "octagonal_sign"}
_SHORTCODE_TP = {"white_check_mark", "heavy_check_mark", "small_blue_diamond", "dart", "moneybag"}

_MARK_RE = re.compile(f"[{_SL_EMOJI}]|[{_TP_EMOJI}]")
# Pictographs, dingbats, arrows, box drawing, variation selectors, keycaps,
# zero-width joiners and the like: spacing only.
_SYMBOLS_RE = re.compile(
    "[\U0001f000-\U0001faff\u2190-\u21ff\u2300-\u23ff\u2460-\u24ff\u25a0-\u27bf"
    "\u2900-\u297f\u2b00-\u2bff\u3030\u303d\u3297\u3299\ufe00-\ufe0f\u200b-\u200f"
    "\u2060\u20e3\u00a9\u00ae\u2122\U000e0000-\U000e007f\u300a\u300b\u3010\u3011]+"
)
_SHORTCODE_RE = re.compile(r":([a-z][a-z0-9_+]*):")
_URL_RE = re.compile(r"(?:https?://|www\.|t\.me/)\S+")
_MD_LINK_RE = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
# `4**009` is a number split by markup; elsewhere stars and backticks are noise
_STAR_IN_NUMBER_RE = re.compile(r"(?<=\d)[*`~]+(?=\d)")
_MARKUP_RE = re.compile(r"[*`~|]+")
# 1,234.56 and 12,345 (thousands) versus 108,70 and 0,177 (decimal commas)
_THOUSANDS_RE = re.compile(r"(?<![\d.,])([1-9]\d{0,2})((?:,\d{3})+)(?=\.\d|(?![\d,]))")
_DECIMAL_COMMA_RE = re.compile(r"(?<![\d.,])(\d+),(\d+)(?![\d.,])")
# "Tp1.1.96600": the target's index, a dot, then the price
_INDEX_DOT_RE = re.compile(r"(?<![a-z])(tp|t\.p|target|tg)(\d)\.(?=\d+\.\d)")
_SPACES_RE = re.compile(r"[ \t\r\f\v]+")
_LINE_INDEX_RE = re.compile(r"(?m)^[ \t]*\d{1,2}[ \t]*(?:\)|[.:]+(?=[ \t]*[a-z#$]))[ \t]*")
_ORDINAL_RE = re.compile(
    r"\b\d{1,2}(?:st|nd|rd|th)\b|(?m:^[ \t]*\d{1,2}[ \t]+(?=(?:tp|take|target|tg)))"
)


# Pre-checks without lookbehinds (the engine scans for their first character
# in C): every match of the rewrite they guard contains a match of them.
_DIGIT_COMMA_RE = re.compile(r"\d,\d")
_INDEX_DOT_HINT_RE = re.compile(r"(?:tp|t\.p|target|tg)\d\.")
_ORDINAL_HINT_RE = re.compile(r"\d(?:st|nd|rd|th)|\d (?:tp|take|target|tg)")


def _shortcode(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in _SHORTCODE_SL:
        return f" {SL_MARK} "
    if name in _SHORTCODE_TP:
        return f" {TP_MARK} "
    return " "


def _mark(match: re.Match[str]) -> str:
    return f" {SL_MARK} " if match.group(0) in _SL_EMOJI else f" {TP_MARK} "


def _decimal_comma(match: re.Match[str]) -> str:
    left, right = match.group(1), match.group(2)
    # Two prices of the same width side by side are a list ("4320,4315"),
    # not one price with a decimal comma.
    if len(left) >= 3 and len(right) == len(left) and left[0] != "0":
        return f"{left}, {right}"
    return f"{left}.{right}"


def normalize(text: str) -> str:
    """The folded, lower-case form the tokenizer reads; newlines are kept."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        text = _MARK_RE.sub(_mark, text)
        text = _SYMBOLS_RE.sub(" ", text)
        text = text.replace("\u2028", "\n").replace("\u2029", "\n").replace("\x85", "\n")
    text = text.lower()
    if "http" in text or "www." in text or "t.me/" in text:
        text = _URL_RE.sub(" ", text)
    if "](" in text:
        text = _MD_LINK_RE.sub(r"\1", text)
    if ":" in text and _SHORTCODE_RE.search(text):
        text = _SHORTCODE_RE.sub(_shortcode, text)
    if "*" in text or "`" in text or "~" in text or "|" in text:
        text = _STAR_IN_NUMBER_RE.sub("", text)
        text = _MARKUP_RE.sub(" ", text)
    if "," in text and _DIGIT_COMMA_RE.search(text):
        text = _THOUSANDS_RE.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), text)
        text = _DECIMAL_COMMA_RE.sub(_decimal_comma, text)
    if "." in text and _INDEX_DOT_HINT_RE.search(text):
        text = _INDEX_DOT_RE.sub(r"\1\2 ", text)
    text = _LINE_INDEX_RE.sub(" ", text)
    if _ORDINAL_HINT_RE.search(text):
        text = _ORDINAL_RE.sub(" ", text)
    return _SPACES_RE.sub(" ", text).strip(" \n")
