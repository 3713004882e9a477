"""The one-account-one-user index on Postgres (`account_claims`).

The vault's data-key store (`PgDataKeyStore`) lives with the vault, in
`services.runtime.credentials.keystore_pg`.
"""

from __future__ import annotations

from eventstore import EventStore


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
