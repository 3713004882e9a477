"""Everything risk does between the bus and the event store (no NATS here).

Users are activated lazily, on their first message: the latest snapshot of
`risk-<user>` (an `UserExposure`, which carries its cursor into `user-<user>`)
plus the tails of `risk-<user>` and `user-<user>` after it. Each user has a
lock, so one user's intents, reports and control changes are decided one at a
time, in arrival order, each seeing the exposure the previous one left; users
proceed in parallel and their appends share group commits.

Every write to `risk-<user>` carries the expected stream version, so a second
risk process writing for the same user is caught (ConcurrencyError): the user
is reloaded and the decision taken again on fresh state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from contracts import subjects
from contracts.envelope import encode, new_id, now_ns, tag_of
from contracts.orders import ExecutionReport, OrderIntent, Quote, RiskVerdict
from contracts.users import user_stream
from eventstore import (
    ANY_VERSION,
    ConcurrencyError,
    EventRegistry,
    EventStore,
    EventStoreError,
    OutboxMessage,
    RecordedEvent,
    request,
)
from eventstore.group_commit import GroupCommitter
from services.risk.checks import RiskView, evaluate
from services.risk.events import (
    CONTROL_STREAM,
    RISK_EVENTS,
    KillSwitchSet,
    ReportApplied,
    RiskDecided,
    risk_stream,
)
from services.risk.projection import (
    USER_STATE_EVENTS,
    MarketState,
    UserExposure,
    evolve,
    evolve_market,
)
from services.runtime.coalesce import CoalescingLoader
from services.runtime.tracing import trace_headers

log = logging.getLogger("sigrelay.risk")

CONSUMER = "risk"  # consumer-tracking name for intents (message id: the intent id)
REPORT_CONSUMER = "risk.report"  # for execution reports (message id: the report's id)

RISK_REGISTRY = EventRegistry(*RISK_EVENTS)
USER_REGISTRY = EventRegistry(*USER_STATE_EVENTS)
_snapshot_decoder = msgspec.json.Decoder(UserExposure)


class RiskConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tuning of the risk service; every default is what production runs."""

    snapshot_every: int = 200  # events of risk-<user> between snapshots
    max_quote_age_s: float = 60.0  # an older quote cannot vouch for the spread
    linger_s: float = 0.001  # group commit: how long to gather appends
    control_poll_s: float = 1.0  # how often to read the global kill switch from the log
    snapshot_flush_s: float = 2.0
    # at start, how long to wait for a full round of quotes before deciding intents:
    # an intent waiting in the stream would otherwise meet the spread check before
    # the first quote arrives and be refused no_price, a final verdict
    market_view_wait_s: float = 10.0


class UserLog:
    """One user's exposure and the version of `risk-<user>` it includes."""

    __slots__ = ("lock", "since_snapshot", "state", "version")

    def __init__(self, state: UserExposure, version: int, since_snapshot: int) -> None:
        self.state = state
        self.version = version
        self.since_snapshot = since_snapshot
        self.lock = asyncio.Lock()


