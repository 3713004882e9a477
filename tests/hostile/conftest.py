"""The system the hostile-input suite attacks, started once per module: hypothesis runs
many examples against one running system (starting servers per example would cost
seconds each), so what one example breaks, the next one finds broken.

    hostile_nats       a NATS server of the module's own (the project's users,
                       permissions and control mapping), with the design's streams
    hostile_database   a fresh, migrated database of the module's own
    hostile_home       SIGRELAY_HOME of the module's services, channels gold and fx
"""

from __future__ import annotations

import atexit
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest
from psycopg import sql

from contracts.channels import ChannelDirectory, ChannelInfo, save_directory
from eventstore.migrate import migrate
from infra.embedded import EmbeddedNats
from services.runtime.streams import ensure_streams


@pytest.fixture(scope="module")
def hostile_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hostile-home")
    save_directory(
        home,
        ChannelDirectory(
            channels={"gold": ChannelInfo(default_symbol="XAUUSD"), "fx": ChannelInfo()}
        ),
    )
    return home


@pytest.fixture(scope="module")
async def hostile_nats(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats()
    atexit.register(server.stop)
    server.start(tmp_path_factory.mktemp("hostile-nats"))
    try:
        conn = await nats.connect(server.admin_url, name="tests-hostile-setup")
        try:
            await ensure_streams(conn.jetstream())
        finally:
            await conn.close()
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture(scope="module")
async def hostile_database(postgres_server: Any) -> AsyncIterator[str]:
    name = f"test_hostile_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = postgres_server.database_url(name)
    try:
        await migrate(url)
        yield url
    finally:
        with psycopg.connect(postgres_server.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module")
def consumer_warnings() -> Iterator[list[str]]:
    """Warnings of the consumers and outbox relays while the module runs: a message that
    could not be settled or a relay that cannot publish shows here at once, long before
    a redelivery or a stuck relay would show anywhere else."""
    import logging

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(f"{record.name}: {record.getMessage()}")

    handler = Keep(level=logging.WARNING)
    loggers = [logging.getLogger(n) for n in ("sigrelay.consumer", "sigrelay.eventstore.outbox")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield seen
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
