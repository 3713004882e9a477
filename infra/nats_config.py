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
    inbox_prefix,
)

ACCOUNT = "SIGRELAY"
ADMIN = "admin"

# JetStream resource ceilings for one dev box; a real deployment sets its own.
MAX_MEMORY_STORE = 256 * 1024 * 1024
MAX_FILE_STORE = 8 * 1024 * 1024 * 1024
MAX_PAYLOAD = 1024 * 1024

# Control requests `ctl.user.<verb>.<user>` are mapped by the server (see ctl_mapping).
CTL_MAPPING_SOURCE = f"{CTL_USER}.*.*"


# A durable name that may be any name not owned by another user: the actor host's
# durables carry the partition set it owns (`actors-signals-0-3`), and a subject
# permission cannot match part of a token. Such a user may also make ephemeral and
# ordered consumers; the other users' durables on the stream are denied to it.
ANY_DURABLE = "*"


class Role(TypedDict):
    """What one service user may do, before the JetStream plumbing is added."""

    publish: list[str]  # subjects it may publish (core or into a stream)
    # core subjects it may subscribe to; never a stream's subjects: a JetStream publish
    # is a request, and whoever receives it could answer it (allow_responses) with a
    # forged acknowledgement
    subscribe: list[str]
    # stream -> the durable consumers it owns there (create, read, fetch, ack; never delete)
    consume: dict[str, tuple[str, ...]]
    serves: bool  # answers requests: ctl.sys.>, ctl.svc.<user>.>, $SRV.>, allow_responses


# One durable per subject filter of every stream, named as services/audit names them.
AUDIT_DURABLES: dict[str, tuple[str, ...]] = {
    spec.name: tuple(
        "audit_" + "_".join(t for t in subject.split(".") if t not in (">", "*"))
        for subject in spec.subjects
    )
    for spec in STREAMS
}

# The permission table. `admin` is not listed: it may do everything (tests, CLI set-up).
PERMISSIONS: dict[str, Role] = {
    "ingest": {
        "publish": [f"{RAW}.>", f"{PARSED}.>", f"{DEAD_LETTER}.ingest"],
        "subscribe": [],
        "consume": {"SIGNALS": ("ingest",)},
        "serves": True,
    },
    "actors": {
        "publish": [f"{INTENT}.>", f"{EVENTS}.>", f"{AUDIT}.>", f"{DEAD_LETTER}.actors"],
        "subscribe": [f"{CTL_PARTITION}.>", f"{PRICES}.>"],
        "consume": {"SIGNALS": (ANY_DURABLE,), "ORDERS": (ANY_DURABLE,)},
        "serves": True,
    },
    "risk": {
        "publish": [f"{VERDICT}.>", f"{EVENTS}.risk.>", f"{DEAD_LETTER}.risk"],
        "subscribe": [f"{PRICES}.>"],
        "consume": {"ORDERS": ("risk", "risk-reports"), "EVENTS": ("risk-users",)},
        "serves": True,
    },
    "execution": {
        "publish": [
            f"{REPORT}.>",
            f"{BROKER_PAPER}.>",  # requests to the paper exchange
            f"{EVENTS}.account.>",
            f"{DEAD_LETTER}.execution",
        ],
        "subscribe": [f"{BROKER_EVENTS}.>"],
        "consume": {"ORDERS": ("execution",)},
        "serves": True,
    },
    "paper": {
        # the simulated broker: answers broker.paper.<account>.<op>, publishes quotes
        "publish": [f"{PRICES}.>", f"{BROKER_EVENTS}.paper", f"{DEAD_LETTER}.paper"],
        "subscribe": [f"{BROKER_PAPER}.>"],
        "consume": {},
        "serves": True,
    },
    "audit": {
        # reads the streams through its own durables only: no core subscription, so it
        # never receives a control request (or a JetStream publish) it could answer
        "publish": [f"{DEAD_LETTER}.audit"],
        "subscribe": [],
        "consume": AUDIT_DURABLES,
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
        "consume": {},
        "serves": False,
    },
}

USERS: tuple[str, ...] = (*PERMISSIONS, ADMIN)


