"""One way to talk to NATS: connect (reconnecting forever), publish in
pipelined batches with de-duplication ids, and drain on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from contracts import subjects
from eventstore.records import OutboxMessage

log = logging.getLogger("sigrelay.bus")

MSG_ID = "Nats-Msg-Id"


async def connect(url: str, name: str, *, initial_timeout_s: float = 30.0) -> NATS:
    """Connect to NATS, retrying the first connection for up to `initial_timeout_s`,
    then reconnecting forever. The URL carries the service's credentials, and its
    user names the inbox prefix (`_INBOX_<user>`), the only one that user may read."""

    async def on_error(exc: Exception) -> None:
        log.warning("%s: nats error: %s", name, exc)

    async def on_disconnect() -> None:
        # a drain or close on purpose also disconnects: warn only about the other kind
        if not (nc is not None and (nc.is_closed or nc.is_draining)):
            log.warning("%s: disconnected from nats; reconnecting", name)

    async def on_reconnect() -> None:
        log.info("%s: reconnected to nats", name)

    nc: NATS | None = None
    deadline = asyncio.get_running_loop().time() + initial_timeout_s
    delay = 0.1
    while True:
        try:
            nc = await nats.connect(
                url,
                name=name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=5,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
                pending_size=64 * 1024 * 1024,
                inbox_prefix=inbox_prefix_of(url),
            )
            return nc
        except Exception as exc:
            if asyncio.get_running_loop().time() >= deadline:
                raise ConnectionError(
                    f"{name}: could not connect to nats at {_redact_url(url)}: {exc}"
                ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def inbox_prefix_of(url: str) -> str:
    """The inbox prefix of the user in `url`; the default one without a user."""
    user = urlsplit(url.split(",", 1)[0].strip()).username
    return subjects.inbox_prefix(unquote(user)) if user else subjects.INBOX


def _redact_url(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://****@{rest.split('@', 1)[1]}"


def jetstream(nc: NATS, *, timeout_s: float = 10.0) -> JetStreamContext:
    return nc.jetstream(timeout=timeout_s, publish_async_max_pending=4000)


class JetStreamPublisher:
    """Publishes batches to JetStream with a bounded window of unacknowledged messages.

    Every message carries a Nats-Msg-Id, so a republish after a crash is dropped
    by the server as a duplicate. Used by the outbox relay.
    """

    def __init__(self, js: JetStreamContext, *, window: int = 512, ack_timeout_s: float = 10.0):
        self._js = js
        self._window = window
        self._ack_timeout_s = ack_timeout_s
        self.duplicates = 0

    async def __call__(self, messages: Sequence[OutboxMessage]) -> None:
        for start in range(0, len(messages), self._window):
            chunk = messages[start : start + self._window]
            futures = [
                await self._js.publish_async(
                    m.subject, m.payload, headers={**m.headers, MSG_ID: m.msg_id}
                )
                for m in chunk
            ]
            acks = await asyncio.wait_for(asyncio.gather(*futures), self._ack_timeout_s)
            self.duplicates += sum(1 for ack in acks if ack.duplicate)


async def publish(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    msg_id: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Publish one message and wait for its acknowledgement (dedup by msg_id)."""
    await js.publish(subject, payload, headers={**(headers or {}), MSG_ID: msg_id})


async def drain(nc: NATS) -> None:
    """Finish in-flight work and close; safe to call on a closed connection."""
    if nc.is_closed:
        return
    try:
        await asyncio.wait_for(nc.drain(), 10)
    except Exception as exc:
        log.warning("drain did not finish cleanly: %s", exc)
        await nc.close()
