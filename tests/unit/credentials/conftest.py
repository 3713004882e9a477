"""Fixtures for the credential tests."""

from __future__ import annotations

import pytest
from credentials_stubs import key_entry

from services.runtime.credentials import InMemoryDataKeyStore, MasterKeyRing


@pytest.fixture
def entry_a() -> str:
    return key_entry("a")


@pytest.fixture
def entry_b() -> str:
    return key_entry("b")


@pytest.fixture
def ring_a(entry_a: str) -> MasterKeyRing:
    return MasterKeyRing.parse(entry_a)


@pytest.fixture
def store() -> InMemoryDataKeyStore:
    return InMemoryDataKeyStore()
