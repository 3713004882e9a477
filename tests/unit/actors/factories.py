"""Stub factories for the actor core tests: users, parsed signals, quotes, reports.

Time is explicit everywhere: `T0` is a fixed instant (2026-03-02 10:00:00 UTC)
and tests move it by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.ingest import ParsedSignal
from contracts.orders import ExecutionReport, OrderIntent, Quote, RiskVerdict
from contracts.settings import ChannelOverrides, UserSettings
from contracts.signals import (
    CancelSignal,
    CloseSignal,
    Instruction,
    ModifySignal,
    Noise,
    OpenSignal,
    Rejected,
)
from contracts.users import (
    AccountLinked,
    Paused,
    ReportRecorded,
    SealedToken,
    SettingsChanged,
    SignalHandled,
    Stopped,
    Subscribed,
    UserRegistered,
    VerdictRecorded,
)
from services.actors.core import (
    CommandContext,
    UserState,
    decide_signal,
    evolve,
    fold,
    initial_state,
)

T0 = 1_772_445_600_000_000_000  # 2026-03-02 10:00:00 UTC
SECOND = 1_000_000_000
USER = "u1"
CHANNEL = "gold"

_counter = {"n": 0}


def next_id(prefix: str = "ev") -> str:
    _counter["n"] += 1
    return f"{prefix}-{_counter['n']}"


# --- quotes and market --------------------------------------------------------------


def quote(
    symbol: str = "XAUUSD",
    bid: float = 2000.0,
    ask: float = 2000.2,
    *,
    pip_size: float = 0.1,
    pip_value_per_lot: float = 10.0,
    min_volume: float = 0.01,
    volume_step: float = 0.01,
    max_volume: float = 100.0,
) -> Quote:
    return Quote(
        id=f"q-{symbol}",
        ts=T0,
        symbol=symbol,
        bid=bid,
        ask=ask,
        pip_size=pip_size,
        pip_value_per_lot=pip_value_per_lot,
        min_volume=min_volume,
        volume_step=volume_step,
        max_volume=max_volume,
    )


class Market:
    """A MarketView over a dict of quotes; `asked` records the symbols looked up."""

    def __init__(self, *quotes: Quote) -> None:
        self.quotes = {q.symbol: q for q in quotes}
        self.asked: list[str] = []

    def quote(self, symbol: str) -> Quote | None:
        self.asked.append(symbol)
        return self.quotes.get(symbol)


def gold_market(bid: float = 2000.0, ask: float = 2000.2, **kw: Any) -> Market:
    return Market(quote("XAUUSD", bid, ask, **kw))


NO_MARKET = Market()


# --- parse results and parsed signals ----------------------------------------------


def open_signal(
    side: str | None = "buy",
    symbol: str | None = "XAUUSD",
    *,
    entry: float | None = None,
    sl: float | None = 1990.0,
    tps: tuple[float, ...] = (2005.0, 2010.0, 2015.0),
    **kw: Any,
) -> OpenSignal:
    return OpenSignal(side=side, symbol=symbol, entry=entry, sl=sl, tps=tps, **kw)  # type: ignore[arg-type]


def parsed(
    result: Instruction,
    *,
    signal_id: str | None = None,
    message_id: int = 100,
    revision: int = 1,
    posted_ns: int = T0,
    channel: str = CHANNEL,
    link: str = "new",
    changes: tuple[str, ...] = (),
) -> ParsedSignal:
    sid = signal_id or f"{channel}:{message_id}"
    return ParsedSignal(
        id=f"parsed:{channel}:{message_id}:{revision}",
        ts=posted_ns,
        correlation_id=sid,
        signal_id=sid,
        channel=channel,
        message_id=message_id,
        revision=revision,
        posted_ns=posted_ns,
        result=result,
        link=link,
        changes=changes,
    )


def follow_up(
    result: Instruction,
    *,
    signal_id: str = f"{CHANNEL}:100",
    message_id: int = 101,
    revision: int = 1,
    posted_ns: int = T0 + 60 * SECOND,
    link: str = "reply",
    **kw: Any,
) -> ParsedSignal:
    return parsed(
        result,
        signal_id=signal_id,
        message_id=message_id,
        revision=revision,
        posted_ns=posted_ns,
        link=link,
        **kw,
    )


def breakeven() -> ModifySignal:
    return ModifySignal(action="move_sl_to_entry")


def close(fraction: float | None = None, which: str = "all") -> CloseSignal:
    return CloseSignal(fraction=fraction, which=which)  # type: ignore[arg-type]


def cancel(side: str | None = None) -> CancelSignal:
    return CancelSignal(side=side)  # type: ignore[arg-type]


def noise() -> Noise:
    return Noise(rule="chatter")


def rejected(reason: str = "SL 2100 is above the buy entry 2000") -> Rejected:
    return Rejected(reason=reason)


# --- users ---------------------------------------------------------------------------


def env(n: int, ts: int = T0) -> dict[str, Any]:
    return {"id": f"setup-{n}", "ts": ts}


def user(
    *,
    user_id: str = USER,
    account: bool = True,
    channel: str | None = CHANNEL,
    overrides: ChannelOverrides | None = None,
    settings: UserSettings | Mapping[str, Any] | None = None,
    status: str = "active",
    balance: float | None = None,
) -> UserState:
    """A registered user, by folding the events that would make them (as the host does)."""
    events: list[Any] = [UserRegistered(**env(1), user_id=user_id, display_name="Ann")]
    if account:
        events.append(AccountLinked(**env(2), account_id=f"paper-{user_id}", broker="paper"))
    if channel is not None:
        events.append(Subscribed(**env(3), channel=channel, overrides=overrides))
    if settings is not None:
        if isinstance(settings, Mapping):
            import msgspec

            settings = msgspec.convert(dict(settings), UserSettings)
        events.append(SettingsChanged(**env(4), settings=settings))
    if status == "paused":
        events.append(Paused(**env(5)))
    elif status == "stopped":
        events.append(Stopped(**env(5)))
    state = fold(initial_state(user_id), events)
    if balance is not None:
        state = evolve(state, report_event(_balance_report(user_id, balance)))
    return state


def _balance_report(user_id: str, balance: float) -> ExecutionReport:
    return ExecutionReport(
        id="r-balance",
        ts=T0,
        intent_id="none",
        user_id=user_id,
        account_id=f"paper-{user_id}",
        signal_id="none",
        action="open",
        status="failed",
        balance=balance,
        equity=balance,
    )


def ctx(
    request_id: str = "req-1",
    *,
    user_id: str = USER,
    now_ns: int = T0,
    sealed_token: SealedToken | None = None,
    account_taken: bool = False,
    known: tuple[str, ...] | None = None,
) -> CommandContext:
    return CommandContext(
        now_ns=now_ns,
        user_id=user_id,
        request_id=request_id,
        sealed_token=sealed_token,
        account_taken=account_taken,
        known_channels=None if known is None else known.__contains__,
    )


def sealed(version: int = 1) -> SealedToken:
    return SealedToken(key_version=version, nonce=b"n" * 12, ciphertext=b"\x00cipher")


# --- driving the actor --------------------------------------------------------------


def apply(state: UserState, events: list[Any]) -> UserState:
    return fold(state, events)


def opened(
    state: UserState | None = None,
    signal: OpenSignal | None = None,
    market: Market | None = None,
    *,
    fill: bool = True,
    message_id: int = 100,
) -> UserState:
    """A user holding the legs of one open signal, filled at the broker unless `fill=False`."""
    state = state or user()
    signal_msg = parsed(signal or open_signal(), message_id=message_id)
    events = decide_signal(state, signal_msg, market or gold_market(), T0 + SECOND)
    state = apply(state, events)
    assert isinstance(events[0], SignalHandled), events
    if not fill:
        return state
    for intent in events[0].intents:
        state = evolve(state, verdict_event(intent, approved=True))
        status = "filled" if intent.order_type == "market" else "accepted"
        state = evolve(state, report_event(report_for(intent, status)))
    return state


def verdict_event(intent: OrderIntent, *, approved: bool, code: str = "") -> VerdictRecorded:
    verdict = RiskVerdict(
        id=f"v:{intent.intent_id}", ts=T0, intent=intent, approved=approved, code=code
    )
    return VerdictRecorded(id=f"vr:{intent.intent_id}", ts=T0 + 2 * SECOND, verdict=verdict)


def report_for(intent: OrderIntent, status: str, **fields: Any) -> ExecutionReport:
    values: dict[str, Any] = {
        "order_id": f"o-{intent.leg}",
        "position_id": f"p-{intent.leg}" if status == "filled" else None,
        "price": intent.price,
        "volume": intent.volume,
        "sl": intent.sl,
        "tp": intent.tp,
    }
    values.update(fields)
    return ExecutionReport(
        id=f"r:{intent.intent_id}:{status}",
        ts=T0,
        intent_id=intent.intent_id,
        user_id=intent.user_id,
        account_id=intent.account_id,
        signal_id=intent.signal_id,
        action=intent.action,
        leg=intent.leg,
        status=status,  # type: ignore[arg-type]
        symbol=intent.symbol,
        side=intent.side,
        **values,
    )


def report_event(report: ExecutionReport, ts: int = T0 + 3 * SECOND) -> ReportRecorded:
    return ReportRecorded(id=f"rr:{report.id}", ts=ts, report=report)
