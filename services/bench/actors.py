"""Actor host benchmark on the real servers: `sigrelay bench actors`.

- memory per idle actor and pure decisions/s (from services.bench.actors_memory);
- activating 10,000 actors from snapshots (bulk reads, as a restarted host does);
- one open signal fanned out to 10,000 subscribers in-process, decisions AND
  their group commits (events + intents in the outbox) included;
- control requests through NATS to a real `actors` process: 32 concurrent
  requesters asking `status` of random users; rate and p50/p99 latency.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import msgspec
import nats

from contracts.ingest import ParsedSignal
from contracts.orders import Quote
from contracts.signals import OpenSignal
from contracts.subjects import inbox_prefix
from contracts.users import AccountLinked, Subscribed, UserRegistered, user_stream
from eventstore import EventStore, request
from eventstore.group_commit import GroupCommitter
from services.actors.core import encode_state, fold, initial_state
from services.actors.host import ActorHost
from services.bench import actors_memory
from services.bench.servers import bench_infrastructure, fresh_database
from services.runtime.settings import RuntimeSettings

T0 = time.time_ns()


def _user_events(user: str) -> list[Any]:
    return [
        UserRegistered(id=f"{user}:1", ts=T0, user_id=user),
        AccountLinked(id=f"{user}:2", ts=T0, account_id=f"paper-{user}", broker="paper"),
        Subscribed(id=f"{user}:3", ts=T0, channel="gold"),
    ]


async def _seed(store: EventStore, users: list[str], *, snapshots: bool) -> None:
    for start in range(0, len(users), 1000):
        chunk = users[start : start + 1000]
        await store.append_batch([request(user_stream(u), 0, _user_events(u)) for u in chunk])
        if snapshots:
            items = []
            for user in chunk:
                state = fold(initial_state(user), _user_events(user))
                items.append(
                    (user_stream(user), state.version, "actor.user_state", encode_state(state))
                )
            await store.save_snapshots(items)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_bench(settings: RuntimeSettings) -> dict[str, Any]:
    result: dict[str, Any] = {"name": "actors"}
    memory = actors_memory.run()
    result.update({k: v for k, v in memory.items() if k != "name"})
    users = [f"user{i:05d}" for i in range(int(os.environ.get("BENCH_ACTOR_USERS", "10000")))]
    async with bench_infrastructure(settings) as infra, fresh_database(infra.database_url) as url:
        store = await EventStore.connect(url, min_size=2, max_size=8)
        committer = GroupCommitter(store)
        committer.start()
        try:
            await _seed(store, users, snapshots=True)
            host = ActorHost(store, committer, partitions=16, owned=range(16))
            await host.start()
            t0 = time.perf_counter()
            await host.activate(users)
            result["activate_10k_from_snapshots_s"] = round(time.perf_counter() - t0, 3)
            result.update(await _fanout(host, len(users)))
        finally:
            await committer.stop()
            await store.close()
        result.update(await _control(infra, url, users))
    return result


async def _fanout(host: ActorHost, n: int) -> dict[str, Any]:
    now = time.time_ns()
    host.quotes.update(
        Quote(
            id="q",
            ts=now,
            symbol="XAUUSD",
            bid=2000.0,
            ask=2000.3,
            pip_size=0.1,
            pip_value_per_lot=10.0,
        )
    )
    signal = ParsedSignal(
        id="parsed:gold:1:0",
        ts=now,
        signal_id="gold:1",
        channel="gold",
        message_id=1,
        posted_ns=now,
        result=OpenSignal(symbol="XAUUSD", side="buy", entry=2000.0, sl=1990.0, tps=(2010.0,)),
    )
    t0 = time.perf_counter()
    decided = await host.on_signal(signal, now)
    elapsed = time.perf_counter() - t0
    return {
        "fanout_users": n,
        "fanout_decided": decided,
        "fanout_with_commits_s": round(elapsed, 3),
        "fanout_decisions_with_commits_per_s": round(decided / elapsed),
        "fanout_intents": host.stats.intents,
    }


async def _control(infra: Any, url: str, users: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(
        SIGRELAY_HOME=str(infra.settings.home),
        NATS_URL=infra.nats_url_for("actors"),
        DATABASE_URL=url,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.runtime.cli",
        "service",
        "actors",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nc = await nats.connect(infra.nats_url_for("ctl"), inbox_prefix=inbox_prefix("ctl"))
    try:
        subject = f"ctl.user.status.{users[0]}"
        for _ in range(300):
            try:
                await nc.request(subject, b"{}", timeout=1)
                break
            except Exception:
                await asyncio.sleep(0.1)
        cold = await _status_load(nc, users)
        warm = await _status_load(nc, users)
    finally:
        await nc.close()
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
    return {f"control_cold_{k}": v for k, v in cold.items()} | {
        f"control_warm_{k}": v for k, v in warm.items()
    }


async def _status_load(nc: Any, users: list[str]) -> dict[str, Any]:
    """32 concurrent requesters asking `status` of users in a scattered order."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + float(os.environ.get("BENCH_CONTROL_SECONDS", "5"))

    async def requester(k: int) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < deadline:
            user = users[(i * 7919) % len(users)]
            i += 32
            t = time.perf_counter()
            reply = await nc.request(f"ctl.user.status.{user}", b"{}", timeout=5)
            latencies.append((time.perf_counter() - t) * 1000)
            if not msgspec.json.decode(reply.data).get("ok"):
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(requester(k) for k in range(32)))
    elapsed = time.perf_counter() - t0
    return {
        "requests": len(latencies),
        "errors": errors,
        "req_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(_pct(latencies, 0.99), 2),
    }
