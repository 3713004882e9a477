"""`sigrelay ctl VERB [--user ID] [key=value …]`: one control request.

Values are read as JSON where they parse (`lot=0.1`, `allowed_symbols='["XAUUSD"]'`),
else as strings. Per-user verbs go to `ctl.user.<verb>.<user>` (the server maps
them to the owning partition); system verbs (`stats`, `health`) are scatter-
gather on `ctl.sys.<verb>`: every kind of service answers and the replies are
merged. Prints the JSON reply; the exit code is non-zero when it is an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from contracts import subjects
from contracts.control import ControlError, check_text
from contracts.envelope import decode_json
from contracts.users import SYSTEM_VERBS


class UsageError(ValueError):
    pass


_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, got {item!r}")
        try:
            body[key] = decode_json(_decoder, text)
        except msgspec.DecodeError:
            body[key] = text
    try:
        check_text(body)  # the rule the control plane applies, said before sending
    except ControlError as exc:
        raise UsageError(exc.message) from None
    return body


async def request(
    nc: NATS, verb: str, user: str | None, body: dict[str, Any], *, timeout_s: float = 5.0
) -> dict[str, Any]:
    payload = msgspec.json.encode(body)
    if verb in SYSTEM_VERBS:
        return await gather(nc, subjects.ctl_system(verb), payload, wait_s=min(timeout_s, 0.5))
    if not user:
        raise UsageError(f"verb {verb!r} needs --user")
    try:
        subject = subjects.ctl_user(verb, user)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        reply = await nc.request(subject, payload, timeout=timeout_s)
    except Exception as exc:
        return {
            "ok": False,
            "error": {
                "code": "unavailable",
                "message": f"no answer on {subject}: {exc!r}"
                " (is the actor host for this user's partition running?)",
                "field": None,
            },
        }
    result: dict[str, Any] = msgspec.json.decode(reply.data)
    return result


async def gather(nc: NATS, subject: str, payload: bytes, *, wait_s: float) -> dict[str, Any]:
    """Send one request, collect every reply that arrives within `wait_s`."""
    inbox = nc.new_inbox()
    replies: list[Any] = []
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subject, payload, reply=inbox)
        deadline = asyncio.get_running_loop().time() + wait_s
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await sub.next_msg(timeout=remaining)
            except Exception:
                break
            replies.append(msgspec.json.decode(msg.data))
    finally:
        await sub.unsubscribe()
    services: dict[str, Any] = {}
    for reply in replies:
        data = reply.get("data") or {}
        services[data.get("service", f"unknown-{len(services)}")] = data
    if not services:
        return {
            "ok": False,
            "error": {"code": "unavailable", "message": "no service answered", "field": None},
        }
    return {"ok": True, "data": {"services": services}}
