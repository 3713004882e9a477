"""No input makes the parser raise, and every result fits the public schema."""

from __future__ import annotations

import io
import json

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.signals import ParseContext, ParseResult
from services.ingest.parse_cli import run
from services.ingest.parser import parse, to_public

from .schema import problems

_TRADE_WORDS = st.sampled_from(
    [
        "XAUUSD",
        "gold",
        "EURUSD",
        "buy",
        "sell",
        "now",
        "limit",
        "SL",
        "TP",
        "TP1",
        "Entry",
        "@",
        "-",
        "/",
        ":",
        "\n",
        "\n\n",
        "pips",
        "close",
        "half",
        "BE",
        "open",
        "🔴",
        "✅",
        "#",
    ]
)
_PRICE = st.floats(min_value=0.00001, max_value=100000, allow_nan=False).map(lambda v: f"{v:.5g}")
_SIGNAL_LIKE = st.lists(st.one_of(_TRADE_WORDS, _PRICE), max_size=40).map(" ".join)


def _check(text: str, context: ParseContext | None = None) -> None:
    result = parse(text, context)
    row = to_public(result)
    assert problems(row) == [], (text, row)
    # the pure result round-trips through JSON
    assert msgspec.json.decode(msgspec.json.encode(result), type=ParseResult) == result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_random_unicode_when_parsed_then_schema_valid(text: str) -> None:
    _check(text)


@settings(max_examples=300, deadline=None)
@given(_SIGNAL_LIKE)
def test_signal_like_word_salad_when_parsed_then_schema_valid(text: str) -> None:
    _check(text)
    _check(text, ParseContext(default_symbol="XAUUSD"))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_binary_garbage_decoded_with_replacement_when_parsed_then_schema_valid(data: bytes) -> None:
    _check(data.decode("utf-8", errors="replace"))


def test_edge_inputs_when_parsed_then_never_raise() -> None:
    huge = ("XAUUSD BUY 2650 SL 2640 TP 2660 " * 4000)[:100_000]
    for text in (
        "",
        " ",
        "\n\n\n",
        "🚀🔥💰✅🔴" * 50,
        "سیگنال خرید طلا ۲۶۵۰ حد ضرر ۲۶۴۰",  # Persian, right to left
        "\u202eXAUUSD BUY 2650\u202c",
        "\x00\x01\x02",
        "9" * 5000,
        "." * 5000,
        huge,
    ):
        _check(text)


def test_context_with_reply_and_recent_when_parsed_then_schema_valid() -> None:
    ticket = parse("XAUUSD BUY 2650\nSL 2640")
    context = ParseContext(default_symbol=None, reply_to=ticket, recent=(ticket,))

    _check("SL 45", context)
    _check("close half", context)


def test_cli_when_lines_malformed_then_error_rows_and_loop_goes_on() -> None:
    stdin = io.StringIO(
        '{"id": "a", "text": "Gold buy now"}\n'
        "not json\n"
        '{"id": 7, "text": 12}\n'
        '{"id": "b", "text": "SL hit", "extra": true}\n'
    )
    stdout = io.StringIO()

    code = run(stdin, stdout)

    rows = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert code == 0
    assert [r["id"] for r in rows] == ["a", None, None, "b"]
    assert rows[1]["kind"] == "noise" and "error" in rows[1]
    assert rows[0]["kind"] == "open"
    assert rows[3]["kind"] == "noise"
