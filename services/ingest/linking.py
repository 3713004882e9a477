"""Linking channel messages into signals: a pure decide/evolve core.

`decide(state, raw, parse, config)` turns one raw channel message into the
events to record; `evolve(state, event)` folds an event into the channel's
state. No I/O and no clock: time comes in with the message, and event ids
are derived from the message's de-duplication id, so the same input always
yields the same events (a redelivery is recognised, not re-parsed).

Rules:
- an edit is a new revision of the same signal, with the fields that changed;
- a reply applies to the signal it answers (a ticket replying to a bare
  alert completes it);
- a bare alert ("Gold buy now") followed by its ticket within
  `alert_window_s` becomes one signal;
- a follow-up that names no message (modify / close / cancel) manages the
  channel's latest open signal of the same symbol;
- a deletion is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from contracts.ingest import MessageDeleted, ParsedSignal, RawMessage
from contracts.signals import (
    CancelSignal,
    CloseSignal,
    ModifySignal,
    Noise,
    OpenSignal,
    ParseContext,
    ParseResult,
)

Parse = Callable[[str, ParseContext], ParseResult]

_KEEP_MESSAGES = 2000  # messages remembered per channel for edits and replies
_KEEP_OPEN = 20  # open signals remembered for follow-ups that name no message
_KEEP_RECENT = 5  # parse results handed to the parser as context


class LinkConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    alert_window_s: float = 180.0  # how long a bare alert waits for its ticket
    default_symbol: str | None = None  # the channel's instrument, if it trades one only


class MessageInfo(msgspec.Struct, frozen=True, kw_only=True):
    signal_id: str
    revision: int
    edit_ns: int
    posted_ns: int
    text: str
    result: ParseResult


class OpenRef(msgspec.Struct, frozen=True, kw_only=True):
    signal_id: str
    message_id: int
    symbol: str | None
    posted_ns: int
    bare: bool  # an alert without levels, waiting for its ticket


class ChannelState(msgspec.Struct, frozen=True, kw_only=True, tag="ingest.channel_state"):
    channel: str
    messages: dict[int, MessageInfo] = {}
    opens: tuple[OpenRef, ...] = ()  # newest last
    recent: tuple[ParseResult, ...] = ()
    last_message_id: int = 0


def decide(
    state: ChannelState, raw: RawMessage, parse: Parse, config: LinkConfig
) -> list[RawMessage | ParsedSignal | MessageDeleted]:
    """The events one raw message produces: always the raw record, then its meaning."""
    known = state.messages.get(raw.message_id)
    if raw.deleted:
        if known is None:
            return [raw]
        return [
            raw,
            MessageDeleted(
                id=f"deleted:{raw.dedup_id}",
                ts=raw.ts,
                correlation_id=known.signal_id,
                causation_id=raw.id,
                signal_id=known.signal_id,
                channel=raw.channel,
                message_id=raw.message_id,
                posted_ns=raw.edit_ns or raw.date_ns,
            ),
        ]
    if known is not None:
        if raw.edit_ns <= known.edit_ns or raw.text == known.text:
            return [raw]  # a late or cosmetic revision: recorded, nothing to act on
        return [raw, _edited(state, raw, known, parse, config)]
    return [raw, _new_message(state, raw, parse, config)]


def _context(state: ChannelState, config: LinkConfig, reply_to: MessageInfo | None) -> ParseContext:
    return ParseContext(
        default_symbol=config.default_symbol,
        reply_to=reply_to.result if reply_to else None,
        recent=state.recent,
    )


def _edited(
    state: ChannelState, raw: RawMessage, known: MessageInfo, parse: Parse, config: LinkConfig
) -> ParsedSignal:
    result = parse(raw.text, _context(state, config, None))
    return ParsedSignal(
        id=f"parsed:{raw.dedup_id}",
        ts=raw.ts,
        correlation_id=known.signal_id,
        causation_id=raw.id,
        signal_id=known.signal_id,
        channel=raw.channel,
        message_id=raw.message_id,
        revision=known.revision + 1,
        posted_ns=raw.edit_ns,
        result=result,
        text=raw.text,
        link="edit",
        changes=changed_fields(known.result, result),
    )


def _new_message(
    state: ChannelState, raw: RawMessage, parse: Parse, config: LinkConfig
) -> ParsedSignal:
    replied = state.messages.get(raw.reply_to_id) if raw.reply_to_id is not None else None
    result = parse(raw.text, _context(state, config, replied))
    own_id = f"{raw.channel}:{raw.message_id}"
    link, signal_id, answers = "new", own_id, None
    if replied is not None:
        answers = replied.signal_id
        if isinstance(result, (ModifySignal, CloseSignal, CancelSignal)):
            link, signal_id = "reply", replied.signal_id
        elif isinstance(result, OpenSignal) and _is_bare_alert(replied.result):
            link, signal_id = "completes", replied.signal_id
    elif isinstance(result, OpenSignal) and _has_levels(result):
        alert = _waiting_alert(state, result, raw.date_ns, config)
        if alert is not None:
            link, signal_id = "completes", alert.signal_id
    elif isinstance(result, ModifySignal) and result.action == "set_levels":
        alert = _waiting_alert(state, None, raw.date_ns, config)
        if alert is not None:
            link, signal_id = "completes", alert.signal_id
    if link == "new" and isinstance(result, (ModifySignal, CloseSignal, CancelSignal)):
        target = _latest_open(state, getattr(result, "symbol", None))
        if target is not None:
            link, signal_id = "follows", target.signal_id
    if link == "completes":
        # the actors see one complete ticket: the alert's side and symbol, the details' levels
        origin = state.messages.get(int(signal_id.rsplit(":", 1)[1]))
        if origin is not None and isinstance(origin.result, OpenSignal):
            result = merge_ticket(origin.result, result)
    return ParsedSignal(
        id=f"parsed:{raw.dedup_id}",
        ts=raw.ts,
        correlation_id=signal_id,
        causation_id=raw.id,
        signal_id=signal_id,
        channel=raw.channel,
        message_id=raw.message_id,
        revision=1,
        posted_ns=raw.date_ns,
        result=result,
        text=raw.text,
        link=link,
        reply_to_signal=answers,
    )


def merge_ticket(alert: OpenSignal, details: ParseResult) -> ParseResult:
    """A bare alert completed by its details, as one open signal."""
    if isinstance(details, OpenSignal):
        return msgspec.structs.replace(
            details,
            symbol=details.symbol or alert.symbol,
            side=details.side or alert.side,
            rule=f"{details.rule}+alert",
        )
    if isinstance(details, ModifySignal) and details.action == "set_levels":
        return OpenSignal(
            symbol=details.symbol or alert.symbol,
            side=alert.side,
            order_type=alert.order_type,
            entry=details.entry,
            entry_range=details.entry_range,
            sl=details.sl,
            tps=details.tps,
            sl_pips=details.sl_pips,
            rule=f"{details.rule}+alert",
            also=details.also,
        )
    return details


def _has_levels(result: OpenSignal) -> bool:
    return bool(
        result.sl is not None
        or result.tps
        or result.entry is not None
        or result.entry_range is not None
        or result.sl_pips is not None
    )


def _is_bare_alert(result: ParseResult) -> bool:
    return isinstance(result, OpenSignal) and not _has_levels(result)


def _waiting_alert(
    state: ChannelState, ticket: OpenSignal | None, now_ns: int, config: LinkConfig
) -> OpenRef | None:
    window_ns = int(config.alert_window_s * 1e9)
    for ref in reversed(state.opens):
        if now_ns - ref.posted_ns > window_ns:
            break
        if not ref.bare:
            continue
        alert = state.messages.get(ref.message_id)
        if ticket is None or alert is None:
            return ref
        if _compatible(alert.result, ticket):
            return ref
    return None


def _compatible(alert: ParseResult, ticket: OpenSignal) -> bool:
    if not isinstance(alert, OpenSignal):
        return False
    if alert.symbol and ticket.symbol and alert.symbol != ticket.symbol:
        return False
    return not (alert.side and ticket.side and alert.side != ticket.side)


def _latest_open(state: ChannelState, symbol: str | None) -> OpenRef | None:
    for ref in reversed(state.opens):
        if symbol is None or ref.symbol is None or ref.symbol == symbol:
            return ref
    return None


def changed_fields(before: ParseResult, after: ParseResult) -> tuple[str, ...]:
    """The public fields that differ between two parse results (kind first if it changed)."""
    old = _public(before)
    new = _public(after)
    return tuple(
        key
        for key in sorted(set(old) | set(new), key=lambda k: (k != "kind", k))
        if old.get(key) != new.get(key)
    )


def _public(result: ParseResult) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(result)
    data.pop("rule", None)
    return data


def evolve(state: ChannelState, event: RawMessage | ParsedSignal | MessageDeleted) -> ChannelState:
    """Fold one recorded event into the channel state."""
    if isinstance(event, RawMessage):
        if event.message_id > state.last_message_id:
            return msgspec.structs.replace(state, last_message_id=event.message_id)
        return state
    if isinstance(event, MessageDeleted):
        return state
    info = MessageInfo(
        signal_id=event.signal_id,
        revision=event.revision,
        edit_ns=event.posted_ns if event.revision > 1 else 0,
        posted_ns=event.posted_ns,
        text=event.text,
        result=event.result,
    )
    messages = dict(state.messages)
    messages[event.message_id] = info
    if len(messages) > _KEEP_MESSAGES:
        for old in sorted(messages)[: len(messages) - _KEEP_MESSAGES]:
            del messages[old]
    opens = state.opens
    result = event.result
    if isinstance(result, OpenSignal):
        ref = OpenRef(
            signal_id=event.signal_id,
            message_id=event.message_id,
            symbol=result.symbol,
            posted_ns=event.posted_ns,
            bare=not _has_levels(result) and event.link == "new",
        )
        kept = tuple(r for r in opens if r.signal_id != event.signal_id)
        opens = (*kept, ref)[-_KEEP_OPEN:]
    recent = state.recent
    if not isinstance(result, Noise):
        recent = (*recent, result)[-_KEEP_RECENT:]
    return msgspec.structs.replace(state, messages=messages, opens=opens, recent=recent)
