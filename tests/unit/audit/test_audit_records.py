"""Record extraction: type, ids, user and trace from subjects, payloads and headers."""

from __future__ import annotations

import msgspec
from audit_stubs import message

from services.audit.records import UNPARSED, UNTYPED, build_record, subject_user, trace_id

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_record_when_order_intent_then_envelope_fields_and_user_from_subject():
    data = message("order.intent", user_id="u42", correlation_id="gold:501", causation_id="p1")

    rec = build_record("orders.intent.u42", data, {"traceparent": TRACEPARENT}, "ORDERS", 7)

    assert rec.type == "order.intent" and rec.msg_id == "m-order.intent"
    assert rec.correlation_id == "gold:501" and rec.causation_id == "p1"
    assert rec.user_id == "u42" and rec.chain == "user:u42"
    assert rec.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert rec.stream == "ORDERS" and rec.stream_seq == 7
    assert rec.ts_ns == 1_760_000_000_000_000_000


def test_record_when_payload_user_has_dots_then_exact_id_kept():
    data = message("order.report", user_id="u.42")

    rec = build_record("orders.report.u_42", data, None, "ORDERS", 1)

    assert rec.user_id == "u.42"


def test_record_when_payload_user_contradicts_subject_then_subject_wins():
    rec = build_record("orders.report.u1", message("order.report", user_id="u2"), None, "ORDERS", 1)

    assert rec.user_id == "u1"


def test_record_when_verdict_then_user_from_nested_intent_if_subject_has_none():
    data = message("order.verdict", intent={"user_id": "u5"})

    rec = build_record("events.account.acc1", data, None, "EVENTS", 1)

    assert rec.user_id == "u5"


def test_subject_user_for_each_kind_of_subject():
    assert subject_user("orders.verdict.u1") == "u1"
    assert subject_user("events.user.u2") == "u2"
    assert subject_user("audit.control.u3") == "u3"
    assert subject_user("ctl.user.pause.u4") == "u4"
    assert subject_user("ctl.p.3.pause.u5") == "u5"
    assert subject_user("signals.parsed.gold") is None
    assert subject_user("events.channel.gold") is None
    assert subject_user("dlq.risk") is None


def test_record_when_dead_letter_then_user_from_original_subject_header():
    headers = {"Sigrelay-Subject": "orders.intent.u9", "Sigrelay-Error": "invalid"}

    rec = build_record("dlq.risk", b"{not json", headers, "DEADLETTER", 3)

    assert rec.user_id == "u9" and rec.type == UNPARSED


def test_record_when_not_json_then_unparsed_raw_text_and_msg_id_from_header():
    rec = build_record(
        "signals.raw.gold", b"\xff\xfegarbage", {"Nats-Msg-Id": "gold:1:0"}, "SIGNALS", 2
    )

    assert rec.type == UNPARSED and rec.payload_json is None
    assert rec.raw_text is not None and "garbage" in rec.raw_text
    assert rec.msg_id == "gold:1:0"


def test_record_when_no_id_anywhere_then_msg_id_is_stream_position():
    rec = build_record("audit.control.u1", b"[1, 2]", None, "AUDIT", 11)

    assert rec.type == UNTYPED and rec.msg_id == "AUDIT:11"


def test_record_when_control_payload_has_token_then_no_plaintext_in_record():
    data = msgspec.json.encode(
        {"verb": "link_account", "request": {"account_id": "a1", "token": "metaapi-plain"}}
    )
    headers = {"Authorization": "Bearer very-secret-value-123456"}

    rec = build_record("audit.control.u1", data, headers, "AUDIT", 1)

    assert b"metaapi-plain" not in (rec.payload_json or b"")
    assert b"very-secret" not in rec.headers_json


def test_record_when_number_beyond_a_double_then_kept_as_its_text():
    rec = build_record(
        "orders.intent.u1", b'{"type": "order.intent", "volume": 1e999}', None, "ORDERS", 4
    )

    assert (
        rec.type == "order.intent"
        and rec.payload_json == b'{"type":"order.intent","volume":"1e999"}'
    )


def test_record_when_integral_floats_then_stored_as_ints():
    rec = build_record(
        "orders.intent.u1", b'{"price": 4357.0, "big": 1e20, "sl": 0.5}', None, "ORDERS", 1
    )

    assert rec.payload_json == b'{"big":100000000000000000000,"price":4357,"sl":0.5}'


def test_record_when_secret_key_escaped_in_json_then_still_masked():
    rec = build_record("audit.control.u1", b'{"\\u0074oken": "plain-value-xyz"}', None, "AUDIT", 1)

    assert b"plain-value-xyz" not in (rec.payload_json or b"")


def test_record_when_body_is_huge_nested_then_recorded_not_raised():
    data = b"[" * 5000 + b"]" * 5000

    rec = build_record("orders.intent.u1", data, None, "ORDERS", 9)

    assert rec.stream_seq == 9 and rec.user_id in (None, "u1")


def test_trace_id_when_missing_invalid_or_zero_then_none():
    assert trace_id({}) is None
    assert trace_id({"traceparent": "garbage"}) is None
    assert trace_id({"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}) is None
    assert trace_id({"traceparent": TRACEPARENT.upper()}) == "4bf92f3577b34da6a3ce929d0e0e4736"
