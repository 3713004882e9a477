"""The services `sigrelay up` runs, by name, loaded lazily so that the
runtime never imports a service it does not run (services do not depend on
each other; they meet only on the bus)."""

from __future__ import annotations

import importlib
from typing import Any

SERVICES: dict[str, str] = {
    "ingest": "services.ingest.service:IngestService",
    "actors": "services.actors.service:ActorsService",
    "risk": "services.risk.service:RiskService",
    "audit": "services.audit.service:AuditService",
    "execution": "services.execution.service:ExecutionService",
    "paper": "services.paper.service:PaperExchangeService",
}


def load(name: str) -> Any:
    try:
        target = SERVICES[name]
    except KeyError:
        known = ", ".join(sorted(SERVICES))
        raise KeyError(f"no service named {name!r} (known: {known})") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
