"""The data-key store on Postgres (`user_keys`), for the credential vault.

`put` inserts only when the user has no key yet and returns what is stored,
so two processes sealing a user's first secret at once agree on one key;
`replace` is compare-and-swap, so a rotation never resurrects a shredded key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from eventstore import EventStore
from services.actors.credentials.envelope import WrappedKey


def _key(row: tuple[str, int, bytes, bytes]) -> WrappedKey:
    return WrappedKey(kid=row[0], key_version=row[1], nonce=bytes(row[2]), ciphertext=bytes(row[3]))


class PgDataKeyStore:
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


class AccountClaims:
    """The one-account-one-user index (`account_claims`)."""

    def __init__(self, store: EventStore) -> None:
        self._pool = store.pool

    async def claim(self, account_id: str, user_id: str) -> str:
        """Claim `account_id` for `user_id`; return the owner (the caller, or whoever had it)."""
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO account_claims (account_id, user_id) VALUES (%s, %s)"
                " ON CONFLICT (account_id) DO NOTHING",
                (account_id, user_id),
            )
            cur = await conn.execute(
                "SELECT user_id FROM account_claims WHERE account_id = %s", (account_id,)
            )
            row = await cur.fetchone()
            assert row is not None
            return str(row[0])

    async def release(self, user_id: str, account_id: str | None = None) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            if account_id is None:
                await conn.execute("DELETE FROM account_claims WHERE user_id = %s", (user_id,))
            else:
                await conn.execute(
                    "DELETE FROM account_claims WHERE user_id = %s AND account_id = %s",
                    (user_id, account_id),
                )
