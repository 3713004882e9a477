"""Masking secrets out of anything bound for logs, traces and the audit table.

`redact` is pure and total: it returns a new structure and never raises.
It masks

- the value of any mapping key that names a secret (token, password,
  secret, api_key/apiKey, session, authorization, …), at any depth;
- JWT-looking strings (`eyJ…​.….…`) anywhere in free text;
- long opaque tokens: runs of 32 or more `[A-Za-z0-9_-]` characters, except
  canonical UUIDs (`8-4-4-4-12` hex), which are ids in this system;
- `name=value` / `name: value` pairs in free text whose name is a secret
  name (`Authorization: Bearer …`, `?token=…`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

MASK = "****"

_SENSITIVE_KEY_RE = re.compile(
    r"token|passw(?:or)?d|pwd|secret|api_?key|session|authori[sz]ation|auth_?key"
    r"|private_?key|credential|cookie|(?:^|_)dek(?:$|_)",
)

_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_LONG_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,}")
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_INLINE_PAIR_RE = re.compile(
    r"(?i)(?P<name>\b[\w-]*(?:token|passw(?:or)?d|secret|api[_-]?key|session|authori[sz]ation)[\w-]*)"
    r"(?P<sep>\"?\s*[=:]\s*\"?)"
    r"(?P<value>(?:bearer\s+|basic\s+)?[^\s&,;\"'}]+)"
)

_MAX_DEPTH = 64


def is_sensitive_key(key: object) -> bool:
    """True when a mapping key names a secret (case-insensitive, `-`/`_`/camelCase alike)."""
    if not isinstance(key, str):
        return False
    return _SENSITIVE_KEY_RE.search(key.lower().replace("-", "_")) is not None


def redact(obj: Any) -> Any:
    """A copy of `obj` with secrets masked (see the module docstring). Never raises."""
    try:
        return _redact(obj, 0)
    except Exception:
        # Never let a logging path fail; an unexpected shape is dropped, not leaked.
        return MASK


def redact_text(text: str) -> str:
    """Mask JWTs, long opaque tokens and `secret=value` pairs inside free text."""
    text = _INLINE_PAIR_RE.sub(_mask_pair, text)
    text = _JWT_RE.sub(MASK, text)
    return _LONG_TOKEN_RE.sub(_mask_long, text)


def _redact(obj: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return MASK
    if isinstance(obj, str):
        return redact_text(obj)
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if isinstance(obj, Mapping):
        return {
            _redact_key(key, depth): (
                MASK if is_sensitive_key(key) and value is not None else _redact(value, depth + 1)
            )
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [_redact(item, depth + 1) for item in obj]
    if isinstance(obj, tuple):
        return tuple(_redact(item, depth + 1) for item in obj)
    if isinstance(obj, set | frozenset):
        return [_redact(item, depth + 1) for item in obj]
    if isinstance(obj, msgspec.Struct):
        return _redact(msgspec.to_builtins(obj), depth + 1)
    if isinstance(obj, bytes | bytearray | memoryview):
        return f"<{len(obj)} bytes>"
    # Anything else is rendered, then scanned like free text: its repr may hold a token.
    try:
        text = repr(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__name__}>"
    return redact_text(text)


def _redact_key(key: Any, depth: int) -> Any:
    # Keys are names, but a caller might key a dict by a token; scan them too.
    if isinstance(key, str):
        return redact_text(key)
    if isinstance(key, tuple):
        return _redact(key, depth + 1)
    return key


def _mask_pair(match: re.Match[str]) -> str:
    return f"{match['name']}{match['sep']}{MASK}"


def _mask_long(match: re.Match[str]) -> str:
    token = match.group(0)
    if _UUID_RE.fullmatch(token):
        return token
    return MASK
