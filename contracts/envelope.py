"""The common envelope every message and event carries, and the wire codec.

Wire format: JSON. An operator can read any subject with the `nats` CLI and
any event row with `psql`; msgspec encodes and decodes a 10-field Struct in
under a microsecond (PERFORMANCE.md), so MessagePack would buy little and
cost readability.
"""

from __future__ import annotations

import functools
import operator
import os
import time
from typing import Any, TypeVar

import msgspec


class Envelope(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every message and event.

    `correlation_id` is the signal or control request a message stems from;
    `causation_id` is the message that directly caused it. Subclasses give an
    explicit, never-reused tag (`tag="signal.parsed"`).
    """

    id: str
    ts: int  # unix time in nanoseconds, taken by whoever built the message
    correlation_id: str = ""
    causation_id: str = ""


def new_id() -> str:
    """A 26-character, time-ordered, URL-safe id (ULID layout: 48-bit ms time + 80 random bits)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return _crockford(value)


_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _crockford(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def now_ns() -> int:
    return time.time_ns()


_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """JSON bytes of a message (tag included)."""
    return _encoder.encode(message)


T = TypeVar("T")


def decode_json(decoder: msgspec.json.Decoder[T], data: bytes | bytearray | memoryview | str) -> T:
    """`decoder.decode(data)`, where every malformed input is a `msgspec.DecodeError`.

    msgspec reports nesting deeper than the interpreter's recursion limit (a
    line of 3,000 `[`) as RecursionError and text that is not UTF-8 as a
    UnicodeError; both are malformed input, and a reader that catches
    DecodeError must not take them for a fault of its own (retry, crash).
    """
    try:
        return decoder.decode(data)
    except RecursionError:
        raise msgspec.DecodeError("JSON nested too deeply") from None
    except UnicodeError as exc:
        raise msgspec.DecodeError(f"not UTF-8 text: {exc}") from None


class Codec:
    """Decodes bytes into one of a closed set of tagged Structs.

    A message whose `type` is not in the set, or whose fields do not
    validate, raises `msgspec.ValidationError` with a path to the bad field.
    """

    def __init__(self, *types: type[Any]) -> None:
        if not types:
            raise ValueError("a Codec needs at least one type")
        self.types = types
        union: Any = types[0] if len(types) == 1 else _union(types)
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(union)
        self.tags = {_tag_of(t): t for t in types}

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        return decode_json(self._decoder, data)


def _union(types: tuple[type[Any], ...]) -> Any:
    return functools.reduce(operator.or_, types)


def _tag_of(struct_type: type[Any]) -> str:
    info = msgspec.inspect.type_info(struct_type)
    tag = getattr(info, "tag", None)
    if not isinstance(tag, str):
        raise TypeError(f"{struct_type.__name__} has no string tag")
    return tag


_tags: dict[type[Any], str] = {}


def tag_of(struct_type: type[Any]) -> str:
    """The `type` tag a Struct class is encoded with (cached: this is on hot paths)."""
    tag = _tags.get(struct_type)
    if tag is None:
        tag = _tags[struct_type] = _tag_of(struct_type)
    return tag
