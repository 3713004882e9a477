"""`VaultTokenResolver` on a real Postgres: execution opens the token the actors sealed.

Each test seals a token with the vault under a test master key, writes the
user's events as the actors service would, and resolves the token the way
the execution service does.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.envelope import new_id, now_ns
from contracts.orders import RiskVerdict
from contracts.users import (
    AccountLinked,
    AccountUnlinked,
    SealedToken,
    UserDeleted,
    UserRegistered,
    user_stream,
)
from eventstore import ANY_VERSION, EventStore
from eventstore.group_commit import GroupCommitter
from eventstore.migrate import migrate
from services.execution.broker.metaapi import MetaApiBroker
from services.execution.broker.metaapi_pool import MetaApiConnectionPool
from services.execution.directory import MetaApiDirectory, PaperDirectory, RoutingDirectory
from services.execution.executor import ExecutionCore
from services.execution.tokens import TokenUnavailable, VaultTokenResolver, purpose_of
from services.runtime.credentials import CredentialVault, MasterKeyRing, PgDataKeyStore, Secret
from services.runtime.credentials.keyring import ENV_VAR, new_entry
from tests.unit.execution.stubs import intent

pytestmark = pytest.mark.integration

TOKEN = "mt-token-7f3a9c1e-DO-NOT-LEAK"
NEW_TOKEN = "mt-token-2b8d4e6f-ALSO-SECRET"
USER = "ann"
ACCOUNT = "acc-ann-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    await migrate(database_url)
    es = await EventStore.connect(database_url, min_size=1, max_size=4)
    yield es
    await es.close()


@pytest.fixture
def master_entry() -> str:
    return new_entry("test")


@pytest.fixture
def vault(store: EventStore, master_entry: str) -> CredentialVault:
    return CredentialVault(MasterKeyRing.parse(master_entry), PgDataKeyStore(store))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def resolver(store: EventStore, vault: CredentialVault, clock: Clock) -> VaultTokenResolver:
    return VaultTokenResolver(store, vault, ttl_s=300.0, clock=clock)


def envelope() -> dict[str, object]:
    return {"id": new_id(), "ts": now_ns()}


async def sealed(vault: CredentialVault, token: str, account_id: str = ACCOUNT) -> SealedToken:
    secret = await vault.seal(USER, purpose_of(account_id), token)
    return SealedToken(
        key_version=secret.key_version, nonce=secret.nonce, ciphertext=secret.ciphertext
    )


async def append(store: EventStore, *events: object) -> None:
    await store.append(user_stream(USER), ANY_VERSION, list(events))  # type: ignore[arg-type]


async def link(
    store: EventStore, vault: CredentialVault, token: str = TOKEN, *, register: bool = True
) -> None:
    linked = AccountLinked(
        **envelope(), account_id=ACCOUNT, broker="metaapi", token=await sealed(vault, token)
    )
    if register:
        await append(store, UserRegistered(**envelope(), user_id=USER), linked)
    else:
        await append(store, linked)


async def delete_user(store: EventStore, vault: CredentialVault) -> None:
    # what the actors service does on `delete`: the event, then the data key destroyed
    await append(store, UserDeleted(**envelope()))
    await vault.shred(USER)


# ---- resolving ------------------------------------------------------------------------


async def test_linked_account_then_resolves_to_the_sealed_token(store, vault, resolver):
    await link(store, vault)

    token = await resolver(USER, ACCOUNT)

    assert isinstance(token, Secret)
    assert token.reveal() == TOKEN


async def test_data_key_shredded_then_token_can_no_longer_be_read(store, vault, clock):
    await link(store, vault)
    await vault.shred(USER)
    resolver = VaultTokenResolver(store, vault, clock=clock)

    with pytest.raises(TokenUnavailable) as caught:
        await resolver(USER, ACCOUNT)

    assert caught.value.why == "shredded"
    assert f"the broker token of account {ACCOUNT} can no longer be read" in caught.value.reason
    assert "data key was destroyed" in caught.value.reason


async def test_user_deleted_then_token_can_no_longer_be_read_the_user_was_deleted(
    store, vault, resolver
):
    await link(store, vault)
    await delete_user(store, vault)

    with pytest.raises(TokenUnavailable) as caught:
        await resolver(USER, ACCOUNT)

    assert caught.value.why == "deleted"
    assert caught.value.reason == (
        f"the broker token of account {ACCOUNT} can no longer be read: the user {USER} was deleted"
    )


async def test_deleted_user_even_with_an_intact_data_key_then_refused(store, vault, resolver):
    # the stream says deleted before the key is shredded: the event alone is enough
    await link(store, vault)
    await append(store, UserDeleted(**envelope()))

    with pytest.raises(TokenUnavailable) as caught:
        await resolver(USER, ACCOUNT)

    assert caught.value.why == "deleted"


async def test_account_unlinked_then_token_can_no_longer_be_read(store, vault, resolver):
    await link(store, vault)
    await append(store, AccountUnlinked(**envelope(), account_id=ACCOUNT))

    with pytest.raises(TokenUnavailable) as caught:
        await resolver(USER, ACCOUNT)

    assert caught.value.why == "unlinked"
    assert "can no longer be read: the account was unlinked" in caught.value.reason


async def test_relinked_after_unlink_then_the_new_token(store, vault, resolver):
    await link(store, vault)
    await append(store, AccountUnlinked(**envelope(), account_id=ACCOUNT))
    await link(store, vault, NEW_TOKEN, register=False)

    token = await resolver(USER, ACCOUNT)

    assert token.reveal() == NEW_TOKEN


async def test_account_never_linked_then_refused_as_not_linked(store, vault, resolver):
    await link(store, vault)

    with pytest.raises(TokenUnavailable) as caught:
        await resolver(USER, "acc-someone-else")

    assert caught.value.why == "not_linked"
    assert "acc-someone-else was never linked by user ann" in caught.value.reason


async def test_token_sealed_for_another_account_then_unreadable(store, vault, resolver):
    # a ciphertext copied into another account's link does not open (purpose is bound)
    copied = await sealed(vault, TOKEN, account_id="acc-other")
    await append(
        store,
        UserRegistered(**envelope(), user_id=USER),
        AccountLinked(**envelope(), account_id=ACCOUNT, broker="metaapi", token=copied),
    )

    with pytest.raises(TokenUnavailable) as caught:
        await resolver(USER, ACCOUNT)

    assert caught.value.why == "unreadable"


async def test_linked_without_token_then_refused_as_no_token(store, resolver):
    await append(
        store,
        UserRegistered(**envelope(), user_id=USER),
        AccountLinked(**envelope(), account_id=ACCOUNT, broker="metaapi"),
    )

    with pytest.raises(TokenUnavailable) as caught:
        await resolver(USER, ACCOUNT)

    assert caught.value.why == "no_token"


# ---- the cache ------------------------------------------------------------------------


async def test_token_cached_until_ttl_then_unlink_is_seen(store, vault, resolver, clock):
    await link(store, vault)
    assert (await resolver(USER, ACCOUNT)).reveal() == TOKEN
    await append(store, AccountUnlinked(**envelope(), account_id=ACCOUNT))

    clock.now += 299.0
    within_ttl = await resolver(USER, ACCOUNT)
    clock.now += 2.0
    with pytest.raises(TokenUnavailable):
        await resolver(USER, ACCOUNT)

    assert within_ttl.reveal() == TOKEN
    assert resolver.stats() == {"cached": 0, "opened": 1, "hits": 1, "refused": 1}


async def test_failure_then_nothing_cached_and_next_call_reads_again(store, vault, resolver):
    await append(store, UserRegistered(**envelope(), user_id=USER))
    with pytest.raises(TokenUnavailable):
        await resolver(USER, ACCOUNT)
    await link(store, vault, register=False)

    token = await resolver(USER, ACCOUNT)

    assert token.reveal() == TOKEN
    assert resolver.stats()["cached"] == 1


async def test_forget_then_the_stream_is_read_again(store, vault, resolver):
    await link(store, vault)
    await resolver(USER, ACCOUNT)
    await delete_user(store, vault)

    assert resolver.forget(user_id=USER) == 1
    with pytest.raises(TokenUnavailable):
        await resolver(USER, ACCOUNT)


# ---- never the token --------------------------------------------------------------------


async def test_repr_str_errors_and_logs_never_contain_the_token(store, vault, resolver, caplog):
    caplog.set_level(logging.DEBUG)
    await link(store, vault)

    token = await resolver(USER, ACCOUNT)
    await delete_user(store, vault)
    resolver.forget()
    with pytest.raises(TokenUnavailable) as caught:
        await resolver(USER, ACCOUNT)

    shown = [
        repr(resolver),
        str(resolver),
        f"{resolver}",
        repr(token),
        str(token),
        f"{token}",
        repr(caught.value),
        str(caught.value),
        caplog.text,
        *(str(r.args) for r in caplog.records),
    ]
    assert caplog.records  # the refusal was logged, in plain words
    for text in shown:
        assert TOKEN not in text
    assert "ann" in caplog.text and "was deleted" in caplog.text


async def test_from_env_then_opens_with_the_master_keys_of_the_environment(
    store, vault, master_entry, tmp_path: Path
):
    await link(store, vault)
    resolver = VaultTokenResolver.from_env(store, {ENV_VAR: master_entry}, home=tmp_path)

    token = await resolver(USER, ACCOUNT)

    assert token.reveal() == TOKEN
    assert not (tmp_path / "master.key").exists()  # no local key file when the env has keys


# ---- in execution -----------------------------------------------------------------------


async def test_directory_relinked_with_new_token_then_broker_replaced(
    store, vault, resolver, clock
):
    await link(store, vault)
    directory = MetaApiDirectory(resolver, pool=MetaApiConnectionPool())
    try:
        first = await directory.broker_for(ACCOUNT, USER)
        again = await directory.broker_for(ACCOUNT, USER)
        await append(store, AccountUnlinked(**envelope(), account_id=ACCOUNT))
        await link(store, vault, NEW_TOKEN, register=False)
        clock.now += 301.0
        replaced = await directory.broker_for(ACCOUNT, USER)
    finally:
        await directory.close()

    assert isinstance(first, MetaApiBroker) and again is first
    assert replaced is not first
    assert TOKEN not in repr(first) and NEW_TOKEN not in repr(replaced)


async def test_directory_user_deleted_then_cached_broker_dropped(store, vault, resolver, clock):
    await link(store, vault)
    directory = MetaApiDirectory(resolver, pool=MetaApiConnectionPool())
    try:
        await directory.broker_for(ACCOUNT, USER)
        await delete_user(store, vault)
        clock.now += 301.0
        with pytest.raises(TokenUnavailable):
            await directory.broker_for(ACCOUNT, USER)
        assert "accounts=0" in repr(directory)
    finally:
        await directory.close()


async def test_intent_for_deleted_user_then_rejected_report_in_plain_words(store, vault, resolver):
    await link(store, vault)
    await delete_user(store, vault)
    committer = GroupCommitter(store)
    committer.start()
    directory = RoutingDirectory(PaperDirectory(None), MetaApiDirectory(resolver))  # type: ignore[arg-type]
    core = ExecutionCore(store, committer, directory)
    order = intent(
        f"sig1:{USER}:1:open",
        user_id=USER,
        account_id=ACCOUNT,
        broker="metaapi",
        correlation_id="sig1",
    )
    try:
        report = await core.execute(
            RiskVerdict(id=new_id(), ts=now_ns(), intent=order, approved=True)
        )
    finally:
        await committer.stop()
        await directory.close()

    assert report is not None
    assert report.status == "rejected"
    assert report.reason == (
        f"the broker token of account {ACCOUNT} can no longer be read: the user {USER} was deleted"
    )
    async with store.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM events WHERE data::text LIKE %s", (f"%{TOKEN}%",)
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == 0
