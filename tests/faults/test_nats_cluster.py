"""A three-node NATS cluster on loopback with a replicated stream: one node is
killed mid-stream, and nothing acknowledged is lost or doubled."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import nats
import pytest
from nats.js.api import StorageType, StreamConfig

from infra.embedded import EmbeddedNats, free_port
from infra.nats_config import ClusterNode

pytestmark = pytest.mark.faults

TOTAL = 1500


@pytest.fixture
async def cluster(tmp_path: Path):
    routes = [free_port() for _ in range(3)]
    nodes = [EmbeddedNats() for _ in range(3)]
    homes = [tmp_path / f"n{i}" for i in range(3)]
    # one set of users for the whole cluster: every node must accept every client
    first = EmbeddedNats()
    first.start(homes[0])
    first.stop()
    for home in homes[1:]:
        (home / "nats").mkdir(parents=True)
        shutil.copy(homes[0] / "nats" / "passwords.json", home / "nats" / "passwords.json")
    specs = [
        ClusterNode(
            name=f"n{i}",
            route_port=routes[i],
            peer_route_ports=tuple(p for p in routes if p != routes[i]),
        )
        for i in range(3)
    ]
    try:
        await asyncio.gather(
            *(
                asyncio.to_thread(node.start, home, cluster=spec)
                for node, home, spec in zip(nodes, homes, specs, strict=True)
            )
        )
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def test_node_killed_mid_stream_then_every_acknowledged_message_kept_once(cluster):
    nodes = cluster
    servers = [f"nats://admin:{nodes[0].passwords['admin']}@127.0.0.1:{n.port}" for n in nodes]
    nc = await nats.connect(servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream(timeout=5)
    for _ in range(100):  # the cluster elects its meta leader first
        try:
            await js.add_stream(
                StreamConfig(
                    name="REPLICATED", subjects=["rep.>"], storage=StorageType.FILE, num_replicas=3
                )
            )
            break
        except Exception:
            await asyncio.sleep(0.2)
    info = await js.stream_info("REPLICATED")
    leader = info.cluster.leader if info.cluster else None
    victim = next((n for n in nodes if n.cluster and n.cluster.name == leader), nodes[1])

    acked: set[int] = set()
    try:
        for i in range(TOTAL):
            if i == TOTAL // 3:
                victim.kill()  # the stream's leader, mid-stream
            deadline = asyncio.get_running_loop().time() + 30
            while i not in acked and asyncio.get_running_loop().time() < deadline:
                try:
                    await js.publish(
                        f"rep.{i % 7}", str(i).encode(), headers={"Nats-Msg-Id": str(i)}, timeout=2
                    )
                    acked.add(i)
                except Exception:
                    await asyncio.sleep(0.1)  # a new leader is being elected; same id, no double
        assert acked == set(range(TOTAL))

        info = await js.stream_info("REPLICATED")
        assert info.state.messages == TOTAL
        sub = await js.subscribe("rep.>", stream="REPLICATED", ordered_consumer=True)
        seen = []
        for _ in range(TOTAL):
            seen.append(int((await sub.next_msg(timeout=5)).data))
        assert sorted(seen) == list(range(TOTAL))
    finally:
        await nc.close()
