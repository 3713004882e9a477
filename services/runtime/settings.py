"""Where a process finds its state directory, bus and database.

Every `sigrelay` subcommand reads the same environment: `SIGRELAY_HOME`
(default `./.sigrelay`), `NATS_URL` and `DATABASE_URL`. Without the URLs the
embedded servers under the state directory are used.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contracts.partitions import DEFAULT_PARTITIONS


@dataclass(frozen=True)
class RuntimeSettings:
    home: Path
    nats_url: str | None = None  # an external server; per-service credentials are the operator's
    database_url: str | None = None
    partitions: int = DEFAULT_PARTITIONS
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RuntimeSettings:
        env = dict(os.environ if env is None else env)
        partitions_text = env.get("SIGRELAY_PARTITIONS", str(DEFAULT_PARTITIONS))
        try:
            partitions = int(partitions_text)
        except ValueError:
            raise ValueError(
                f"SIGRELAY_PARTITIONS={partitions_text!r} is not a whole number"
            ) from None
        if partitions < 1:
            raise ValueError(f"SIGRELAY_PARTITIONS={partitions} must be at least 1")
        return cls(
            home=Path(env.get("SIGRELAY_HOME", ".sigrelay")).resolve(),
            nats_url=env.get("NATS_URL") or None,
            database_url=env.get("DATABASE_URL") or None,
            partitions=partitions,
            env=env,
        )

    def nats_url_for(self, service: str) -> str | None:
        """An external URL for one service: NATS_URL_<SERVICE> if set, else NATS_URL."""
        return self.env.get(f"NATS_URL_{service.upper()}") or self.nats_url
