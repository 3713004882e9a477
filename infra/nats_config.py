"""The nats-server configuration Sigrelay needs, generated from Python.

One account, `SIGRELAY`, with JetStream on file storage, the control-plane subject
mapping that routes `ctl.user.<verb>.<user>` to the partition owning the user, and one
user per service with least-privilege permissions built from `PERMISSIONS` below.

nats-server 2.15 checks publish permissions on the subject AFTER applying the account's
mappings (a denied `ctl.user.status.u1` is reported as `ctl.p.<p>.status.u1`). So the `ctl`
user must be allowed `ctl.p.>`, and can therefore also address a partition directly: an
actor host must check that a request's user belongs to the partition it arrived on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from contracts.subjects import (
    AUDIT,
    BROKER_EVENTS,
    BROKER_PAPER,
    CTL_PARTITION,
    CTL_SERVICE,
    CTL_SYSTEM,
    CTL_USER,
    DEAD_LETTER,
    EVENTS,
    INTENT,
    PARSED,
    PRICES,
    RAW,
    REPORT,
    STREAMS,
    VERDICT,
)

ACCOUNT = "SIGRELAY"
ADMIN = "admin"

# JetStream resource ceilings for one dev box; a real deployment sets its own.
MAX_MEMORY_STORE = 256 * 1024 * 1024
MAX_FILE_STORE = 8 * 1024 * 1024 * 1024
MAX_PAYLOAD = 1024 * 1024

# Control requests `ctl.user.<verb>.<user>` are mapped by the server (see ctl_mapping).
CTL_MAPPING_SOURCE = f"{CTL_USER}.*.*"


class Role(TypedDict):
    """What one service user may do, before the JetStream plumbing is added."""

    publish: list[str]  # subjects it may publish (core or into a stream)
    subscribe: list[str]  # core subjects it may subscribe to
    consume: list[str]  # JetStream streams it may read through consumers (and ack)
    serves: bool  # answers requests: ctl.sys.>, ctl.svc.<user>.>, $SRV.>, allow_responses


# The permission table. `admin` is not listed: it may do everything (tests, CLI set-up).
PERMISSIONS: dict[str, Role] = {
    "ingest": {
        "publish": [f"{RAW}.>", f"{PARSED}.>", f"{DEAD_LETTER}.ingest"],
        "subscribe": [],
        "consume": ["SIGNALS"],
        "serves": True,
    },
    "actors": {
        "publish": [f"{INTENT}.>", f"{EVENTS}.>", f"{AUDIT}.>", f"{DEAD_LETTER}.actors"],
        "subscribe": [
            f"{CTL_PARTITION}.>",
            f"{PARSED}.>",
            f"{VERDICT}.>",
            f"{REPORT}.>",
            f"{EVENTS}.>",
            f"{PRICES}.>",
        ],
        "consume": ["SIGNALS", "ORDERS", "EVENTS"],
        "serves": True,
    },
    "risk": {
        "publish": [f"{VERDICT}.>", f"{EVENTS}.risk.>", f"{DEAD_LETTER}.risk"],
        "subscribe": [f"{INTENT}.>", f"{REPORT}.>", f"{EVENTS}.>", f"{PRICES}.>"],
        "consume": ["ORDERS", "EVENTS"],
        "serves": True,
    },
    "execution": {
        "publish": [
            f"{REPORT}.>",
            f"{BROKER_PAPER}.>",  # requests to the paper exchange
            f"{EVENTS}.account.>",
            f"{DEAD_LETTER}.execution",
        ],
        "subscribe": [f"{VERDICT}.>", f"{EVENTS}.>", f"{BROKER_EVENTS}.>"],
        "consume": ["ORDERS", "EVENTS"],
        "serves": True,
    },
    "paper": {
        # the simulated broker: answers broker.paper.<account>.<op>, publishes quotes
        "publish": [f"{PRICES}.>", f"{BROKER_EVENTS}.paper", f"{DEAD_LETTER}.paper"],
        "subscribe": [f"{BROKER_PAPER}.>"],
        "consume": [],
        "serves": True,
    },
    "audit": {
        "publish": [f"{DEAD_LETTER}.audit"],
        "subscribe": [
            f"{RAW}.>",
            f"{PARSED}.>",
            "orders.>",
            f"{EVENTS}.>",
            f"{AUDIT}.>",
            f"{DEAD_LETTER}.>",
            "ctl.>",
        ],
        "consume": [spec.name for spec in STREAMS],
        "serves": True,
    },
    "ctl": {
        # ctl.p.> because permissions apply to the mapped subject (see the module docstring)
        "publish": [
            f"{CTL_USER}.>",
            f"{CTL_PARTITION}.>",
            f"{CTL_SYSTEM}.>",
            f"{CTL_SERVICE}.>",
            "$SRV.>",
        ],
        "subscribe": [],
        "consume": [],
        "serves": False,
    },
}

USERS: tuple[str, ...] = (*PERMISSIONS, ADMIN)


def jetstream_subjects(consume: Iterable[str], *, create_streams: bool = True) -> list[str]:
    """JetStream API subjects a user needs to publish: ensure the streams, read `consume`.

    Every service may look at and create the known streams (whoever starts first creates
    them) but only admin may update, purge or delete them. Consumer, message-get, ack and
    flow-control subjects are scoped to the streams the user reads.
    """
    names = [spec.name for spec in STREAMS]
    subjects = ["$JS.API.INFO", "$JS.API.STREAM.NAMES"]
    subjects += [f"$JS.API.STREAM.INFO.{name}" for name in names]
    if create_streams:
        subjects += [f"$JS.API.STREAM.CREATE.{name}" for name in names]
    for name in consume:
        if name not in names:
            raise ValueError(f"stream {name!r} in the permission table is not in contracts STREAMS")
        subjects += [
            f"$JS.API.CONSUMER.*.{name}",  # CREATE (ephemeral), NAMES, LIST
            f"$JS.API.CONSUMER.*.{name}.>",  # CREATE/INFO/DELETE/PAUSE <stream>.<consumer>
            f"$JS.API.CONSUMER.MSG.NEXT.{name}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{name}.>",
            f"$JS.API.STREAM.MSG.GET.{name}",
            f"$JS.API.DIRECT.GET.{name}",
            f"$JS.API.DIRECT.GET.{name}.>",
            f"$JS.ACK.{name}.>",
            f"$JS.FC.{name}.>",
        ]
    return subjects


def user_permissions(user: str) -> dict[str, Any] | None:
    """The nats-server `permissions` block for one user; None for admin (everything)."""
    if user == ADMIN:
        return None
    try:
        role = PERMISSIONS[user]
    except KeyError:
        raise ValueError(f"unknown NATS user {user!r}; known users: {', '.join(USERS)}") from None
    # control clients only look at streams; services create them if they are missing
    publish = [
        *role["publish"],
        *jetstream_subjects(role["consume"], create_streams=role["serves"]),
    ]
    subscribe = ["_INBOX.>", *role["subscribe"]]
    if role["serves"]:
        subscribe += [f"{CTL_SYSTEM}.>", f"{CTL_SERVICE}.{user}.>", "$SRV.>"]
    permissions: dict[str, Any] = {
        "publish": {"allow": publish},
        "subscribe": {"allow": subscribe},
    }
    if role["serves"]:
        permissions["allow_responses"] = True
    return permissions


def ctl_mapping(partitions: int) -> tuple[str, str]:
    """The (source, destination) subject mapping for `partitions` control partitions."""
    if partitions < 1:
        raise ValueError(f"partition count {partitions} must be at least 1")
    # partition(n, 2): FNV-1a of the second wildcard token (the user id) modulo n,
    # the same function as contracts.partitions.partition_of
    destination = (
        f"{CTL_PARTITION}.{{{{partition({partitions},2)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"
    )
    return CTL_MAPPING_SOURCE, destination


@dataclass(frozen=True)
class ClusterNode:
    """One node of a NATS cluster: its name, its route port, the others' route ports."""

    name: str
    route_port: int
    peer_route_ports: tuple[int, ...]
    cluster_name: str = "sigrelay"


