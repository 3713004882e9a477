"""The audit log's hash chains: canonical encoding, sealing, verification.

Every record belongs to two chains:

- the **global** chain over every record in `seq` order;
- its **own** chain: `user:<user_id>` for a message that concerns a user,
  else `system`. A user's chain alone proves that user's history complete,
  without reading anyone else's records.

`content` is the canonical JSON (an array in a fixed field order, objects
with sorted keys, no whitespace) of everything a record says, its sequence
numbers and time included; `digest = sha256(content)`;
`hash = sha256(prev_hash || digest)` in its own chain and
`global_hash = sha256(global_prev_hash || digest)` in the global one. The
first link of a chain has 32 zero bytes as previous hash.

Everything here is pure: the writer seals records with it, `verify` walks
rows read back from Postgres through a `ChainVerifier`.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import msgspec

CHAIN_FORMAT = 1  # bump if the content encoding ever changes; old rows keep theirs
GENESIS = bytes(32)
GLOBAL = "global"
SYSTEM = "system"

_canonical = msgspec.json.Encoder(order="sorted")
_encode = msgspec.json.Encoder().encode
_sha256 = hashlib.sha256


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace (values must already be JSON types)."""
    return _canonical.encode(value)


def chain_of(user_id: str | None) -> str:
    """The name of a record's own chain."""
    return f"user:{user_id}" if user_id else SYSTEM


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the audit log records of one message, before it is sequenced and sealed.

    `headers_json` and `payload_json` are canonical JSON of the redacted values
    (`payload_json` is None when the body was not JSON; `raw_text` holds it then).
    """

    subject: str
    stream: str
    stream_seq: int
    type: str
    msg_id: str
    correlation_id: str = ""
    causation_id: str = ""
    user_id: str | None = None
    trace_id: str | None = None
    ts_ns: int | None = None
    headers_json: bytes = b"{}"
    payload_json: bytes | None = None
    raw_text: str | None = None

    @property
    def chain(self) -> str:
        return chain_of(self.user_id)


class SealedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A record with its place in the log and both chains: one row of `audit_records`."""

    seq: int
    recorded_us: int  # recorded_at, microseconds since the epoch (timestamptz precision)
    record: AuditRecord
    chain: str
    chain_seq: int
    prev_hash: bytes
    hash: bytes
    global_prev_hash: bytes
    global_hash: bytes


def content(record: AuditRecord, seq: int, recorded_us: int, chain_seq: int) -> bytes:
    """The canonical bytes a record's hashes cover."""
    r = record
    return _encode(
        [
            CHAIN_FORMAT,
            seq,
            recorded_us,
            r.subject,
            r.stream,
            r.stream_seq,
            r.type,
            r.msg_id,
            r.correlation_id,
            r.causation_id,
            r.user_id,
            r.trace_id,
            r.ts_ns,
            chain_of(r.user_id),
            chain_seq,
            msgspec.Raw(r.headers_json),
            None if r.payload_json is None else msgspec.Raw(r.payload_json),
            r.raw_text,
        ]
    )


def link(prev_hash: bytes, digest: bytes) -> bytes:
    return _sha256(prev_hash + digest).digest()


class ChainHeads:
    """The last (seq, hash) of the global chain and of each record chain."""

    def __init__(self, global_seq: int = 0, global_hash: bytes = GENESIS) -> None:
        self.global_seq = global_seq
        self.global_hash = global_hash
        self.chains: dict[str, tuple[int, bytes]] = {}

    def head(self, chain: str) -> tuple[int, bytes] | None:
        return self.chains.get(chain)


def seal(
    records: list[AuditRecord],
    heads: ChainHeads,
    recorded_us: int,
) -> list[SealedRecord]:
    """Sequence and hash records in order, advancing `heads` (every chain in
    `records` must already be in `heads.chains`, or be new: then it starts at
    the genesis hash)."""
    out: list[SealedRecord] = []
    seq, global_hash = heads.global_seq, heads.global_hash
    chains = heads.chains
    for record in records:
        chain = chain_of(record.user_id)
        chain_seq, prev = chains.get(chain, (0, GENESIS))
        seq += 1
        chain_seq += 1
        digest = _sha256(content(record, seq, recorded_us, chain_seq)).digest()
        own = link(prev, digest)
        glob = link(global_hash, digest)
        out.append(
            SealedRecord(
                seq=seq,
                recorded_us=recorded_us,
                record=record,
                chain=chain,
                chain_seq=chain_seq,
                prev_hash=prev,
                hash=own,
                global_prev_hash=global_hash,
                global_hash=glob,
            )
        )
        chains[chain] = (chain_seq, own)
        global_hash = glob
    heads.global_seq, heads.global_hash = seq, global_hash
    return out


