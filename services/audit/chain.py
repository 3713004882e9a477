"""The audit log's hash chains: canonical encoding, sealing, verification.

Every record belongs to two chains:

- the **global** chain over every record in `seq` order;
- its **own** chain: `user:<user_id>` for a message that concerns a user,
  else `system`. A user's chain alone proves that user's history complete,
  without reading anyone else's records.

`content` is the canonical JSON (an array in a fixed field order, objects
with sorted keys, no whitespace) of everything a record says, its sequence
numbers, time and audit key id included; `digest = sha256(content)`;
`hash = HMAC-SHA256(key, prev_hash || digest)` in its own chain and
`global_hash = HMAC-SHA256(key, global_prev_hash || digest)` in the global
one. The first link of a chain has 32 zero bytes as previous hash.

The key (a `ChainKey`, see services/audit/keys.py) is never in the
database, only its id (`key_id`, stored with each record): whoever can
rewrite rows (a Postgres superuser) cannot recompute the hashes after a
change, so `verify` with the key proves the records authentic. Without the
key it can still prove the links intact (every row names its predecessor's
hash, seqs without gaps), which catches deletions and reordering but not a
rewrite that recomputed the later hashes.

Records written before the chain was keyed (`key_id` NULL, format 1) were
linked with plain `sha256(prev || digest)`; they stay in the log and are
checked that way, reported as `unkeyed` (integrity, not authenticity), and
are accepted only before the first keyed record: an unkeyed record after a
keyed one is a break (a downgrade).

Everything here is pure: the writer seals records with it, `verify` walks
rows read back from Postgres through a `ChainVerifier`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from typing import Any

import msgspec

CHAIN_FORMAT = 2  # bump if the content encoding ever changes; old rows keep theirs
UNKEYED_FORMAT = 1  # records from before the chain was keyed: no key id, plain SHA-256 links
GENESIS = bytes(32)
GLOBAL = "global"
SYSTEM = "system"

_canonical = msgspec.json.Encoder(order="sorted")
_encode = msgspec.json.Encoder().encode
_sha256 = hashlib.sha256


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no whitespace (values must already be JSON types)."""
    return _canonical.encode(value)


