"""`VaultTokenResolver`: the MetaApi token of an account, opened from the user's events.

The actors service seals a token with the credential vault when the user
links the account; the `AccountLinked` event in `user-<id>` carries only the
ciphertext. Execution reads that stream, finds the account's latest link
(and no later unlink or deletion), and opens the ciphertext with the same
vault and per-user data key (`services.runtime.credentials`). Deleting a
user destroys the data key, so after that nobody, execution included, can
open the token again.

Opened tokens are cached in memory as `Secret`s (which never print
themselves) for `ttl_s` seconds, so a deletion, unlink or relink is seen
within that time; a failed resolution leaves nothing cached.

Failures that need a human (the account was unlinked, the user deleted,
the data key shredded, the ciphertext unreadable) raise `TokenUnavailable`,
an `AuthFailed`: execution reports the intent `rejected` with its plain-words
reason. A master key configuration that cannot be loaded raises
`TokenVaultUnavailable` (reported `failed`). Database errors propagate, so
the intent is redelivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from contracts.broker import AuthFailed
from contracts.envelope import tag_of
from contracts.users import USER_EVENTS, AccountLinked, AccountUnlinked, UserDeleted, user_stream
from eventstore import EventRegistry, EventStore
from services.runtime.credentials import (
    CredentialVault,
    MasterKeyError,
    MasterKeyRing,
    PgDataKeyStore,
    SealedSecret,
    Secret,
    SecretShredded,
    SecretUnreadable,
)

from .directory import NoBroker

log = logging.getLogger("sigrelay.execution.tokens")

DEFAULT_TTL_S = 300.0

REGISTRY = EventRegistry(*USER_EVENTS)
# only these decide whether a token can be had; the rest of the stream is not decoded
_RELEVANT = frozenset(tag_of(t) for t in (AccountLinked, AccountUnlinked, UserDeleted))

Why = Literal["not_linked", "unlinked", "deleted", "no_token", "shredded", "unreadable"]


class TokenUnavailable(AuthFailed):
    """The account's broker token cannot be had, and will not be without a human.

    `why` says which case: `not_linked`, `unlinked`, `deleted`, `no_token`,
    `shredded` or `unreadable`. The message names user and account, never
    token material.
    """

    def __init__(self, reason: str, *, user_id: str, account_id: str, why: Why) -> None:
        super().__init__(reason)
        self.user_id = user_id
        self.account_id = account_id
        self.why = why


class TokenVaultUnavailable(NoBroker):
    """The master key ring could not be loaded: no token can be opened (reported `failed`)."""


def purpose_of(account_id: str) -> str:
    """The purpose a MetaApi token of `account_id` is sealed under (associated data)."""
    return f"metaapi-token:{account_id}"


class VaultTokenResolver:
    """`await resolver(user_id, account_id)` -> the account's token as a `Secret`.

    A `TokenResolver` for `MetaApiDirectory`. `vault` is a ready vault, or a
    callable building it on first use (so an execution service that never
    meets a MetaApi account never loads the master keys).
    """

    def __init__(
        self,
        store: EventStore,
        vault: CredentialVault | Callable[[], CredentialVault],
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0:
            raise ValueError(f"token cache ttl_s {ttl_s} must not be negative")
        self._store = store
        self._vault: CredentialVault | None = vault if isinstance(vault, CredentialVault) else None
        self._make_vault = None if isinstance(vault, CredentialVault) else vault
        self.ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Secret]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.opened = 0
        self.hits = 0
        self.refused = 0

    @classmethod
    def from_env(
        cls, store: EventStore, env: Mapping[str, str], *, home: Path, ttl_s: float = DEFAULT_TTL_S
    ) -> VaultTokenResolver:
        """The resolver on the master keys of `SIGRELAY_MASTER_KEYS` (else the local key file
        under `home`, as the actors service uses) and the data keys in `user_keys`."""

        def make() -> CredentialVault:
            return CredentialVault(MasterKeyRing.from_env(env, home=home), PgDataKeyStore(store))

        return cls(store, make, ttl_s=ttl_s)

    def __repr__(self) -> str:
        return f"VaultTokenResolver(cached={len(self._cache)}, ttl_s={self.ttl_s})"

    __str__ = __repr__

    async def __call__(self, user_id: str, account_id: str) -> Secret:
        return await self.resolve(user_id, account_id)

    async def resolve(self, user_id: str, account_id: str) -> Secret:
        """The token of `account_id`, linked by `user_id`; raises `TokenUnavailable`."""
        key = (user_id, account_id)
        cached = self._fresh(key)
        if cached is not None:
            self.hits += 1
            return cached
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:  # one read of the stream per account, however many intents wait
                cached = self._fresh(key)
                if cached is not None:
                    self.hits += 1
                    return cached
                try:
                    token = await self._open(user_id, account_id)
                except BaseException:
                    self._cache.pop(key, None)
                    raise
                self._cache[key] = (self._clock(), token)
                self.opened += 1
                return token
        finally:
            if not lock.locked():
                self._locks.pop(key, None)

    def forget(self, user_id: str | None = None, account_id: str | None = None) -> int:
        """Drop cached tokens (all, or those of a user and/or an account); how many went."""
        keys = [
            k
            for k in self._cache
            if (user_id is None or k[0] == user_id) and (account_id is None or k[1] == account_id)
        ]
        for k in keys:
            del self._cache[k]
        return len(keys)

    def stats(self) -> dict[str, int]:
        return {
            "cached": len(self._cache),
            "opened": self.opened,
            "hits": self.hits,
            "refused": self.refused,
        }

    # ---- internals --------------------------------------------------------------------

    def _fresh(self, key: tuple[str, str]) -> Secret | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if self._clock() - entry[0] >= self.ttl_s:
            del self._cache[key]
            return None
        return entry[1]

    async def _open(self, user_id: str, account_id: str) -> Secret:
        linked = await self._linked(user_id, account_id)
        token = linked.token
        if token is None:
            raise self._refuse(
                user_id,
                account_id,
                "no_token",
                f"the link event of account {account_id} (user {user_id}) carries no token;"
                " ask the user to link it again with its MetaApi token",
            )
        sealed = SealedSecret(
            key_version=token.key_version, nonce=token.nonce, ciphertext=token.ciphertext
        )
        vault = self._get_vault()
        try:
            return await vault.open(user_id, purpose_of(account_id), sealed)
        except SecretShredded:
            raise self._refuse(
                user_id,
                account_id,
                "shredded",
                f"the user's data key was destroyed (user {user_id}); ask the user to link"
                " the account again",
            ) from None
        except SecretUnreadable as exc:
            raise self._refuse(
                user_id,
                account_id,
                "unreadable",
                f"{exc} (is a master key missing from SIGRELAY_MASTER_KEYS?)",
            ) from None

    async def _linked(self, user_id: str, account_id: str) -> AccountLinked:
        linked: AccountLinked | None = None
        ended: Why = "not_linked"
        for recorded in await self._store.read_stream(user_stream(user_id)):
            if recorded.type not in _RELEVANT:
                continue
            event = REGISTRY.decode(recorded)
            if isinstance(event, AccountLinked):
                if event.account_id == account_id:
                    linked = event
            elif isinstance(event, AccountUnlinked):
                if event.account_id == account_id and linked is not None:
                    linked, ended = None, "unlinked"
            elif isinstance(event, UserDeleted):
                linked, ended = None, "deleted"
        if linked is not None:
            return linked
        words = {
            "not_linked": f"account {account_id} was never linked by user {user_id}",
            "unlinked": f"the account was unlinked by user {user_id}",
            "deleted": f"the user {user_id} was deleted",
        }
        raise self._refuse(user_id, account_id, ended, words[ended])

    def _get_vault(self) -> CredentialVault:
        if self._vault is None:
            assert self._make_vault is not None
            try:
                self._vault = self._make_vault()
            except MasterKeyError as exc:
                raise TokenVaultUnavailable(
                    f"the master keys to open broker tokens cannot be loaded: {exc}"
                ) from None
        return self._vault

    def _refuse(self, user_id: str, account_id: str, why: Why, detail: str) -> TokenUnavailable:
        self.refused += 1
        if why == "not_linked":
            reason = f"no broker token for account {account_id}: {detail}"
        else:
            reason = f"the broker token of account {account_id} can no longer be read: {detail}"
        log.warning("execution: %s", reason)
        return TokenUnavailable(reason, user_id=user_id, account_id=account_id, why=why)
