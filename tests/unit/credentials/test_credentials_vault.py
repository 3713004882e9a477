from __future__ import annotations

import asyncio
import itertools

import msgspec
import pytest
from credentials_stubs import key_entry

from services.runtime.credentials import (
    CredentialVault,
    InMemoryDataKeyStore,
    MasterKeyRing,
    SealedSecret,
    Secret,
    SecretShredded,
    SecretUnreadable,
    WrappedKey,
)

PURPOSE = "metaapi-token:acc-1"


def _token(n: int) -> str:
    return f"metaapi-token-{n:04d}-" + "x" * 40


async def test_seal_then_open_when_same_user_and_purpose_then_plaintext_back(
    ring_a: MasterKeyRing, store: InMemoryDataKeyStore
) -> None:
    vault = CredentialVault(ring_a, store)

    sealed = await vault.seal("u1", PURPOSE, _token(1))
    opened = await vault.open("u1", PURPOSE, sealed)

    assert isinstance(opened, Secret)
    assert opened.reveal() == _token(1)
    assert _token(1).encode() not in msgspec.json.encode(sealed)


async def test_seal_when_first_use_then_creates_one_dek_and_reuses_it(
    ring_a: MasterKeyRing, store: InMemoryDataKeyStore
) -> None:
    vault = CredentialVault(ring_a, store)

    first = await vault.seal("u1", PURPOSE, "t1")
    wrapped = await store.get("u1")
    second = await vault.seal("u1", "metaapi-token:acc-2", "t2")

    assert wrapped is not None
    assert await store.get("u1") == wrapped
    assert first.key_version == second.key_version == wrapped.key_version


async def test_seal_when_concurrent_first_use_then_all_secrets_share_the_stored_dek(
    ring_a: MasterKeyRing, store: InMemoryDataKeyStore
) -> None:
    vault = CredentialVault(ring_a, store)

    sealed = await asyncio.gather(*(vault.seal("u1", PURPOSE, _token(i)) for i in range(20)))

    opened = [await vault.open("u1", PURPOSE, s) for s in sealed]
    assert [o.reveal() for o in opened] == [_token(i) for i in range(20)]


async def test_seal_when_two_processes_race_then_loser_uses_the_winners_dek(
    ring_a: MasterKeyRing, store: InMemoryDataKeyStore
) -> None:
    # Two vaults over one store stand for two processes: put is insert-if-absent.
    one, two = CredentialVault(ring_a, store), CredentialVault(ring_a, store)

    a, b = await asyncio.gather(one.seal("u1", PURPOSE, "from-one"), two.seal("u1", PURPOSE, "b"))

    assert (await one.open("u1", PURPOSE, b)).reveal() == "b"
    assert (await two.open("u1", PURPOSE, a)).reveal() == "from-one"


async def test_open_when_sealed_for_another_purpose_then_unreadable(
    ring_a: MasterKeyRing, store: InMemoryDataKeyStore
) -> None:
    vault = CredentialVault(ring_a, store)
    sealed = await vault.seal("u1", PURPOSE, "t")

    with pytest.raises(SecretUnreadable, match="metaapi-token:acc-2"):
        await vault.open("u1", "metaapi-token:acc-2", sealed)


async def test_open_when_ciphertext_tampered_then_unreadable(
    ring_a: MasterKeyRing, store: InMemoryDataKeyStore
) -> None:
    vault = CredentialVault(ring_a, store)
    sealed = await vault.seal("u1", PURPOSE, "t")
    tampered = msgspec.structs.replace(sealed, ciphertext=sealed.ciphertext[:-1] + b"\x00")

    with pytest.raises(SecretUnreadable):
        await vault.open("u1", PURPOSE, tampered)


async def test_open_when_wrapped_key_row_copied_from_another_user_then_unreadable(
    ring_a: MasterKeyRing, store: InMemoryDataKeyStore
) -> None:
    vault = CredentialVault(ring_a, store)
    sealed = await vault.seal("u1", PURPOSE, "t")
    stolen = await store.get("u1")
    assert stolen is not None
    await store.put("u2", stolen)

    with pytest.raises(SecretUnreadable, match="'u2'"):
        await vault.open("u2", PURPOSE, sealed)


async def test_shred_then_old_ciphertext_is_shredded_for_good(
    ring_a: MasterKeyRing, store: InMemoryDataKeyStore
) -> None:
    vault = CredentialVault(ring_a, store)
    sealed = await vault.seal("u1", PURPOSE, _token(1))
    event_log_copy = msgspec.json.decode(msgspec.json.encode(sealed), type=SealedSecret)

    assert await vault.shred("u1") is True

    with pytest.raises(SecretShredded, match="'u1'"):
        await vault.open("u1", PURPOSE, event_log_copy)
    assert await store.get("u1") is None


async def test_shred_then_relink_then_old_secret_still_shredded_and_new_one_opens(
    ring_a: MasterKeyRing, store: InMemoryDataKeyStore
) -> None:
    clock = itertools.count(1_000)
    vault = CredentialVault(ring_a, store, clock=lambda: next(clock))
    old = await vault.seal("u1", PURPOSE, "old-token")
    await vault.shred("u1")

    new = await vault.seal("u1", PURPOSE, "new-token")

    assert new.key_version > old.key_version
    with pytest.raises(SecretShredded, match="shredded"):
        await vault.open("u1", PURPOSE, old)
    assert (await vault.open("u1", PURPOSE, new)).reveal() == "new-token"


