"""Fixtures for the MetaApi stand-in's tests: the stand-in in-process, the real SDK into it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from services.execution.broker.metaapi import MetaApiConnectionPool
from services.execution.broker.metaapi_endpoint import api_factory_for
from services.sims.metaapi.server import MetaApiSim
from tests.unit.broker.conftest import E2E_CONFIG, MetaApiEnv, assert_no_sdk_tasks

_accounts = itertools.count(1)


@pytest.fixture(scope="package")
async def sim_env() -> AsyncIterator[MetaApiEnv]:
    """One in-process stand-in and one pool for the package (one SDK object)."""
    server = await MetaApiSim().start()
    pool = MetaApiConnectionPool(E2E_CONFIG, api_factory=api_factory_for(server.url))
    try:
        yield MetaApiEnv(server=server, pool=pool, config=E2E_CONFIG)
    finally:
        await pool.close()
        await server.stop()
    assert_no_sdk_tasks()


@pytest.fixture
async def sim(sim_env: MetaApiEnv) -> AsyncIterator[MetaApiEnv]:
    """The shared stand-in with its market back at the starting prices and no faults."""
    sim_env.server.clear_faults()
    yield sim_env
    sim_env.server.clear_faults()


@pytest.fixture
def account_id() -> str:
    """A fresh account id: the stand-in opens it on first use."""
    return f"sim-acc-{next(_accounts)}"
