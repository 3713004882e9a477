"""`decide_signal`: what one user's actor does with one parsed channel message.

Every message a registered user's actor acts on ends as `SignalHandled` (with
its order intents, possibly none, and a note) or `SignalRefused` (a
`RefusalCode` and plain words). Noise, and a revision of a message already
decided (redelivery, or an older revision arriving late), produce nothing.

Rules:
- `stopped` refuses everything; `paused` refuses new positions only, while
  follow-ups (modify, close, cancel, edits of an open) still apply.
- Opens are refused when stale; follow-ups never are (a late "close all" or
  "SL to BE" is still wanted).
- A signal opens at most once per user: an open (an edit, a completing ticket)
  for a signal that already has legs amends the SL/TP of its live legs instead
  (edits only when `follow_ups.edits`); the open intent id
  `<signal_id>|<user_id>|L<leg>` backs this up at execution.
- A close with a fraction closes that fraction of every open leg of the signal
  (rounded down to the volume step; a leg whose part or rest would fall below
  the broker minimum is closed whole); pending orders are cancelled by a full
  close and left alone by a partial one.
- Management intents: `<signal_id>|<user_id>|L<leg>|<action>|m<message>r<revision>`
  (plus `i<n>` for the n-th further instruction of the same message).
- Further instructions of a message (`also`) that modify, close or cancel are
  decided in order after the first; a further *open* is not copied (it would
  share the message's signal id with the first and collide with its legs).
"""

from __future__ import annotations

import msgspec

from contracts.ingest import ParsedSignal
from contracts.orders import OrderIntent
from contracts.refusals import RefusalCode
from contracts.settings import UserSettings, effective
from contracts.signals import (
    CancelSignal,
    CloseSignal,
    Instruction,
    ModifySignal,
    Noise,
    OpenSignal,
    Rejected,
)
from contracts.users import SignalHandled, SignalRefused

from .planning import MarketView, Refusal, num, plan_open
from .state import Account, Leg, UserState, evolve

SignalEvent = SignalHandled | SignalRefused
_EPS = 1e-9
_DEFAULT_STEP = 0.01


def decide_signal(
    state: UserState, signal: ParsedSignal, market: MarketView, now_ns: int
) -> list[SignalEvent]:
    """The events one parsed message produces for this user (pure; `now_ns` is the clock)."""
    if not state.registered or state.status == "deleted":
        return []
    if signal.revision <= state.last_revision(signal.signal_id, signal.message_id):
        return []
    instructions, skipped_opens = _instructions(signal.result)
    events: list[SignalEvent] = []
    current = state
    for index, instruction in enumerate(instructions):
        event = _Decision(current, signal, instruction, index, market, now_ns).decide()
        events.append(event)
        current = evolve(current, event)
    if skipped_opens and events and isinstance(events[0], SignalHandled):
        extra = f"{skipped_opens} further signal(s) in the same message not copied"
        note = f"{events[0].note}; {extra}" if events[0].note else extra
        events[0] = msgspec.structs.replace(events[0], note=note)
    return events


def internal_refusal(
    state: UserState, signal: ParsedSignal, now_ns: int, error: BaseException
) -> SignalRefused:
    """The refusal recorded when deciding `signal` for this user failed (a fault in
    this user's state or in the code, not a rule): the user is told in plain words,
    and the other subscribers of the channel are decided as usual."""
    return SignalRefused(
        id=signal_event_id(signal, state.user_id),
        ts=now_ns,
        correlation_id=signal.signal_id,
        causation_id=signal.id,
        signal_id=signal.signal_id,
        revision=signal.revision,
        message_id=signal.message_id,
        code=RefusalCode.INTERNAL.value,
        reason=(
            f"signal {signal.signal_id} could not be decided for user {state.user_id}: "
            f"an internal error ({type(error).__name__}); no order was placed and the "
            "operator can find the cause in the actors' log"
        ),
    )


