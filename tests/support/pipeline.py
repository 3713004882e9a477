"""Where did the legs of a fan-out get to? A report for fault tests that expect one
position per user per signal: for each signal, how many legs reached each stage of
the pipeline (decided by the actor, decided by risk, recorded by the actor, sent by
execution, reported, opened at the paper exchange), which users stopped where, what
is still waiting in the outbox and in each JetStream consumer, and what was
dead-lettered. Read straight from Postgres and the JetStream API."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

# The path of one leg, in order: (stage, the service that writes it, a query yielding
# (intent id, detail)). A detail (a refusal, a report other than filled) makes the row
# count as `intent|detail`, not as the stage reached.
STAGES: tuple[tuple[str, str, str], ...] = (
    (
        "signal_handled",
        "actors",
        "SELECT i->>'intent_id', '' FROM events, jsonb_array_elements(data->'intents') AS i"
        " WHERE type = 'user.signal_handled'",
    ),
    (
        "risk_decided",
        "risk",
        "SELECT data->'verdict'->'intent'->>'intent_id',"
        " CASE WHEN (data->'verdict'->>'approved')::boolean THEN ''"
        " ELSE 'refused:' || (data->'verdict'->>'code') END"
        " FROM events WHERE type = 'risk.decided'",
    ),
    (
        "submitting",
        "execution",
        "SELECT idempotency_key, '' FROM events WHERE type = 'execution.submitting'",
    ),
    (
        "position_opened",
        "paper",
        "SELECT s.idempotency_key, '' FROM events p JOIN events s"
        " ON s.type = 'execution.submitting' AND s.data->>'client_id' = p.data->>'client_id'"
        " WHERE p.type = 'paper.position_opened'",
    ),
    (
        "reported",
        "execution",
        "SELECT data->'report'->>'intent_id',"
        " CASE WHEN data->'report'->>'status' = 'filled' THEN ''"
        " ELSE data->'report'->>'status' END"
        " FROM events WHERE type = 'execution.reported'",
    ),
)
# Recorded beside the path: the actor's copy of the verdict (not needed for the order).
SIDE_STAGES: tuple[tuple[str, str, str], ...] = (
    (
        "verdict_recorded",
        "actors",
        "SELECT data->'verdict'->'intent'->>'intent_id', '' FROM events"
        " WHERE type = 'user.verdict'",
    ),
)
# Signals an actor refused for a user: no leg at all (`signal|user`, code).
_REFUSED = (
    "SELECT (data->>'signal_id') || '|' || split_part(stream, 'user-', 2), data->>'code'"
    " FROM events WHERE type = 'user.signal_refused'"
)

_DURABLE_STREAMS = ("SIGNALS", "ORDERS", "EVENTS", "AUDIT", "DEADLETTER")


def stage_counts(database_url: str) -> dict[str, Counter[str]]:
    """stage -> intent id -> how many times it was recorded (details folded into the key
    for refusals and non-filled reports: `intent|refused:CODE`, `intent|failed`)."""
    out: dict[str, Counter[str]] = {}
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        for stage, _, query in (*STAGES, *SIDE_STAGES, ("refused_by_actor", "actors", _REFUSED)):
            counts: Counter[str] = Counter()
            for key, detail in conn.execute(query).fetchall():
                counts[str(key) if not detail else f"{key}|{detail}"] += 1
            out[stage] = counts
    return out


def outbox_backlog(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, connect_timeout=10) as conn:
        # rows dead-lettered by the relay stay for inspection and are no backlog
        rows = conn.execute(
            "SELECT producer || CASE WHEN dead_at IS NULL THEN '' ELSE ' (dead)' END, count(*)"
            " FROM outbox GROUP BY 1"
        ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


async def consumer_states(js: Any, *, dead_letters: int = 10) -> list[str]:
    """One line per durable consumer (pending, ack pending, redelivered, last delivered),
    per stream its size, and the last `dead_letters` dead letters with their reasons."""
    lines = []
    for stream in _DURABLE_STREAMS:
        try:
            infos = await js.consumers_info(stream)
        except Exception as exc:  # a report must not fail for want of one stream
            lines.append(f"{stream}: consumers unavailable ({exc!r})")
            continue
        for info in infos:
            delivered = info.delivered.stream_seq if info.delivered else None
            acked = info.ack_floor.stream_seq if info.ack_floor else None
            lines.append(
                f"{stream}/{info.name}: pending={info.num_pending}"
                f" ack_pending={info.num_ack_pending} redelivered={info.num_redelivered}"
                f" waiting_pulls={info.num_waiting} delivered_seq={delivered}"
                f" ack_floor_seq={acked}"
            )
        try:
            stream_info = await js.stream_info(stream)
            lines.append(
                f"{stream}: messages={stream_info.state.messages}"
                f" last_seq={stream_info.state.last_seq}"
            )
        except Exception as exc:
            lines.append(f"{stream}: info unavailable ({exc!r})")
            continue
        if stream == "DEADLETTER":
            last = stream_info.state.last_seq or 0
            for seq in range(max(1, last - dead_letters + 1), last + 1):
                try:
                    msg = await js.get_msg(stream, seq)
                except Exception as exc:
                    lines.append(f"  dead letter {seq}: unreadable ({exc!r})")
                    continue
                headers = msg.headers or {}
                lines.append(
                    f"  dead letter {seq} on {msg.subject}:"
                    f" {headers.get('Sigrelay-Subject', '?')} from"
                    f" {headers.get('Sigrelay-Consumer', '?')}:"
                    f" {headers.get('Sigrelay-Error', '?')[:300]}"
                )
    return lines


def legs_report(
    database_url: str,
    signal_ids: Sequence[str],
    users: Iterable[str],
    *,
    leg: str = "L1",
    sample: int = 8,
) -> tuple[bool, str]:
    """(every leg exactly once at every stage, a report of where each signal's legs are:
    per stage how many reached it, and for the others the last stage they reached,
    that is the service that last saw them, with a few of the users)."""
    users = list(users)
    counts = stage_counts(database_url)
    complete = True
    lines = []
    for sid in signal_ids:
        wanted = [f"{sid}|{u}|{leg}" for u in users]
        parts = []
        for stage, service, _ in (*STAGES, *SIDE_STAGES):
            seen = counts[stage]
            reached = sum(1 for w in wanted if seen.get(w, 0) >= 1)
            doubled = sum(1 for w in wanted if seen.get(w, 0) > 1)
            # refused by risk, or reported other than filled: `intent|detail`
            other = sum(
                n for key, n in seen.items() if key.startswith(f"{sid}|") and key.count("|") > 2
            )
            text = f"{stage}({service})={reached}"
            if doubled:
                text += f" DOUBLED={doubled}"
            if other:
                text += f" other={other}"
            parts.append(text)
            if reached != len(wanted) or doubled or other:
                complete = False
        refused = Counter(
            key.rsplit("|", 1)[1]
            for key, n in counts["refused_by_actor"].items()
            for _ in range(n)
            if key.startswith(f"{sid}|")
        )
        if refused:
            complete = False
            parts.append(f"refused_by_actor={dict(refused)}")
        stuck: dict[str, list[str]] = defaultdict(list)
        for w in wanted:
            last = "nothing (no intent: not decided, or refused, by the actor)"
            for stage, service, _ in STAGES:
                if counts[stage].get(w, 0) < 1:
                    break
                last = f"{stage} ({service})"
            else:
                continue  # the whole path
            stuck[last].append(w.split("|")[1])
        lines.append(f"{sid} ({len(wanted)} legs): " + ", ".join(parts))
        for last, who in sorted(stuck.items()):
            lines.append(f"    {len(who)} stopped after {last}: e.g. {', '.join(who[:sample])}")
        odd = sorted(
            key
            for stage, _, _ in STAGES
            for key in counts[stage]
            if key.startswith(f"{sid}|") and key.count("|") > 2
        )
        if odd:
            lines.append(f"    refused or not filled: {len(odd)}, e.g. {', '.join(odd[:sample])}")
    return complete, "\n".join(lines)
