"""The one-account-one-user index on Postgres (`account_claims`).

The vault's data-key store (`PgDataKeyStore`) lives with the vault, in
`services.runtime.credentials.keystore_pg`.
"""

from __future__ import annotations

from eventstore import EventStore
from services.actors.core import Claim


class AccountClaims:
    """The one-account-one-user index (`account_claims`)."""

    def __init__(self, store: EventStore) -> None:
        self._pool = store.pool

    async def claim(self, account_id: str, user_id: str) -> Claim:
        """Claim `account_id` for `user_id`: NEW if this call created the claim, MINE if
        the user held it already, TAKEN if another user holds it. Only a NEW claim
        is the caller's to give back when its command fails."""
        async with self._pool.connection() as conn, conn.transaction():
            while True:
                cur = await conn.execute(
                    "INSERT INTO account_claims (account_id, user_id) VALUES (%s, %s)"
                    " ON CONFLICT (account_id) DO NOTHING RETURNING user_id",
                    (account_id, user_id),
                )
                if await cur.fetchone() is not None:
                    return Claim.NEW
                cur = await conn.execute(
                    "SELECT user_id FROM account_claims WHERE account_id = %s", (account_id,)
                )
                row = await cur.fetchone()
                if row is not None:
                    return Claim.MINE if row[0] == user_id else Claim.TAKEN
                # released between the two statements: try to take it again

    async def release(self, user_id: str, account_id: str | None = None) -> None:
        """Give up `user_id`'s claim on `account_id`, or on every account when None."""
        async with self._pool.connection() as conn, conn.transaction():
            if account_id is None:
                await conn.execute("DELETE FROM account_claims WHERE user_id = %s", (user_id,))
            else:
                await conn.execute(
                    "DELETE FROM account_claims WHERE user_id = %s AND account_id = %s",
                    (user_id, account_id),
                )
