"""Schema migrations: numbered SQL files applied once each, in order.

`migrate(url)` is safe to run from several processes at once: it holds an
advisory lock while it works and records every applied file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

log = logging.getLogger("sigrelay.eventstore.migrate")

_LOCK_KEY = 0x51637261  # "Sigra": any constant, shared by every migrating process


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("eventstore.migrations").iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        number, _, rest = name.partition("_")
        if not number.isdigit():
            raise ValueError(f"migration file {name} does not start with a number")
        found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migration files share a number: {versions}")
    return found


async def migrate(url: str) -> list[Migration]:
    """Apply every migration not yet applied; return those applied now."""
    applied_now: list[Migration] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if await _up_to_date(conn):
            # nothing to do, and nothing that needs more than SELECT: a service
            # connected with its own least-privilege role gets here
            return applied_now
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for migration in available():
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                log.info("applied migration %03d %s", migration.version, migration.name)
                applied_now.append(migration)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


async def _up_to_date(conn: psycopg.AsyncConnection[Any]) -> bool:
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return False
    cur = await conn.execute("SELECT version FROM schema_migrations")
    done = {r[0] for r in await cur.fetchall()}
    return all(m.version in done for m in available())
