"""`sigrelay signals inject`: the injected signal source. Publishes channel
messages as `RawMessage`s exactly as the Telegram source does (same subject,
same de-duplication id), then waits for ingest's parse of each and prints it.

A script file holds one JSON object per line:
  {"channel": "gold", "id": 101, "text": "XAUUSD BUY NOW 4357 ...",
   "reply_to": 100, "edit_of": null, "delete": false, "delay_s": 0.5}
Every key but "text" is optional ("channel" defaults to --channel, "id" to
a fresh one). "edit_of": N makes the line a new revision of message N.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from contracts import subjects
from contracts.channels import check_channel_name
from contracts.envelope import encode, now_ns
from contracts.ingest import ParsedSignal, RawMessage
from services.runtime.bus import jetstream, publish


class ScriptLine(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    text: str = ""
    channel: str | None = None
    id: int | None = None
    reply_to: int | None = None
    edit_of: int | None = None
    delete: bool = False
    delay_s: float = 0.0


def parse_script(lines: Iterable[str], *, source: str) -> list[ScriptLine]:
    out = []
    decoder = msgspec.json.Decoder(ScriptLine)
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = decoder.decode(line)
            if item.channel is not None:
                check_channel_name(item.channel.lower())
        except (msgspec.MsgspecError, ValueError) as exc:
            raise ValueError(f"{source} line {number}: {exc}") from exc
        out.append(item)
    return out


def channel_of(line: ScriptLine, default_channel: str) -> str:
    """The line's channel; ValueError if it is not a channel name. Checked, not made
    safe: `a.b` rewritten to `a_b` would post into another channel."""
    return check_channel_name((line.channel or default_channel).lower())


def build_raw(line: ScriptLine, default_channel: str, clock_ns: int) -> RawMessage:
    channel = channel_of(line, default_channel)
    if line.edit_of is not None:
        message_id, edit_ns, date_ns = line.edit_of, clock_ns, clock_ns
    else:
        # Telegram ids are small integers; an injected one needs only be unique per channel
        message_id = line.id if line.id is not None else clock_ns // 1000
        edit_ns, date_ns = 0, clock_ns
    raw = RawMessage(
        id="",
        ts=clock_ns,
        channel=channel,
        message_id=message_id,
        date_ns=date_ns,
        edit_ns=edit_ns,
        text=line.text,
        reply_to_id=line.reply_to,
        deleted=line.delete,
        source="inject",
    )
    return msgspec.structs.replace(raw, id=f"raw:{raw.dedup_id}", correlation_id=raw.dedup_id)


async def inject(
    nc: NATS, lines: list[ScriptLine], *, default_channel: str, wait_s: float = 5.0
) -> list[dict[str, Any]]:
    """Publish each line; return, per line, the raw message and ingest's parse of it.

    Raises ValueError, before publishing anything, if a line's channel is not a channel name."""
    for line in lines:
        channel_of(line, default_channel)
    js = jetstream(nc)
    waiting: dict[str, asyncio.Future[ParsedSignal]] = {}
    decoder = msgspec.json.Decoder(ParsedSignal)

    async def on_parsed(msg: Any) -> None:
        try:
            parsed = decoder.decode(msg.data)
        except msgspec.MsgspecError:
            return
        future = waiting.get(parsed.causation_id)
        if future is not None and not future.done():
            future.set_result(parsed)

    sub = await nc.subscribe(f"{subjects.PARSED}.>", cb=on_parsed)
    results = []
    try:
        for line in lines:
            if line.delay_s > 0:
                await asyncio.sleep(line.delay_s)
            raw = build_raw(line, default_channel, now_ns())
            waiting[raw.id] = asyncio.get_running_loop().create_future()
            started = time.perf_counter()
            await publish(js, subjects.raw(raw.channel), encode(raw), msg_id=raw.dedup_id)
            entry: dict[str, Any] = {"raw": msgspec.to_builtins(raw)}
            if not raw.deleted:
                try:
                    parsed = await asyncio.wait_for(waiting[raw.id], wait_s)
                    entry["parsed"] = msgspec.to_builtins(parsed)
                    entry["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
                except TimeoutError:
                    entry["parsed"] = None
                    entry["note"] = f"no parsed signal within {wait_s}s (is ingest running?)"
            results.append(entry)
    finally:
        await sub.unsubscribe()
    return results


def read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines()
