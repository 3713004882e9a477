"""Turning one bus message into an audit record (pure: no NATS objects here).

Whatever arrives is recorded. A body that is JSON is kept (redacted) as
`payload`, its `type`, `id`, `ts`, `correlation_id` and `causation_id` read
from it; a body that is not (or holds a number JSON cannot carry) is kept as
redacted text with type `unparsed`. The user a message concerns comes from
the subject (`orders.*.<user>`, `events.user.<user>`, `audit.<kind>.<user>`,
`ctl.user.<verb>.<user>`, `ctl.p.<n>.<verb>.<user>`; for a dead letter, the
original subject in its `Sigrelay-Subject` header) or from the payload's
`user_id` (top level, or in its `intent` / `report`); the payload's exact id
wins when its subject token matches. The trace id comes from `traceparent`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from contracts import subjects
from services.audit.chain import AuditRecord, canonical_json
from services.audit.redact import redact, redact_text

UNPARSED = "unparsed"  # the body was not JSON
UNTYPED = "untyped"  # JSON without a string `type` (control replies, foreign messages)


def _number(text: str) -> Any:
    # an integral float becomes an int: jsonb gives `1e20` back as
    # `100000000000000000000`, and the hash must survive the round trip;
    # a number beyond a double is kept as its text rather than lost
    value = float(text)
    if value.is_integer():
        return int(value)
    if value != value or value in (float("inf"), float("-inf")):
        return text
    return value


_decode = msgspec.json.Decoder(float_hook=_number).decode
# what might hold a secret (a key name, an escaped character, a JWT, a NUL) or
# an opaque run: only then is the payload walked by `redact`
_SECRET_HINTS = (
    b"token",
    b"passw",
    b"pwd",
    b"secret",
    b"api",
    b"session",
    b"auth",
    b"private",
    b"credential",
    b"cookie",
    b"bearer",
)
_LONG_RUN_RE = re.compile(rb"[A-Za-z0-9+/_=-]{80,}")
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_ZERO_TRACE = "0" * 32
_MSG_ID = "Nats-Msg-Id"
_DLQ_SUBJECT = "Sigrelay-Subject"


def build_record(
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    stream: str,
    stream_seq: int,
) -> AuditRecord:
    """The audit record of one message at JetStream position (stream, stream_seq).

    Total: whatever the body, a record comes out (audit never drops a message).
    """
    try:
        return _build(subject, data, headers or {}, stream, stream_seq)
    except Exception as exc:  # a shape nothing above foresaw: keep the text
        return AuditRecord(
            subject=subject,
            stream=stream,
            stream_seq=stream_seq,
            type=UNPARSED,
            msg_id=f"{stream}:{stream_seq}",
            raw_text=redact_text(data.decode("utf-8", "replace")),
            headers_json=canonical_json({"Sigrelay-Audit-Error": redact_text(repr(exc))[:500]}),
        )


def _build(
    subject: str, data: bytes, headers: Mapping[str, str], stream: str, stream_seq: int
) -> AuditRecord:
    try:
        payload: Any = _decode(data)
        parsed = True
    except (msgspec.DecodeError, ValueError, RecursionError):
        payload = None
        parsed = False

    user = subject_user(subject)
    if user is None and subject.startswith(f"{subjects.DEAD_LETTER}."):
        original = headers.get(_DLQ_SUBJECT)
        if original:
            user = subject_user(original)

    if not parsed:
        return AuditRecord(
            subject=subject,
            stream=stream,
            stream_seq=stream_seq,
            type=UNPARSED,
            msg_id=_text(headers.get(_MSG_ID)) or f"{stream}:{stream_seq}",
            user_id=user,
            trace_id=trace_id(headers),
            headers_json=canonical_json(redact(dict(headers))),
            raw_text=redact_text(data.decode("utf-8", "replace")),
        )

    clean = redact(payload) if _may_hold_secret(data) else payload
    fields: Mapping[str, Any] = clean if isinstance(clean, dict) else {}
    ts = fields.get("ts")
    return AuditRecord(
        subject=subject,
        stream=stream,
        stream_seq=stream_seq,
        type=_text(fields.get("type")) or UNTYPED,
        msg_id=_text(fields.get("id")) or _text(headers.get(_MSG_ID)) or f"{stream}:{stream_seq}",
        correlation_id=_text(fields.get("correlation_id")),
        causation_id=_text(fields.get("causation_id")),
        user_id=_pick_user(user, payload_user(fields)),
        trace_id=trace_id(headers),
        ts_ns=ts if isinstance(ts, int) and not isinstance(ts, bool) and 0 <= ts < 2**63 else None,
        headers_json=canonical_json(redact(dict(headers))),
        payload_json=canonical_json(clean),
    )


def _may_hold_secret(data: bytes) -> bool:
    if b"eyJ" in data or b"\\u" in data:  # a JWT; an escape could spell a key name
        return True
    lowered = data.lower()
    for hint in _SECRET_HINTS:
        if hint in lowered:
            return True
    return _LONG_RUN_RE.search(data) is not None


def subject_user(subject: str) -> str | None:
    """The user token of a subject that addresses one user, else None."""
    parts = subject.split(".")
    head = parts[0]
    n = len(parts)
    if head == "orders" and n == 3:
        return parts[2]
    if head == subjects.EVENTS and n == 3 and parts[1] == "user":
        return parts[2]
    if head == subjects.AUDIT and n >= 3:
        return parts[-1]
    if head == "ctl" and n == 4 and parts[1] == "user":
        return parts[3]
    if head == "ctl" and n == 5 and parts[1] == "p":
        return parts[4]
    return None


def payload_user(payload: Mapping[str, Any]) -> str | None:
    """The `user_id` a payload names: its own, or its intent's or report's."""
    for holder in (payload, payload.get("intent"), payload.get("report"), payload.get("verdict")):
        if isinstance(holder, dict):
            found = holder.get("user_id")
            if isinstance(found, str) and found:
                return found
            nested = holder.get("intent")
            if isinstance(nested, dict) and isinstance(nested.get("user_id"), str):
                return str(nested["user_id"]) or None
    return None


def trace_id(headers: Mapping[str, str]) -> str | None:
    """The W3C trace id of a `traceparent` header, if one is there and valid."""
    value = headers.get("traceparent") or headers.get("Traceparent")
    if not value:
        return None
    match = _TRACEPARENT_RE.match(value.strip().lower())
    if match is None or match.group(1) == _ZERO_TRACE:
        return None
    return match.group(1)


def _pick_user(from_subject: str | None, from_payload: str | None) -> str | None:
    # the subject is where the message was routed; the payload keeps the exact id
    # (a subject token has dots and wildcards replaced)
    if from_payload and (from_subject is None or subjects.token(from_payload) == from_subject):
        return from_payload
    return from_subject


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
