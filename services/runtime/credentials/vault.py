"""The credential vault: seal, open, shred and rotate users' broker secrets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec

from services.runtime.credentials.envelope import (
    DecryptionFailed,
    SealedSecret,
    Secret,
    WrappedKey,
    decrypt_secret,
    encrypt_secret,
    new_dek,
    unwrap_dek,
    wrap_dek,
)
from services.runtime.credentials.keyring import MasterKeyRing, UnknownMasterKey
from services.runtime.credentials.keystore import DataKeyStore

log = logging.getLogger(__name__)


class CredentialError(Exception):
    """Base of the vault's errors. Messages name user and purpose, never secret material."""


class SecretShredded(CredentialError):
    """The data key the secret was sealed under has been destroyed; the secret is gone for good."""


class SecretUnreadable(CredentialError):
    """The secret or its data key does not decrypt: tampered, wrong user or purpose, or unknown master key."""


class RotationReport(msgspec.Struct, frozen=True, kw_only=True):
    """What `CredentialVault.rotate` did.

    `rewrapped` counts re-wrapped data keys by the master key id they were
    wrapped under before; `already_current` those already under the active
    key; `changed_concurrently` those shredded or replaced while the rotation
    ran (left alone); `failed` the user ids whose key could not be unwrapped
    (unknown master key or tampered row), which an operator must look at.
    """

    active_kid: str
    rewrapped: dict[str, int]
    already_current: int
    changed_concurrently: int
    failed: tuple[str, ...]

    @property
    def total(self) -> int:
        return (
            sum(self.rewrapped.values())
            + self.already_current
            + self.changed_concurrently
            + len(self.failed)
        )

    @property
    def ok(self) -> bool:
        return not self.failed


class CredentialVault:
    """Seals secrets under per-user data keys wrapped by the master key ring.

    `clock` gives the nanosecond time used as a new data key's version, so a
    key created after a shred never shares a version with the destroyed one.
    """

    def __init__(
        self,
        ring: MasterKeyRing,
        store: DataKeyStore,
        *,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.ring = ring
        self.store = store
        self._clock = clock
        self._create_locks: dict[str, asyncio.Lock] = {}

    async def seal(self, user_id: str, purpose: str, plaintext: str | Secret) -> SealedSecret:
        """Encrypt `plaintext` for `user_id` and `purpose`, creating the user's data key on first use."""
        value = plaintext.reveal() if isinstance(plaintext, Secret) else plaintext
        wrapped = await self._data_key(user_id)
        dek = self._unwrap(user_id, purpose, wrapped)
        return encrypt_secret(
            dek, value, user_id=user_id, purpose=purpose, key_version=wrapped.key_version
        )

    async def open(self, user_id: str, purpose: str, sealed: SealedSecret) -> Secret:
        """Decrypt a secret sealed by `seal` for the same user and purpose.

        Raises `SecretShredded` when the user's data key (of that version) was
        destroyed, `SecretUnreadable` on tampering, a wrong user or purpose,
        or a master key missing from the ring.
        """
        wrapped = await self.store.get(user_id)
        if wrapped is None:
            raise SecretShredded(
                f"secret {purpose!r} of user {user_id!r} is unreadable for good: the user has "
                "no data key (it was shredded, or the secret was never sealed for this user)"
            )
        if sealed.key_version != wrapped.key_version:
            if sealed.key_version < wrapped.key_version:
                raise SecretShredded(
                    f"secret {purpose!r} of user {user_id!r} was sealed under data key "
                    f"v{sealed.key_version}, which was shredded (the current key is "
                    f"v{wrapped.key_version}); ask the user to link the account again"
                )
            raise SecretUnreadable(
                f"secret {purpose!r} of user {user_id!r} names data key v{sealed.key_version}, "
                f"newer than the user's key v{wrapped.key_version}: it belongs to another user "
                "or was altered"
            )
        dek = self._unwrap(user_id, purpose, wrapped)
        try:
            return decrypt_secret(dek, sealed, user_id=user_id, purpose=purpose)
        except DecryptionFailed as exc:
            raise SecretUnreadable(str(exc)) from None

    async def shred(self, user_id: str) -> bool:
        """Destroy the user's data key: every secret sealed for them so far becomes unreadable.

        True if there was a key to destroy.
        """
        destroyed = await self.store.destroy(user_id)
        log.info("data key of user %s shredded (existed: %s)", user_id, destroyed)
        return destroyed

    async def rotate(self) -> RotationReport:
        """Re-wrap every data key under the active master key.

        Idempotent: keys already under the active key are left alone, so a
        second run reports them all as `already_current`. Secrets themselves
        are untouched (their data keys do not change).
        """
        active = self.ring.active_kid
        rewrapped: dict[str, int] = {}
        current = raced = 0
        failed: list[str] = []
        async for user_id, wrapped in self.store.all():
            if wrapped.kid == active:
                current += 1
                continue
            try:
                dek = unwrap_dek(self.ring, wrapped, user_id)
            except (UnknownMasterKey, DecryptionFailed) as exc:
                log.error("rotation: cannot unwrap data key of user %s: %s", user_id, exc)
                failed.append(user_id)
                continue
            fresh = wrap_dek(self.ring, dek, user_id, key_version=wrapped.key_version)
            if await self.store.replace(user_id, wrapped, fresh):
                rewrapped[wrapped.kid] = rewrapped.get(wrapped.kid, 0) + 1
            else:
                raced += 1
        report = RotationReport(
            active_kid=active,
            rewrapped=rewrapped,
            already_current=current,
            changed_concurrently=raced,
            failed=tuple(failed),
        )
        log.info(
            "rotation to master key %s: rewrapped %s, already current %d, changed "
            "concurrently %d, failed %d",
            active,
            rewrapped,
            current,
            raced,
            len(failed),
        )
        return report

    async def _data_key(self, user_id: str) -> WrappedKey:
        wrapped = await self.store.get(user_id)
        if wrapped is not None:
            return wrapped
        lock = self._create_locks.setdefault(user_id, asyncio.Lock())
        try:
            async with lock:
                wrapped = await self.store.get(user_id)
                if wrapped is not None:
                    return wrapped
                fresh = wrap_dek(self.ring, new_dek(), user_id, key_version=self._clock())
                # put is insert-if-absent: another process may have won; use whatever is stored.
                return await self.store.put(user_id, fresh)
        finally:
            if not lock.locked():
                self._create_locks.pop(user_id, None)

    def _unwrap(self, user_id: str, purpose: str, wrapped: WrappedKey) -> bytes:
        try:
            return unwrap_dek(self.ring, wrapped, user_id)
        except UnknownMasterKey as exc:
            raise SecretUnreadable(f"secret {purpose!r} of user {user_id!r}: {exc}") from None
        except DecryptionFailed as exc:
            raise SecretUnreadable(f"secret {purpose!r}: {exc}") from None