def jetstream_subjects(
    user: str, consume: Mapping[str, tuple[str, ...]], *, create_streams: bool = True
) -> tuple[list[str], list[str]]:
    """JetStream API subjects `user` may publish, and those denied to it.

    Every service may look at and create the known streams (whoever starts first creates
    them) but only admin may update, purge or delete them. A consumer is created, looked
    at, fetched from and acknowledged by name, so each user gets exactly its own durables;
    no service may delete a consumer. A user with `ANY_DURABLE` on a stream is denied
    every durable another user owns there.
    """
    names = [spec.name for spec in STREAMS]
    allow = ["$JS.API.INFO", "$JS.API.STREAM.NAMES"]
    allow += [f"$JS.API.STREAM.INFO.{name}" for name in names]
    deny: list[str] = []
    if create_streams:
        allow += [f"$JS.API.STREAM.CREATE.{name}" for name in names]
    for stream, durables in consume.items():
        if stream not in names:
            raise ValueError(
                f"stream {stream!r} in the permission table is not in contracts STREAMS"
            )
        allow += [
            f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>",
        ]
        if ANY_DURABLE in durables:
            allow += [
                f"$JS.API.CONSUMER.CREATE.{stream}",  # ephemeral (server-named)
                f"$JS.API.CONSUMER.*.{stream}.>",  # CREATE/INFO/DELETE <stream>.<consumer>
                f"$JS.API.CONSUMER.*.*.{stream}.*",  # DURABLE.CREATE, MSG.NEXT
                f"$JS.ACK.{stream}.>",
                f"$JS.FC.{stream}.>",
            ]
            for durable in _owned_by_others(user, stream):
                deny += _consumer_subjects(stream, durable)
            continue
        for durable in durables:
            allow += [
                f"$JS.API.CONSUMER.CREATE.{stream}.{durable}",
                f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>",  # with a filter subject
                f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
                f"$JS.API.CONSUMER.INFO.{stream}.{durable}",
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}",
                f"$JS.ACK.{stream}.{durable}.>",
            ]
    return allow, deny


def _owned_by_others(user: str, stream: str) -> list[str]:
    return sorted(
        durable
        for other, role in PERMISSIONS.items()
        if other != user
        for durable in role["consume"].get(stream, ())
        if durable != ANY_DURABLE
    )


def _consumer_subjects(stream: str, durable: str) -> list[str]:
    """Every consumer API, ack and flow-control subject naming `durable` on `stream`."""
    return [
        f"$JS.API.CONSUMER.*.{stream}.{durable}",  # INFO, DELETE, CREATE, PAUSE, RESET
        f"$JS.API.CONSUMER.*.{stream}.{durable}.>",  # CREATE with a filter subject
        f"$JS.API.CONSUMER.*.*.{stream}.{durable}",  # DURABLE.CREATE, MSG.NEXT
        f"$JS.ACK.{stream}.{durable}.>",
        f"$JS.FC.{stream}.{durable}.>",
    ]


def user_permissions(user: str) -> dict[str, Any] | None:
    """The nats-server `permissions` block for one user; None for admin (everything)."""
    if user == ADMIN:
        return None
    try:
        role = PERMISSIONS[user]
    except KeyError:
        raise ValueError(f"unknown NATS user {user!r}; known users: {', '.join(USERS)}") from None
    # control clients only look at streams; services create them if they are missing
    allow, deny = jetstream_subjects(user, role["consume"], create_streams=role["serves"])
    publish: dict[str, Any] = {"allow": [*role["publish"], *allow]}
    if deny:
        publish["deny"] = deny
    permissions: dict[str, Any] = {
        "publish": publish,
        "subscribe": {"allow": _subscriptions(user, role)},
    }
    if role["serves"]:
        # answers only what it received on the subjects above
        permissions["allow_responses"] = True
    return permissions


def _subscriptions(user: str, role: Role) -> list[str]:
    # replies and stream deliveries come to the user's own inbox prefix only
    subscribe = [f"{inbox_prefix(user)}.>", *role["subscribe"]]
    if role["serves"]:
        subscribe += [f"{CTL_SYSTEM}.>", f"{CTL_SERVICE}.{user}.>", "$SRV.>"]
    return subscribe


def permissions_table() -> str:
    """The README's table of the NATS users (README.md, `### NATS users`), from PERMISSIONS."""

    def code(items: Iterable[str]) -> str:
        return ", ".join(f"`{item}`" for item in items) or "—"

    rows = [
        "| user | publishes | subscribes to (core) | consumes (stream: its durables) |",
        "| --- | --- | --- | --- |",
    ]
    for user, role in PERMISSIONS.items():
        subscribe = _subscriptions(user, role)
        consume = [
            f"{stream}: "
            + ", ".join("any name not another's" if d == ANY_DURABLE else d for d in ds)
            for stream, ds in role["consume"].items()
        ]
        answers = " (answers what it receives)" if role["serves"] else ""
        rows.append(
            f"| `{user}`{answers} | {code(role['publish'])} | {code(subscribe)} | {code(consume)} |"
        )
    rows.append(f"| `{ADMIN}` | everything | everything | everything |")
    return "\n".join(rows) + "\n"


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
