"""Stopping means stopping, even when a library reports it as its own error.

psycopg (and others) may surface our task's cancellation as an OperationalError
when a connection is torn down mid-query. A `while True: … except Exception:
retry` loop would then go on for ever and a shutdown would hang, so such loops
call `reraise_if_cancelling(exc)` first.
"""

from __future__ import annotations

import asyncio


def reraise_if_cancelling(exc: BaseException) -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
