"""A child process for the outbox crash tests: does one step, then SIGKILLs itself.

python -m tests.support.outbox_child commit-then-die DB_URL NATS_URL SUBJECT MSG_ID
python -m tests.support.outbox_child publish-then-die DB_URL NATS_URL SUBJECT MSG_ID
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from eventstore import EventStore, OutboxMessage
from eventstore.outbox import OutboxRelay
from services.runtime.bus import JetStreamPublisher, connect, jetstream
from tests.support.events import deposited


class _DieAfterPublish(OutboxRelay):
    async def _after_publish(self, messages: Sequence[OutboxMessage]) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


async def main(mode: str, db_url: str, nats_url: str, subject: str, msg_id: str) -> None:
    store = await EventStore.connect(db_url, min_size=1, max_size=2)
    if mode == "commit-then-die":
        await store.append(
            "acct-outbox",
            -1,
            [deposited(1)],
            outbox=[OutboxMessage(subject=subject, msg_id=msg_id, payload=b'{"n":1}')],
        )
        os.kill(os.getpid(), signal.SIGKILL)
    elif mode == "publish-then-die":
        nc = await connect(nats_url, "outbox-child")
        relay = _DieAfterPublish(store, JetStreamPublisher(jetstream(nc)))
        await relay.drain_once()
    raise SystemExit(f"unknown mode {mode} or it did not die")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
