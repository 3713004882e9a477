"""What the NATS server would refuse for a message itself, and the one way a
message that cannot go on is published to the dead letters (`dlq.<service>`).

The server answers a publish it refuses (a subject beyond its control-line
limit, a message beyond `max_payload`) with `-ERR`, and nats-py closes the
connection on `-ERR`: one such message would take the whole service down, and
with it every message queued behind it. So these limits are checked before
anything is sent.

A dead letter carries the original body when it fits; when body and headers
together would exceed the server's `max_payload`, it carries a reference
instead (where the original is kept: stream and sequence, or outbox row id;
its subject, size and the reason) and the original stays where it is.
"""

from __future__ import annotations

import re

from nats.js import JetStreamContext

from contracts import subjects

MSG_ID = "Nats-Msg-Id"

# The server's default control line is 4 KiB and holds the subject, the reply
# inbox and two lengths; no subject of ours comes near this bound.
MAX_SUBJECT_BYTES = 1024
# how much of an offending subject a dead letter's headers repeat
SUBJECT_SHOWN = 256
REASON_SHOWN = 2000

_SUBJECT_CHARS_INVALID = re.compile(r"[\s\x00]")
_HEADERS_FRAME = len(b"NATS/1.0\r\n\r\n")


def max_payload(js: JetStreamContext) -> int:
    """The server's advertised limit for headers and body together."""
    # the context keeps its connection; the limit comes from the server's INFO
    return int(js._nc.max_payload)


def headers_size(headers: dict[str, str]) -> int:
    """Bytes the headers take on the wire (`NATS/1.0`, `key: value` lines, blank line)."""
    return _HEADERS_FRAME + sum(
        len(key.encode()) + len(value.encode()) + 4 for key, value in headers.items()
    )


def publish_refusal(
    subject: str, payload: bytes, headers: dict[str, str], limit: int
) -> str | None:
    """Why the server would refuse this message for what it is, or None if it would not."""
    size = len(subject.encode())
    if size > MAX_SUBJECT_BYTES:
        return f"subject of {size} bytes exceeds {MAX_SUBJECT_BYTES}"
    tokens = subject.split(".")
    if not subject or _SUBJECT_CHARS_INVALID.search(subject) or "" in tokens:
        return f"subject {shown(subject)!r} is not a valid subject"
    if "*" in tokens or ">" in tokens:
        return f"subject {shown(subject)!r} has a wildcard and cannot be published to"
    total = len(payload) + headers_size(headers)
    if total > limit:
        return (
            f"message of {total} bytes ({len(payload)} body, the rest headers) "
            f"exceeds the server's max_payload {limit}"
        )
    return None


def shown(subject: str) -> str:
    """A subject as far as a header or a log line repeats it."""
    if len(subject) <= SUBJECT_SHOWN:
        return subject
    return f"{subject[:SUBJECT_SHOWN]}...({len(subject)} characters)"


async def publish_dead_letter(
    js: JetStreamContext,
    service: str,
    body: bytes,
    *,
    reason: str,
    subject: str,
    msg_id: str,
    where: dict[str, str],
) -> bool:
    """Publish one dead letter on `dlq.<service>` and wait for JetStream's ack.

    `where` names where the original is kept (`Sigrelay-Stream`/`-Stream-Seq`,
    or `Sigrelay-Outbox-Id`, ...). Returns False when the body did not fit and
    only the reference was sent.
    """
    headers = {
        "Sigrelay-Error": reason[:REASON_SHOWN],
        "Sigrelay-Subject": shown(subject),
        "Sigrelay-Size": str(len(body)),
        **where,
        MSG_ID: msg_id,
    }
    with_body = len(body) + headers_size(headers) <= max_payload(js)
    if not with_body:
        headers["Sigrelay-Body"] = "omitted: too large to travel, kept where the reference says"
    await js.publish(subjects.dead_letter(service), body if with_body else b"", headers=headers)
    return with_body
