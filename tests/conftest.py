"""Real servers for the tests: NATS (JetStream) and Postgres, started once per session.

Set `NATS_URL` / `DATABASE_URL` to use servers of your own instead; the fixtures then
start nothing for them. Tests that need the project's own NATS configuration (users,
permissions, the control-partition mapping) or need to kill a server ask for
`embedded_nats` / `embedded_postgres`, which always start an embedded server, so that
no test ever skips for want of one.

    nats_server        EmbeddedNats, or ExternalNats for NATS_URL (.url_for, .admin_url)
    nats_url           admin URL, with the design's JetStream streams ensured
    nc, js             an admin nats-py connection (per test) and its JetStream context
    postgres_server    EmbeddedPostgres, or ExternalPostgres for DATABASE_URL (.url)
    database_url       a fresh, empty database per test, dropped afterwards
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import nats
import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from psycopg import sql

from infra.embedded import EmbeddedNats, EmbeddedPostgres
from services.runtime.streams import ensure_streams

log = logging.getLogger("sigrelay.tests")

# Property tests are reproducible by default: `ci` derives every example from the test
# itself (derandomize), so a failure on the loaded CI box fails the same way here.
# HYPOTHESIS_PROFILE=explore searches afresh (random seeds) for new bugs.
hypothesis_settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
hypothesis_settings.register_profile(
    "explore", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass
class ExternalNats:
    """A NATS server given by NATS_URL: its users and permissions are unknown to us."""

    admin_url: str
    embedded = False

    def url_for(self, service: str) -> str:
        # the external server's credentials are whatever NATS_URL carries
        return self.admin_url

    def kill(self) -> None:
        raise RuntimeError(
            f"NATS at {self.admin_url} comes from NATS_URL and is not ours to kill; "
            "use the embedded_nats fixture"
        )

    def restart(self) -> None:
        raise RuntimeError(
            f"NATS at {self.admin_url} comes from NATS_URL and is not ours to restart; "
            "use the embedded_nats fixture"
        )


@dataclass
class ExternalPostgres:
    """A Postgres server given by DATABASE_URL."""

    url: str
    embedded = False

    def database_url(self, database: str) -> str:
        parts = urlsplit(self.url)
        if parts.scheme.startswith("postgres"):
            return urlunsplit(parts._replace(path=f"/{database}"))
        return psycopg.conninfo.make_conninfo(self.url, dbname=database)


def _stop_on_sigterm() -> None:
    # a SIGTERM to pytest becomes a KeyboardInterrupt, so fixture teardown stops servers
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def interrupt(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def sigrelay_test_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SIGRELAY_HOME of the embedded servers for this session."""
    return tmp_path_factory.mktemp("sigrelay-home")


@pytest.fixture(scope="session")
def embedded_nats(sigrelay_test_home: Path) -> Iterator[EmbeddedNats]:
    """The project's own nats-server (users, permissions, mapping), whatever NATS_URL says."""
    server = EmbeddedNats()
    _stop_on_sigterm()
    atexit.register(server.stop)
    try:
        server.start(sigrelay_test_home)
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture(scope="session")
def embedded_postgres(sigrelay_test_home: Path) -> Iterator[EmbeddedPostgres]:
    """The embedded Postgres, whatever DATABASE_URL says."""
    server = EmbeddedPostgres()
    _stop_on_sigterm()
    atexit.register(server.stop)
    try:
        server.start(sigrelay_test_home)
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture(scope="session")
def nats_server(request: pytest.FixtureRequest) -> EmbeddedNats | ExternalNats:
    url = os.environ.get("NATS_URL")
    if url:
        return ExternalNats(url)
    server: EmbeddedNats = request.getfixturevalue("embedded_nats")
    return server


@pytest.fixture(scope="session")
async def nats_url(nats_server: EmbeddedNats | ExternalNats) -> str:
    """Admin URL of the session's NATS, with the design's streams ensured (once)."""
    nc = await nats.connect(nats_server.admin_url, name="tests-setup")
    try:
        await ensure_streams(nc.jetstream())
    finally:
        await nc.close()
    return nats_server.admin_url


@pytest.fixture(scope="session")
async def embedded_nats_url(embedded_nats: EmbeddedNats) -> str:
    """Admin URL of the embedded NATS, with the design's streams ensured."""
    nc = await nats.connect(embedded_nats.admin_url, name="tests-setup")
    try:
        await ensure_streams(nc.jetstream())
    finally:
        await nc.close()
    return embedded_nats.admin_url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    """An admin connection to the session's NATS, closed after the test."""
    conn = await nats.connect(nats_url, name="tests-admin")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> EmbeddedPostgres | ExternalPostgres:
    url = os.environ.get("DATABASE_URL")
    if url:
        return ExternalPostgres(url)
    server: EmbeddedPostgres = request.getfixturevalue("embedded_postgres")
    return server


@pytest.fixture
def database_url(postgres_server: EmbeddedPostgres | ExternalPostgres) -> Iterator[str]:
    """URL of a fresh database on the session's Postgres, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield postgres_server.database_url(name)
    finally:
        # a test killed mid-way may leave connections: FORCE ends them; a restarted
        # server may need a moment, and a leftover test database is harmless
        try:
            with psycopg.connect(postgres_server.url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        except psycopg.Error as exc:
            log.warning("could not drop test database %s: %s", name, exc)


@pytest.fixture
async def isolated_nats(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A NATS server of this test's own (about 30 ms to start), with the design's streams.

    Service-level tests use it so that durable consumers and stream contents of one
    test never leak into another. Always embedded: the test needs the project's
    users and permissions whatever NATS_URL says.
    """
    server = EmbeddedNats()
    atexit.register(server.stop)
    server.start(tmp_path / "home")
    try:
        conn = await nats.connect(server.admin_url, name="tests-setup")
        try:
            await ensure_streams(conn.jetstream())
        finally:
            await conn.close()
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)
