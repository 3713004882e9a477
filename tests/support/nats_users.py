"""Connections with one NATS user's credentials, for the permission tests: they keep
the errors the server sent, and an admin watcher sees what really crossed the bus."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from contracts.partitions import partition_of
from contracts.subjects import inbox_prefix
from infra.embedded import EmbeddedNats
from infra.nats_config import ADMIN


class ServiceClient:
    """A connection with one service's credentials that keeps the errors the server sent."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []
        self.nc = NATS()
        self._error_seen = asyncio.Event()

    async def connect(self, url: str, name: str, *, user: str) -> ServiceClient:
        async def on_error(exc: Exception) -> None:
            self.errors.append(exc)
            self._error_seen.set()

        # every user but admin may read its own inbox prefix only
        prefix = inbox_prefix(user) if user != ADMIN else "_INBOX"
        await self.nc.connect(
            url, name=name, error_cb=on_error, allow_reconnect=False, inbox_prefix=prefix
        )
        return self

    def _violations(self, quoted: list[str]) -> list[str]:
        return [
            str(e)
            for e in self.errors
            if "permissions violation" in str(e).lower()
            and any(q in str(e).lower() for q in quoted)
        ]

    async def permission_errors(self, *subjects: str, wait_s: float = 2.0) -> list[str]:
        """Permission-violation errors naming one of `subjects`, once the server saw our traffic.

        nats-py lower-cases the server's error text, so the subjects are compared that way.
        """
        await self.nc.flush()
        quoted = [f'"{subject.lower()}"' for subject in subjects]
        deadline = asyncio.get_running_loop().time() + wait_s
        while not (found := self._violations(quoted)):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._error_seen.clear()
            try:
                await asyncio.wait_for(self._error_seen.wait(), remaining)
            except TimeoutError:
                break
        return found

    async def permission_errors_naming(self, prefix: str, wait_s: float = 5.0) -> list[str]:
        """Like `permission_errors`, for any subject that starts with `prefix`."""
        await self.nc.flush()
        deadline = asyncio.get_running_loop().time() + wait_s
        while not (found := self._violations([f'"{prefix.lower()}'])):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._error_seen.clear()
            try:
                await asyncio.wait_for(self._error_seen.wait(), remaining)
            except TimeoutError:
                break
        return found

    async def close(self) -> None:
        await self.nc.close()


def mapped(subject: str, partitions: int) -> str:
    """The subject the server's control mapping turns `subject` into (and names in errors)."""
    tokens = subject.split(".")
    if tokens[:2] != ["ctl", "user"] or len(tokens) != 4:
        return subject
    return f"ctl.p.{partition_of(tokens[3], partitions)}.{tokens[2]}.{tokens[3]}"


async def as_service(server: EmbeddedNats, service: str) -> ServiceClient:
    return await ServiceClient().connect(server.url_for(service), f"test-{service}", user=service)


class Watcher:
    """An admin subscription on everything, to see what really crossed the bus."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.seen: list[Msg] = []

    async def start(self) -> Watcher:
        async def on_msg(msg: Msg) -> None:
            self.seen.append(msg)

        await self.nc.subscribe(">", cb=on_msg)
        await self.nc.flush()
        return self

    async def payloads(self) -> set[bytes]:
        # a round trip after our own flush: what the server routed to us has arrived
        await self.nc.flush()
        await asyncio.sleep(0.05)
        return {msg.data for msg in self.seen}
