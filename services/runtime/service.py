"""What a service is, and what it is given to run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from eventstore import EventStore
from services.runtime.settings import RuntimeSettings


@dataclass
class ServiceContext:
    name: str
    settings: RuntimeSettings
    nc: NATS
    js: JetStreamContext
    store: EventStore
    database_url: str
    micro: Any = None  # the NATS services API registration, for a service's own endpoints


class Service(Protocol):
    name: ClassVar[str]

    async def run(self, ctx: ServiceContext) -> None:
        """Serve until cancelled."""

    def stats(self) -> dict[str, Any]:
        """Counters for `$SRV.STATS` and `ctl.svc.<name>.health`."""
