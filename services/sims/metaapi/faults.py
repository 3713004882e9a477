"""What the stand-in is told to do wrong: throttle, refuse connections, fail one request.

- `throttle(seconds)`: for the next `seconds`, every REST call and every websocket
  request but `subscribe`/`unsubscribe` (so connections stay up, as MetaApi's
  request-rate limits do) is answered TooManyRequestsError (HTTP 429) with
  `recommendedRetryTime` at the end of the window.
- `refuse(seconds)`: new websocket connections are refused until then (the
  server drops the existing ones itself, `rpc.Gateway.drop_all`).
- `fail_next(type, ...)` / `drop_next(type, ...)`: one-shot faults per request
  type, in order: a `processingError`, or no answer at all (the SDK times out),
  after running the trade or not, optionally dropping the connection too.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

from .shapes import iso

UNTHROTTLED = frozenset({"subscribe", "unsubscribe"})


class Faults:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.throttled_until = 0.0
        self.refused_until = 0.0
        self._one_shot: dict[str, deque[dict[str, Any]]] = defaultdict(deque)

    def throttle(self, seconds: float) -> float:
        self.throttled_until = self._clock() + seconds
        return self.throttled_until

    def refuse(self, seconds: float) -> float:
        self.refused_until = self._clock() + seconds
        return self.refused_until

    def refusing(self) -> bool:
        return self._clock() < self.refused_until

    def too_many_requests(self, request_type: str = "") -> dict[str, Any] | None:
        """The TooManyRequestsError body while throttled, else None."""
        if request_type in UNTHROTTLED or self._clock() >= self.throttled_until:
            return None
        return {
            "id": 1,
            "error": "TooManyRequestsError",
            "message": "One user can make up to 1 request per second, try again later"
            " (the stand-in is throttling)",
            "metadata": {
                "periodInMinutes": 1,
                "requestsPerPeriodAllowed": 60,
                "recommendedRetryTime": iso(self.throttled_until),
                "type": "LIMIT_REQUEST_RATE_PER_USER",
            },
        }

    def fail_next(self, request_type: str, *, error: str, message: str, **extra: Any) -> None:
        self._one_shot[request_type].append({"error": error, "message": message, **extra})

    def drop_next(
        self, request_type: str, *, execute: bool = False, disconnect_s: float | None = None
    ) -> None:
        self._one_shot[request_type].append(
            {"drop": True, "execute": execute, "disconnect_s": disconnect_s}
        )

    def take(self, request_type: str) -> dict[str, Any] | None:
        queue = self._one_shot.get(request_type)
        return queue.popleft() if queue else None

    def clear(self) -> None:
        self._one_shot.clear()
        self.throttled_until = self.refused_until = 0.0
