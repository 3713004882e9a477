"""Masking secrets out of what the audit log stores, and making it storable.

The audit log keeps everything that crossed the bus, so it must keep no
secret: a control request linking a broker account carries the MetaApi
token in plaintext. `redact` returns a copy of a decoded JSON value with

- the value of any key naming a secret (token, password, secret, api_key,
  session, authorization, credential, cookie, private_key, …; any case,
  `-`/`_`/camelCase alike) replaced by `MASK`, at any depth;
- JWT-looking strings (`eyJ….….…`), `Bearer …`/`name=value` secret pairs
  and very long opaque runs (Telegram session strings) masked inside text;
- NUL characters replaced (Postgres text and jsonb cannot hold them);
- integral floats turned into ints, so that a value read back from jsonb
  (where `1e20` comes out as `100000000000000000000`) re-encodes to the same
  canonical bytes that were hashed.

It is pure and total: it never raises (an unexpected shape becomes `MASK`).
It is our own copy: services never import each other.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "****"

_SENSITIVE_KEY_RE = re.compile(
    r"token|passw(?:or)?d|pwd|secret|api_?key|session|authori[sz]ation|auth_?key"
    r"|private_?key|credential|cookie"
)
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{16,}")
_INLINE_PAIR_RE = re.compile(
    r"(?i)(?P<name>\b[\w-]*(?:token|passw(?:or)?d|secret|api[_-]?key|authori[sz]ation)[\w-]*)"
    r"(?P<sep>\"?\s*[=:]\s*\"?)"
    r"(?P<value>(?:bearer\s+|basic\s+)?[^\s&,;\"'}]+)"
)
# Ids in this system are at most ~64 characters (ULIDs, hex digests, intent
# keys with separators); a run of 80+ base64 characters is a session or key.
_LONG_OPAQUE_RE = re.compile(r"[A-Za-z0-9+/_=-]{80,}")
# "session" is not scanned for in free text: "London session: buy gold" is a signal
_SECRET_HINT_RE = re.compile(r"(?i)token|passw|secret|api|authori|bearer")

_MAX_DEPTH = 64


_key_verdicts: dict[str, bool] = {}


def is_sensitive_key(key: object) -> bool:
    """True when a mapping key names a secret."""
    if not isinstance(key, str):
        return False
    found = _key_verdicts.get(key)
    if found is None:
        name = _CAMEL_RE.sub("_", key).lower().replace("-", "_")
        found = _SENSITIVE_KEY_RE.search(name) is not None
        if len(_key_verdicts) < 10_000:  # keys repeat; a flood of odd ones is not cached
            _key_verdicts[key] = found
    return found


def redact(value: Any) -> Any:
    """A storable copy of a decoded JSON value with secrets masked. Never raises."""
    try:
        return _redact(value, 0)
    except Exception:
        return MASK


def redact_text(text: str) -> str:
    """Mask JWTs, bearer credentials, `secret=value` pairs and long opaque runs in text."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if len(text) < 7:  # too short for `name=value` with a secret name, or a JWT
        return text
    if _SECRET_HINT_RE.search(text):
        text = _INLINE_PAIR_RE.sub(_mask_pair, text)
        text = _BEARER_RE.sub(_mask_bearer, text)
    if "eyJ" in text:
        text = _JWT_RE.sub(MASK, text)
    if len(text) >= 80:
        text = _LONG_OPAQUE_RE.sub(MASK, text)
    return text


def _redact(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = redact_text(key) if isinstance(key, str) else str(key)
            if is_sensitive_key(key) and item is not None and item != "":
                out[name] = MASK
            else:
                out[name] = _redact(item, depth + 1)
        return out
    if isinstance(value, list):
        return [_redact(item, depth + 1) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None  # not JSON: msgspec would write null anyway
        return int(value) if value.is_integer() else value
    # decoded JSON holds nothing else; anything odd is dropped, not leaked
    return MASK


def _mask_pair(match: re.Match[str]) -> str:
    return f"{match['name']}{match['sep']}{MASK}"


def _mask_bearer(match: re.Match[str]) -> str:
    return f"{match.group(1)} {MASK}"