def render_config(
    *,
    port: int,
    http_port: int,
    store_dir: Path | str,
    partitions: int,
    passwords: Mapping[str, str],
    cluster: ClusterNode | None = None,
) -> str:
    """The nats-server configuration file text for these ports, store and passwords.

    `passwords` must hold one password per name in `USERS`. With `cluster`, the
    server joins a JetStream cluster: its own name, a route port, and routes to
    the other nodes (streams can then be replicated, see `ensure_streams`).
    """
    missing = [user for user in USERS if not passwords.get(user)]
    if missing:
        raise ValueError(f"no NATS password for user(s) {', '.join(missing)}")
    source, destination = ctl_mapping(partitions)
    users: list[dict[str, Any]] = []
    for user in USERS:
        entry: dict[str, Any] = {"user": user, "password": passwords[user]}
        permissions = user_permissions(user)
        if permissions is not None:
            entry["permissions"] = permissions
        users.append(entry)
    config: dict[str, Any] = {
        "server_name": cluster.name if cluster else "sigrelay",
        "host": "127.0.0.1",
        "port": port,
        "http": f"127.0.0.1:{http_port}",
        "max_payload": MAX_PAYLOAD,
        "jetstream": {
            "store_dir": str(store_dir),
            "max_memory_store": MAX_MEMORY_STORE,
            "max_file_store": MAX_FILE_STORE,
        },
        "accounts": {
            ACCOUNT: {
                "jetstream": "enabled",
                "mappings": {source: destination},
                "users": users,
            }
        },
    }
    if cluster is not None:
        config["cluster"] = {
            "name": cluster.cluster_name,
            "listen": f"127.0.0.1:{cluster.route_port}",
            "routes": [f"nats-route://127.0.0.1:{p}" for p in cluster.peer_route_ports],
        }
    header = (
        "# Generated by infra/nats_config.py at every start: edit the Python, not this file.\n"
        f"# {partitions} control partitions; passwords are kept in passwords.json (0600).\n"
    )
    return header + "".join(f"{_key(k)}: {_value(v, 0)}\n" for k, v in config.items())


def _key(key: str) -> str:
    # bare keys only when they are plain words; subjects and `$` names are quoted
    return key if key.replace("_", "").isalnum() else json.dumps(key)


def _value(value: Any, depth: int) -> str:
    pad = "  " * (depth + 1)
    end = "  " * depth
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        body = "".join(f"{pad}{_key(k)}: {_value(v, depth + 1)}\n" for k, v in value.items())
        return "{\n" + body + end + "}"
    if isinstance(value, list | tuple):
        flat = "[" + ", ".join(json.dumps(item) for item in value) + "]"
        if all(isinstance(item, str) for item in value) and len(flat) <= 80:
            return flat
        body = "".join(f"{pad}{_value(item, depth + 1)}\n" for item in value)
        return "[\n" + body + end + "]"
    raise TypeError(f"cannot render {type(value).__name__} value {value!r} in a NATS config")
