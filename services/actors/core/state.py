"""A user's actor state, and `evolve`: the fold over the user's event stream.

`UserState` is a frozen Struct with a tag, so a snapshot is plain JSON that
decodes back to an equal state (`encode_state` / `decode_state`). Folding a
snapshot's tail onto it gives the same state as folding the whole stream.

Memory: one actor host keeps many thousands of idle actors, so the state holds
no per-user containers until it needs them. Collections are tuples (the empty
tuple is a shared singleton; msgspec would copy an empty `{}` default for every
instance), the default settings and today's empty figures are module-level
objects shared by every user, and a decoded snapshot is re-pointed at them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from contracts.orders import ExecutionReport, OrderIntent, RiskVerdict
from contracts.settings import ChannelOverrides, UserSettings
from contracts.users import (
    USER_EVENTS,
    AccountLinked,
    AccountUnlinked,
    Broker,
    CloseAllRequested,
    Paused,
    ReportRecorded,
    Resumed,
    SealedToken,
    SettingsChanged,
    SignalHandled,
    SignalRefused,
    Stopped,
    Subscribed,
    Unsubscribed,
    UserDeleted,
    UserRegistered,
    VerdictRecorded,
)

Status = Literal["active", "paused", "stopped", "deleted"]
Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop"]
LegStatus = Literal[
    "pending_risk",  # decided, waiting for risk's verdict
    "submitted",  # approved by risk, sent to execution
    "open",  # a position is open at the broker
    "pending_order",  # a limit/stop order waits at the broker
    "closed",
    "rejected",  # by risk or by the broker: nothing was opened
    "cancelled",  # a pending order was cancelled
]

LIVE_STATUSES: frozenset[str] = frozenset({"pending_risk", "submitted", "open", "pending_order"})
KEEP_DECIDED = 64  # channel messages remembered per user for idempotency
KEEP_FINISHED_LEGS = 32  # closed/rejected/cancelled legs kept for late reports and views
_EPS = 1e-9
NS_PER_DAY = 86_400 * 1_000_000_000

UserEvent = (
    UserRegistered
    | AccountLinked
    | AccountUnlinked
    | Subscribed
    | Unsubscribed
    | SettingsChanged
    | Paused
    | Stopped
    | Resumed
    | CloseAllRequested
    | UserDeleted
    | SignalHandled
    | SignalRefused
    | VerdictRecorded
    | ReportRecorded
)


class Account(msgspec.Struct, frozen=True, kw_only=True):
    """The broker account a user trades; the token is ciphertext only (None for paper)."""

    account_id: str
    broker: Broker
    token: SealedToken | None = None


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    overrides: ChannelOverrides | None = None


class Leg(msgspec.Struct, frozen=True, kw_only=True):
    """One position or pending order opened from one take-profit leg of a signal.

    `intent_id` is the open intent's id (`<signal_id>|<user_id>|L<leg>`);
    `entry` is the order price (the reference price for a market order) until
    the broker reports the fill price; `remaining` is the volume still open.
    """

    intent_id: str
    signal_id: str
    leg: int
    account_id: str
    broker: str
    symbol: str  # the broker's symbol
    signal_symbol: str  # the canonical symbol, as quotes are keyed
    side: Side
    order_type: OrderType = "market"
    volume: float
    remaining: float
    entry: float | None = None
    sl: float | None = None
    tp: float | None = None
    status: LegStatus = "pending_risk"
    position_id: str | None = None
    order_id: str | None = None
    opened_ns: int = 0

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def pending(self) -> bool:
        """A limit/stop order not (known to be) filled yet: cancellable, not closable."""
        if self.status == "pending_order":
            return True
        return self.order_type != "market" and self.status in ("pending_risk", "submitted")


class Today(msgspec.Struct, frozen=True, kw_only=True):
    """Figures of one UTC day (the day of the events' `ts`)."""

    day: str = ""  # YYYY-MM-DD
    orders: int = 0  # open intents decided
    refusals: tuple[tuple[str, int], ...] = ()  # (code, count): the actor's and risk's

    realised_pnl: float = 0.0

    def refusal_counts(self) -> dict[str, int]:
        return dict(self.refusals)


DEFAULT_SETTINGS = UserSettings()
NO_DAY = Today()


class UserState(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="actor.user_state"
):
    """Everything one user's actor knows; a fold over `user-<id>`.

    `decided` holds `(signal_id, message_id, last revision)` of the most recent
    channel messages this actor has decided, so a redelivered or older
    revision produces nothing. `version` counts the events folded, i.e. the
    stream version the next append expects.
    """

    user_id: str
    registered: bool = False
    display_name: str = ""
    status: Status = "active"
    settings: UserSettings = DEFAULT_SETTINGS
    account: Account | None = None
    subscriptions: tuple[Subscription, ...] = ()
    legs: tuple[Leg, ...] = ()
    decided: tuple[tuple[str, int, int], ...] = ()
    today: Today = NO_DAY
    balance: float | None = None
    equity: float | None = None
    version: int = 0

    # --- lookups (collections are short: a linear scan beats a dict's memory) ---

    def subscription(self, channel: str) -> Subscription | None:
        for sub in self.subscriptions:
            if sub.channel == channel:
                return sub
        return None

    def leg(self, intent_id: str) -> Leg | None:
        for leg in self.legs:
            if leg.intent_id == intent_id:
                return leg
        return None

    def legs_of(self, signal_id: str) -> tuple[Leg, ...]:
        return tuple(leg for leg in self.legs if leg.signal_id == signal_id)

    def live_legs(self) -> tuple[Leg, ...]:
        return tuple(leg for leg in self.legs if leg.live)

    def last_revision(self, signal_id: str, message_id: int) -> int:
        """The last revision of this message decided, 0 if none."""
        for sid, mid, revision in self.decided:
            if mid == message_id and sid == signal_id:
                return revision
        return 0


def initial_state(user_id: str) -> UserState:
    """The state of a user whose stream is empty."""
    return UserState(user_id=user_id)


def day_of(ts_ns: int) -> str:
    """The UTC calendar day of a timestamp, as YYYY-MM-DD (pure: no clock read)."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts_ns // 1_000_000_000))


# --- evolve ------------------------------------------------------------------------


def evolve(state: UserState, event: Any) -> UserState:
    """Fold one event of `user-<id>` into the state; every event bumps `version`."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"{type(event).__name__} is not an event of a user stream")
    return handler(state, event)


def fold(state: UserState, events: Iterable[Any]) -> UserState:
    for event in events:
        state = evolve(state, event)
    return state


def _bump(state: UserState, **changes: Any) -> UserState:
    return msgspec.structs.replace(state, version=state.version + 1, **changes)


def _registered(state: UserState, event: UserRegistered) -> UserState:
    return _bump(state, registered=True, display_name=event.display_name, status="active")


def _account_linked(state: UserState, event: AccountLinked) -> UserState:
    account = Account(account_id=event.account_id, broker=event.broker, token=event.token)
    return _bump(state, account=account)


def _account_unlinked(state: UserState, event: AccountUnlinked) -> UserState:
    if state.account is not None and state.account.account_id == event.account_id:
        return _bump(state, account=None)
    return _bump(state)


def _subscribed(state: UserState, event: Subscribed) -> UserState:
    kept = tuple(s for s in state.subscriptions if s.channel != event.channel)
    sub = Subscription(channel=event.channel, overrides=event.overrides)
    return _bump(state, subscriptions=(*kept, sub))


def _unsubscribed(state: UserState, event: Unsubscribed) -> UserState:
    kept = tuple(s for s in state.subscriptions if s.channel != event.channel)
    return _bump(state, subscriptions=kept)


def _settings_changed(state: UserState, event: SettingsChanged) -> UserState:
    settings = DEFAULT_SETTINGS if event.settings == DEFAULT_SETTINGS else event.settings
    return _bump(state, settings=settings)


def _paused(state: UserState, event: Paused) -> UserState:
    return _bump(state, status="paused")


def _stopped(state: UserState, event: Stopped) -> UserState:
    return _bump(state, status="stopped")


def _resumed(state: UserState, event: Resumed) -> UserState:
    return _bump(state, status="active")


def _close_all(state: UserState, event: CloseAllRequested) -> UserState:
    # legs change when the broker reports the closes, not when they are asked for
    return _bump(state)


def _deleted(state: UserState, event: UserDeleted) -> UserState:
    # the data key is gone: drop what is left of the user's data with it
    return _bump(
        state,
        status="deleted",
        account=None,
        subscriptions=(),
        settings=DEFAULT_SETTINGS,
        legs=(),
        decided=(),
        today=NO_DAY,
        balance=None,
        equity=None,
    )


def _mark_decided(
    state: UserState, signal_id: str, message_id: int, revision: int
) -> tuple[tuple[str, int, int], ...]:
    kept = [d for d in state.decided if not (d[1] == message_id and d[0] == signal_id)]
    previous = state.last_revision(signal_id, message_id)
    kept.append((signal_id, message_id, max(previous, revision)))
    return tuple(kept[-KEEP_DECIDED:])


def _today_for(state: UserState, ts: int) -> Today:
    day = day_of(ts)
    if day == state.today.day:
        return state.today
    return Today(day=day)


def _signal_handled(state: UserState, event: SignalHandled) -> UserState:
    legs = list(state.legs)
    opened = 0
    for intent in event.intents:
        if intent.action == "open":
            if any(leg.intent_id == intent.intent_id for leg in legs):
                continue
            legs.append(_leg_from(intent))
            opened += 1
        elif intent.action == "modify" and intent.target_intent_id is not None:
            legs = [_amended(leg, intent) for leg in legs]
    today = _today_for(state, event.ts)
    if opened:
        today = msgspec.structs.replace(today, orders=today.orders + opened)
    return _bump(
        state,
        legs=tuple(legs),
        decided=_mark_decided(state, event.signal_id, event.message_id, event.revision),
        today=today,
    )


def _leg_from(intent: OrderIntent) -> Leg:
    return Leg(
        intent_id=intent.intent_id,
        signal_id=intent.signal_id,
        leg=intent.leg,
        account_id=intent.account_id,
        broker=intent.broker,
        symbol=intent.symbol,
        signal_symbol=intent.signal_symbol,
        side=intent.side or "buy",
        order_type=intent.order_type,
        volume=intent.volume,
        remaining=intent.volume,
        entry=intent.price,
        sl=intent.sl,
        tp=intent.tp,
        opened_ns=intent.decided_ns,
    )


def _amended(leg: Leg, intent: OrderIntent) -> Leg:
    """A decided modify records the levels asked for (reports confirm them later)."""
    if leg.intent_id != intent.target_intent_id:
        return leg
    changes: dict[str, Any] = {"sl": intent.sl, "tp": intent.tp}
    if intent.price is not None and leg.pending:
        changes["entry"] = intent.price
    return msgspec.structs.replace(leg, **changes)


def _signal_refused(state: UserState, event: SignalRefused) -> UserState:
    return _bump(
        state,
        decided=_mark_decided(state, event.signal_id, event.message_id, event.revision),
        today=_count_refusal(state, event.code, event.ts),
    )


def _count_refusal(state: UserState, code: str, ts: int) -> Today:
    today = _today_for(state, ts)
    counts = dict(today.refusals)
    counts[code] = counts.get(code, 0) + 1
    return msgspec.structs.replace(today, refusals=tuple(counts.items()))


def _verdict(state: UserState, event: VerdictRecorded) -> UserState:
    verdict: RiskVerdict = event.verdict
    intent = verdict.intent
    changes: dict[str, Any] = {}
    if not verdict.approved:
        # risk's rejections count with the actor's refusals: one tally of "why not" per day
        changes["today"] = _count_refusal(state, verdict.code or "rejected", event.ts)
    if intent.action != "open":
        return _bump(state, **changes)
    new_status: LegStatus = "submitted" if verdict.approved else "rejected"
    legs = tuple(
        msgspec.structs.replace(leg, status=new_status)
        if leg.intent_id == intent.intent_id and leg.status == "pending_risk"
        else leg
        for leg in state.legs
    )
    return _bump(state, legs=_pruned(legs), **changes)


def _find_leg(state: UserState, report: ExecutionReport) -> Leg | None:
    leg = state.leg(report.intent_id)
    if leg is not None:
        return leg
    # a management intent, or a close-all: same signal and leg number
    opened_as = f"{report.signal_id}|{report.user_id}|L{report.leg}"
    leg = state.leg(opened_as)
    if leg is not None:
        return leg
    if report.position_id is not None:
        for candidate in state.legs:
            if candidate.position_id == report.position_id:
                return candidate
    return None


def _report(state: UserState, event: ReportRecorded) -> UserState:
    report = event.report
    changes: dict[str, Any] = {}
    if report.balance is not None:
        changes["balance"] = report.balance
    if report.equity is not None:
        changes["equity"] = report.equity
    if report.profit is not None:
        today = _today_for(state, event.ts)
        changes["today"] = msgspec.structs.replace(
            today, realised_pnl=today.realised_pnl + report.profit
        )
    leg = _find_leg(state, report)
    if leg is not None:
        updated = _leg_after(leg, report)
        if updated is not leg:
            legs = tuple(updated if item is leg else item for item in state.legs)
            changes["legs"] = _pruned(legs)
    return _bump(state, **changes)


def _leg_after(leg: Leg, report: ExecutionReport) -> Leg:
    status = report.status
    changes: dict[str, Any] = {}
    if report.order_id is not None:
        changes["order_id"] = report.order_id
    if report.position_id is not None:
        changes["position_id"] = report.position_id
    if status == "accepted":
        changes["status"] = "pending_order"
    elif status == "filled":
        changes["status"] = "open"
        if report.price is not None:
            changes["entry"] = report.price
        if report.volume is not None:
            changes["volume"] = report.volume
            changes["remaining"] = report.volume
    elif status == "closed":
        if report.remaining_volume is not None:
            remaining = report.remaining_volume
        elif report.volume is not None:
            remaining = leg.remaining - report.volume
        else:
            remaining = 0.0
        remaining = max(0.0, round(remaining, 8))
        changes["remaining"] = remaining
        if remaining <= _EPS:
            changes["status"] = "closed"
    elif status == "cancelled":
        changes["status"] = "cancelled"
    elif status in ("rejected", "failed") and report.action == "open":
        # a refused open leaves nothing; a refused close/modify leaves the leg as it was
        changes["status"] = "rejected"
    if status in ("filled", "modified", "accepted"):
        if report.sl is not None:
            changes["sl"] = report.sl
        if report.tp is not None:
            changes["tp"] = report.tp
    return msgspec.structs.replace(leg, **changes) if changes else leg


def _pruned(legs: tuple[Leg, ...]) -> tuple[Leg, ...]:
    """Live legs, plus the most recent finished ones."""
    finished = sum(1 for leg in legs if not leg.live)
    if finished <= KEEP_FINISHED_LEGS:
        return legs
    drop = finished - KEEP_FINISHED_LEGS
    kept = []
    for leg in legs:
        if drop and not leg.live:
            drop -= 1
            continue
        kept.append(leg)
    return tuple(kept)


_HANDLERS: dict[type, Any] = {
    UserRegistered: _registered,
    AccountLinked: _account_linked,
    AccountUnlinked: _account_unlinked,
    Subscribed: _subscribed,
    Unsubscribed: _unsubscribed,
    SettingsChanged: _settings_changed,
    Paused: _paused,
    Stopped: _stopped,
    Resumed: _resumed,
    CloseAllRequested: _close_all,
    UserDeleted: _deleted,
    SignalHandled: _signal_handled,
    SignalRefused: _signal_refused,
    VerdictRecorded: _verdict,
    ReportRecorded: _report,
}
assert set(_HANDLERS) == set(USER_EVENTS), "every user event needs an evolve handler"


# --- snapshots -----------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UserState)


def encode_state(state: UserState) -> bytes:
    """A snapshot: the state as JSON (tag `actor.user_state`)."""
    return _encoder.encode(state)


def decode_state(data: bytes | bytearray | memoryview) -> UserState:
    """A snapshot back to a state, sharing the default objects again to save memory."""
    state = _decoder.decode(data)
    changes: dict[str, Any] = {}
    if state.settings == DEFAULT_SETTINGS:
        changes["settings"] = DEFAULT_SETTINGS
    if state.today == NO_DAY:
        changes["today"] = NO_DAY
    return msgspec.structs.replace(state, **changes) if changes else state
