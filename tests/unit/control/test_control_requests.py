"""Control-plane request decoding: each kind of bad input gets its own code and field."""

from __future__ import annotations

import msgspec
import pytest

from contracts.control import MAX_REQUEST_BYTES, ControlError, check_text, internal_error
from contracts.errors import ErrorCode
from contracts.users import LinkAccountRequest, SubscribeRequest
from services.actors.control import check_verb_and_user, decode_request, parse_subject
from services.runtime.ctl import UsageError, parse_assignments


def error_of(fn, *args) -> ControlError:
    with pytest.raises(ControlError) as err:
        fn(*args)
    return err.value


def test_subject_names_partition_verb_and_user():
    assert parse_subject("ctl.p.7.status.u42") == (7, "status", "u42")


def test_unknown_verb_then_unknown_verb_code():
    err = error_of(check_verb_and_user, "teleport", "u1")
    assert err.code is ErrorCode.UNKNOWN_VERB and err.field == "verb" and "teleport" in err.message


def test_bad_user_id_then_invalid_value_naming_user():
    err = error_of(check_verb_and_user, "status", "u 1!")
    assert err.code is ErrorCode.INVALID_VALUE and err.field == "user"


def test_malformed_json_then_malformed_json_code():
    err = error_of(decode_request, "subscribe", b"{channel: gold")
    assert err.code is ErrorCode.MALFORMED_JSON


def test_json_not_an_object_then_malformed_json_code():
    err = error_of(decode_request, "subscribe", b"[1, 2]")
    assert err.code is ErrorCode.MALFORMED_JSON and "list" in err.message


def test_unknown_field_then_unknown_field_code_naming_it():
    err = error_of(decode_request, "subscribe", b'{"channel": "gold", "chanel": "x"}')
    assert err.code is ErrorCode.UNKNOWN_FIELD and err.field == "chanel"


def test_unknown_nested_field_then_dotted_path():
    body = b'{"channel": "gold", "overrides": {"lot": {"fixd_lot": 1}}}'
    err = error_of(decode_request, "subscribe", body)
    assert err.code is ErrorCode.UNKNOWN_FIELD and err.field == "overrides.lot.fixd_lot"


def test_missing_field_then_missing_field_code():
    err = error_of(decode_request, "link_account", b"{}")
    assert err.code is ErrorCode.MISSING_FIELD and err.field == "account_id"


def test_wrong_type_then_invalid_value_naming_field():
    err = error_of(decode_request, "subscribe", b'{"channel": 5}')
    assert err.code is ErrorCode.INVALID_VALUE and err.field == "channel"


def test_good_requests_then_typed_structs():
    assert decode_request("subscribe", b'{"channel": "gold"}') == SubscribeRequest(channel="gold")
    assert decode_request("link_account", b'{"account_id": "paper"}') == LinkAccountRequest(
        account_id="paper"
    )
    assert decode_request("settings", b"") == {}


def test_cli_assignments_read_json_where_it_parses_else_strings():
    body = parse_assignments(["lot=0.1", 'allowed_symbols=["XAUUSD"]', "channel=gold", "x=true"])
    assert body == {"lot": 0.1, "allowed_symbols": ["XAUUSD"], "channel": "gold", "x": True}


def test_cli_assignment_without_equals_then_usage_error():
    with pytest.raises(UsageError, match="key=value"):
        parse_assignments(["lot"])


def test_internal_error_then_reply_names_a_reference_and_nothing_of_the_cause():
    first, reference = internal_error("register")
    second, other = internal_error("register", ErrorCode.UNAVAILABLE)

    assert first.code is ErrorCode.INTERNAL and second.code is ErrorCode.UNAVAILABLE
    assert first.message == f"register failed: internal error, reference {reference}"
    assert reference != other and first.field is None


@pytest.mark.parametrize(
    ("verb", "body", "field"),
    [
        ("register", b'{"display_name": "Ann\\u0000"}', "display_name"),
        ("pause", b'{"reason": "\\u0000"}', "reason"),
        ("stop", b'{"reason": "lunch \\u0000 break"}', "reason"),
        ("link_account", b'{"account_id": "acc\\u0000", "token": "t"}', "account_id"),
        ("link_account", b'{"account_id": "acc", "token": "t\\u0000"}', "token"),
        ("subscribe", b'{"channel": "gold\\u0000"}', "channel"),
        ("settings", b'{"suffix": ".m\\u0000"}', "suffix"),
        ("settings", b'{"allowed_symbols": ["XAUUSD", "EUR\\u0000"]}', "allowed_symbols"),
        ("settings", b'{"symbols.aliases": {"GOLD\\u0000": "XAUUSD"}}', "symbols.aliases"),
        (
            "subscribe",
            b'{"channel": "gold", "overrides": {"lot": {"mode": "\\u0000"}}}',
            "overrides.lot.mode",
        ),
    ],
)
def test_nul_in_any_text_field_then_invalid_value_naming_the_field(verb, body, field):
    err = error_of(decode_request, verb, body)

    assert err.code is ErrorCode.INVALID_VALUE and err.field == field
    assert "U+0000" in err.message and "\x00" not in err.message


def test_lone_surrogate_in_text_then_invalid_value_naming_the_field():
    err = error_of(check_text, {"display_name": "Ann\udc80"})

    assert err.code is ErrorCode.INVALID_VALUE and err.field == "display_name"
    assert "U+DC80" in err.message


@pytest.mark.parametrize(
    "body",
    [
        b'{"display_name": "\\ud800"}',  # an escaped lone surrogate
        b'{"display_name": "\xed\xa0\x80"}',  # bytes that are not UTF-8
        b'{"display_name": "\xff"}',
        b"[" * 3000 + b"]" * 3000,
        b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    ],
)
def test_undecodable_or_deeply_nested_body_then_malformed_json(body):
    err = error_of(decode_request, "register", body)

    assert err.code is ErrorCode.MALFORMED_JSON


def test_body_over_the_size_limit_then_request_too_large():
    body = b'{"display_name": "' + b"a" * MAX_REQUEST_BYTES + b'"}'

    err = error_of(decode_request, "register", body)

    assert err.code is ErrorCode.REQUEST_TOO_LARGE and str(MAX_REQUEST_BYTES) in err.message


@pytest.mark.parametrize(
    ("verb", "body", "field"),
    [
        ("register", {"display_name": "a" * 101}, "display_name"),
        ("pause", {"reason": "a" * 501}, "reason"),
        ("link_account", {"account_id": "a" * 129, "token": "t"}, "account_id"),
        ("link_account", {"account_id": "a", "token": "t" * 4097}, "token"),
        ("subscribe", {"channel": "a" * 65}, "channel"),
    ],
)
def test_text_field_over_its_length_then_invalid_value_naming_it(verb, body, field):
    err = error_of(decode_request, verb, msgspec.json.encode(body))

    assert err.code is ErrorCode.INVALID_VALUE and err.field == field
