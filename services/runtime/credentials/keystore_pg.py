"""The data-key store on Postgres (`user_keys`), for the credential vault.

`put` inserts only when the user has no key yet and returns what is stored,
so two processes sealing a user's first secret at once agree on one key;
`replace` is compare-and-swap, so a rotation never resurrects a shredded key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from eventstore import EventStore
from services.runtime.credentials.envelope import WrappedKey


def _key(row: tuple[str, int, bytes, bytes]) -> WrappedKey:
    return WrappedKey(kid=row[0], key_version=row[1], nonce=bytes(row[2]), ciphertext=bytes(row[3]))


class PgDataKeyStore:
    """The `DataKeyStore` on the event store's Postgres pool (table `user_keys`)."""

    def __init__(self, store: EventStore) -> None:
        self._pool = store.pool

    async def get(self, user_id: str) -> WrappedKey | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT kid, key_version, nonce, ciphertext FROM user_keys WHERE user_id = %s",
                (user_id,),
            )
            row = await cur.fetchone()
            return _key(row) if row else None

    async def put(self, user_id: str, wrapped: WrappedKey) -> WrappedKey:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO user_keys (user_id, kid, key_version, nonce, ciphertext)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id) DO NOTHING",
                (user_id, wrapped.kid, wrapped.key_version, wrapped.nonce, wrapped.ciphertext),
            )
            cur = await conn.execute(
                "SELECT kid, key_version, nonce, ciphertext FROM user_keys WHERE user_id = %s",
                (user_id,),
            )
            row = await cur.fetchone()
            assert row is not None
            return _key(row)

    async def destroy(self, user_id: str) -> bool:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute("DELETE FROM user_keys WHERE user_id = %s", (user_id,))
            return cur.rowcount > 0

    async def replace(self, user_id: str, old: WrappedKey, new: WrappedKey) -> bool:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE user_keys SET kid = %s, key_version = %s, nonce = %s, ciphertext = %s,"
                " updated_at = now()"
                " WHERE user_id = %s AND kid = %s AND nonce = %s AND ciphertext = %s",
                (
                    new.kid,
                    new.key_version,
                    new.nonce,
                    new.ciphertext,
                    user_id,
                    old.kid,
                    old.nonce,
                    old.ciphertext,
                ),
            )
            return cur.rowcount == 1

    async def all(self) -> AsyncIterator[tuple[str, WrappedKey]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT user_id, kid, key_version, nonce, ciphertext FROM user_keys ORDER BY user_id"
            )
            rows = await cur.fetchall()
        for row in rows:
            yield row[0], _key((row[1], row[2], row[3], row[4]))
