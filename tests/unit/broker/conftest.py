"""Fixtures for the broker tests: the real MetaApi SDK against a local fake server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from services.execution.broker.metaapi import MetaApiBroker, MetaApiConfig, MetaApiConnectionPool

from .fake_metaapi import FakeMetaApiServer
from .stubs import ACCOUNT_ID, TOKEN, paper

# requestTimeout bounds every SDK RPC, so a dropped trade times out after this long
E2E_REQUEST_TIMEOUT_S = 2.0


@dataclass
class MetaApiEnv:
    server: FakeMetaApiServer
    pool: MetaApiConnectionPool
    config: MetaApiConfig

    def broker(self) -> MetaApiBroker:
        return MetaApiBroker(token=TOKEN, account_id=ACCOUNT_ID, pool=self.pool, config=self.config)


@pytest.fixture(scope="package")
async def metaapi_env() -> AsyncIterator[MetaApiEnv]:
    """One fake server and one pool (one SDK object, one synchronized connection) shared by
    the package's tests; each test gets a fresh paper account behind it (`fresh_metaapi`)."""
    server = await FakeMetaApiServer(paper(), account_id=ACCOUNT_ID, token=TOKEN).start()
    config = MetaApiConfig(
        request_timeout_s=E2E_REQUEST_TIMEOUT_S,
        connect_timeout_s=5,
        sync_timeout_s=15,
        read_retries=0,
        shutdown_grace_s=0.2,
    )
    with server.rest_patch():
        pool = MetaApiConnectionPool(config, api_factory=server.api_factory)
        try:
            yield MetaApiEnv(server=server, pool=pool, config=config)
        finally:
            await pool.close()
            await server.stop()
    leftovers = [
        t for t in asyncio.all_tasks() if not t.done() and "metaapi_cloud_sdk" in str(t.get_coro())
    ]
    assert not leftovers, f"SDK tasks left running: {leftovers}"


@pytest.fixture
async def fresh_metaapi(metaapi_env: MetaApiEnv) -> AsyncIterator[MetaApiEnv]:
    """The shared env with a new paper account and no pending faults."""
    metaapi_env.server.paper = paper()
    metaapi_env.server.clear_faults()
    yield metaapi_env
    metaapi_env.server.clear_faults()
