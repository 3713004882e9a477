"""What the server would refuse for a message itself, checked before sending."""

from __future__ import annotations

import pytest

from services.runtime.dead_letters import headers_size, publish_refusal, shown

LIMIT = 1024 * 1024


@pytest.mark.parametrize(
    ("subject", "fragment"),
    [
        ("signals.parsed." + "x" * 4200, "subject of 4215 bytes exceeds 1024"),
        ("signals..gold", "is not a valid subject"),
        ("signals.parsed.", "is not a valid subject"),
        ("signals.parsed.go ld", "is not a valid subject"),
        ("signals.parsed.gold\r\nPUB x 1", "is not a valid subject"),
        ("", "is not a valid subject"),
        ("signals.parsed.*", "has a wildcard"),
        ("signals.>", "has a wildcard"),
    ],
)
def test_refusal_when_subject_bad_then_reason_names_it(subject: str, fragment: str) -> None:
    reason = publish_refusal(subject, b"{}", {}, LIMIT)

    assert reason is not None and fragment in reason


def test_refusal_when_headers_push_message_over_max_payload_then_refused() -> None:
    headers = {"Nats-Msg-Id": "m-1"}
    body = b"x" * (LIMIT - headers_size(headers))

    assert publish_refusal("events.user.u1", body, headers, LIMIT) is None
    reason = publish_refusal("events.user.u1", body + b"x", headers, LIMIT)
    assert reason is not None and f"exceeds the server's max_payload {LIMIT}" in reason


def test_shown_when_subject_long_then_cut_with_its_length() -> None:
    assert shown("a.b") == "a.b"
    assert shown("x" * 4200).endswith("...(4200 characters)") and len(shown("x" * 4200)) < 300