class ChainKey:
    """One audit chain key: its id (stored with each record) and its secret.

    The secret never appears in `repr`."""

    __slots__ = ("_secret", "kid")

    def __init__(self, kid: str, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError(f"audit key {kid!r}: {len(secret)} bytes, at least 32 needed")
        self.kid = kid
        self._secret = bytes(secret)

    def link(self, prev_hash: bytes, digest: bytes) -> bytes:
        return hmac.new(self._secret, prev_hash + digest, _sha256).digest()

    def __repr__(self) -> str:
        return f"ChainKey(kid={self.kid!r})"


class AuditKeys:
    """The audit keys a process knows, the active one (new records use it) first."""

    __slots__ = ("_keys", "active", "source")

    def __init__(self, keys: Iterable[ChainKey], *, source: str = "explicit") -> None:
        ordered = list(keys)
        if not ordered:
            raise ValueError("an audit key ring needs at least one key")
        self.active = ordered[0]
        self._keys: dict[str, ChainKey] = {}
        for key in ordered:
            self._keys.setdefault(key.kid, key)
        self.source = source

    def get(self, kid: str) -> ChainKey | None:
        return self._keys.get(kid)

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"AuditKeys(kids={list(self._keys)!r}, source={self.source!r})"


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
    key_id: str | None = None  # the audit key of its links; None: written before keying


def content(
    record: AuditRecord, seq: int, recorded_us: int, chain_seq: int, key_id: str | None = None
) -> bytes:
    """The canonical bytes a record's hashes cover (format 1 when `key_id` is None)."""
    r = record
    head: list[Any] = [UNKEYED_FORMAT] if key_id is None else [CHAIN_FORMAT, key_id]
    return _encode(
        [
            *head,
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


def link(prev_hash: bytes, digest: bytes, key: ChainKey | None = None) -> bytes:
    """The next link: HMAC under `key`; plain SHA-256 only for unkeyed (old) records."""
    if key is None:
        return _sha256(prev_hash + digest).digest()
    return key.link(prev_hash, digest)


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
    *,
    key: ChainKey,
) -> list[SealedRecord]:
    """Sequence and hash records in order under `key`, advancing `heads` (every
    chain in `records` must already be in `heads.chains`, or be new: then it
    starts at the genesis hash)."""
    kid = key.kid
    out: list[SealedRecord] = []
    seq, global_hash = heads.global_seq, heads.global_hash
    chains = heads.chains
    for record in records:
        chain = chain_of(record.user_id)
        chain_seq, prev = chains.get(chain, (0, GENESIS))
        seq += 1
        chain_seq += 1
        digest = _sha256(content(record, seq, recorded_us, chain_seq, kid)).digest()
        own = key.link(prev, digest)
        glob = key.link(global_hash, digest)
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
                key_id=kid,
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
    """`ok`: no break in what could be checked. `authentic`: and every record's
    links were recomputed under its key, so nobody without the key wrote them."""

    ok: bool
    records: int
    chains: int  # record chains seen (users plus system)
    authentic: bool = False
    first_break: Break | None = None
    breaks: int = 0  # every broken link found, counting on from each break
    unkeyed: int = 0  # records from before keying: checked with plain SHA-256 only
    unchecked: int = 0  # keyed records whose key was not given: linkage checked only
    unknown_keys: list[str] = []  # key ids of those records that no key given has
    note: str = ""  # what was and was not proven, in plain words
    head_seq: int = 0
    head_hash: str = ""  # the global chain's last hash: note it down to detect truncation
    elapsed_s: float = 0.0
    records_per_s: float = 0.0


class ChainVerifier:
    """Walks sealed records in `seq` order and checks both chains.

    With `keys`, every keyed record's links are recomputed under the key its
    `key_id` names. Without them (or for a key id not among them), only the
    linkage is checked: each record names its predecessor's hashes, and seq
    and chain_seq have no gaps. After a break it carries on from the hashes
    found, so that `breaks` counts every independent tampering, not one per
    record after the first.
    """

    def __init__(self, keys: AuditKeys | None) -> None:
        self.keys = keys
        self.heads = ChainHeads()
        self.records = 0
        self.breaks = 0
        self.unkeyed = 0
        self.unchecked = 0
        self.unknown_keys: dict[str, None] = {}
        self.first_break: Break | None = None
        self._seen_keyed = False
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
        if row.key_id is None:
            if self._seen_keyed:
                return broken(
                    GLOBAL, "unkeyed record after keyed records (key id removed)", b"", b""
                )
            self.unkeyed += 1
            key: ChainKey | None = None
            checkable = True
        else:
            self._seen_keyed = True
            key = self.keys.get(row.key_id) if self.keys is not None else None
            checkable = key is not None
            if not checkable:
                self.unchecked += 1
                self.unknown_keys[row.key_id] = None
        digest = _sha256(
            content(record, row.seq, row.recorded_us, row.chain_seq, row.key_id)
        ).digest()
        if checkable:
            expected_global = link(row.global_prev_hash, digest, key)
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
        if checkable:
            expected_own = link(prev, digest, key)
            if expected_own != row.hash:
                return broken(row.chain, "record hash changed", expected_own, row.hash)
        return None

    def report(self) -> VerifyReport:
        elapsed = time.perf_counter() - self._started
        ok = self.breaks == 0
        authentic = ok and self.unkeyed == 0 and self.unchecked == 0
        return VerifyReport(
            ok=ok,
            records=self.records,
            chains=len(self.heads.chains),
            authentic=authentic,
            first_break=self.first_break,
            breaks=self.breaks,
            unkeyed=self.unkeyed,
            unchecked=self.unchecked,
            unknown_keys=list(self.unknown_keys),
            note=self._note(ok, authentic),
            head_seq=self.heads.global_seq,
            head_hash=self.heads.global_hash.hex() if self.records else "",
            elapsed_s=round(elapsed, 3),
            records_per_s=round(self.records / elapsed, 1) if elapsed > 0 else 0.0,
        )

    def _note(self, ok: bool, authentic: bool) -> str:
        if not ok:
            return "tampering found: see first_break"
        if authentic:
            return "every record's links recomputed under its audit key: intact and authentic"
        parts = []
        if self.unchecked:
            why = (
                "no audit key given"
                if self.keys is None
                else f"audit key(s) {', '.join(self.unknown_keys)} not given"
            )
            parts.append(
                f"cannot verify authenticity of {self.unchecked} record(s) ({why}): "
                "only their linkage was checked"
            )
        if self.unkeyed:
            parts.append(
                f"{self.unkeyed} record(s) from before the chain was keyed: "
                "checked with plain SHA-256, integrity but not authenticity"
            )
        return "; ".join(parts)


def verify_sequence(rows: list[SealedRecord], keys: AuditKeys | None) -> VerifyReport:
    """Check a whole sequence of sealed records (in the order given)."""
    verifier = ChainVerifier(keys)
    for row in rows:
        verifier.feed(row)
    return verifier.report()
