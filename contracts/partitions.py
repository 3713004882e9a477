"""Which partition a user belongs to.

Must agree with the NATS server's subject-mapping function `partition(n, …)`,
which is FNV-1a (32 bit) of the selected tokens modulo n, so that a control
request mapped by the server reaches the host whose actors hold that user.
"""

from __future__ import annotations

DEFAULT_PARTITIONS = 16

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h ^= byte
        h = (h * _FNV_PRIME) & 0xFFFFFFFF
    return h


def partition_of(user_id: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    if partitions < 1:
        raise ValueError(f"partition count {partitions} must be at least 1")
    return fnv1a_32(user_id.encode()) % partitions
