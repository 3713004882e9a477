"""The story of one signal, told from its audit records (pure).

`story(signal_id, rows, user_id)` folds the records of a signal (in `seq`
order) into what an operator asks: what the channel posted and edited, how
it was parsed (with the parser `rule`), and for each user what the actor
decided (or why it refused), what risk said, what the broker did (in plain
words), how long each hop took (from the messages' own `ts`, in ms) and
which traces carry it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec


class AuditRow(msgspec.Struct, frozen=True, kw_only=True):
    """One audit record as the tools read it back (payload decoded)."""

    seq: int
    recorded_at: str  # ISO 8601
    subject: str
    stream: str
    stream_seq: int
    type: str
    msg_id: str
    correlation_id: str
    causation_id: str
    user_id: str | None
    trace_id: str | None
    ts_ns: int | None
    payload: Any
    raw_text: str | None


def signal_parts(signal_id: str) -> tuple[str, int] | None:
    """`gold:501` -> ("gold", 501); None when the id is not `<channel>:<message id>`."""
    channel, sep, message = signal_id.rpartition(":")
    if not sep or not channel or not message.isdigit():
        return None
    return channel, int(message)


def _ms(start: int | None, end: int | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) / 1e6, 3)


def _first_ts(items: Iterable[dict[str, Any]]) -> int | None:
    found = [i["ts_ns"] for i in items if i.get("ts_ns") is not None]
    return min(found) if found else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _payload(row: AuditRow) -> dict[str, Any]:
    return _dict(row.payload)


def story(signal_id: str, rows: list[AuditRow], user_id: str | None = None) -> dict[str, Any]:
    """Everything recorded about one signal, for one user or all of them."""
    raw: list[dict[str, Any]] = []
    parsed: list[dict[str, Any]] = []
    users: dict[str, dict[str, Any]] = {}
    legs: dict[tuple[str, str], dict[str, Any]] = {}
    timeline: list[dict[str, Any]] = []
    traces: set[str] = set()
    other: list[dict[str, Any]] = []

    def user_entry(uid: str) -> dict[str, Any]:
        return users.setdefault(
            uid, {"decisions": [], "legs": [], "events": [], "latency_ms": {}, "trace_ids": []}
        )

    def leg_entry(uid: str, intent: dict[str, Any]) -> dict[str, Any]:
        intent_id = str(intent.get("intent_id", ""))
        key = (uid, intent_id)
        found = legs.get(key)
        if found is None:
            found = legs[key] = {
                "intent_id": intent_id,
                "leg": intent.get("leg"),
                "action": intent.get("action"),
                "symbol": intent.get("symbol"),
                "side": intent.get("side"),
                "volume": intent.get("volume"),
                "intent": None,
                "verdict": None,
                "report": None,
                "reports": [],
                "latency_ms": {},
            }
            user_entry(uid)["legs"].append(found)
        return found

    for row in rows:
        p = _payload(row)
        uid = row.user_id
        if user_id is not None and uid is not None and uid != user_id:
            continue
        if row.trace_id:
            traces.add(row.trace_id)
            if uid:
                user_traces = user_entry(uid)["trace_ids"]
                if row.trace_id not in user_traces:
                    user_traces.append(row.trace_id)
        timeline.append(
            {
                "seq": row.seq,
                "subject": row.subject,
                "type": row.type,
                "msg_id": row.msg_id,
                "user_id": uid,
                "ts_ns": row.ts_ns,
                "trace_id": row.trace_id,
            }
        )
        t = row.type
        if t == "signal.raw":
            raw.append(
                {
                    "seq": row.seq,
                    "message_id": p.get("message_id"),
                    "edit_ns": p.get("edit_ns", 0),
                    "edited": bool(p.get("edit_ns")),
                    "deleted": bool(p.get("deleted")),
                    "text": p.get("text", ""),
                    "reply_to_id": p.get("reply_to_id"),
                    "posted_ns": p.get("date_ns"),
                    "ts_ns": row.ts_ns,
                }
            )
        elif t in ("signal.parsed", "signal.deleted"):
            result = _dict(p.get("result"))
            parsed.append(
                {
                    "seq": row.seq,
                    "type": t,
                    "message_id": p.get("message_id"),
                    "revision": p.get("revision"),
                    "link": p.get("link"),
                    "kind": result.get("kind") if t == "signal.parsed" else "deleted",
                    "rule": result.get("rule"),
                    "result": result or None,
                    "changes": p.get("changes", []),
                    "text": p.get("text", ""),
                    "posted_ns": p.get("posted_ns"),
                    "ts_ns": row.ts_ns,
                }
            )
        elif t == "order.intent" and uid:
            leg = leg_entry(uid, p)
            leg["intent"] = {**p, "ts_ns": row.ts_ns, "seq": row.seq}
        elif t in ("order.verdict", "user.verdict") and uid:
            verdict = p if t == "order.verdict" else _dict(p.get("verdict"))
            intent = _dict(verdict.get("intent"))
            leg = leg_entry(uid, intent)
            if leg["verdict"] is None or t == "order.verdict":
                leg["verdict"] = {
                    "approved": verdict.get("approved"),
                    "code": verdict.get("code", ""),
                    "reason": verdict.get("reason", ""),
                    "ts_ns": row.ts_ns if t == "order.verdict" else verdict.get("ts"),
                    "seq": row.seq,
                }
            if leg["intent"] is None and intent:
                leg["intent"] = {**intent, "ts_ns": intent.get("ts"), "seq": None}
        elif t in ("order.report", "user.report") and uid:
            report = p if t == "order.report" else _dict(p.get("report"))
            leg = leg_entry(uid, report)
            entry = {
                "status": report.get("status"),
                "reason": report.get("reason") or _plain_reason(report),
                "broker_code": report.get("broker_code"),
                "broker_code_name": report.get("broker_code_name"),
                "order_id": report.get("order_id"),
                "position_id": report.get("position_id"),
                "price": report.get("price"),
                "volume": report.get("volume"),
                "ts_ns": row.ts_ns if t == "order.report" else report.get("ts"),
                "seq": row.seq,
            }
            if report.get("id") not in {r.get("id") for r in leg["reports"]}:
                leg["reports"].append({**entry, "id": report.get("id")})
            leg["report"] = leg["reports"][-1]
        elif t in ("user.signal_handled", "user.signal_refused") and uid:
            handled = t == "user.signal_handled"
            user_entry(uid)["decisions"].append(
                {
                    "decision": "handled" if handled else "refused",
                    "revision": p.get("revision"),
                    "kind": p.get("kind"),
                    "code": p.get("code", ""),
                    "reason": p.get("reason") or p.get("note", ""),
                    "intents": [
                        i.get("intent_id") for i in p.get("intents", []) if isinstance(i, dict)
                    ],
                    "ts_ns": row.ts_ns,
                    "seq": row.seq,
                }
            )
        elif uid and ("refus" in t or ("code" in p and "reason" in p)):
            user_entry(uid)["decisions"].append(
                {
                    "decision": "refused",
                    "code": p.get("code", ""),
                    "reason": p.get("reason", ""),
                    "ts_ns": row.ts_ns,
                    "seq": row.seq,
                    "type": t,
                }
            )
        elif uid:
            user_entry(uid)["events"].append({"seq": row.seq, "type": t, "subject": row.subject})
        else:
            other.append({"seq": row.seq, "type": t, "subject": row.subject, "text": row.raw_text})

    raw_ts = _first_ts(raw)
    parsed_ts = _first_ts(parsed)
    posted = next((r["posted_ns"] for r in raw if r.get("posted_ns")), None)
    for entry in users.values():
        first_intent: int | None = None
        first_verdict: int | None = None
        first_report: int | None = None
        for leg in entry["legs"]:
            intent_ts = (leg["intent"] or {}).get("ts_ns")
            verdict_ts = (leg["verdict"] or {}).get("ts_ns")
            report_ts = (leg["reports"][0] if leg["reports"] else {}).get("ts_ns")
            leg["latency_ms"] = {
                "parsed_to_intent": _ms(parsed_ts, intent_ts),
                "intent_to_verdict": _ms(intent_ts, verdict_ts),
                "verdict_to_report": _ms(verdict_ts, report_ts),
                "parsed_to_report": _ms(parsed_ts, report_ts),
            }
            first_intent = _min(first_intent, intent_ts)
            first_verdict = _min(first_verdict, verdict_ts)
            first_report = _min(first_report, report_ts)
        decided = _first_ts(entry["decisions"])
        entry["latency_ms"] = {
            "posted_to_raw": _ms(posted, raw_ts),
            "raw_to_parsed": _ms(raw_ts, parsed_ts),
            "parsed_to_decision": _ms(parsed_ts, decided),
            "parsed_to_first_intent": _ms(parsed_ts, first_intent),
            "intent_to_verdict": _ms(first_intent, first_verdict),
            "verdict_to_report": _ms(first_verdict, first_report),
            "posted_to_first_report": _ms(posted, first_report),
        }
        for leg in entry["legs"]:
            if leg["intent"] is not None:
                leg["intent"] = {k: leg["intent"].get(k) for k in _INTENT_KEYS}

    parts = signal_parts(signal_id)
    return {
        "signal_id": signal_id,
        "user_id": user_id,
        "found": bool(rows),
        "records": len(timeline),
        "channel": parts[0] if parts else None,
        "message_id": parts[1] if parts else None,
        "raw": raw,
        "parsed": parsed,
        "users": users,
        "latency_ms": {
            "posted_to_raw": _ms(posted, raw_ts),
            "raw_to_parsed": _ms(raw_ts, parsed_ts),
        },
        "trace_ids": sorted(traces),
        "other": other,
        "timeline": timeline,
    }


_INTENT_KEYS = (
    "intent_id",
    "action",
    "leg",
    "symbol",
    "signal_symbol",
    "side",
    "order_type",
    "volume",
    "price",
    "sl",
    "tp",
    "account_id",
    "broker",
    "ts_ns",
    "seq",
)


def _min(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _plain_reason(report: dict[str, Any]) -> str:
    status = report.get("status") or "unknown"
    name = report.get("broker_code_name")
    code = report.get("broker_code")
    if name or code is not None:
        return f"broker answered {status} ({name or code})"
    return f"broker answered {status}"
