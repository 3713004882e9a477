"""Test-only fault injection: `SIGRELAY_FAULT=<point>` kills the process at that point.

Points:
- `kill_after_broker_accept`: SIGKILL right after the broker accepted an
  order (open intents), before the report is written. The exactly-once test
  restarts execution after it and expects one position and one report.

Unset (the default) it does nothing; it is read once when the service starts.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping

FAULT_ENV = "SIGRELAY_FAULT"
KILL_AFTER_BROKER_ACCEPT = "kill_after_broker_accept"
POINTS = frozenset({KILL_AFTER_BROKER_ACCEPT})

log = logging.getLogger("sigrelay.execution.faults")


class FaultHook:
    def __init__(self, point: str | None = None) -> None:
        if point and point not in POINTS:
            raise ValueError(f"{FAULT_ENV}={point!r} is not a fault point ({', '.join(POINTS)})")
        self.point = point or None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FaultHook:
        return cls(env.get(FAULT_ENV) or None)

    def __call__(self, point: str) -> None:
        if self.point == point:
            log.error("fault injection: SIGKILL at %s", point)
            os.kill(os.getpid(), signal.SIGKILL)
