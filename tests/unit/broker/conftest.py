"""Fixtures for the broker tests: the real MetaApi SDK against the shipped MetaApi stand-in.

The stand-in (`services.sims.metaapi`) runs in-process on 127.0.0.1; the SDK
reaches it through the production redirect (`metaapi_endpoint`), so every REST
call and websocket request is a real one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from services.execution.broker.metaapi import MetaApiBroker, MetaApiConfig, MetaApiConnectionPool
from services.execution.broker.metaapi_endpoint import api_factory_for
from services.sims.metaapi.server import MetaApiSim

from .stubs import ACCOUNT_ID, TOKEN

# requestTimeout bounds every SDK RPC, so a dropped trade times out after this long
E2E_REQUEST_TIMEOUT_S = 2.0

E2E_CONFIG = MetaApiConfig(
    request_timeout_s=E2E_REQUEST_TIMEOUT_S,
    connect_timeout_s=5,
    sync_timeout_s=15,
    read_retries=0,
    shutdown_grace_s=0.2,
)


@dataclass
class MetaApiEnv:
    server: MetaApiSim
    pool: MetaApiConnectionPool
    config: MetaApiConfig

    def broker(self, account_id: str = ACCOUNT_ID) -> MetaApiBroker:
        return MetaApiBroker(token=TOKEN, account_id=account_id, pool=self.pool, config=self.config)


def assert_no_sdk_tasks() -> None:
    leftovers = [
        t for t in asyncio.all_tasks() if not t.done() and "metaapi_cloud_sdk" in str(t.get_coro())
    ]
    assert not leftovers, f"SDK tasks left running: {leftovers}"


@pytest.fixture(scope="package")
async def metaapi_env() -> AsyncIterator[MetaApiEnv]:
    """One stand-in and one pool (one SDK object, one synchronized connection) shared by
    the package's tests; each test gets a fresh paper account behind it (`fresh_metaapi`)."""
    server = await MetaApiSim().start()
    pool = MetaApiConnectionPool(E2E_CONFIG, api_factory=api_factory_for(server.url))
    try:
        yield MetaApiEnv(server=server, pool=pool, config=E2E_CONFIG)
    finally:
        await pool.close()
        await server.stop()
    assert_no_sdk_tasks()


@pytest.fixture
async def fresh_metaapi(metaapi_env: MetaApiEnv) -> AsyncIterator[MetaApiEnv]:
    """The shared env with a new paper account and no pending faults."""
    metaapi_env.server.accounts.reset(ACCOUNT_ID)
    metaapi_env.server.clear_faults()
    yield metaapi_env
    metaapi_env.server.clear_faults()
