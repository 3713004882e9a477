"""Broker connection health per account, reported as events when it changes.

Every broker call tells us something: an answer (even a rejection) means the
account's terminal is reachable; `NotConnected` means it is not; `AuthFailed`
means the credentials no longer work; `RetryLater` means the broker throttles
us. Only changes are recorded (stream `broker-health-<account>`, published on
`events.account.<account>`), so operators see "down at 10:02, up at 10:05",
not one event per order.
"""

from __future__ import annotations

from typing import Literal

from contracts.broker import AuthFailed, BrokerError, NotConnected, RetryLater
from contracts.envelope import Envelope

HealthState = Literal["up", "down", "auth_failed", "throttled"]


class BrokerConnectionChanged(Envelope, frozen=True, kw_only=True, tag="execution.broker_health"):
    account_id: str
    state: HealthState
    previous: HealthState | None = None
    reason: str = ""


def classify(outcome: object) -> HealthState | None:
    """What a call's outcome says about the connection (None: nothing new)."""
    if isinstance(outcome, NotConnected):
        return "down"
    if isinstance(outcome, AuthFailed):
        return "auth_failed"
    if isinstance(outcome, RetryLater):
        return "throttled"
    if isinstance(outcome, BrokerError):
        return None  # rejected or outcome unknown: says nothing about the link itself
    return "up"


class ConnectionHealth:
    """The last known state per account; `observe` returns the change, if any."""

    def __init__(self) -> None:
        self._states: dict[str, HealthState] = {}

    def observe(self, account_id: str, state: HealthState) -> HealthState | None:
        """Record `state`; return the previous state when it changed (or 'up' first seen
        after nothing is not a change worth an event: a new account starts up)."""
        previous = self._states.get(account_id)
        self._states[account_id] = state
        if previous == state or (previous is None and state == "up"):
            return None
        return previous or "up"

    def states(self) -> dict[str, HealthState]:
        return dict(self._states)
