from __future__ import annotations

import re
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.credentials import MASK, Secret, redact

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJ1c2VyLTQyIiwiaWF0IjoxNzAwMDAwMDAwfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
OPAQUE = "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"  # 36 chars, no dots


def test_redact_when_sensitive_keys_nested_then_masked_case_insensitively() -> None:
    payload = {
        "user": "u42",
        "Token": "short",
        "account": {
            "metaapi_token": "abc",
            "PASSWORD": "hunter2",
            "apiKey": "k",
            "X-Api-Key": "k2",
            "client_secret": {"nested": "whole value goes"},
            "settings": [{"telegram_session": "1AbC"}, {"Authorization": "Bearer xyz"}],
        },
    }

    out = redact(payload)

    assert out["user"] == "u42"
    assert out["Token"] == MASK
    account = out["account"]
    assert account["metaapi_token"] == MASK
    assert account["PASSWORD"] == MASK
    assert account["apiKey"] == MASK
    assert account["X-Api-Key"] == MASK
    assert account["client_secret"] == MASK
    assert account["settings"] == [{"telegram_session": MASK}, {"Authorization": MASK}]
    assert payload["Token"] == "short"  # input untouched


def test_redact_when_jwt_inside_free_text_then_masked_and_rest_kept() -> None:
    text = f"login with {JWT} failed for account acc-1"

    out = redact(text)

    assert JWT not in out
    assert "eyJ" not in out
    assert out == f"login with {MASK} failed for account acc-1"


def test_redact_when_long_opaque_token_in_text_then_masked() -> None:
    out = redact({"message": f"linked with {OPAQUE}."})

    assert out == {"message": f"linked with {MASK}."}


def test_redact_when_inline_secret_pairs_in_text_then_values_masked() -> None:
    out = redact("GET /x?token=abc123&user=u1 Authorization: Bearer zzz password=p")

    assert "abc123" not in out
    assert "zzz" not in out
    assert "password=p" not in out
    assert "user=u1" in out


def test_redact_when_ordinary_values_then_unchanged() -> None:
    ordinary: dict[str, Any] = {
        "symbol": "XAUUSD",
        "text": "BUY GOLD 2350.5 SL 2340 TP 2360 / 2370",
        "lot": 0.1,
        "count": 3,
        "paused": False,
        "none": None,
        "signal_id": "01JD3T5Z9K6Q8R2M4N7P0W1X3Y",  # a ULID: 26 chars
        "account_id": "865d3a4d-3803-486d-bdf3-a85679d9fad2",  # a UUID is an id, not a token
        "url": "https://mt-provisioning-api-v1.agiliumtrade.agiliumtrade.ai/users/current",
        "tags": ("gold", "scalp"),
        "channels": ["gold_signals_vip"],
    }

    assert redact(ordinary) == ordinary


def test_redact_when_none_under_sensitive_key_then_kept_as_none() -> None:
    assert redact({"token": None, "password": ""}) == {"token": None, "password": MASK}


def test_redact_when_struct_or_secret_then_rendered_safely() -> None:
    class Linked(msgspec.Struct):
        account_id: str
        token: str

    assert redact(Linked("acc", "plain")) == {"account_id": "acc", "token": MASK}
    assert redact({"held": Secret("plain-token")}) == {"held": "Secret('****')"}


def test_redact_when_cyclic_then_terminates() -> None:
    loop: list[Any] = []
    loop.append(loop)

    assert redact(loop) is not None


_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")

# Tokens of >= 32 chars; canonical UUIDs are ids by design and kept, so excluded here.
tokens = st.text(alphabet=_TOKEN_ALPHABET, min_size=32, max_size=80).filter(
    lambda t: not _UUID.fullmatch(t)
)
junk = st.text(max_size=20)
keys = st.one_of(st.text(max_size=12), st.sampled_from(["token", "Session", "note", "api_key"]))


@st.composite
def text_with_token(draw: st.DrawFn) -> tuple[str, str]:
    token = draw(tokens)
    return draw(junk) + token + draw(junk), token


@st.composite
def structures(draw: st.DrawFn) -> tuple[Any, list[str]]:
    planted: list[str] = []

    def leaf() -> st.SearchStrategy[Any]:
        return st.one_of(st.integers(), st.floats(allow_nan=False), st.none(), st.booleans(), junk)

    def build(depth: int) -> Any:
        choice = draw(st.integers(0, 3 if depth < 4 else 1))
        if choice == 0:
            return draw(leaf())
        if choice == 1:
            text, token = draw(text_with_token())
            planted.append(token)
            return text
        if choice == 2:
            return [build(depth + 1) for _ in range(draw(st.integers(0, 3)))]
        return {draw(keys): build(depth + 1) for _ in range(draw(st.integers(0, 3)))}

    return build(0), planted


@given(structures())
def test_redact_property_never_raises_and_never_leaks_long_tokens(
    case: tuple[Any, list[str]],
) -> None:
    obj, planted = case

    out = redact(obj)

    rendered = repr(out)
    for token in planted:
        assert token not in rendered


@given(st.text(), st.text())
def test_redact_property_jwt_in_any_text_is_always_masked(before: str, after: str) -> None:
    out = redact(before + JWT + after)

    assert isinstance(out, str)
    assert JWT not in out
