"""Stopping means stopping, even when a library reports it as its own error.

psycopg (and others) may surface our task's cancellation as an OperationalError
when a connection is torn down mid-query. A `while True: … except Exception:
retry` loop would then go on for ever and a shutdown would hang, so such loops
call `reraise_if_cancelling(exc)` first.

Some waits swallow a cancellation outright: Python 3.11's `asyncio.wait_for` (used by
nats-py's `fetch` and publish acks) returns the inner result when the cancel and the
result arrive together, and the cancel is gone. The task's `cancelling()` count still
says it was asked to stop, so such loops also call `stop_if_cancelling()` on every turn.
"""

from __future__ import annotations

import asyncio


def reraise_if_cancelling(exc: BaseException) -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def stop_if_cancelling() -> None:
    """Raise CancelledError if this task was asked to stop, whatever a library made of it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
