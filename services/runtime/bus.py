"""One way to talk to NATS: connect (reconnecting forever), publish in
pipelined batches with de-duplication ids, and drain on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import PubAck

from contracts import subjects
from eventstore.outbox import DeadRow, Refusal
from eventstore.records import OutboxMessage
from services.runtime.dead_letters import (
    MSG_ID,
    max_payload,
    publish_dead_letter,
    publish_refusal,
    shown,
)

log = logging.getLogger("sigrelay.bus")


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
    by the server as a duplicate. Used by the outbox relay: a message the server
    would refuse for what it is is not sent (the server would close the
    connection) but reported as refused, and `dead_letter` records it.
    """

    def __init__(self, js: JetStreamContext, *, window: int = 512, ack_timeout_s: float = 10.0):
        self._js = js
        self._window = window
        self._ack_timeout_s = ack_timeout_s
        self.duplicates = 0

    async def __call__(self, messages: Sequence[OutboxMessage]) -> list[Refusal]:
        refused: list[Refusal] = []
        limit = max_payload(self._js)
        for start in range(0, len(messages), self._window):
            sent: list[tuple[int, asyncio.Future[PubAck]]] = []
            for index in range(start, min(start + self._window, len(messages))):
                m = messages[index]
                headers = {**m.headers, MSG_ID: m.msg_id}
                reason = publish_refusal(m.subject, m.payload, headers, limit)
                if reason is None:
                    try:
                        sent.append(
                            (
                                index,
                                await self._js.publish_async(m.subject, m.payload, headers=headers),
                            )
                        )
                        continue
                    except _REFUSED_BY_CLIENT as exc:
                        reason = f"refused by the client: {type(exc).__name__} {exc}"
                refused.append(Refusal(index, reason))
            acks: list[PubAck | BaseException]
            try:
                acks = await asyncio.wait_for(
                    asyncio.gather(*(future for _, future in sent), return_exceptions=True),
                    self._ack_timeout_s,
                )
            except TimeoutError:
                acks = [await self._settle(messages[index], future) for index, future in sent]
            for (index, _), ack in zip(sent, acks, strict=True):
                if isinstance(ack, nats.js.errors.BadRequestError):
                    # JetStream refused this message (e.g. over the stream's size limit)
                    refused.append(Refusal(index, f"refused by JetStream: {ack.description}"))
                elif isinstance(ack, BaseException):
                    raise ack
                else:
                    self.duplicates += 1 if ack.duplicate else 0
        return sorted(refused, key=lambda r: r.index)

    async def _settle(
        self, m: OutboxMessage, future: asyncio.Future[PubAck]
    ) -> PubAck | BaseException:
        # nats-py leaves a publish_async future unresolved when JetStream answers
        # with an error (it raises in its reply handler instead), so a refused
        # message looks like a timeout: ask again for each unanswered one, where
        # the answer comes back as an exception. The msg id makes a repeat harmless.
        if future.done() and not future.cancelled():
            return future.exception() or future.result()
        try:
            return await self._js.publish(
                m.subject,
                m.payload,
                timeout=self._ack_timeout_s,
                headers={**m.headers, MSG_ID: m.msg_id},
            )
        except nats.js.errors.BadRequestError as exc:
            return exc

    async def dead_letter(self, row: DeadRow) -> None:
        await publish_dead_letter(
            self._js,
            row.producer,
            row.message.payload,
            reason=row.reason,
            subject=row.message.subject,
            msg_id=f"dlq:outbox:{row.producer}:{row.row_id}",
            where={
                "Sigrelay-Source": "outbox",
                "Sigrelay-Outbox-Id": str(row.row_id),
                "Sigrelay-Msg-Id": shown(row.message.msg_id),
            },
        )


# what nats-py raises before sending anything, for the message itself
_REFUSED_BY_CLIENT = (
    nats.errors.BadSubjectError,
    nats.errors.MaxPayloadError,
    nats.errors.BadHeaderError,
)


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
