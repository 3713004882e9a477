"""The attack the keyed audit chain exists for, shared by the unit and integration tests."""

from __future__ import annotations

import hashlib

import msgspec

from services.audit.chain import GENESIS, AuditRecord, ChainHeads, SealedRecord, content


def forge_with_sha256(
    rows: list[SealedRecord], index: int, changed: AuditRecord, *, strip_key_ids: bool = False
) -> list[SealedRecord]:
    """What a database superuser without the audit key can do: replace the record
    at `index` and recompute every later link with plain SHA-256, the way the
    chain was computed before it was keyed (optionally also clearing key_id)."""
    out = list(rows[:index])
    heads = ChainHeads()
    if out:
        heads.global_hash = out[-1].global_hash
        for row in out:
            heads.chains[row.chain] = (row.chain_seq, row.hash)
    for i, row in enumerate(rows[index:], start=index):
        record = changed if i == index else row.record
        digest = hashlib.sha256(content(record, row.seq, row.recorded_us, row.chain_seq)).digest()
        _, prev = heads.chains.get(row.chain, (0, GENESIS))
        own = hashlib.sha256(prev + digest).digest()
        glob = hashlib.sha256(heads.global_hash + digest).digest()
        forged = msgspec.structs.replace(
            row,
            record=record,
            prev_hash=prev,
            hash=own,
            global_prev_hash=heads.global_hash,
            global_hash=glob,
        )
        if strip_key_ids:
            forged = msgspec.structs.replace(forged, key_id=None)
        out.append(forged)
        heads.chains[row.chain] = (row.chain_seq, own)
        heads.global_hash = glob
    return out
