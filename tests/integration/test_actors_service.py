"""The actor host and its control plane on real NATS and Postgres, the host a real process."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import nats
import psycopg
import pytest

from contracts.channels import ChannelDirectory, ChannelInfo, save_directory
from contracts.partitions import partition_of
from contracts.subjects import inbox_prefix
from contracts.users import USER_EVENTS, AccountLinked, user_stream
from eventstore import EventRegistry, EventStore
from eventstore.migrate import migrate
from services.actors.core import decode_state, evolve, initial_state
from services.runtime.credentials import CredentialVault, MasterKeyRing
from services.runtime.credentials.envelope import SealedSecret
from services.runtime.credentials.keystore_pg import PgDataKeyStore
from services.runtime.credentials.vault import SecretShredded
from tests.support.control import ctl, raw_request, wait_serving
from tests.support.processes import REPO, start_service, stop

pytestmark = pytest.mark.integration

REGISTRY = EventRegistry(*USER_EVENTS)
TOKEN = "tok-SECRET-" + "q" * 40


def master_key(kid: str) -> str:
    return f"{kid}:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


KEY_A = master_key("ka")
KEY_B = master_key("kb")


class Actors:
    def __init__(self, nats_server, database_url: str, home: Path) -> None:
        self.nats_server = nats_server
        self.database_url = database_url
        self.home = home
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *, owned: str = "all", keys: str = KEY_A) -> subprocess.Popen[bytes]:
        proc = start_service(
            "actors",
            nats_url=self.nats_server.url_for("actors"),
            database_url=self.database_url,
            home=self.home,
            extra_env={
                "SIGRELAY_OWNED_PARTITIONS": owned,
                "SIGRELAY_MASTER_KEYS": keys,
                "SIGRELAY_SNAPSHOT_EVERY": "3",
            },
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            stop(proc)


@pytest.fixture
async def actors(isolated_nats, database_url: str, tmp_path: Path):
    await migrate(database_url)
    home = tmp_path / "home"
    save_directory(
        home,
        ChannelDirectory(
            channels={"gold": ChannelInfo(default_symbol="XAUUSD"), "fx": ChannelInfo()}
        ),
    )
    harness = Actors(isolated_nats, database_url, home)
    nc = await nats.connect(isolated_nats.url_for("ctl"), inbox_prefix=inbox_prefix("ctl"))
    try:
        yield harness, nc
    finally:
        harness.stop_all()
        await nc.close()


async def setup_user(nc, user: str, n: int) -> None:
    assert (await ctl(nc, "register", user, display_name=f"User {n}"))["ok"]
    assert (await ctl(nc, "link_account", user, account_id="paper"))["ok"]
    assert (await ctl(nc, "subscribe", user, channel="gold"))["ok"]
    if n % 2:
        assert (await ctl(nc, "subscribe", user, channel="fx", overrides={"max_signal_age_s": 30}))[
            "ok"
        ]
    assert (await ctl(nc, "settings", user, lot=0.01 * (1 + n % 5), suffix=".m"))["ok"]
    if n % 3 == 0:
        assert (await ctl(nc, "pause", user, reason="holiday"))["ok"]
    if n % 7 == 0:
        assert (await ctl(nc, "stop", user))["ok"]


async def test_host_killed_then_every_status_equal_and_snapshot_plus_tail_equals_full_fold(
    actors,
):
    harness, nc = actors
    proc = harness.start()
    users = [f"u{n}" for n in range(30)]
    await wait_serving(nc, users[0])
    for n, user in enumerate(users):
        await setup_user(nc, user, n)
    before = {u: (await ctl(nc, "status", u))["data"] for u in users}
    settings_before = {u: (await ctl(nc, "settings", u))["data"] for u in users}
    await asyncio.sleep(1.5)  # let the background snapshot flush run once

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    harness.start()
    await wait_serving(nc, users[0])

    after = {u: (await ctl(nc, "status", u))["data"] for u in users}
    assert after == before
    assert {u: (await ctl(nc, "settings", u))["data"] for u in users} == settings_before
    store = await EventStore.connect(harness.database_url, min_size=1, max_size=2)
    try:
        snapshots = await store.load_snapshots([user_stream(u) for u in users])
        assert snapshots, "no snapshot was written"
        for user in users:
            events = [REGISTRY.decode(e) for e in await store.read_stream(user_stream(user))]
            full = initial_state(user)
            for event in events:
                full = evolve(full, event)
            snap = snapshots.get(user_stream(user))
            partial = decode_state(snap.data) if snap else initial_state(user)
            for event in events[partial.version :]:
                partial = evolve(partial, event)
            assert partial == full
    finally:
        await store.close()


async def test_two_hosts_with_disjoint_partitions_then_each_user_reaches_its_owner(actors):
    harness, nc = actors
    low = harness.start(owned="0-7")
    harness.start(owned="8-15")
    users = [f"p{n}" for n in range(40)]
    assert {partition_of(u) < 8 for u in users} == {True, False}
    for user in users:
        await wait_serving(nc, user)
        assert (await ctl(nc, "register", user))["ok"]

    stop(low)  # now only the owner of partitions 8-15 is left

    for user in users:
        reply = await ctl(nc, "status", user)
        if partition_of(user) < 8:
            assert not reply["ok"] and reply["error"]["code"] == "unavailable"
        else:
            assert reply["ok"] and reply["data"]["registered"]


async def test_request_for_one_user_cannot_read_or_change_another(actors):
    harness, nc = actors
    harness.start()
    alice = "alice"
    bob = next(f"bob{n}" for n in range(100) if partition_of(f"bob{n}") != partition_of(alice))
    await wait_serving(nc, alice)
    await ctl(nc, "register", alice)
    await ctl(nc, "register", bob)

    sneaky = await ctl(nc, "pause", alice, user_id=bob)
    direct = await raw_request(nc, f"ctl.p.{partition_of(alice)}.pause.{bob}", b"{}")

    assert sneaky["error"]["code"] == "unknown_field" and sneaky["error"]["field"] == "user_id"
    assert direct["error"]["code"] == "invalid_value" and direct["error"]["field"] == "user"
    assert (await ctl(nc, "status", bob))["data"]["status"] == "active"
    assert (await ctl(nc, "status", alice))["data"]["status"] == "active"


async def test_bad_control_input_then_each_gets_its_own_code(actors):
    harness, nc = actors
    harness.start()
    await wait_serving(nc, "carol")
    await ctl(nc, "register", "carol")

    codes = {
        "unknown verb": (await raw_request(nc, "ctl.user.teleport.carol", b"{}"))["error"],
        "unknown field": (await ctl(nc, "subscribe", "carol", channel="gold", colour="red"))[
            "error"
        ],
        "negative lot": (await ctl(nc, "settings", "carol", lot=-0.5))["error"],
        "max lot below min": (await ctl(nc, "settings", "carol", max_lot=0.001))["error"],
        "unknown channel": (await ctl(nc, "subscribe", "carol", channel="nowhere"))["error"],
        "malformed json": (await raw_request(nc, "ctl.user.subscribe.carol", b"{channel:"))[
            "error"
        ],
    }

    assert codes["unknown verb"]["code"] == "unknown_verb"
    assert codes["unknown field"]["code"] == "unknown_field"
    assert codes["unknown field"]["field"] == "colour"
    assert codes["negative lot"]["code"] == "invalid_value"
    assert codes["negative lot"]["field"] == "lot.fixed_lot"
    assert codes["max lot below min"]["code"] == "lot_below_minimum"
    assert codes["unknown channel"]["code"] == "unknown_channel"
    assert codes["unknown channel"]["field"] == "channel"
    assert codes["malformed json"]["code"] == "malformed_json"
    assert len({c["code"] for c in codes.values()}) == len(codes)


async def test_token_never_in_event_log_log_lines_replies_or_bus(actors, isolated_nats):
    harness, nc = actors
    harness.start()
    await wait_serving(nc, "dave")
    await ctl(nc, "register", "dave")

    linked = await ctl(nc, "link_account", "dave", account_id="acc-123", token=TOKEN)
    status = await ctl(nc, "status", "dave")

    assert linked["ok"] and TOKEN not in msgspec.json.encode(linked).decode()
    assert status["data"]["account"]["has_token"] is True
    assert TOKEN not in msgspec.json.encode(status).decode()
    with psycopg.connect(harness.database_url) as conn:
        (hits,) = conn.execute(
            "SELECT count(*) FROM events WHERE data::text LIKE %s OR metadata::text LIKE %s",
            (f"%{TOKEN[:20]}%", f"%{TOKEN[:20]}%"),
        ).fetchone()
        (outbox_hits,) = conn.execute(
            "SELECT count(*) FROM outbox WHERE position(%s in convert_from(payload, 'UTF8')) > 0",
            (TOKEN[:20],),
        ).fetchone()
    assert hits == 0 and outbox_hits == 0
    assert TOKEN[:20] not in (harness.home / "actors.log").read_text()
    admin = await nats.connect(isolated_nats.admin_url)
    try:
        js = admin.jetstream()
        for stream in ("EVENTS", "AUDIT"):
            sub = await js.subscribe(">", stream=stream, ordered_consumer=True)
            try:
                while True:
                    msg = await sub.next_msg(timeout=1.0)
                    assert TOKEN[:20].encode() not in msg.data
            except nats.errors.TimeoutError:
                pass
            finally:
                await sub.unsubscribe()
    finally:
        await admin.close()


async def test_key_rotation_with_data_present_then_shredding_makes_ciphertext_unreadable(
    actors,
):
    harness, nc = actors
    harness.start(keys=KEY_A)
    await wait_serving(nc, "erin")
    await ctl(nc, "register", "erin")
    assert (await ctl(nc, "link_account", "erin", account_id="acc-erin", token=TOKEN))["ok"]

    env = dict(os.environ, DATABASE_URL=harness.database_url, SIGRELAY_HOME=str(harness.home))
    env["SIGRELAY_MASTER_KEYS"] = f"{KEY_B},{KEY_A}"
    rotated = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.runtime.cli", "keys", "rotate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr.decode()[-2000:]
    report = msgspec.json.decode(rotated.stdout.splitlines()[-1])
    assert report["active_kid"] == "kb" and report["rewrapped"] == {"ka": 1}

    store = await EventStore.connect(harness.database_url, min_size=1, max_size=2)
    try:
        events = [REGISTRY.decode(e) for e in await store.read_stream(user_stream("erin"))]
        (linked,) = [e for e in events if isinstance(e, AccountLinked)]
        sealed = SealedSecret(
            key_version=linked.token.key_version,
            nonce=linked.token.nonce,
            ciphertext=linked.token.ciphertext,
        )
        only_b = CredentialVault(MasterKeyRing.parse(KEY_B), PgDataKeyStore(store))
        assert (await only_b.open("erin", "metaapi-token:acc-erin", sealed)).reveal() == TOKEN

        assert (await ctl(nc, "delete", "erin", confirm=True))["ok"]

        with pytest.raises(SecretShredded):
            await only_b.open("erin", "metaapi-token:acc-erin", sealed)
    finally:
        await store.close()


async def test_system_health_and_stats_then_every_running_service_answers(actors):
    harness, nc = actors
    harness.start()
    await wait_serving(nc, "frank")
    await ctl(nc, "register", "frank")

    health = await ctl(nc, "health")
    stats = await ctl(nc, "stats")

    assert health["ok"] and "actors" in health["data"]["services"]
    actors_stats = stats["data"]["services"]["actors"]
    assert actors_stats["users"] >= 1 and actors_stats["commands"] >= 1
    assert actors_stats["partitions_owned"] == 16


async def test_third_host_started_later_takes_its_partitions_over(actors):
    harness, nc = actors
    first = harness.start(owned="0-7")
    harness.start(owned="8-15")
    users = [f"s{n}" for n in range(48)]
    moved = {u for u in users if 4 <= partition_of(u) <= 7}
    assert moved and moved != set(users)
    for user in users:
        await wait_serving(nc, user)
        assert (await ctl(nc, "register", user))["ok"]

    harness.start(owned="4-7")
    await asyncio.sleep(3.0)  # the first host notices at its next lease renewal
    stop(first)

    for user in users:
        reply = await ctl(nc, "status", user)
        if partition_of(user) < 4:
            assert not reply["ok"] and reply["error"]["code"] == "unavailable"
        else:
            assert reply["ok"] and reply["data"]["registered"], (user, reply)
            assert (await ctl(nc, "pause", user))["ok"]


async def test_replay_until_a_time_then_state_as_the_status_was_then(actors):
    from services.actors.replay import replay_user

    harness, nc = actors
    harness.start()
    await wait_serving(nc, "gina")
    await ctl(nc, "register", "gina")
    await ctl(nc, "link_account", "gina", account_id="paper")
    await ctl(nc, "subscribe", "gina", channel="gold")
    then = (await ctl(nc, "status", "gina"))["data"]
    await asyncio.sleep(0.05)
    moment_us = time.time_ns() // 1000
    await asyncio.sleep(0.05)
    await ctl(nc, "pause", "gina", reason="later")
    await ctl(nc, "settings", "gina", lot=0.05)
    await ctl(nc, "subscribe", "gina", channel="fx")

    store = await EventStore.connect(harness.database_url, min_size=1, max_size=2)
    try:
        past = await replay_user(store, "gina", moment_us)
        present = await replay_user(store, "gina")
    finally:
        await store.close()

    assert past["status"] == then
    assert present["status"] == (await ctl(nc, "status", "gina"))["data"]
    assert present["status"]["status"] == "paused" and past["status"]["status"] == "active"


# --- account claims: one broker account, one user ----------------------------------------


def claims_of(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT account_id, user_id FROM account_claims").fetchall()
    return {account: user for account, user in rows}


async def registered(nc, *users: str) -> None:
    await wait_serving(nc, users[0])
    for user in users:
        assert (await ctl(nc, "register", user))["ok"]


@pytest.mark.parametrize(
    ("link", "failing"),
    [
        # linking the same paper account again is refused once the claim was taken
        (
            {"account_id": "shared-1", "broker": "paper"},
            {"account_id": "shared-1", "broker": "paper"},
        ),
        # a MetaApi relink without its token
        ({"account_id": "acc-shared", "token": TOKEN}, {"account_id": "acc-shared"}),
    ],
)
async def test_failed_relink_by_the_holder_then_claim_kept_and_another_user_account_taken(
    actors, link, failing
):
    harness, nc = actors
    harness.start()
    await registered(nc, "alice", "bob")
    assert (await ctl(nc, "link_account", "alice", **link))["ok"]

    refused = await ctl(nc, "link_account", "alice", **failing)
    stolen = await ctl(nc, "link_account", "bob", **link)

    assert not refused["ok"]
    assert stolen["error"]["code"] == "account_taken" and stolen["error"]["field"] == "account_id"
    assert claims_of(harness.database_url)[link["account_id"]] == "alice"
    assert (await ctl(nc, "status", "alice"))["data"]["account"]["account_id"] == link["account_id"]
    assert (await ctl(nc, "status", "bob"))["data"]["account"] is None


async def test_paper_account_of_another_user_then_refused_whatever_the_broker(actors):
    harness, nc = actors
    harness.start()
    await registered(nc, "alice", "bob")
    assert (await ctl(nc, "link_account", "alice", account_id="paper"))["ok"]
    assert not (await ctl(nc, "link_account", "alice", account_id="paper"))["ok"]

    attempts = [
        await ctl(nc, "link_account", "bob", account_id="paper-alice"),
        await ctl(nc, "link_account", "bob", account_id="paper-alice", broker="paper"),
        await ctl(
            nc, "link_account", "bob", account_id="paper-alice", broker="metaapi", token=TOKEN
        ),
        await ctl(nc, "link_account", "bob", account_id="paper-carol", broker="paper"),
    ]

    for reply in attempts:
        assert reply["error"]["code"] == "invalid_value", reply
        assert reply["error"]["field"] == "account_id" and "reserved" in reply["error"]["message"]
    assert claims_of(harness.database_url) == {"paper-alice": "alice"}
    assert (await ctl(nc, "status", "bob"))["data"]["account"] is None


async def test_relink_to_another_account_then_old_claim_held_until_the_new_link_succeeds(actors):
    harness, nc = actors
    harness.start()
    await registered(nc, "alice", "carol")
    assert (await ctl(nc, "link_account", "alice", account_id="acc-1", token=TOKEN))["ok"]

    direct = await ctl(nc, "link_account", "alice", account_id="acc-2", token=TOKEN)
    claims_after_refusal = claims_of(harness.database_url)
    carol_on_old = await ctl(nc, "link_account", "carol", account_id="acc-1", token=TOKEN)
    assert (await ctl(nc, "unlink_account", "alice"))["ok"]
    assert (await ctl(nc, "link_account", "alice", account_id="acc-2", token=TOKEN))["ok"]

    assert direct["error"]["code"] == "invalid_state"
    assert claims_after_refusal == {"acc-1": "alice"}  # the fresh claim on acc-2 went back
    assert carol_on_old["error"]["code"] == "account_taken"
    assert (await ctl(nc, "link_account", "carol", account_id="acc-1", token=TOKEN))["ok"]
    assert claims_of(harness.database_url) == {"acc-1": "carol", "acc-2": "alice"}


async def test_unlink_by_a_restarted_host_then_the_account_is_free_for_another_user(actors):
    harness, nc = actors
    proc = harness.start()
    await registered(nc, "alice", "bob")
    assert (await ctl(nc, "link_account", "alice", account_id="acc-u", token=TOKEN))["ok"]
    stop(proc)
    harness.start()
    await wait_serving(nc, "bob")  # not alice: her actor is first activated by the unlink

    unlinked = await ctl(nc, "unlink_account", "alice")
    taken = await ctl(nc, "link_account", "bob", account_id="acc-u", token=TOKEN)

    assert unlinked["ok"] and unlinked["data"]["account"] is None
    assert taken["ok"], taken
    assert claims_of(harness.database_url) == {"acc-u": "bob"}


async def test_delete_then_data_key_destroyed_and_every_claim_released(actors):
    harness, nc = actors
    harness.start()
    await registered(nc, "alice", "bob")
    assert (await ctl(nc, "link_account", "alice", account_id="acc-d", token=TOKEN))["ok"]
    with psycopg.connect(harness.database_url) as conn:
        keys_before = conn.execute("SELECT user_id FROM user_keys").fetchall()

    deleted = await ctl(nc, "delete", "alice", confirm=True)
    taken = await ctl(nc, "link_account", "bob", account_id="acc-d", token=TOKEN)

    assert deleted["ok"] and keys_before == [("alice",)]
    with psycopg.connect(harness.database_url) as conn:
        assert conn.execute("SELECT user_id FROM user_keys").fetchall() == [("bob",)]
    assert taken["ok"], taken
    assert claims_of(harness.database_url) == {"acc-d": "bob"}


# --- a refused write fails its own request only ------------------------------------------


async def test_register_storm_with_one_unstorable_name_then_only_it_fails_without_db_text(actors):
    harness, nc = actors
    harness.start()
    users = [f"storm{n}" for n in range(100)]
    await wait_serving(nc, users[0])
    names = {u: f"User {n}" for n, u in enumerate(users)}
    names["storm50"] = "Eve\x00"  # decodes fine; Postgres jsonb cannot store it

    replies = await asyncio.gather(*(ctl(nc, "register", u, display_name=names[u]) for u in users))

    by_user = dict(zip(users, replies, strict=True))
    poisoned = by_user.pop("storm50")
    assert all(r["ok"] for r in by_user.values()), [r for r in by_user.values() if not r["ok"]]
    error = poisoned["error"]
    assert not poisoned["ok"]
    # the control plane may refuse the NUL itself (invalid_value); if it gets as far as
    # Postgres, the answer is `internal` with a reference and nothing of Postgres's text
    if error["code"] == "internal":
        reference = error["message"].removeprefix("register failed: internal error, reference ")
        assert reference != error["message"] and " " not in reference, error
        assert f"reference {reference}" in (harness.home / "actors.log").read_text()
    else:
        assert (error["code"], error["field"]) == ("invalid_value", "display_name"), error
    for text in ("Unicode", "u0000", "SQLSTATE", "DataError", "jsonb", "COPY"):
        assert text not in error["message"], error
    assert (await ctl(nc, "status", "storm50"))["error"]["code"] == "unknown_user"


async def test_hostile_control_bodies_then_precise_errors_and_every_one_audited(
    actors, isolated_nats
):
    harness, nc = actors
    harness.start()
    await wait_serving(nc, "erin")
    admin = await nats.connect(isolated_nats.admin_url)
    audit = await admin.subscribe("audit.control.erin")
    try:
        await admin.flush()
        huge = b'{"display_name": "' + b"a b " * (nc.max_payload // 4 - 16) + b'"}'

        nul = await raw_request(nc, "ctl.user.register.erin", b'{"display_name": "A\\u0000"}')
        deep = await raw_request(nc, "ctl.user.register.erin", b"[" * 3000 + b"]" * 3000)
        big = await raw_request(nc, "ctl.user.register.erin", huge)
        records = [msgspec.json.decode((await audit.next_msg(timeout=10)).data) for _ in range(3)]
    finally:
        await admin.close()

    assert nul["error"]["code"] == "invalid_value" and nul["error"]["field"] == "display_name"
    assert deep["error"]["code"] == "malformed_json"
    assert big["error"]["code"] == "request_too_large"
    assert [r["reply"]["error"]["code"] for r in records[:2]] == ["invalid_value", "malformed_json"]
    assert records[2]["truncated"]["request_bytes"] == len(huge)
    assert "request_too_large" in records[2]["reply"]
