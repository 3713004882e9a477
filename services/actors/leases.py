"""Partition leases: which actor host serves which partitions, in Postgres.

- `claim(partitions)` takes them, from their current owner if need be (an
  operator starting a host for a set of partitions means it);
- `renew()` extends this host's leases and returns what it still holds: a
  partition another host has taken is simply no longer in the answer;
- a lease not renewed for `ttl_s` may be claimed by anyone (`adopt_expired`),
  so the partitions of a host that died are not orphaned for ever.
"""

from __future__ import annotations

from collections.abc import Iterable

from eventstore import EventStore


class PartitionLeases:
    def __init__(self, store: EventStore, host_id: str, *, ttl_s: float = 10.0) -> None:
        self._pool = store.pool
        self.host_id = host_id
        self.ttl_s = ttl_s

    async def claim(self, partitions: Iterable[int]) -> set[int]:
        wanted = sorted(set(partitions))
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO partition_leases (partition, owner, epoch, expires_at)"
                " SELECT p, %s, 1, now() + make_interval(secs => %s) FROM unnest(%s::int[]) AS p"
                " ON CONFLICT (partition) DO UPDATE SET owner = EXCLUDED.owner,"
                " epoch = partition_leases.epoch + 1, expires_at = EXCLUDED.expires_at"
                " WHERE partition_leases.owner <> EXCLUDED.owner"
                " OR partition_leases.expires_at < EXCLUDED.expires_at",
                (self.host_id, self.ttl_s, wanted),
            )
        return await self.renew()

    async def renew(self) -> set[int]:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE partition_leases SET expires_at = now() + make_interval(secs => %s)"
                " WHERE owner = %s RETURNING partition",
                (self.ttl_s, self.host_id),
            )
            return {int(row[0]) for row in await cur.fetchall()}

    async def adopt_expired(self, partitions: Iterable[int]) -> set[int]:
        """Take those of `partitions` whose owner stopped renewing; return all held now."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE partition_leases SET owner = %s, epoch = epoch + 1,"
                " expires_at = now() + make_interval(secs => %s)"
                " WHERE partition = ANY(%s) AND expires_at < now() AND owner <> %s",
                (self.host_id, self.ttl_s, sorted(set(partitions)), self.host_id),
            )
        return await self.renew()

    async def release(self, partitions: Iterable[int]) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM partition_leases WHERE owner = %s AND partition = ANY(%s)",
                (self.host_id, sorted(set(partitions))),
            )

    async def owners(self) -> dict[int, str]:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT partition, owner FROM partition_leases")
            return {int(row[0]): str(row[1]) for row in await cur.fetchall()}
