"""Postgres connection plumbing: the pool and the loaders the store relies on."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.pq import Format
from psycopg_pool import AsyncConnectionPool


class _JsonbBinaryAsBytes(Loader):
    # The binary jsonb format is one version byte then the JSON text; handing
    # the text to msgspec untouched is far cheaper than psycopg's json.loads.
    format = Format.BINARY

    def load(self, data: Any) -> bytes:
        return bytes(data[1:])


class _JsonAsBytes(Loader):
    format = Format.TEXT

    def load(self, data: Any) -> bytes:
        return bytes(data)


def configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Make jsonb/json columns load as raw JSON bytes on this connection."""
    for name in ("jsonb", "json"):
        conn.adapters.register_loader(name, _JsonbBinaryAsBytes)
        conn.adapters.register_loader(name, _JsonAsBytes)


async def _configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    configure(conn)


async def open_pool(
    url: str, *, min_size: int = 2, max_size: int = 10, name: str = "sigrelay"
) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        configure=_configure_async,
        kwargs={"autocommit": False},
    )
    await pool.open(wait=True, timeout=30)
    return pool
