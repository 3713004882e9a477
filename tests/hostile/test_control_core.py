"""Hostile control bodies through the pure control path (subject check, JSON decode,
validation, the command core, evolve, the reply views): nothing but a `ControlError`
with a known code ever comes out, a field error names the field, and whatever is
accepted can be stored and read back (no NUL, no lone surrogate, no number beyond
2**53, no time zone that does not exist)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.channels import CHANNEL_NAME
from contracts.control import ControlError, encode_reply, ok
from contracts.users import USER_VERBS, VERB_REQUESTS, SealedToken, UserDeleted
from services.actors.control import check_verb_and_user, decode_request
from services.actors.core import (
    ALIASES,
    CommandContext,
    UserState,
    decide_command,
    evolve,
    initial_state,
    positions_view,
    settings_view,
    status_view,
)
from tests.hostile.hostile import (
    KNOWN_CODES,
    deep,
    deep_in_field,
    encode_body,
    json_values,
    nasty_text,
    numbers,
    raw_bytes,
    settings_paths,
    unstorable,
)
from tests.unit.actors.factories import T0, user

USER = "u1"
ENVELOPE = ("type", "id", "ts", "correlation_id", "causation_id")
SETTINGS_KEYS = (*ALIASES, *settings_paths())
# Field errors: the reply must say which field.
FIELD_CODES = frozenset(("unknown_field", "missing_field", "invalid_value"))

STATES: dict[str, UserState] = {
    "unregistered": initial_state(USER),
    "registered": user(account=False, channel=None),
    "linked_and_subscribed": user(),
    "paused": user(status="paused"),
    "stopped": user(status="stopped"),
}
STATES["deleted"] = evolve(STATES["registered"], UserDeleted(id="del-1", ts=T0))


def _fields_of(verb: str) -> tuple[str, ...]:
    if verb == "settings":
        return SETTINGS_KEYS
    request = VERB_REQUESTS[verb]
    names: tuple[str, ...] = request.__struct_fields__
    if verb == "subscribe":  # the overrides are a settings tree of their own
        names += tuple(f"overrides.{p}" for p in settings_paths())
    return names


def _nest(key: str, value: Any, verb: str) -> tuple[str, Any]:
    """`overrides.lot.fixed_lot` -> ("overrides", {"lot": {"fixed_lot": value}}): a request
    holds nested objects, a settings patch holds dotted keys."""
    if verb == "settings" or "." not in key:
        return key, value
    head, *rest = key.split(".")
    for part in reversed(rest):
        value = {part: value}
    return head, value


@st.composite
def bodies(draw: st.DrawFn, verb: str) -> bytes:
    shape = draw(st.sampled_from(["fields", "fields", "fields", "any_json", "bytes", "deep"]))
    if shape == "bytes":
        return draw(raw_bytes)
    if shape == "any_json":
        return encode_body(draw(json_values))
    if shape == "deep":
        field = draw(st.sampled_from(_fields_of(verb) or ("x",)))
        depth = draw(st.sampled_from([10, 500, 1000, 3000]))
        return deep_in_field(field.split(".")[0], depth, draw(st.sampled_from(["list", "dict"])))
    keys = draw(
        st.lists(st.one_of(st.sampled_from(_fields_of(verb) or ("x",)), nasty_text), max_size=4)
    )
    body: dict[str, Any] = {}
    for key in keys:
        value = draw(st.one_of(numbers, nasty_text, json_values, st.booleans()))
        name, nested = _nest(key, value, verb)
        body[name] = nested
    return encode_body(body)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes]:
    state = draw(st.sampled_from(sorted(STATES)))
    verb = draw(st.sampled_from([*USER_VERBS, "teleport", ""]))
    return state, verb, draw(bodies(verb if verb in USER_VERBS else "status"))


def control(state: UserState, verb: str, body: bytes) -> tuple[list[Any], bytes]:
    """What the actor host does with one request, minus the I/O: the events and the reply."""
    check_verb_and_user(verb, state.user_id)
    request = decode_request(verb, body)
    sealed = None
    if verb == "link_account" and getattr(request, "token", None):
        sealed = SealedToken(key_version=1, nonce=b"n" * 12, ciphertext=b"sealed")
    context = CommandContext(
        now_ns=T0,
        user_id=state.user_id,
        request_id="req-1",
        sealed_token=sealed,
        known_channels=lambda name: bool(CHANNEL_NAME.match(name)),
    )
    events = decide_command(state, verb, request, context)
    for event in events:
        state = evolve(state, event)
    view = {"positions": positions_view, "settings": settings_view}.get(verb, status_view)
    return events, encode_reply(ok(view(state)))


def check(state_name: str, verb: str, body: bytes) -> None:
    state = STATES[state_name]
    try:
        events, _reply = control(state, verb, body)
    except ControlError as exc:
        assert exc.code.value in KNOWN_CODES, exc.code
        assert exc.message, "an error reply without a message"
        assert exc.code.value != "internal", f"{verb} {body[:200]!r} -> internal: {exc.message}"
        if exc.code.value in FIELD_CODES and exc.field is None:
            decoded_object = body.strip().startswith(b"{")
            assert not decoded_object or "JSON" in exc.message, (
                f"{verb} {body[:200]!r} -> {exc.code.value} names no field: {exc.message}"
            )
        encode_reply(exc.reply())  # the error itself can be sent
        return
    for event in events:
        fields = {k: v for k, v in msgspec.to_builtins(event).items() if k not in ENVELOPE}
        problems = unstorable(fields)
        assert not problems, (
            f"{verb} {body[:200]!r} accepted into {type(event).__name__}: {problems}"
        )


# Bodies each of which once got past the control plane (or crashed it): the generated
# search below finds such things; these make sure each is tried on every run.
HOSTILE_CASES = {
    "max_lot_1e308": ("registered", "settings", b'{"max_lot": 1e308}'),
    "lot_1e308_by_risk_percent": (
        "registered",
        "settings",
        b'{"lot_mode": "risk_percent", "lot": 1e308, "max_lot": 1e308}',
    ),
    "tp_number_2_pow_63": ("registered", "settings", b'{"tp_number": 9223372036854775808}'),
    "time_zone_mars": (
        "registered",
        "settings",
        b'{"risk.trading_hours.timezone": "Mars/Olympus"}',
    ),
    "nul_in_display_name": ("unregistered", "register", b'{"display_name": "a\\u0000b"}'),
    "nul_in_reason": ("registered", "pause", b'{"reason": "\\u0000"}'),
    "nul_in_token": (
        "registered",
        "link_account",
        b'{"account_id": "acc-1", "token": "t\\u0000k"}',
    ),
    "nul_in_suffix": ("registered", "settings", b'{"suffix": ".m\\u0000"}'),
    "lone_surrogate_in_reason": ("registered", "stop", b'{"reason": "\\ud800"}'),
    "settings_3000_deep": ("registered", "settings", deep_in_field("lot", 3000, "list")),
    "overrides_3000_deep": ("registered", "subscribe", deep_in_field("overrides", 3000, "dict")),
    "body_3000_deep_list": ("registered", "status", deep(3000, "list")),
    "invalid_utf8_in_string": ("registered", "pause", b'{"reason": "\xed\xa0\x80"}'),
    "empty_setting_name": ("registered", "settings", b'{"": 1}'),
}


@pytest.mark.parametrize("case", HOSTILE_CASES.values(), ids=HOSTILE_CASES.keys())
def test_known_hostile_body_then_a_coded_error_or_a_storable_change(
    case: tuple[str, str, bytes],
) -> None:
    check(*case)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_hostile_control_body_then_a_coded_error_or_a_storable_change(
    case: tuple[str, str, bytes],
) -> None:
    check(*case)


@settings(max_examples=300)
@given(st.sampled_from(USER_VERBS), nasty_text)
def test_hostile_user_id_then_refused_naming_the_user_or_served_as_itself(
    verb: str, user_id: str
) -> None:
    try:
        check_verb_and_user(verb, user_id)
    except ControlError as exc:
        assert exc.code.value == "invalid_value" and exc.field == "user", exc
        return
    assert user_id.isascii() and "." not in user_id and "\x00" not in user_id
