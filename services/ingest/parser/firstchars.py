"""Which characters can start a match of a regular expression, read off its parse tree.

The tokenizer uses this to try, at a word, only the grammar rules that can
start with the word's first letter (a rule that cannot start with it would
fail there anyway), so the rule order and therefore the tokens stay the same.
The answer is conservative: `None` means "any character".
"""

from __future__ import annotations

from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

_ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
_MAX_RANGE = 4096  # larger ranges are not spelled out: "any character" instead


def first_chars(pattern: str) -> frozenset[str] | None:
    """The characters a match of `pattern` can start with; None when it can be any one.

    A pattern that can match the empty string also answers None.
    """
    chars, nullable = _items(sre_parse.parse(pattern).data)
    if chars is None or nullable:
        return None
    return frozenset(chars)


def _items(items: list[tuple[Any, Any]]) -> tuple[set[str] | None, bool]:
    """First characters of a sequence of items, and whether it can match nothing."""
    out: set[str] = set()
    for op, av in items:
        if op in _ZERO_WIDTH:
            continue  # lookarounds consume nothing; ignoring them only widens the answer
        chars, nullable = _item(op, av)
        if chars is None:
            return None, False
        out |= chars
        if not nullable:
            return out, False
    return out, True


def _item(op: Any, av: Any) -> tuple[set[str] | None, bool]:
    if op is sre.LITERAL:
        return {chr(av)}, False
    if op is sre.IN:
        return _charset(av), False
    if op in (sre.SUBPATTERN, sre.ATOMIC_GROUP):
        return _items(av[-1].data if op is sre.SUBPATTERN else av.data)
    if op is sre.BRANCH:
        out: set[str] = set()
        any_nullable = False
        for branch in av[1]:
            chars, nullable = _items(branch.data)
            if chars is None:
                return None, False
            out |= chars
            any_nullable = any_nullable or nullable
        return out, any_nullable
    if op in _REPEATS:
        low, _, sub = av
        chars, nullable = _items(sub.data)
        return chars, nullable or low == 0
    return None, False  # ANY, NOT_LITERAL, GROUPREF, ...: could be anything


def _charset(av: list[tuple[Any, Any]]) -> set[str] | None:
    out: set[str] = set()
    for op, arg in av:
        if op is sre.LITERAL:
            out.add(chr(arg))
        elif op is sre.RANGE and arg[1] - arg[0] < _MAX_RANGE:
            out.update(map(chr, range(arg[0], arg[1] + 1)))
        else:  # NEGATE, CATEGORY (\d, \w, \s), huge ranges
            return None
    return out
