"""Which `Broker` serves an account: the `BrokerDirectory` port and its implementations.

- `PaperDirectory`: `paper-*` accounts, through the paper exchange on NATS.
- `MetaApiDirectory`: MetaApi accounts; the token comes from a `TokenResolver`
  callable, because the token is sealed in the user's `AccountLinked` event
  and only the credential vault (owned by the actors service, which execution
  may not import) can open it. How execution obtains it is an open design
  question (see the service docstring); until it is answered, no resolver is
  configured and MetaApi intents are reported `failed` with that reason.
- `RoutingDirectory`: paper accounts to one, the rest to the other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from nats.aio.client import Client as NATS

from .broker.metaapi import MetaApiBroker, MetaApiConfig, MetaApiConnectionPool
from .broker.paper_client import PaperBrokerClient
from .broker.port import Broker, BrokerError

TokenResolver = Callable[[str, str], Awaitable[str]]
"""`await resolve(user_id, account_id)` -> the account's MetaApi token (plaintext, in memory
only). Raises `AuthFailed` when the token cannot be had (unlinked, user deleted)."""


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
    """One `MetaApiBroker` per account on a shared connection pool."""

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

    async def broker_for(self, account_id: str, user_id: str) -> Broker:
        found = self._brokers.get(account_id)
        if found is None:
            token = await self._resolve(user_id, account_id)
            if self._pool is None:  # the SDK needs a running loop: build on first use
                self._pool = MetaApiConnectionPool(self._config)
            found = self._brokers[account_id] = MetaApiBroker(
                token=token, account_id=account_id, pool=self._pool, config=self._config
            )
        return found

    def forget(self, account_id: str) -> None:
        """Drop a cached broker (after AuthFailed or an unlink): the token is resolved again."""
        self._brokers.pop(account_id, None)

    async def close(self) -> None:
        for broker in self._brokers.values():
            await broker.close()
        self._brokers.clear()
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
                " MetaApi token resolver configured"
            )
        return await self.metaapi.broker_for(account_id, user_id)

    async def close(self) -> None:
        await self.paper.close()
        if self.metaapi is not None:
            await self.metaapi.close()
