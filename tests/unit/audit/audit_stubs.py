"""Stub factories for the audit unit tests."""

from __future__ import annotations

from typing import Any

import msgspec

from services.audit.chain import AuditKeys, AuditRecord, ChainHeads, SealedRecord, seal
from services.audit.keys import derive
from services.audit.records import build_record

T0_US = 1_760_000_000_000_000
TEST_KEY = derive("master:test", bytes(range(32)))
TEST_KEYS = AuditKeys([TEST_KEY])


def message(type_: str = "order.intent", **fields: Any) -> bytes:
    body = {"type": type_, "id": f"m-{type_}", "ts": 1_760_000_000_000_000_000, **fields}
    return msgspec.json.encode(body)


def record(
    subject: str = "orders.intent.u1",
    *,
    stream: str = "ORDERS",
    stream_seq: int = 1,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> AuditRecord:
    return build_record(subject, message(**fields), headers, stream, stream_seq)


def sealed_log(
    n: int = 6, users: tuple[str | None, ...] = ("u1", "u2", None)
) -> list[SealedRecord]:
    """n sealed records spread over the given users (None: a system record)."""
    records = []
    for i in range(n):
        user = users[i % len(users)]
        subject = f"orders.intent.{user}" if user else "signals.parsed.gold"
        records.append(record(subject, stream_seq=i + 1, volume=0.01 * (i + 1)))
    return seal(records, ChainHeads(), T0_US, key=TEST_KEY)
