"""The audit record of a control request: redacted, bounded, never dropped for its size."""

from __future__ import annotations

import msgspec

from services.actors.redaction import HEAD_CHARS, audit_record, redacted_request

TOKEN = "tok-" + "s3cr3t" * 10
LIMIT = 1024 * 1024


def record(request: bytes, reply: bytes = b'{"ok":true}', max_bytes: int = LIMIT) -> dict:
    data = audit_record(
        record_id="a1",
        ts=1,
        user="u1",
        verb="link_account",
        request=request,
        reply=reply,
        max_bytes=max_bytes,
    )
    assert len(data) <= max_bytes
    return msgspec.json.decode(data)


def test_small_request_then_whole_record_with_secrets_masked() -> None:
    body = msgspec.json.encode({"account_id": "acc", "token": TOKEN})

    rec = record(body)

    assert rec["request"]["account_id"] == "acc" and TOKEN not in str(rec)
    assert rec["reply"] == {"ok": True} and "truncated" not in rec


def test_request_and_reply_over_the_payload_limit_then_truncated_with_sizes() -> None:
    body = msgspec.json.encode({"token": TOKEN, "display_name": "a b " * (LIMIT // 4)})
    reply = msgspec.json.encode({"ok": False, "error": {"code": "request_too_large"}})

    rec = record(body, reply)

    assert rec["truncated"] == {"request_bytes": len(body), "reply_bytes": len(reply)}
    assert len(rec["request"]) == HEAD_CHARS and TOKEN not in rec["request"]
    assert "request_too_large" in rec["reply"]


def test_deeply_nested_or_not_utf8_request_then_kept_as_unparsed() -> None:
    assert redacted_request(b"[" * 3000 + b"]" * 3000) == {"unparsed": "****"}
    assert redacted_request(b'{"a": "\xff"}') == {"unparsed": "****"}
