"""Redaction: nothing secret reaches the audit table, and ids stay readable."""

from __future__ import annotations

import json

from services.audit.redact import MASK, is_sensitive_key, redact, redact_text

JWT = (
    "eyJhbGciOiJSUzUxMiIsInR5cCI6IkpXVCJ9."
    "eyJfaWQiOiIxMjM0NTYiLCJyZWFsVXNlcklkIjoiYWJjIn0."
    "c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)


def test_redact_when_nested_secret_keys_then_masked_at_any_depth():
    payload = {
        "type": "ctl.link_account",
        "body": {
            "account_id": "acc-1",
            "token": "plain-metaapi-token",
            "deep": [{"apiKey": "k-123"}, {"Authorization": "Bearer abc"}],
            "creds": {"password": "hunter2", "session_string": "1BVts..."},
            "client_secret": "s3",
            "refresh-token": "r",
        },
    }

    out = redact(payload)

    text = json.dumps(out)
    for secret in ("plain-metaapi-token", "k-123", "Bearer abc", "hunter2", "1BVts", 's3"', '"r"'):
        assert secret not in text, secret
    assert out["body"]["account_id"] == "acc-1"
    assert out["body"]["token"] == MASK and out["body"]["deep"][0]["apiKey"] == MASK


def test_redact_when_jwt_in_free_text_or_any_field_then_masked():
    out = redact({"text": f"here is my key {JWT} thanks", "note": JWT, "list": [JWT]})

    assert JWT not in json.dumps(out)
    assert out["text"] == f"here is my key {MASK} thanks"
    assert out["note"] == MASK and out["list"] == [MASK]


def test_redact_when_inline_secret_pairs_then_values_masked():
    text = redact_text(
        "GET /x?token=abcdef123&x=1 Authorization: Bearer abcdefghijklmnopqrstuvwxyz"
    )

    assert "abcdef123" not in text and "abcdefghijklmnop" not in text
    assert "x=1" in text


def test_redact_when_long_opaque_session_string_then_masked_but_ids_kept():
    session = "1BVtsOK8Bu" + "A" * 300
    ulid = "01JAXQ4X3N5Q8W0F7G9H2K4M6P"
    intent = "gold:501:u42:1:open"
    sha = "a" * 64

    out = redact({"text": f"session {session}", "id": ulid, "intent_id": intent, "digest": sha})

    assert session not in json.dumps(out)
    assert out["id"] == ulid and out["intent_id"] == intent and out["digest"] == sha


def test_redact_when_trading_text_then_unchanged():
    text = "XAUUSD BUY NOW 4357\nSL 4340 TP1 4365\nAsian session: range, basic strategy applies"

    assert redact_text(text) == text


def test_redact_when_secret_key_is_null_or_empty_then_kept_as_is():
    assert redact({"token": None, "password": ""}) == {"token": None, "password": ""}


def test_redact_when_nul_characters_then_replaced_for_postgres():
    assert "\x00" not in redact({"text": "a\x00b"})["text"]


def test_redact_when_integral_floats_then_ints_so_jsonb_round_trips():
    assert redact({"a": 1e20, "b": 100.0, "c": 0.5}) == {"a": 10**20, "b": 100, "c": 0.5}


def test_redact_when_nested_too_deep_then_masked_not_raised():
    deep: object = "x"
    for _ in range(200):
        deep = [deep]
    assert MASK in json.dumps(redact(deep))


def test_sensitive_keys_when_camel_kebab_snake_then_recognised():
    for key in (
        "token",
        "accessToken",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "sessionString",
        "AUTHORIZATION",
        "db_password",
        "clientSecret",
        "cookie",
    ):
        assert is_sensitive_key(key), key
    for key in ("account_id", "symbol", "tps", "session_high", "reason"):
        # "session_high" is a deliberate false positive: better masked than leaked
        assert is_sensitive_key(key) is (key == "session_high"), key
