"""The control-plane reply shape: `{"ok": true, "data": …}` or
`{"ok": false, "error": {"code", "message", "field"}}`."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.envelope import new_id
from contracts.errors import ErrorCode


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str
    field: str | None = None


class Reply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    ok: bool
    data: Any = None
    error: ErrorBody | None = None


class ControlError(Exception):
    """Raised by a control handler to answer with an error reply."""

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def reply(self) -> Reply:
        return Reply(
            ok=False, error=ErrorBody(code=self.code.value, message=self.message, field=self.field)
        )


def internal_error(what: str, code: ErrorCode = ErrorCode.INTERNAL) -> tuple[ControlError, str]:
    """The reply to an unexpected failure, and the reference that names it in the log.

    The reply says nothing of the cause: an exception's text may be a database's
    error message, or hold a value of the request. Log the exception with the
    reference; the reply carries only the reference.
    """
    reference = new_id()
    return ControlError(code, f"{what} failed: internal error, reference {reference}"), reference


def ok(data: Any = None) -> Reply:
    return Reply(ok=True, data=data)


_encoder = msgspec.json.Encoder()


def encode_reply(reply: Reply) -> bytes:
    return _encoder.encode(reply)
