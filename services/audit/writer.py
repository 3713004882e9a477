"""The audit log's one writer: group commit of hash-chained records.

Records are chained in order, so appends are serialised: every record goes
through one queue, and one task takes whatever has arrived (up to
`max_batch`), seals it in Python and inserts it in one transaction. While a
transaction runs, the next batch gathers; under load batches grow to
hundreds of records, which is what makes thousands of records/s possible.
A submitter's future resolves only after its record's transaction commits,
so the consumer acknowledges a message only once it is durably recorded.

Each transaction takes an advisory lock and re-reads the global head (one
index probe): if another writer (a second audit process) appended in the
meantime, the cached chain heads are dropped and re-read, so two writers
can never fork a chain. A message seen before, at the same JetStream
position, is skipped: positions above the highest one recorded per stream
are new by construction, and only the others are looked up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.audit.chain import GENESIS, AuditKeys, AuditRecord, ChainHeads, SealedRecord, seal

log = logging.getLogger("sigrelay.audit.writer")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_CACHED_CHAINS = 500_000

_COLUMNS = (
    "recorded_at, seq, subject, stream, stream_seq, type, msg_id, correlation_id, causation_id,"
    " user_id, trace_id, ts_ns, chain, chain_seq, headers, payload, raw_text,"
    " prev_hash, hash, global_prev_hash, global_hash, key_id"
)
# COPY into a per-connection staging table, then one INSERT … ON CONFLICT: COPY
# is 4x faster than INSERT … unnest(), and the conflict clause keeps a
# redelivery idempotent even for a writer that skipped the existence check.
_BEGIN = f"""
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS audit_staging (LIKE audit_records) ON COMMIT DELETE ROWS;
SELECT pg_advisory_xact_lock({0x5E0E_A0D1})
"""
_COPY = f"COPY audit_staging ({_COLUMNS}) FROM STDIN"
_INSERT = (
    f"INSERT INTO audit_records ({_COLUMNS}) SELECT {_COLUMNS} FROM audit_staging"
    " ORDER BY seq ON CONFLICT (stream, stream_seq) DO NOTHING"
)

_HEAD = "SELECT seq, global_hash FROM audit_records ORDER BY seq DESC LIMIT 1"

_CHAIN_HEADS = """
SELECT q.c, r.chain_seq, r.hash
FROM unnest(%s::text[]) AS q(c)
CROSS JOIN LATERAL (
    SELECT chain_seq, hash FROM audit_records WHERE chain = q.c ORDER BY chain_seq DESC LIMIT 1
) AS r
"""

_STREAM_MAX = "SELECT max(stream_seq) FROM audit_records WHERE stream = %s"

_EXISTING = """
SELECT r.stream, r.stream_seq, r.msg_id FROM unnest(%s::text[], %s::bigint[]) AS q(s, n)
JOIN audit_records r ON r.stream = q.s AND r.stream_seq = q.n
"""


def recorded_at(recorded_us: int) -> datetime:
    """The timestamptz of a recorded_us value (exact: integer microseconds)."""
    return _EPOCH + timedelta(microseconds=recorded_us)


def recorded_us_of(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class AuditWriter:
    """Serialises appends to `audit_records`; `submit` resolves once committed.

    Every record is sealed under the active key of `keys` (services/audit/keys.py)."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        keys: AuditKeys,
        max_batch: int = 1000,
        clock_us: Any = None,
    ) -> None:
        self._pool = pool
        self._key = keys.active
        self.max_batch = max_batch
        self._clock_us = clock_us or (lambda: time.time_ns() // 1000)
        self._queue: asyncio.Queue[tuple[AuditRecord, asyncio.Future[None]]] = asyncio.Queue()
        self._heads: ChainHeads | None = None
        self._stream_max: dict[str, int] = {}
        self._last_us = 0
        self.written = 0
        self.duplicates = 0
        self.batches = 0
        self.failures = 0
        self.largest_batch = 0
        self.kept_as_text = 0

    # --- submitting -------------------------------------------------------------

    def submit(self, record: AuditRecord) -> asyncio.Future[None]:
        """Queue one record; the future resolves after its transaction commits."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((record, future))
        return future

    async def record(self, record: AuditRecord) -> None:
        await self.submit(record)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # --- the writer task ----------------------------------------------------------

    async def run(self) -> None:
        """Write batches until cancelled; a failed batch fails its submitters' futures."""
        backoff = 0.1
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                await self._write_isolating([record for record, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.cancel()
                raise
            except Exception as exc:
                self.failures += 1
                log.warning("audit: a batch of %d records failed: %r", len(batch), exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _write_isolating(self, records: list[AuditRecord]) -> None:
        # A record Postgres refuses (a value jsonb or text cannot hold) must not
        # hold up the others, nor be lost: find it and keep it as escaped text.
        try:
            await self.write(records)
        except psycopg.DataError as exc:
            if len(records) > 1:
                for record in records:
                    await self._write_isolating([record])
                return
            log.warning("audit: %s kept as text: %s", records[0].subject, exc)
            await self.write([as_text(records[0], exc)])
            self.kept_as_text += 1

    async def write(self, records: Sequence[AuditRecord]) -> list[SealedRecord]:
        """Seal and insert records in one transaction; return those newly written.

        Records already in the log (same stream position) are skipped.
        """
        fresh = _unique(records)
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute(_BEGIN)
                heads = await self._load_heads(conn)
                fresh = await self._drop_recorded(conn, fresh)
                if not fresh:
                    self.duplicates += len(records)
                    return []
                await self._load_chains(conn, heads, fresh)
                sealed = seal(fresh, heads, self._now_us(), key=self._key)
                async with conn.cursor().copy(_COPY) as copy:
                    for values in _rows(sealed):
                        await copy.write_row(values)
                cur = await conn.execute(_INSERT)
                if cur.rowcount != len(sealed):
                    raise RuntimeError(
                        f"audit: {len(sealed) - cur.rowcount} of {len(sealed)} records were "
                        "already recorded by another writer; retrying"
                    )
        except BaseException:
            self._heads = None  # the cached heads advanced past what committed
            self._stream_max.clear()
            raise
        for row in sealed:
            stream = row.record.stream
            if row.record.stream_seq > self._stream_max.get(stream, 0):
                self._stream_max[stream] = row.record.stream_seq
        self.written += len(sealed)
        self.duplicates += len(records) - len(sealed)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(sealed))
        return sealed

    def _now_us(self) -> int:
        # recorded_at never goes backwards in seq order, even if the clock does
        now = max(int(self._clock_us()), self._last_us)
        self._last_us = now
        return now

    async def _load_heads(self, conn: AsyncConnection[Any]) -> ChainHeads:
        cur = await conn.execute(_HEAD)
        row = await cur.fetchone()
        seq, digest = (int(row[0]), bytes(row[1])) if row else (0, GENESIS)
        heads = self._heads
        if heads is None or heads.global_seq != seq or heads.global_hash != digest:
            if heads is not None:
                log.info("audit: another writer appended (head seq %d); reloading chains", seq)
            heads = self._heads = ChainHeads(seq, digest)
            self._stream_max.clear()
        elif len(heads.chains) > _MAX_CACHED_CHAINS:
            heads.chains.clear()
        return heads

    async def _drop_recorded(
        self, conn: AsyncConnection[Any], records: list[AuditRecord]
    ) -> list[AuditRecord]:
        for stream in {r.stream for r in records} - self._stream_max.keys():
            cur = await conn.execute(_STREAM_MAX, (stream,))
            row = await cur.fetchone()
            self._stream_max[stream] = int(row[0]) if row and row[0] is not None else 0
        # a position above the highest recorded one cannot have been recorded
        doubtful = [r for r in records if r.stream_seq <= self._stream_max.get(r.stream, 0)]
        if not doubtful:
            return records
        seen = await self._recorded_ids(conn, doubtful)
        out: list[AuditRecord] = []
        moved: list[AuditRecord] = []
        for record in records:
            found = seen.get((record.stream, record.stream_seq))
            if found is None:
                out.append(record)
            elif found != record.msg_id:
                # the same position holding another message: the JetStream stream
                # was recreated and its sequence restarted. Keep the newcomer
                # under a position of its own rather than drop it as a repeat.
                moved.append(
                    msgspec.structs.replace(record, stream=f"{record.stream}@{record.msg_id}")
                )
        if moved:
            log.warning(
                "audit: %d message(s) reuse recorded stream positions (stream recreated?);"
                " recorded under <stream>@<msg id>",
                len(moved),
            )
            again = await self._recorded_ids(conn, moved)
            out += [r for r in moved if (r.stream, r.stream_seq) not in again]
        return out

    async def _recorded_ids(
        self, conn: AsyncConnection[Any], records: list[AuditRecord]
    ) -> dict[tuple[str, int], str]:
        cur = await conn.execute(
            _EXISTING, ([r.stream for r in records], [r.stream_seq for r in records])
        )
        return {(s, int(n)): m for s, n, m in await cur.fetchall()}

    async def _load_chains(
        self, conn: AsyncConnection[Any], heads: ChainHeads, records: list[AuditRecord]
    ) -> None:
        missing = sorted({r.chain for r in records} - heads.chains.keys())
        if not missing:
            return
        cur = await conn.execute(_CHAIN_HEADS, (missing,))
        for chain, chain_seq, digest in await cur.fetchall():
            heads.chains[chain] = (int(chain_seq), bytes(digest))
        for chain in missing:
            heads.chains.setdefault(chain, (0, GENESIS))


def _ascii(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode().replace("\x00", "\\x00")


def as_text(record: AuditRecord, exc: Exception) -> AuditRecord:
    """A record Postgres refused, with everything turned into escaped ASCII text."""
    body = b'{"headers":%s,"payload":%s}' % (record.headers_json, record.payload_json or b"null")
    raw = body.decode("utf-8", "replace") + (f" {record.raw_text}" if record.raw_text else "")
    return msgspec.structs.replace(
        record,
        subject=_ascii(record.subject),
        type=_ascii(record.type),
        msg_id=_ascii(record.msg_id),
        correlation_id=_ascii(record.correlation_id),
        causation_id=_ascii(record.causation_id),
        user_id=None if record.user_id is None else _ascii(record.user_id),
        headers_json=msgspec.json.encode({"Sigrelay-Audit-Error": _ascii(str(exc))[:500]}),
        payload_json=None,
        raw_text=_ascii(raw),
    )


def _unique(records: Sequence[AuditRecord]) -> list[AuditRecord]:
    # the same position twice in one batch: a redelivery raced its first delivery
    seen: set[tuple[str, int]] = set()
    out = []
    for record in records:
        key = (record.stream, record.stream_seq)
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out


def _rows(rows: list[SealedRecord]) -> list[tuple[Any, ...]]:
    recorded = recorded_at(rows[0].recorded_us)
    out = []
    for row in rows:
        r = row.record
        out.append(
            (
                recorded,
                row.seq,
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
                row.chain,
                row.chain_seq,
                r.headers_json.decode(),
                None if r.payload_json is None else r.payload_json.decode(),
                r.raw_text,
                row.prev_hash,
                row.hash,
                row.global_prev_hash,
                row.global_hash,
                row.key_id,
            )
        )
    return out
