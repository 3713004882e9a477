"""What the risk service records in the event log.

- `risk-<user>`: every decision (`RiskDecided`, with the verdict and so the
  intent whole), every execution report risk folded (`ReportApplied`) and
  the user's kill switch (`KillSwitchSet` with `user_id`). With the user's
  own stream (`user-<user>`, for state and limits) it is everything the
  exposure projection needs to be rebuilt.
- `riskctl-global`: the global kill switch (`KillSwitchSet`, no `user_id`).

These types belong to risk alone (no other service reads these streams), so
they live here rather than in `contracts`.
"""

from __future__ import annotations

from contracts.envelope import Envelope
from contracts.orders import ExecutionReport, RiskVerdict

CONTROL_STREAM = "riskctl-global"


def risk_stream(user_id: str) -> str:
    return f"risk-{user_id}"


class RiskDecided(Envelope, frozen=True, kw_only=True, tag="risk.decided"):
    """Risk's verdict on one intent; an approved one adds pending exposure."""

    verdict: RiskVerdict


class ReportApplied(Envelope, frozen=True, kw_only=True, tag="risk.report"):
    """An execution report risk folded into the user's exposure."""

    report: ExecutionReport


class KillSwitchSet(Envelope, frozen=True, kw_only=True, tag="risk.kill_switch"):
    """The kill switch turned on or off: for one user, or for everyone (`user_id` None)."""

    on: bool
    reason: str = ""
    user_id: str | None = None


RISK_EVENTS = (RiskDecided, ReportApplied, KillSwitchSet)