def _instructions(result: Instruction) -> tuple[list[Instruction], int]:
    items: list[Instruction] = [] if isinstance(result, Noise) else [result]
    skipped = 0
    for extra in result.also:
        if isinstance(extra, (ModifySignal, CloseSignal, CancelSignal)):
            items.append(extra)
        elif isinstance(extra, OpenSignal):
            if items:
                skipped += 1
            else:
                items.append(extra)
    return items, skipped


def signal_event_id(signal: ParsedSignal, user_id: str, index: int = 0) -> str:
    """`<signal_id>|<user_id>|m<message>r<revision>` (+ `|i<n>` for further instructions)."""
    base = f"{signal.signal_id}|{user_id}|m{signal.message_id}r{signal.revision}"
    return f"{base}|i{index}" if index else base


class _Decision:
    """One instruction of one message for one user; a class only to share the context."""

    def __init__(
        self,
        state: UserState,
        signal: ParsedSignal,
        instruction: Instruction,
        index: int,
        market: MarketView,
        now_ns: int,
    ) -> None:
        self.state = state
        self.signal = signal
        self.instruction = instruction
        self.index = index
        self.market = market
        self.now_ns = now_ns
        self.event_id = signal_event_id(signal, state.user_id, index)
        self.suffix = f"m{signal.message_id}r{signal.revision}" + (f"i{index}" if index else "")
        sub = state.subscription(signal.channel)
        self.subscribed = sub is not None
        self.settings: UserSettings = effective(state.settings, sub.overrides if sub else None)
        self.signal_legs = state.legs_of(signal.signal_id)
        self.live = tuple(leg for leg in self.signal_legs if leg.live)

    # --- outcome builders ---

    def refused(self, code: RefusalCode, reason: str) -> SignalRefused:
        return SignalRefused(
            id=self.event_id,
            ts=self.now_ns,
            correlation_id=self.signal.signal_id,
            causation_id=self.signal.id,
            signal_id=self.signal.signal_id,
            revision=self.signal.revision,
            message_id=self.signal.message_id,
            code=code.value,
            reason=reason,
        )

    def handled(self, kind: str, intents: list[OrderIntent], note: str = "") -> SignalHandled:
        return SignalHandled(
            id=self.event_id,
            ts=self.now_ns,
            correlation_id=self.signal.signal_id,
            causation_id=self.signal.id,
            signal_id=self.signal.signal_id,
            revision=self.signal.revision,
            message_id=self.signal.message_id,
            kind=kind,
            intents=tuple(intents),
            note=note,
        )

    def manage(self, leg: Leg, action: str, **fields: object) -> OrderIntent:
        intent_id = f"{leg.intent_id}|{action}|{self.suffix}"
        values: dict[str, object] = {
            "side": leg.side,
            "order_type": leg.order_type,
            "volume": leg.remaining,
            "price": leg.entry,
            "sl": leg.sl,
            "tp": leg.tp,
        }
        values.update(fields)
        return OrderIntent(
            id=intent_id,
            ts=self.now_ns,
            correlation_id=self.signal.signal_id,
            causation_id=self.signal.id,
            intent_id=intent_id,
            user_id=self.state.user_id,
            account_id=leg.account_id,
            broker=leg.broker,
            action=action,  # type: ignore[arg-type]
            signal_id=leg.signal_id,
            leg=leg.leg,
            symbol=leg.symbol,
            signal_symbol=leg.signal_symbol,
            target_intent_id=leg.intent_id,
            signal_posted_ns=self.signal.posted_ns,
            decided_ns=self.now_ns,
            **values,  # type: ignore[arg-type]
        )

    # --- the decision ---

    def decide(self) -> SignalEvent:
        try:
            return self._decide()
        except Refusal as refusal:
            return self.refused(refusal.code, refusal.reason)

    def _decide(self) -> SignalEvent:
        instruction = self.instruction
        user = self.state.user_id
        is_open = isinstance(instruction, OpenSignal)
        if not self.subscribed and (is_open or not self.live):
            raise Refusal(
                RefusalCode.NOT_SUBSCRIBED,
                f"user {user} is not subscribed to channel {self.signal.channel}",
            )
        if self.state.status == "stopped":
            raise Refusal(
                RefusalCode.STOPPED, f"user {user} is stopped: no orders at all until resumed"
            )
        if isinstance(instruction, Rejected):
            raise Refusal(
                RefusalCode.UNSAFE_SIGNAL, f"the parser refused the message: {instruction.reason}"
            )
        account = self.state.account
        if isinstance(instruction, OpenSignal):
            if self.signal_legs:
                return self._amend_open(instruction)
            if self.state.status == "paused":
                raise Refusal(
                    RefusalCode.PAUSED,
                    f"user {user} is paused: no new positions (follow-ups still apply)",
                )
            if account is None:
                raise _no_account(user)
            return self._open(instruction, account)
        if account is None:
            raise _no_account(user)
        if isinstance(instruction, ModifySignal):
            return self._modify(instruction)
        if isinstance(instruction, CloseSignal):
            return self._close(instruction)
        if isinstance(instruction, CancelSignal):
            return self._cancel(instruction)
        raise Refusal(RefusalCode.UNSAFE_SIGNAL, "the message carries no instruction to act on")

    # --- open ---

    def _open(self, signal: OpenSignal, account: Account) -> SignalHandled:
        age_ns = self.now_ns - self.signal.posted_ns
        max_age = self.settings.max_signal_age_s
        if age_ns > max_age * 1e9:
            raise Refusal(
                RefusalCode.STALE_SIGNAL,
                f"signal is {age_ns / 1e9:.0f} s old; this account refuses signals older "
                f"than {num(max_age)} s",
            )
        plan = plan_open(signal, self.settings, self.market, self.state.balance, account.account_id)
        user = self.state.user_id
        intents = []
        for leg in plan.legs:
            intent_id = f"{self.signal.signal_id}|{user}|L{leg.leg}"
            intents.append(
                OrderIntent(
                    id=intent_id,
                    ts=self.now_ns,
                    correlation_id=self.signal.signal_id,
                    causation_id=self.signal.id,
                    intent_id=intent_id,
                    user_id=user,
                    account_id=account.account_id,
                    broker=account.broker,
                    action="open",
                    signal_id=self.signal.signal_id,
                    leg=leg.leg,
                    symbol=plan.symbol,
                    signal_symbol=plan.signal_symbol,
                    side=signal.side,
                    order_type=plan.order_type,  # type: ignore[arg-type]
                    volume=leg.volume,
                    price=plan.price,
                    sl=plan.sl,
                    tp=leg.tp,
                    signal_posted_ns=self.signal.posted_ns,
                    decided_ns=self.now_ns,
                )
            )
        return self.handled("open", intents, "; ".join(plan.notes))

    def _amend_open(self, signal: OpenSignal) -> SignalEvent:
        """An open for a signal that already opened: amend levels, never open twice."""
        if self.signal.link == "edit" and not self.settings.follow_ups.edits:
            raise _disabled("edits", f"the edit of signal {self.signal.signal_id}")
        if not self.live:
            raise _nothing(f"the positions opened from signal {self.signal.signal_id} are closed")
        first = self.live[0]
        if signal.side is not None and signal.side != first.side:
            raise Refusal(
                RefusalCode.UNSAFE_SIGNAL,
                f"the new revision turns the {first.side} signal {self.signal.signal_id} into a "
                f"{signal.side}; its positions are left as they are",
            )
        intents = self._amend_levels(signal.sl, signal.sl_pips, signal.tps)
        note = "" if intents else "the new revision changes no level of the open legs"
        return self.handled("modify", intents, note)

    def _amend_levels(
        self, sl: float | None, sl_pips: float | None, tps: tuple[float, ...]
    ) -> list[OrderIntent]:
        intents = []
        for leg in self.live:
            new_sl = sl
            if new_sl is None and sl_pips is not None and leg.entry is not None:
                pip = self._pip(leg)
                new_sl = (
                    leg.entry - sl_pips * pip if leg.side == "buy" else leg.entry + sl_pips * pip
                )
            new_sl = leg.sl if new_sl is None else new_sl
            new_tp = self._tp_for(leg, tps)
            if _same(new_sl, leg.sl) and _same(new_tp, leg.tp):
                continue
            intents.append(self.manage(leg, "modify", sl=new_sl, tp=new_tp))
        return intents

    def _tp_for(self, leg: Leg, tps: tuple[float, ...]) -> float | None:
        if not tps:
            return leg.tp
        if self.settings.take_profits.mode == "single":
            number = min(max(self.settings.take_profits.tp_number, 1), len(tps))
            return tps[number - 1]
        return tps[leg.leg - 1] if leg.leg <= len(tps) else leg.tp

    def _pip(self, leg: Leg) -> float:
        quote = self.market.quote(leg.signal_symbol)
        if quote is None:
            raise Refusal(RefusalCode.NO_PRICE, f"no current price for {leg.signal_symbol}")
        return quote.pip_size

    # --- modify ---

    def _modify(self, signal: ModifySignal) -> SignalEvent:
        action = signal.action
        flags = self.settings.follow_ups
        sid = self.signal.signal_id
        if action == "add_entry":
            raise _disabled(
                None, f"adding an entry to signal {sid} (layered entries are not copied)"
            )
        flag = {"move_sl_to_entry": "breakeven", "move_sl": "move_sl", "set_sl": "move_sl"}.get(
            action, "set_tp" if action == "set_tp" else None
        )
        if flag is not None and not getattr(flags, flag):
            raise _disabled(flag, f"{action.replace('_', ' ')} on signal {sid}")
        if not self.live:
            if action == "set_levels":
                raise _nothing(
                    f"the levels for signal {sid} arrived but no position was opened from its "
                    "alert, and this message names no side or symbol to open one"
                )
            raise _no_legs(sid, self.signal_legs)
        if action == "move_sl_to_entry":
            intents = [
                self.manage(leg, "modify", sl=leg.entry)
                for leg in self.live
                if leg.entry is not None and not _same(leg.entry, leg.sl)
            ]
            return self._modified(intents, "stop loss already at entry")
        if action in ("move_sl", "set_sl"):
            value = signal.value if signal.value is not None else signal.sl
            if isinstance(value, tuple):
                value = value[0] if len(value) == 1 else None
            if value is None and signal.sl_pips is None:
                raise Refusal(
                    RefusalCode.UNSAFE_SIGNAL,
                    f"the message moves the stop loss of signal {sid} but names no usable price",
                )
            return self._modified(
                self._amend_levels(value, signal.sl_pips, ()), "stop loss already there"
            )
        if action == "set_tp":
            tps = _as_tuple(signal.value) or signal.tps
            if not tps:
                raise Refusal(
                    RefusalCode.UNSAFE_SIGNAL,
                    f"the message sets the take profit of signal {sid} but names no price",
                )
            if len(tps) == 1:
                intents = [
                    self.manage(leg, "modify", tp=tps[0])
                    for leg in self.live
                    if not _same(tps[0], leg.tp)
                ]
            else:
                intents = self._amend_levels(None, None, tps)
            return self._modified(intents, "take profit already there")
        if action == "set_levels":
            return self._modified(
                self._amend_levels(signal.sl, signal.sl_pips, signal.tps), "levels unchanged"
            )
        # move_entry: only orders still waiting can move
        value = signal.value if signal.value is not None else signal.entry
        pending = [leg for leg in self.live if leg.pending]
        if not isinstance(value, float | int) or not pending:
            raise _nothing(f"no pending order of signal {sid} to move to a new entry")
        intents = [
            self.manage(leg, "modify", price=float(value))
            for leg in pending
            if not _same(float(value), leg.entry)
        ]
        return self._modified(intents, "entry already there")

    def _modified(self, intents: list[OrderIntent], unchanged: str) -> SignalHandled:
        return self.handled("modify", intents, "" if intents else unchanged)

    # --- close / cancel ---

    def _close(self, signal: CloseSignal) -> SignalEvent:
        sid = self.signal.signal_id
        if self.signal.link == "edit" and not (
            set(self.signal.changes) & {"kind", "fraction", "which", "symbol"}
        ):
            return self.handled("close", [], "the edit changes nothing to close")
        full = signal.which != "partial" and (signal.fraction is None or signal.fraction >= 1)
        flag = "close" if full else "partial_close"
        if not getattr(self.settings.follow_ups, flag):
            raise _disabled(flag, f"{'closing' if full else 'partly closing'} signal {sid}")
        if signal.which not in ("all", "partial", "buy", "sell"):
            raise _nothing(
                f"'{signal.which}' selects among layered entries; signal {sid} opened one leg "
                "per take profit, so nothing is closed"
            )
        legs = [
            leg
            for leg in self.live
            if signal.which not in ("buy", "sell") or leg.side == signal.which
        ]
        if not legs:
            raise _no_legs(sid, self.signal_legs)
        fraction = 1.0 if full else (signal.fraction or 0.5)
        intents, notes = [], []
        for leg in legs:
            if leg.pending:
                if full:
                    intents.append(self.manage(leg, "cancel"))
                else:
                    notes.append(f"L{leg.leg} is a pending order: a partial close leaves it")
                continue
            volume = self._close_volume(leg, fraction, notes)
            whole = volume >= leg.remaining - _EPS
            intents.append(
                self.manage(leg, "close", volume=volume, close_fraction=1.0 if whole else fraction)
            )
        return self.handled("close", intents, "; ".join(notes))

    def _close_volume(self, leg: Leg, fraction: float, notes: list[str]) -> float:
        if fraction >= 1:
            return leg.remaining
        quote = self.market.quote(leg.signal_symbol)
        step = quote.volume_step if quote and quote.volume_step > 0 else _DEFAULT_STEP
        minimum = quote.min_volume if quote else _DEFAULT_STEP
        part = round(int(leg.remaining * fraction / step + _EPS) * step, 8)
        if part < minimum - _EPS or leg.remaining - part < minimum - _EPS:
            notes.append(
                f"L{leg.leg} {num(leg.remaining)} lot cannot keep {num(1 - fraction)} above the "
                f"minimum {num(minimum)}: closed whole"
            )
            return leg.remaining
        return part

    def _cancel(self, signal: CancelSignal) -> SignalEvent:
        sid = self.signal.signal_id
        if not self.settings.follow_ups.cancel:
            raise _disabled("cancel", f"cancelling the orders of signal {sid}")
        legs = [
            leg
            for leg in self.live
            if leg.pending and (signal.side is None or leg.side == signal.side)
        ]
        if not legs:
            raise _nothing(f"no pending order of signal {sid} to cancel")
        return self.handled("cancel", [self.manage(leg, "cancel") for leg in legs])


def _no_account(user: str) -> Refusal:
    return Refusal(RefusalCode.NO_ACCOUNT, f"user {user} has no broker account linked")


def _disabled(flag: str | None, what: str) -> Refusal:
    setting = f" (follow_ups.{flag} is off)" if flag else ""
    return Refusal(RefusalCode.FOLLOW_UP_DISABLED, f"{what} is not applied{setting}")


def _nothing(reason: str) -> Refusal:
    return Refusal(RefusalCode.NOTHING_TO_MANAGE, reason)


def _no_legs(signal_id: str, legs: tuple[Leg, ...]) -> Refusal:
    if legs:
        return _nothing(f"the {len(legs)} leg(s) of signal {signal_id} are already closed")
    return _nothing(f"no open position or pending order from signal {signal_id}")


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= _EPS * max(1.0, abs(a))


def _as_tuple(value: float | tuple[float, ...] | None) -> tuple[float, ...]:
    if value is None:
        return ()
    return value if isinstance(value, tuple) else (float(value),)
