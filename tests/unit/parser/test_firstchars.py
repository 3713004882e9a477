"""The first-character analysis behind the tokenizer's rule guards."""

from __future__ import annotations

import re

from services.ingest.parser import tokens as tk
from services.ingest.parser.firstchars import first_chars


def test_first_chars_when_optional_prefix_then_both_starts_counted() -> None:
    assert first_chars(r"#?(?:buy|sell)(?![a-z])") == frozenset("#bs")


def test_first_chars_when_lookaround_first_then_it_is_skipped() -> None:
    assert first_chars(r"(?<![a-z])(?=x)xy|z\w*") == frozenset("xz")


def test_first_chars_when_category_or_empty_match_then_any() -> None:
    assert first_chars(r"\w+") is None
    assert first_chars(r"a?") is None


def test_first_chars_when_word_starts_elsewhere_then_no_letter_rule_matches_it() -> None:
    words = ["close", "gold", "xauusd", "tp1", "stop loss", "btcusdt", "вход", "mục tiêu"]
    for rule in tk._LETTER_RULES:
        chars = first_chars(rule)
        assert chars is not None
        for word in words:
            if word[0] not in chars:
                assert re.match(rule, word) is None, (rule, word)
