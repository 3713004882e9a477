"""The control-plane reply shape: `{"ok": true, "data": …}` or
`{"ok": false, "error": {"code", "message", "field"}}`."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from contracts.envelope import decode_json, new_id
from contracts.errors import ErrorCode

MAX_REQUEST_BYTES = 64 * 1024  # a control request is a handful of fields
# characters no store can keep: NUL (Postgres text and jsonb refuse it) and lone
# surrogates (not encodable as UTF-8)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`(?: - at `\$\.?([^`]*)`)?")
_MISSING = re.compile(r"missing required field `([^`]*)`(?: - at `\$\.?([^`]*)`)?")
_AT = re.compile(r" - at `\$\.?([^`]*)`")
T = TypeVar("T")


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


_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def decode_body(body: bytes) -> dict[str, Any]:
    """The one decoder of control request bodies: a JSON object (empty body: `{}`) of
    at most `MAX_REQUEST_BYTES`, every text in it storable; else a ControlError
    (`request_too_large`, `malformed_json`, or `invalid_value` naming the field)."""
    if len(body) > MAX_REQUEST_BYTES:
        raise ControlError(
            ErrorCode.REQUEST_TOO_LARGE,
            f"request body of {len(body)} bytes is over the limit of {MAX_REQUEST_BYTES} bytes",
        )
    if not body.strip():
        return {}
    try:
        value = decode_json(_decoder, body)
    except msgspec.DecodeError as exc:
        raise ControlError(
            ErrorCode.MALFORMED_JSON, f"request body is not valid JSON: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise ControlError(
            ErrorCode.MALFORMED_JSON,
            f"request body must be a JSON object, got {type(value).__name__}",
        )
    check_text(value)
    return value


def convert_request(data: dict[str, Any], shape: type[T]) -> T:
    """A decoded body as the request Struct `shape`, or a ControlError naming the field."""
    try:
        return msgspec.convert(data, shape)
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


def check_text(value: Any, field: str = "") -> None:
    """Refuse a NUL or a lone surrogate in any key or string of `value` (a decoded
    JSON value), naming the dotted field; iterative, so depth costs no stack."""
    pending: list[tuple[str, Any]] = [(field, value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            _check_string(path, item)
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    _check_string(path or "request", key, what="a key")
                pending.append((name, child))
        elif isinstance(item, list | tuple):
            pending.extend((path, child) for child in item)


def _check_string(field: str, text: str, what: str = "") -> None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return
    char = f"U+{ord(found.group()):04X}"
    shown = _printable(field or "request")
    where = f"{what} of {shown}" if what else shown
    raise ControlError(
        ErrorCode.INVALID_VALUE,
        f"{where} holds the character {char} at position {found.start()}, which cannot be"
        " stored (NUL and lone surrogates are refused)",
        field=shown,
    )


def _printable(field: str) -> str:
    # the field name itself may hold the character; never echo it back raw
    return _UNSTORABLE.sub("?", field)
