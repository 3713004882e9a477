"""Hostile input for the hostile-input suite: strings, numbers and JSON bodies chosen to
break what trusts its input (NUL and lone surrogates that Postgres or UTF-8 refuse,
numbers beyond int64 and double, nesting deeper than a recursive decoder goes, very
long lines), and the oracles that tell a field error from a leak of a crash."""

from __future__ import annotations

import json
import math
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import strategies as st
from msgspec import inspect as mi

from contracts.errors import ErrorCode
from contracts.settings import UserSettings

KNOWN_CODES = frozenset(code.value for code in ErrorCode)

# What a database or driver error looks like when it leaks into a reply.
DATABASE_TEXT = (
    "psycopg",
    "invalid byte sequence",
    "cannot be converted",
    "violates",
    "sqlstate",
    "syntax error at",
    "unsupported unicode escape",
    "untranslatable character",
)

# Beyond 2**53 a JSON number is not interoperable (RFC 7493 §2.2): no lot, price,
# distance, count or amount of money is that large, and a reader in another language
# would not even read back the same value.
LARGEST_SANE = 2**53

NASTY_CHARS = (
    "\x00",
    "\ud800",
    "\udfff",
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\ufeff",
    "\u2028",
    "\x1b[31m",
    "\r\n",
    "\t",
    "🚀",
    "👨‍👩‍👧",
    "é",
    "`",
    "'",
    '"',
    "\\",
    ".",
    "*",
    ">",
    " ",
    "%s",
    "{}",
    "'; DROP TABLE events; --",
)

nasty_text = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(NASTY_CHARS), min_size=1, max_size=8).map("".join),
    st.tuples(st.text(max_size=10), st.sampled_from(NASTY_CHARS), st.text(max_size=10)).map(
        "".join
    ),
    st.builds(
        lambda ch, n: ch * n, st.sampled_from(["a", "é", "🚀", "\x00"]), st.integers(1, 5000)
    ),
)

ABSURD_NUMBERS: tuple[Any, ...] = (
    0,
    -1,
    -0.0,
    5e-324,
    1e-12,
    0.004,
    1e15,
    1e308,
    -1e308,
    1.7976931348623157e308,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**40,
    float("nan"),
    float("inf"),
    float("-inf"),
)

numbers = st.one_of(
    st.sampled_from(ABSURD_NUMBERS),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
)

scalars = st.one_of(st.none(), st.booleans(), numbers, nasty_text)

json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(nasty_text, children, max_size=4)
    ),
    max_leaves=12,
)


def encode_body(value: Any) -> bytes:
    """JSON text as a careless or hostile client writes it: lone surrogates escaped
    (`\\ud800`), NaN and Infinity as bare words (not JSON at all)."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


def deep(depth: int, kind: str, inner: bytes = b"1") -> bytes:
    """`depth` levels of nested arrays or objects, written directly: no encoder recurses."""
    if kind == "list":
        return b"[" * depth + inner + b"]" * depth
    return b'{"a":' * depth + inner + b"}" * depth


def deep_in_field(field: str, depth: int, kind: str) -> bytes:
    return b'{"' + field.encode() + b'":' + deep(depth, kind) + b"}"


raw_bytes = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b" ",
            b"null",
            b"[]",
            b"{",
            b'{"a":}',
            b"\xff\xfe\x00",
            b'"\xed\xa0\x80"',  # a surrogate in UTF-8 bytes: not UTF-8 at all
            b"NaN",
            b"1e400",
            b"-1e400",
            b"123456789012345678901234567890",
            b'{"a": 1, "a": 2}',
        ]
    ),
)


def settings_paths() -> list[str]:
    """Every dotted path of `UserSettings`, groups and leaves."""
    out: list[str] = []

    def walk(info: Any, prefix: str) -> None:
        for field in info.fields:
            path = f"{prefix}{field.name}"
            out.append(path)
            child = field.type
            if isinstance(child, mi.UnionType):
                child = next((t for t in child.types if isinstance(t, mi.StructType)), None)
            if isinstance(child, mi.StructType):
                walk(child, f"{path}.")

    walk(mi.type_info(UserSettings), "")
    return out


# --- oracles --------------------------------------------------------------------------


def numbers_and_strings(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(dotted path, leaf) of every number and string in a decoded JSON value."""
    if isinstance(value, dict):
        return [
            leaf
            for key, item in value.items()
            for leaf in numbers_and_strings(item, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in numbers_and_strings(item, path)]
    if isinstance(value, (bool, type(None))):
        return []
    return [(path, value)]


def unstorable(value: Any) -> list[str]:
    """Why a value accepted into an event could not be stored or read back sanely:
    NUL (Postgres jsonb refuses `\\u0000`), a lone surrogate (not UTF-8), a number that
    is not finite or beyond 2**53, a time zone that does not exist."""
    problems = []
    for path, leaf in numbers_and_strings(msgspec.to_builtins(value)):
        if isinstance(leaf, str):
            if "\x00" in leaf:
                problems.append(f"{path} holds a NUL character: {leaf[:40]!r}")
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in leaf):
                problems.append(f"{path} holds a lone surrogate: {leaf[:40]!r}")
            if path.endswith("timezone") and not _zone_exists(leaf):
                problems.append(f"{path} {leaf!r} is not a time zone")
        elif isinstance(leaf, (int, float)):
            if isinstance(leaf, float) and not math.isfinite(leaf):
                problems.append(f"{path} {leaf} is not finite")
            elif abs(leaf) > LARGEST_SANE:
                problems.append(f"{path} {leaf!r} is beyond {LARGEST_SANE}")
    return problems


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except Exception:
        return False
    return True


def leaked_database_text(text: str) -> str | None:
    lowered = text.lower()
    return next((t for t in DATABASE_TEXT if t in lowered), None)
