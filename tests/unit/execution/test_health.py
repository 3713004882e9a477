"""Broker connection health: only changes become events."""

from __future__ import annotations

from contracts.broker import (
    AuthFailed,
    BrokerOrderResult,
    NotConnected,
    OutcomeUnknown,
    Rejected,
    RetryLater,
)
from services.execution.health import ConnectionHealth, classify


def test_outcomes_classified_by_what_they_say_about_the_link():
    assert classify(BrokerOrderResult(status="filled")) == "up"
    assert classify(Rejected("invalid volume")) is None  # the broker answered
    assert classify(OutcomeUnknown("timed out")) is None
    assert classify(NotConnected("terminal offline")) == "down"
    assert classify(AuthFailed("token revoked")) == "auth_failed"
    assert classify(RetryLater("slow down", retry_after_s=2)) == "throttled"


def test_first_success_is_quiet_then_each_change_reported_once():
    health = ConnectionHealth()

    seen = [
        health.observe("a1", state)
        for state in ("up", "up", "down", "down", "up", "throttled", "up")
    ]

    assert seen == [None, None, "up", None, "down", "up", "throttled"]
    assert health.states() == {"a1": "up"}


def test_first_observation_down_then_reported():
    health = ConnectionHealth()

    assert health.observe("a2", "down") == "up"
