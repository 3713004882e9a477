"""Servers for benchmarks: embedded ones under $SIGRELAY_HOME/bench, or the
URLs given, plus a fresh database per benchmark run."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import psycopg

from eventstore.migrate import migrate
from services.runtime.infrastructure import Infrastructure
from services.runtime.settings import RuntimeSettings


@contextlib.asynccontextmanager
async def bench_infrastructure(settings: RuntimeSettings) -> AsyncIterator[Infrastructure]:
    infra = Infrastructure(replace(settings, home=settings.home / "bench")).start()
    try:
        yield infra
    finally:
        infra.stop()


@contextlib.asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new, migrated database on the server of `server_url`, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    try:
        await migrate(url)
        yield url
    finally:
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as conn:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
