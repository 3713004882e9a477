"""Hostile channel text at the ingest boundary (what `signals inject` and every source
put in a RawMessage): the parser never raises, its last-resort guard never fires (that
would be a parser bug swallowed), and every result is one of the public kinds, fitting
the public schema."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.signals import ParseContext
from services.ingest.parser import KINDS, parse, to_public
from tests.hostile.hostile import NASTY_CHARS
from tests.unit.parser.schema import problems

_WORDS = st.sampled_from(
    [
        "XAUUSD",
        "GOLD",
        "BUY",
        "SELL",
        "NOW",
        "LIMIT",
        "SL",
        "TP",
        "TP1",
        "TP2",
        "Entry",
        "@",
        "close",
        "half",
        "BE",
        "breakeven",
        "pips",
        "-",
        "/",
        ":",
        "\n",
        "🔥",
        "✅",
        "#",
    ]
)
_NUMBERS = st.one_of(
    st.sampled_from(
        [
            "1e308",
            "9" * 400,
            "0",
            "-0",
            "1e-400",
            "NaN",
            "inf",
            "٤٣٥٧",
            "4,357.5",
            "4.357.5",
            "0x10",
            "2650..2660",
            "1" * 20 + ".5",
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers().map(str),
)
_PIECES = st.one_of(_WORDS, _NUMBERS, st.sampled_from(NASTY_CHARS), st.text(max_size=8))

hostile_text = st.one_of(
    st.lists(_PIECES, max_size=60).map(" ".join),
    st.text(),
    st.builds(
        lambda n, lot: (
            "XAUUSD BUY 2650\nSL 2640\n" + "".join(f"TP {2650 + i}\n" for i in range(n)) + lot
        ),
        st.integers(0, 3000),
        st.sampled_from(["", "lot 1e308", "lot 99999999999999999999"]),
    ),
    st.builds(
        lambda s, n: s * n,
        st.sampled_from(["9", ".", "TP ", "\u202e", "🚀", "SL 1 ", "\n"]),
        st.integers(1, 20_000),
    ),
)


def _check(text: str, context: ParseContext | None = None) -> None:
    result = parse(text, context)
    row = to_public(result)
    assert row["kind"] in KINDS, row
    assert getattr(result, "rule", "") != "parser_error", (
        f"the parser raised on {text[:200]!r}: {row}"
    )
    assert problems(row) == [], (text[:200], row)


@settings(max_examples=400)
@given(hostile_text)
def test_hostile_channel_text_then_a_kind_never_a_parser_error(text: str) -> None:
    _check(text)
    _check(text, ParseContext(default_symbol="XAUUSD"))


def test_thousands_of_tp_lines_and_one_enormous_line_then_parsed_or_noise() -> None:
    _check("XAUUSD BUY 2650\nSL 2640\n" + "TP 2660\n" * 5000)
    _check("XAUUSD BUY " + "2650 " * 50_000)
    _check("\u202e\u200f" * 10_000 + "XAUUSD BUY 2650 SL 2640 TP 2660")
