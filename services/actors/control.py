"""The control plane's request handling that needs no I/O: which verb and
user a subject names, and turning a JSON body into a typed request or an
error reply with a precise code and the field at fault."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from contracts.control import ControlError, decode_body
from contracts.errors import ErrorCode
from contracts.users import SYSTEM_VERBS, USER_VERBS, VERB_REQUESTS, check_user_id

_UNKNOWN = re.compile(r"unknown field `([^`]*)`(?: - at `\$\.?([^`]*)`)?")
_MISSING = re.compile(r"missing required field `([^`]*)`(?: - at `\$\.?([^`]*)`)?")
_AT = re.compile(r" - at `\$\.?([^`]*)`")


def parse_subject(subject: str) -> tuple[int, str, str]:
    """`ctl.p.<partition>.<verb>.<user>` -> (partition, verb, user)."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != "ctl" or parts[1] != "p" or not parts[2].isdigit():
        raise ControlError(ErrorCode.INVALID_VALUE, f"subject {subject!r} is not a control subject")
    return int(parts[2]), parts[3], parts[4]


def check_verb_and_user(verb: str, user_id: str) -> None:
    if verb not in USER_VERBS:
        raise ControlError(
            ErrorCode.UNKNOWN_VERB,
            f"unknown verb {verb!r}; per-user verbs are {', '.join(USER_VERBS)}"
            f" and system verbs {', '.join(SYSTEM_VERBS)}",
            field="verb",
        )
    try:
        check_user_id(user_id)
    except ValueError as exc:
        raise ControlError(ErrorCode.INVALID_VALUE, str(exc), field="user") from None


def decode_request(verb: str, body: bytes) -> Any:
    """The typed request of a verb, or (for `settings`) the patch as a dict."""
    data = decode_body(body)
    if verb == "settings":
        return data
    try:
        return msgspec.convert(data, VERB_REQUESTS[verb])
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: msgspec.ValidationError, prefix: str = "") -> ControlError:
    """Map msgspec's message to an error code and the dotted field it names."""
    text = str(exc)
    unknown = _UNKNOWN.search(text)
    if unknown:
        field = _join(prefix, unknown.group(2) or "", unknown.group(1))
        return ControlError(ErrorCode.UNKNOWN_FIELD, f"unknown field {field!r}", field=field)
    missing = _MISSING.search(text)
    if missing:
        field = _join(prefix, missing.group(2) or "", missing.group(1))
        return ControlError(ErrorCode.MISSING_FIELD, f"missing field {field!r}", field=field)
    at = _AT.search(text)
    path = _join(prefix, at.group(1) if at else "")
    return ControlError(ErrorCode.INVALID_VALUE, text, field=path or None)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)