class RiskCore:
    """Decides intents and keeps the exposure projection; `writer.run()` must be running."""

    def __init__(
        self,
        store: EventStore,
        config: RiskConfig | None = None,
        *,
        clock: Callable[[], int] = now_ns,
    ) -> None:
        self.store = store
        self.config = config or RiskConfig()
        self.clock = clock
        self.writer = GroupCommitter(store, linger_s=self.config.linger_s, max_batch=2000)
        self.market = MarketState()
        self.control_version = 0
        self._control_lock = asyncio.Lock()
        self._users: dict[str, UserLog] = {}
        self._by_token: dict[str, str] = {}
        self._loader = CoalescingLoader(self._load_many, name="risk.load-users")
        self.approved = 0
        self.rejected = 0
        self.duplicates = 0
        self.reports = 0
        self.conflicts = 0

    # --- users ----------------------------------------------------------------------

    def cached(self, user_id: str) -> UserLog | None:
        return self._users.get(user_id)

    async def user(self, user_id: str) -> UserLog:
        found = self._users.get(user_id)
        if found is not None:
            return found
        loaded = await self._loader.get(user_id)
        # a load that finished while another was cached first: keep the first
        found = self._users.setdefault(user_id, loaded)
        self._by_token[subjects.token(user_id)] = user_id
        return found

    async def _load(self, user_id: str) -> UserLog:
        return (await self._load_many([user_id]))[user_id]

    async def _load_many(self, user_ids: list[str]) -> dict[str, UserLog]:
        """Snapshot plus tails of `user-<id>` and `risk-<id>` for many users, in two queries."""
        risk_streams = [risk_stream(u) for u in user_ids]
        snapshots = await self.store.load_snapshots(risk_streams)
        states: dict[str, tuple[UserExposure, int]] = {}
        for user_id, stream in zip(user_ids, risk_streams, strict=True):
            state, version = UserExposure(user_id=user_id), 0
            snapshot = snapshots.get(stream)
            if snapshot is not None:
                try:
                    state, version = _snapshot_decoder.decode(snapshot.data), snapshot.version
                except msgspec.ValidationError as exc:  # an older shape: rebuild from the log
                    log.warning("risk snapshot of %s unreadable (%s); rebuilding", user_id, exc)
            states[user_id] = (state, version)
        streams, after = [], []
        for user_id, stream in zip(user_ids, risk_streams, strict=True):
            state, version = states[user_id]
            streams += [user_stream(user_id), stream]
            after += [state.user_version, version]
        tails = await self.store.read_streams(streams, after)
        loaded = {}
        for user_id, stream in zip(user_ids, risk_streams, strict=True):
            state, version = states[user_id]
            state = _fold_user(state, tails[user_stream(user_id)])
            for recorded in tails[stream]:
                state = evolve(state, RISK_REGISTRY.decode(recorded))
                version = recorded.version
            loaded[user_id] = UserLog(state, version, len(tails[stream]))
        return loaded

    async def _reload(self, ulog: UserLog, user_id: str) -> None:
        fresh = await self._load(user_id)
        ulog.state, ulog.version, ulog.since_snapshot = fresh.state, fresh.version, 0

    async def refresh_user(self, user_token: str) -> None:
        """A user event reached the bus: fold `user-<id>` from where this user is.

        The bus message is only the cue; the log is read so that events are folded
        once, in stream order, whatever was already loaded. A user not active
        here is left alone: it will load fresh when it is needed.
        """
        user_id = self._by_token.get(user_token)
        ulog = self._users.get(user_id) if user_id is not None else None
        if ulog is None or user_id is None:
            return
        async with ulog.lock:
            tail = await self.store.read_stream(
                user_stream(user_id), from_version=ulog.state.user_version + 1
            )
            ulog.state = _fold_user(ulog.state, tail)

    # --- decisions ------------------------------------------------------------------

    async def decide(self, intent: OrderIntent) -> RiskVerdict | None:
        """Decide one intent, record it and queue the verdict; None if it was decided before."""
        ulog = await self.user(intent.user_id)
        async with ulog.lock:
            for _attempt in range(3):
                now = self.clock()
                view = RiskView(
                    user=ulog.state,
                    now_ns=now,
                    market=self.market,
                    max_quote_age_s=self.config.max_quote_age_s,
                )
                verdict = evaluate(intent, view)
                event = RiskDecided(
                    id=new_id(),
                    ts=now,
                    correlation_id=intent.correlation_id,
                    causation_id=intent.id,
                    verdict=verdict,
                )
                outbox = OutboxMessage(
                    subject=subjects.verdict(intent.user_id),
                    msg_id=f"verdict:{intent.intent_id}",
                    payload=encode(verdict),
                    headers=trace_headers(),
                )
                result = await self.writer.submit(
                    request(
                        risk_stream(intent.user_id),
                        ulog.version,
                        [event],
                        metadata=trace_headers(),
                        outbox=[outbox],
                        processed=[(CONSUMER, intent.intent_id)],
                    )
                )
                if isinstance(result, ConcurrencyError):
                    self.conflicts += 1
                    await self._reload(ulog, intent.user_id)
                    continue
                if isinstance(result, EventStoreError):
                    raise result
                if result.duplicate:
                    self.duplicates += 1
                    return None
                self._applied(ulog, event, result.last_version)
                if verdict.approved:
                    self.approved += 1
                else:
                    self.rejected += 1
                return verdict
        raise RuntimeError(f"risk-{intent.user_id}: three concurrent writers in a row; retry")

    async def apply_report(self, report: ExecutionReport) -> bool:
        """Record and fold one execution report; False if it was folded before."""
        event = ReportApplied(
            id=new_id(),
            ts=self.clock(),
            correlation_id=report.correlation_id,
            causation_id=report.id,
            report=report,
        )
        return await self._record(report.user_id, event, processed=[(REPORT_CONSUMER, report.id)])

    async def set_user_kill_switch(self, user_id: str, on: bool, reason: str) -> KillSwitchSet:
        event = KillSwitchSet(id=new_id(), ts=self.clock(), on=on, reason=reason, user_id=user_id)
        await self._record(user_id, event)
        return event

    async def _record(
        self, user_id: str, event: Any, processed: Sequence[tuple[str, str]] = ()
    ) -> bool:
        ulog = await self.user(user_id)
        async with ulog.lock:
            for _attempt in range(3):
                result = await self.writer.submit(
                    request(risk_stream(user_id), ulog.version, [event], processed=processed)
                )
                if isinstance(result, ConcurrencyError):
                    self.conflicts += 1
                    await self._reload(ulog, user_id)
                    continue
                if isinstance(result, EventStoreError):
                    raise result
                if result.duplicate:
                    self.duplicates += 1
                    return False
                self._applied(ulog, event, result.last_version)
                if isinstance(event, ReportApplied):
                    self.reports += 1
                return True
        raise RuntimeError(f"risk-{user_id}: three concurrent writers in a row; retry")

    def _applied(self, ulog: UserLog, event: Any, version: int) -> None:
        ulog.state = evolve(ulog.state, event)
        ulog.version = version
        ulog.since_snapshot += 1

    # --- the market and the global switch ------------------------------------------

    def apply_quote(self, quote: Quote) -> None:
        """Keep the latest quote of a symbol (not recorded: a restart waits for fresh ones)."""
        known = self.market.quotes.get(quote.symbol)
        if known is None or quote.ts >= known.ts:
            self.market = evolve_market(self.market, quote)

    async def set_global_kill_switch(self, on: bool, reason: str) -> KillSwitchSet:
        event = KillSwitchSet(id=new_id(), ts=self.clock(), on=on, reason=reason)
        # last writer wins: the switch is a setting, not a counter
        await self.store.append(CONTROL_STREAM, ANY_VERSION, [event])
        await self.refresh_control()
        return event

    async def refresh_control(self) -> None:
        """Fold the global kill switch events written since the last look (by any risk process)."""
        async with self._control_lock:
            tail = await self.store.read_stream(
                CONTROL_STREAM, from_version=self.control_version + 1
            )
            for recorded in tail:
                self.market = evolve_market(self.market, RISK_REGISTRY.decode(recorded))
                self.control_version = recorded.version

    # --- snapshots --------------------------------------------------------------------

    async def flush_snapshots(self, *, every: int | None = None) -> int:
        """Save a snapshot of each user with at least `every` events since the last one."""
        threshold = self.config.snapshot_every if every is None else every
        items: list[tuple[str, int, str, bytes]] = []
        chosen: list[UserLog] = []
        tag = tag_of(UserExposure)
        for user_id, ulog in self._users.items():
            if ulog.since_snapshot >= max(threshold, 1) and ulog.version > 0:
                items.append((risk_stream(user_id), ulog.version, tag, encode(ulog.state)))
                chosen.append(ulog)
        if items:
            await self.store.save_snapshots(items)
            for ulog in chosen:
                ulog.since_snapshot = 0
        return len(items)


def _fold_user(state: UserExposure, tail: Sequence[RecordedEvent]) -> UserExposure:
    version = state.user_version
    for recorded in tail:
        if USER_REGISTRY.knows(recorded.type):
            state = evolve(state, USER_REGISTRY.decode(recorded))
        version = recorded.version
    if version != state.user_version:
        state = msgspec.structs.replace(state, user_version=version)
    return state