class Break(msgspec.Struct, frozen=True, kw_only=True):
    """The first place where the log does not match its chains."""

    seq: int
    subject: str
    chain: str  # "global", "user:<id>" or "system"
    problem: str  # plain words
    expected: str  # hex
    found: str  # hex


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    records: int
    chains: int  # record chains seen (users plus system)
    first_break: Break | None = None
    breaks: int = 0  # every broken link found, counting on from each break
    head_seq: int = 0
    head_hash: str = ""  # the global chain's last hash: note it down to detect truncation
    elapsed_s: float = 0.0
    records_per_s: float = 0.0


class ChainVerifier:
    """Walks sealed records in `seq` order and checks both chains.

    After a break it carries on from the hashes found, so that `breaks`
    counts every independent tampering, not one per record after the first.
    """

    def __init__(self) -> None:
        self.heads = ChainHeads()
        self.records = 0
        self.breaks = 0
        self.first_break: Break | None = None
        self._started = time.perf_counter()

    def feed(self, row: SealedRecord) -> Break | None:
        self.records += 1
        found = self._check(row)
        if found is not None:
            self.breaks += 1
            if self.first_break is None:
                self.first_break = found
        heads = self.heads
        heads.global_seq, heads.global_hash = row.seq, row.global_hash
        heads.chains[row.chain] = (row.chain_seq, row.hash)
        return found

    def _check(self, row: SealedRecord) -> Break | None:
        heads = self.heads
        record = row.record

        def broken(chain: str, problem: str, expected: bytes, found: bytes) -> Break:
            return Break(
                seq=row.seq,
                subject=record.subject,
                chain=chain,
                problem=problem,
                expected=expected.hex(),
                found=found.hex(),
            )

        if row.global_prev_hash != heads.global_hash:
            gap = row.seq - heads.global_seq - 1
            problem = (
                f"{gap} record(s) missing before seq {row.seq}"
                if gap > 0
                else f"seq {row.seq} out of order after seq {heads.global_seq}"
                if gap < 0
                else "previous record changed or replaced"
            )
            return broken(GLOBAL, problem, heads.global_hash, row.global_prev_hash)
        if row.seq != heads.global_seq + 1:
            return broken(
                GLOBAL,
                f"seq {row.seq} follows seq {heads.global_seq}",
                heads.global_hash,
                row.global_prev_hash,
            )
        digest = _sha256(content(record, row.seq, row.recorded_us, row.chain_seq)).digest()
        expected_global = link(row.global_prev_hash, digest)
        if expected_global != row.global_hash:
            return broken(GLOBAL, "record content changed", expected_global, row.global_hash)
        if row.chain != chain_of(record.user_id):
            return broken(row.chain, "record moved to another chain", b"", b"")
        chain_seq, prev = heads.chains.get(row.chain, (0, GENESIS))
        if row.prev_hash != prev or row.chain_seq != chain_seq + 1:
            return broken(
                row.chain,
                f"chain link {row.chain_seq} follows link {chain_seq}: a record is missing or moved",
                prev,
                row.prev_hash,
            )
        expected_own = link(prev, digest)
        if expected_own != row.hash:
            return broken(row.chain, "record hash changed", expected_own, row.hash)
        return None

    def report(self) -> VerifyReport:
        elapsed = time.perf_counter() - self._started
        return VerifyReport(
            ok=self.breaks == 0,
            records=self.records,
            chains=len(self.heads.chains),
            first_break=self.first_break,
            breaks=self.breaks,
            head_seq=self.heads.global_seq,
            head_hash=self.heads.global_hash.hex() if self.records else "",
            elapsed_s=round(elapsed, 3),
            records_per_s=round(self.records / elapsed, 1) if elapsed > 0 else 0.0,
        )


def verify_sequence(rows: list[SealedRecord]) -> VerifyReport:
    """Check a whole sequence of sealed records (in the order given)."""
    verifier = ChainVerifier()
    for row in rows:
        verifier.feed(row)
    return verifier.report()
