"""What of a control request may be kept: everything but its secrets, within a size.

The audit record of a control request carries the request (redacted) and the
reply in one NATS message. One that would exceed the server's payload limit is
kept with both cut down to their first characters and marked `truncated`
with their original sizes, never dropped.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.envelope import decode_json
from services.runtime.credentials.redact import redact

_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
HEAD_CHARS = 2048  # of the request and of the reply, in a truncated record
_ENVELOPE_MARGIN = 1024  # subject and headers share the payload limit


def redacted_request(body: bytes) -> Any:
    try:
        return redact(decode_json(_decoder, body)) if body.strip() else {}
    except (msgspec.DecodeError, RecursionError):
        return {"unparsed": "****"}  # malformed input may hold anything: keep none of it


def audit_record(
    *,
    record_id: str,
    ts: int,
    user: str,
    verb: str,
    request: bytes,
    reply: bytes,
    max_bytes: int,
) -> bytes:
    """The JSON of one `audit.control` record, at most `max_bytes` long."""
    redacted = redacted_request(request)
    answer = decode_json(_decoder, reply)
    record: dict[str, Any] = {
        "type": "audit.control",
        "id": record_id,
        "ts": ts,
        "user_id": user,
        "verb": verb[:64],  # an unknown verb is as long as its sender made it
        "request": redacted,
        "reply": answer,
    }
    data = _encoder.encode(record)
    if len(data) <= max_bytes - _ENVELOPE_MARGIN:
        return data
    # the redacted request and the reply, as text, cut to their heads
    record["request"] = _encoder.encode(redacted).decode()[:HEAD_CHARS]
    record["reply"] = reply.decode(errors="replace")[:HEAD_CHARS]
    record["truncated"] = {"request_bytes": len(request), "reply_bytes": len(reply)}
    return _encoder.encode(record)
