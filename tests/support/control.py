"""Driving the control plane from tests, the way any NATS client would."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from services.runtime.ctl import request


async def ctl(nc: Any, verb: str, user: str | None = None, **body: Any) -> dict[str, Any]:
    return await request(nc, verb, user, body, timeout_s=10.0)


async def raw_request(nc: Any, subject: str, payload: bytes) -> dict[str, Any]:
    reply = await nc.request(subject, payload, timeout=10.0)
    result: dict[str, Any] = msgspec.json.decode(reply.data)
    return result


async def wait_serving(nc: Any, user: str, within: float = 30.0) -> None:
    """Until the host owning `user` answers control requests."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        reply = await ctl(nc, "status", user)
        if reply.get("ok") or reply["error"]["code"] != "unavailable":
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no actor host answered for {user}: {reply}")
        await asyncio.sleep(0.1)
