"""The control plane's request handling that needs no I/O: which verb and
user a subject names, and turning a JSON body into a typed request or an
error reply with a precise code and the field at fault."""

from __future__ import annotations

from typing import Any

from contracts.control import ControlError, convert_request, decode_body
from contracts.errors import ErrorCode
from contracts.users import SYSTEM_VERBS, USER_VERBS, VERB_REQUESTS, check_user_id


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
    return convert_request(data, VERB_REQUESTS[verb])
