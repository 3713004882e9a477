"""Operator tools over the audit log: verify, export, explain.

The CLI wires these as `sigrelay audit verify|export|explain` (`audit replay`
rebuilds a user's state from the event log: services/actors/replay.py). They
read Postgres only (never the bus), through server-side cursors, so they
run in constant memory however long the log is.

- `verify(url, keys) -> VerifyReport`: walk both chains in `seq` order,
  recompute every hash from the row's content under the audit key it names
  (linkage only without keys); report the first broken record
  (seq, subject, chain, expected vs found hash), how many breaks, the head
  hash (note it down: it is what proves the log was not cut short later),
  counts and rate.
- `export(url, since, out) -> int`: JSON lines of every record (since a time).
- `explain(url, signal_id, user_id) -> dict`: the story of one signal (see
  `services.audit.explain`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TextIO

import msgspec
import psycopg

from eventstore.pg import configure
from services.audit.chain import (
    AuditKeys,
    AuditRecord,
    ChainVerifier,
    SealedRecord,
    VerifyReport,
)
from services.audit.explain import AuditRow, signal_parts, story
from services.audit.writer import recorded_us_of

_decode = msgspec.json.decode
_canonical = msgspec.json.Encoder(order="sorted").encode
_encode = msgspec.json.Encoder().encode

_VERIFY_COLUMNS = (
    "seq, recorded_at, subject, stream, stream_seq, type, msg_id, correlation_id,"
    " causation_id, user_id, trace_id, ts_ns, chain, chain_seq, headers, payload, raw_text,"
    " prev_hash, hash, global_prev_hash, global_hash, key_id"
)
_ROW_COLUMNS = (
    "seq, recorded_at, subject, stream, stream_seq, type, msg_id, correlation_id,"
    " causation_id, user_id, trace_id, ts_ns, payload, raw_text"
)


def _sealed(row: tuple[Any, ...]) -> SealedRecord:
    headers, payload = row[14], row[15]
    record = AuditRecord(
        subject=row[2],
        stream=row[3],
        stream_seq=row[4],
        type=row[5],
        msg_id=row[6],
        correlation_id=row[7],
        causation_id=row[8],
        user_id=row[9],
        trace_id=row[10],
        ts_ns=row[11],
        # jsonb gives its own spacing and key order back: re-canonicalise
        headers_json=_canonical(_decode(headers)),
        payload_json=None if payload is None else _canonical(_decode(payload)),
        raw_text=row[16],
    )
    return SealedRecord(
        seq=row[0],
        recorded_us=recorded_us_of(row[1]),
        record=record,
        chain=row[12],
        chain_seq=row[13],
        prev_hash=bytes(row[17]),
        hash=bytes(row[18]),
        global_prev_hash=bytes(row[19]),
        global_hash=bytes(row[20]),
        key_id=row[21],
    )


async def _connect(database_url: str) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(database_url)
    configure(conn)  # jsonb as raw bytes: msgspec decodes them far faster
    return conn


async def _rows(
    database_url: str, query: str, params: tuple[Any, ...] = (), *, batch: int = 5000
) -> AsyncIterator[tuple[Any, ...]]:
    async with (
        await _connect(database_url) as conn,
        conn.transaction(),
        conn.cursor(name="audit_read", binary=True) as cur,
    ):
        cur.itersize = batch
        await cur.execute(query, params)
        while rows := await cur.fetchmany(batch):
            for row in rows:
                yield row


async def verify(database_url: str, keys: AuditKeys | None) -> VerifyReport:
    """Walk the global chain and every record chain; report the first break, or ok.

    With `keys` (services/audit/keys.py) every record is proven authentic; with
    None only the linkage is (the report says so)."""
    verifier = ChainVerifier(keys)
    query = f"SELECT {_VERIFY_COLUMNS} FROM audit_records ORDER BY seq"
    async for row in _rows(database_url, query):
        try:
            sealed = _sealed(row)
        except (msgspec.DecodeError, ValueError) as exc:
            # a row that no longer decodes was changed: count it as a break
            sealed = _unreadable(row, exc)
        verifier.feed(sealed)
    return verifier.report()


def _unreadable(row: tuple[Any, ...], exc: Exception) -> SealedRecord:
    record = AuditRecord(
        subject=row[2],
        stream=row[3],
        stream_seq=row[4],
        type=row[5],
        msg_id=row[6],
        raw_text=f"unreadable row: {exc}",
    )
    return SealedRecord(
        seq=row[0],
        recorded_us=0,
        record=record,
        chain=row[12],
        chain_seq=row[13],
        prev_hash=bytes(row[17]),
        hash=bytes(row[18]),
        global_prev_hash=bytes(row[19]),
        global_hash=bytes(row[20]),
        key_id=row[21],
    )


async def export(database_url: str, since: datetime | None, out: TextIO) -> int:
    """Write every record (recorded at or after `since`) as one JSON line; return the count."""
    where, params = ("WHERE recorded_at >= %s", (since,)) if since is not None else ("", ())
    query = f"SELECT {_VERIFY_COLUMNS} FROM audit_records {where} ORDER BY seq"
    count = 0
    async for row in _rows(database_url, query, params):
        line = {
            "seq": row[0],
            "recorded_at": row[1].isoformat(),
            "subject": row[2],
            "stream": row[3],
            "stream_seq": row[4],
            "type": row[5],
            "msg_id": row[6],
            "correlation_id": row[7],
            "causation_id": row[8],
            "user_id": row[9],
            "trace_id": row[10],
            "ts_ns": row[11],
            "chain": row[12],
            "chain_seq": row[13],
            "headers": msgspec.Raw(row[14]),
            "payload": None if row[15] is None else msgspec.Raw(row[15]),
            "raw_text": row[16],
            "prev_hash": bytes(row[17]).hex(),
            "hash": bytes(row[18]).hex(),
            "global_prev_hash": bytes(row[19]).hex(),
            "global_hash": bytes(row[20]).hex(),
            "key_id": row[21],
        }
        out.write(_encode(line).decode())
        out.write("\n")
        count += 1
    return count


def _audit_row(row: tuple[Any, ...]) -> AuditRow:
    payload = row[12]
    return AuditRow(
        seq=row[0],
        recorded_at=row[1].isoformat(),
        subject=row[2],
        stream=row[3],
        stream_seq=row[4],
        type=row[5],
        msg_id=row[6],
        correlation_id=row[7],
        causation_id=row[8],
        user_id=row[9],
        trace_id=row[10],
        ts_ns=row[11],
        payload=None if payload is None else _decode(payload),
        raw_text=row[13],
    )


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"


async def explain(database_url: str, signal_id: str, user_id: str | None = None) -> dict[str, Any]:
    """Everything recorded about one signal: raw text and edits, the parse and its
    rule, and per user the decision or refusal, risk verdict, execution report,
    latency between hops and trace ids. See `services.audit.explain.story`."""
    rows: dict[int, AuditRow] = {}
    async with await _connect(database_url) as conn:
        cur = conn.cursor(binary=True)
        # raw messages carry their dedup id `<channel>:<message id>:<revision>`
        prefixes = [_like_prefix(signal_id)]
        await cur.execute(
            f"SELECT {_ROW_COLUMNS} FROM audit_records"
            " WHERE correlation_id = %s OR correlation_id LIKE %s ORDER BY seq",
            (signal_id, prefixes[0]),
        )
        for row in await cur.fetchall():
            rows[row[0]] = _audit_row(row)
        # replies and follow-ups linked to the signal are other channel messages
        parts = signal_parts(signal_id)
        linked = {
            f"{r.payload['channel']}:{r.payload['message_id']}"
            for r in rows.values()
            if r.type in ("signal.parsed", "signal.deleted")
            and isinstance(r.payload, dict)
            and "channel" in r.payload
            and "message_id" in r.payload
        }
        if parts is not None:
            linked.discard(f"{parts[0]}:{parts[1]}")
        linked.discard(signal_id)
        for other in sorted(linked):
            await cur.execute(
                f"SELECT {_ROW_COLUMNS} FROM audit_records"
                " WHERE correlation_id LIKE %s AND type = 'signal.raw' ORDER BY seq",
                (_like_prefix(other),),
            )
            for row in await cur.fetchall():
                rows[row[0]] = _audit_row(row)
    ordered = [rows[seq] for seq in sorted(rows)]
    return story(signal_id, ordered, user_id)


async def count(database_url: str) -> int:
    async with await _connect(database_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM audit_records")
        row = await cur.fetchone()
        return int(row[0]) if row else 0
