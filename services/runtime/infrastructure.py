"""The bus and the database a process uses: external servers when NATS_URL /
DATABASE_URL are given, else the embedded ones under the state directory
(started if not running, attached to if they are)."""

from __future__ import annotations

import logging

from eventstore.migrate import migrate
from infra.embedded import EmbeddedNats, EmbeddedPostgres
from services.runtime.pg_roles import DatabaseAccess, ensure_roles
from services.runtime.settings import RuntimeSettings

log = logging.getLogger("sigrelay.infrastructure")


class Infrastructure:
    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self._nats: EmbeddedNats | None = None
        self._postgres: EmbeddedPostgres | None = None
        self._database_url = settings.database_url
        self._adopted: set[str] = set()
        self._access: DatabaseAccess | None = None

    def start(self) -> Infrastructure:
        home = self.settings.home
        home.mkdir(parents=True, exist_ok=True)
        if self.settings.nats_url is None:
            self._nats = EmbeddedNats()
            self._nats.start(home, partitions=self.settings.partitions)
        if self._database_url is None:
            self._postgres = EmbeddedPostgres()
            self._database_url = self._postgres.start(home)
        return self

    @property
    def database_url(self) -> str:
        if self._database_url is None:
            raise RuntimeError("Infrastructure.start() has not been called")
        return self._database_url

    async def prepare_database(self) -> DatabaseAccess:
        """Apply the migrations and set up the per-service roles (services/runtime/pg_roles.py)."""
        await migrate(self.database_url)
        self._access = await ensure_roles(self.database_url, self.settings.home)
        return self._access

    def database_url_for(self, service: str) -> str:
        """The URL `service` connects with: its own role, or DATABASE_URL when roles
        could not be made (ensure_roles warned). Holds a password: never log it."""
        if self._access is None:
            raise RuntimeError("Infrastructure.prepare_database() has not been called")
        return self._access.url_for(service)

    def nats_url_for(self, service: str) -> str:
        external = self.settings.nats_url_for(service)
        if external:
            return external
        if self._nats is None:
            raise RuntimeError("Infrastructure.start() has not been called")
        return self._nats.url_for(service)

    @property
    def embedded_nats(self) -> EmbeddedNats | None:
        return self._nats

    @property
    def embedded_postgres(self) -> EmbeddedPostgres | None:
        return self._postgres

    def adopt(self, *, nats_pid: int | None, postgres_pid: int | None) -> None:
        """Take over stopping the embedded servers with these pids, which this process
        attached to and whose starter (a SIGKILLed `sigrelay up`) is dead."""
        if self._nats is not None and nats_pid is not None and self._nats.pid == nats_pid:
            self._nats.adopt()
            self._adopted.add("nats")
        pg = self._postgres
        if pg is not None and postgres_pid is not None and pg.pid == postgres_pid:
            pg.adopt()
            self._adopted.add("postgres")

    def _how(self, name: str, started_here: bool) -> str:
        if name in self._adopted:
            return "adopted"
        return "started" if started_here else "attached"

    def describe(self) -> dict[str, str]:
        nats = (
            f"embedded at {self._nats.url} ({self._how('nats', self._nats.started_here)})"
            if self._nats
            else "external (NATS_URL)"
        )
        pg = (
            f"embedded at {self.database_url} "
            f"({self._how('postgres', self._postgres.started_here)})"
            if self._postgres
            else "external (DATABASE_URL)"
        )
        return {"home": str(self.settings.home), "nats": nats, "postgres": pg}

    def stop(self) -> None:
        """Stop the embedded servers this process started; leave the rest alone."""
        if self._nats is not None:
            self._nats.stop()
        if self._postgres is not None:
            self._postgres.stop()
