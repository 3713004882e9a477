"""Where wrapped data keys live: a small mutable table outside the immutable event log.

The event log keeps sealed secrets forever; deleting a user's wrapped data key
here is what makes them unreadable (crypto-shredding).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from services.runtime.credentials.envelope import WrappedKey


@runtime_checkable
class DataKeyStore(Protocol):
    """Per-user wrapped data keys.

    Implementations must make `put` insert-if-absent and `replace` a
    compare-and-swap, so that two processes sealing a first secret for the
    same user, or a rotation racing a shred, never lose or resurrect a key.
    """

    async def get(self, user_id: str) -> WrappedKey | None:
        """The user's wrapped data key, or None if there is none (never created, or shredded)."""
        ...

    async def put(self, user_id: str, wrapped: WrappedKey) -> WrappedKey:
        """Store `wrapped` unless the user already has a key; return the key now stored.

        The caller must use the returned key: when another writer got there
        first, it is theirs, not `wrapped`.
        """
        ...

    async def destroy(self, user_id: str) -> bool:
        """Delete the user's key for good (crypto-shredding). True if there was one."""
        ...

    def all(self) -> AsyncIterator[tuple[str, WrappedKey]]:
        """Every (user id, wrapped key), in no particular order."""
        ...

    async def replace(self, user_id: str, old: WrappedKey, new: WrappedKey) -> bool:
        """Swap `old` for `new` only if `old` is still what is stored. True if swapped."""
        ...


class InMemoryDataKeyStore:
    """A `DataKeyStore` in a dict, for tests and the demo."""

    def __init__(self) -> None:
        self._keys: dict[str, WrappedKey] = {}
        self._lock = asyncio.Lock()

    async def get(self, user_id: str) -> WrappedKey | None:
        return self._keys.get(user_id)

    async def put(self, user_id: str, wrapped: WrappedKey) -> WrappedKey:
        async with self._lock:
            return self._keys.setdefault(user_id, wrapped)

    async def destroy(self, user_id: str) -> bool:
        async with self._lock:
            return self._keys.pop(user_id, None) is not None

    async def all(self) -> AsyncIterator[tuple[str, WrappedKey]]:
        for item in list(self._keys.items()):
            yield item

    async def replace(self, user_id: str, old: WrappedKey, new: WrappedKey) -> bool:
        async with self._lock:
            if self._keys.get(user_id) != old:
                return False
            self._keys[user_id] = new
            return True

    def __len__(self) -> int:
        return len(self._keys)
