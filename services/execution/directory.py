"""Which `Broker` serves an account: the `BrokerDirectory` port and its implementations.

- `PaperDirectory`: `paper-*` accounts, through the paper exchange on NATS.
- `MetaApiDirectory`: MetaApi accounts; the token comes from a `TokenResolver`
  callable. The token is sealed in the user's `AccountLinked` event; the
  service's default resolver, `tokens.VaultTokenResolver`, opens it with the
  shared credential vault (`services.runtime.credentials`). The token is
  resolved again on every look-up (the resolver caches it briefly), so an
  unlink, a deletion or a relink with a new token reaches the cached broker.
- `RoutingDirectory`: paper accounts to one, the rest to the other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from nats.aio.client import Client as NATS

from contracts.broker import AuthFailed, Broker, BrokerError
from services.runtime.credentials import Secret

from .broker.metaapi import MetaApiBroker, MetaApiConfig, MetaApiConnectionPool
from .broker.paper_client import PaperBrokerClient

TokenResolver = Callable[[str, str], Awaitable[Secret | str]]
"""`await resolve(user_id, account_id)` -> the account's MetaApi token (in memory only,
preferably as a `Secret`). Raises `AuthFailed` when the token cannot be had (unlinked,
user deleted, data key shredded)."""


class NoBroker(BrokerError):
    """No broker can be reached for this account (not configured): reported `failed`."""


class BrokerDirectory(Protocol):
    async def broker_for(self, account_id: str, user_id: str) -> Broker:
        """The broker of `account_id` (owned by `user_id`); raises `BrokerError`."""
        ...

    async def close(self) -> None: ...


def is_paper(account_id: str) -> bool:
    return account_id.startswith("paper-")


class PaperDirectory:
    def __init__(self, nc: NATS, *, timeout_s: float = 5.0) -> None:
        self._nc = nc
        self._timeout_s = timeout_s
        self._brokers: dict[str, PaperBrokerClient] = {}

    async def broker_for(self, account_id: str, user_id: str) -> Broker:
        found = self._brokers.get(account_id)
        if found is None:
            found = self._brokers[account_id] = PaperBrokerClient(
                self._nc, account_id, timeout_s=self._timeout_s
            )
        return found

    async def close(self) -> None:
        for broker in self._brokers.values():
            await broker.close()
        self._brokers.clear()


class MetaApiDirectory:
    """One `MetaApiBroker` per account on a shared connection pool.

    Each look-up asks the resolver for the token first: `AuthFailed` (the
    token is gone for good) drops the account's broker and its pooled
    connection before it is raised, and a changed token replaces the broker.
    """

    def __init__(
        self,
        resolve_token: TokenResolver,
        *,
        pool: MetaApiConnectionPool | None = None,
        config: MetaApiConfig | None = None,
    ) -> None:
        self._resolve = resolve_token
        self._config = config
        self._pool = pool
        self._brokers: dict[str, MetaApiBroker] = {}
        self._tokens: dict[str, Secret] = {}

    def __repr__(self) -> str:
        return f"MetaApiDirectory(accounts={len(self._brokers)})"

    async def broker_for(self, account_id: str, user_id: str) -> Broker:
        try:
            resolved = await self._resolve(user_id, account_id)
        except AuthFailed:  # for good (unlinked, deleted): a passing database error keeps it
            await self._drop(account_id)
            raise
        token = resolved if isinstance(resolved, Secret) else Secret(resolved)
        found = self._brokers.get(account_id)
        if found is not None and self._tokens.get(account_id) == token:
            return found
        await self._drop(account_id)  # first use, or the account was linked with a new token
        if self._pool is None:  # the SDK needs a running loop: build on first use
            self._pool = MetaApiConnectionPool(self._config)
        found = self._brokers[account_id] = MetaApiBroker(
            token=token.reveal(), account_id=account_id, pool=self._pool, config=self._config
        )
        self._tokens[account_id] = token
        return found

    def forget(self, account_id: str) -> None:
        """Drop a cached broker (after AuthFailed or an unlink): the token is resolved again."""
        self._brokers.pop(account_id, None)
        self._tokens.pop(account_id, None)

    async def _drop(self, account_id: str) -> None:
        broker = self._brokers.pop(account_id, None)
        token = self._tokens.pop(account_id, None)
        if broker is not None:
            await broker.close()
        if token is not None and self._pool is not None:
            await self._pool.discard(token.reveal(), account_id)

    async def close(self) -> None:
        for broker in self._brokers.values():
            await broker.close()
        self._brokers.clear()
        self._tokens.clear()
        if self._pool is not None:
            await self._pool.close()


class RoutingDirectory:
    def __init__(self, paper: BrokerDirectory, metaapi: BrokerDirectory | None = None) -> None:
        self.paper = paper
        self.metaapi = metaapi

    async def broker_for(self, account_id: str, user_id: str) -> Broker:
        if is_paper(account_id):
            return await self.paper.broker_for(account_id, user_id)
        if self.metaapi is None:
            raise NoBroker(
                f"account {account_id} is a MetaApi account, and this execution service has no"
                " MetaApi directory configured"
            )
        return await self.metaapi.broker_for(account_id, user_id)

    async def close(self) -> None:
        await self.paper.close()
        if self.metaapi is not None:
            await self.metaapi.close()