async def test_open_when_sealed_version_newer_than_users_key_then_unreadable_not_shredded(
    ring_a: MasterKeyRing, store: InMemoryDataKeyStore
) -> None:
    vault = CredentialVault(ring_a, store)
    sealed = await vault.seal("u1", PURPOSE, "t")
    forged = msgspec.structs.replace(sealed, key_version=sealed.key_version + 1)

    with pytest.raises(SecretUnreadable):
        await vault.open("u1", PURPOSE, forged)


async def test_rotate_with_data_present_then_everything_opens_under_new_key_only(
    store: InMemoryDataKeyStore,
) -> None:
    entry_a, entry_b = key_entry("a"), key_entry("b")
    vault_a = CredentialVault(MasterKeyRing.parse(entry_a), store)
    sealed = {
        (user, n): await vault_a.seal(user, f"metaapi-token:{n}", _token(n))
        for user in ("u1", "u2", "u3")
        for n in range(3)
    }

    vault_ba = CredentialVault(MasterKeyRing.parse(f"{entry_b},{entry_a}"), store)
    report = await vault_ba.rotate()

    assert report.active_kid == "b"
    assert report.rewrapped == {"a": 3}
    assert report.already_current == 0
    assert report.ok
    assert {wrapped.kid async for _, wrapped in store.all()} == {"b"}
    for (user, n), secret in sealed.items():
        assert (await vault_ba.open(user, f"metaapi-token:{n}", secret)).reveal() == _token(n)

    vault_b = CredentialVault(MasterKeyRing.parse(entry_b), store)
    for (user, n), secret in sealed.items():
        assert (await vault_b.open(user, f"metaapi-token:{n}", secret)).reveal() == _token(n)


async def test_rotate_twice_then_second_run_changes_nothing(store: InMemoryDataKeyStore) -> None:
    entry_a, entry_b = key_entry("a"), key_entry("b")
    await CredentialVault(MasterKeyRing.parse(entry_a), store).seal("u1", PURPOSE, "t")
    await CredentialVault(MasterKeyRing.parse(entry_b), store).seal("u2", PURPOSE, "t")
    vault = CredentialVault(MasterKeyRing.parse(f"{entry_b},{entry_a}"), store)

    first = await vault.rotate()
    before = {user: wrapped async for user, wrapped in store.all()}
    second = await vault.rotate()
    after = {user: wrapped async for user, wrapped in store.all()}

    assert (first.rewrapped, first.already_current) == ({"a": 1}, 1)
    assert (second.rewrapped, second.already_current) == ({}, 2)
    assert before == after


async def test_rotate_keeps_key_version_so_sealed_secrets_still_match(
    store: InMemoryDataKeyStore,
) -> None:
    entry_a, entry_b = key_entry("a"), key_entry("b")
    sealed = await CredentialVault(MasterKeyRing.parse(entry_a), store).seal("u1", PURPOSE, "t")

    await CredentialVault(MasterKeyRing.parse(f"{entry_b},{entry_a}"), store).rotate()

    wrapped = await store.get("u1")
    assert wrapped is not None
    assert (wrapped.kid, wrapped.key_version) == ("b", sealed.key_version)


async def test_rotate_when_master_key_missing_from_ring_then_reports_user_and_continues(
    store: InMemoryDataKeyStore,
) -> None:
    entry_a, entry_b, entry_c = key_entry("a"), key_entry("b"), key_entry("c")
    await CredentialVault(MasterKeyRing.parse(entry_a), store).seal("lost", PURPOSE, "t")
    await CredentialVault(MasterKeyRing.parse(entry_c), store).seal("fine", PURPOSE, "t")

    report = await CredentialVault(MasterKeyRing.parse(f"{entry_b},{entry_c}"), store).rotate()

    assert report.failed == ("lost",)
    assert report.rewrapped == {"c": 1}
    assert not report.ok


async def test_open_when_master_key_dropped_before_rotation_then_unreadable_names_kid(
    store: InMemoryDataKeyStore,
) -> None:
    sealed = await CredentialVault(MasterKeyRing.parse(key_entry("a")), store).seal(
        "u1", PURPOSE, "t"
    )

    with pytest.raises(SecretUnreadable, match="'a' is not in the ring"):
        await CredentialVault(MasterKeyRing.parse(key_entry("b")), store).open(
            "u1", PURPOSE, sealed
        )


async def test_rotate_when_key_shredded_mid_rotation_then_not_resurrected(
    entry_a: str, ring_a: MasterKeyRing
) -> None:
    class ShredDuringIteration(InMemoryDataKeyStore):
        async def replace(self, user_id: str, old: WrappedKey, new: WrappedKey) -> bool:
            await self.destroy(user_id)
            return await super().replace(user_id, old, new)

    store = ShredDuringIteration()
    await CredentialVault(ring_a, store).seal("u1", PURPOSE, "t")
    rotating = CredentialVault(MasterKeyRing.parse(f"{key_entry('b')},{entry_a}"), store)

    report = await rotating.rotate()

    assert report.changed_concurrently == 1
    assert await store.get("u1") is None
