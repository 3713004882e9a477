"""A service that only relays the outbox (every service process also runs a
standby relay; this one exists so `up` always has a relay even before any
writer service is configured)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from services.runtime.service import ServiceContext


class RelayService:
    name: ClassVar[str] = "relay"

    def __init__(self) -> None:
        self._ctx: ServiceContext | None = None

    async def run(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        await asyncio.Event().wait()

    def stats(self) -> dict[str, Any]:
        return {}
