"""The actor host: this process's share of the users, one actor each.

An actor is a `UserState` (the fold of `user-<id>`) plus the pure decisions
in `services.actors.core`. The host is the shell around them:

- activation is lazy and batched: the latest snapshots and the events after
  them are read for many users in one query, with bounded concurrency so a
  restart does not stampede Postgres;
- one message at a time per actor (`KeyedLocks`), many actors in parallel;
- what actors decide is appended with their expected version through one
  `GroupCommitter` (one commit for a whole fan-out chunk), together with the
  outbox messages: order intents on `orders.intent.<user>` and the user's
  events on `events.user.<user>`;
- a signal is routed to this host's subscribers of its channel from an
  in-memory membership index; the order of service rotates per signal;
- snapshots are written in the background every `snapshot_every` events of
  an actor; actors idle for `idle_s` are passivated (dropped from memory).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts import subjects
from contracts.control import ControlError
from contracts.envelope import encode
from contracts.errors import ErrorCode
from contracts.ingest import ParsedSignal
from contracts.orders import ExecutionReport, RiskVerdict
from contracts.partitions import fnv1a_32, partition_of
from contracts.users import (
    USER_EVENTS,
    CloseAllRequested,
    ReportRecorded,
    SignalHandled,
    VerdictRecorded,
    user_stream,
)
from eventstore import (
    AppendRefused,
    AppendResult,
    ConcurrencyError,
    EventRegistry,
    EventStore,
    EventStoreError,
    OutboxMessage,
)
from eventstore.group_commit import GroupCommitter
from eventstore.records import AppendRequest
from eventstore.store import request as append_request
from services.actors.core import (
    CommandContext,
    UserState,
    decide_command,
    decide_signal,
    decode_state,
    encode_state,
    evolve,
    initial_state,
    internal_refusal,
)
from services.actors.locks import KeyedLocks
from services.actors.membership import Membership
from services.actors.quotes import QuoteBook
from services.runtime.coalesce import CoalescingLoader
from services.runtime.consumer import Rejected
from services.runtime.tracing import trace_headers

log = logging.getLogger("sigrelay.actors")

REGISTRY = EventRegistry(*USER_EVENTS)
_ACTIVATION_LINGER_S = 0.0005  # gather concurrent activations into one bulk read
# Echoes of bus messages: recorded in the user's stream, not published again.
_NOT_PUBLISHED = (VerdictRecorded, ReportRecorded)


@dataclass(slots=True)
class Slot:
    state: UserState
    since_snapshot: int = 0
    last_used: float = 0.0


@dataclass
class HostStats:
    signals: int = 0
    decisions: int = 0
    intents: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    commands: int = 0
    activations: int = 0
    passivations: int = 0
    conflicts: int = 0
    unreadable: int = 0  # decisions skipped: the user's stream could not be folded
    last_fanout_ms: float = 0.0


class ActorHost:
    def __init__(
        self,
        store: EventStore,
        committer: GroupCommitter,
        *,
        partitions: int,
        owned: Iterable[int],
        snapshot_every: int = 50,
        idle_s: float = 600.0,
        chunk: int = 500,
        parallel_chunks: int = 4,
    ) -> None:
        self.store = store
        self.committer = committer
        self.partitions = partitions
        self.owned = frozenset(owned)
        self.snapshot_every = snapshot_every
        self.idle_s = idle_s
        self.chunk = chunk
        self.parallel_chunks = parallel_chunks
        self.slots: dict[str, Slot] = {}
        self.locks = KeyedLocks()
        self.membership = Membership(self.owns)
        self.quotes = QuoteBook()
        self.stats = HostStats()
        self._snapshot_due: dict[str, None] = {}
        self._failed_signal = ""  # the last signal whose decision raised (logged in full)
        self._loader: CoalescingLoader[str, None] = CoalescingLoader(
            self._load_many, linger_s=_ACTIVATION_LINGER_S, name="actors.activate"
        )

    def owns(self, user_id: str) -> bool:
        return partition_of(user_id, self.partitions) in self.owned

    async def set_owned(self, owned: Iterable[int]) -> None:
        """Serve a new set of partitions: let go of the others' actors, learn the new ones'."""
        self.owned = frozenset(owned)
        gone = [u for u in self.slots if not self.owns(u) and u not in self.locks]
        for user in gone:
            if self.slots[user].since_snapshot:
                self._snapshot_due[user] = None
        await self.flush_snapshots()
        for user in gone:
            self.slots.pop(user, None)
        membership = Membership(self.owns)
        await membership.load(self.store)
        self.membership = membership
        log.info(
            "actors: now serving partitions %s (%d users); let go of %d actors",
            sorted(self.owned),
            len(membership.users),
            len(gone),
        )

    async def start(self) -> None:
        read = await self.membership.load(self.store)
        log.info(
            "actors: partitions %s of %d; %d users, %d channels (%d membership events read)",
            sorted(self.owned),
            self.partitions,
            len(self.membership.users),
            len(self.membership.channels()),
            read,
        )

    # --- activation -------------------------------------------------------------

    async def activate(self, users: Sequence[str]) -> None:
        """Make sure every user in `users` has a slot (snapshot + tail).

        Concurrent activations are coalesced: whatever is asked for within
        `_ACTIVATION_LINGER_S`, or while the previous bulk read runs, is read in
        one bulk query (up to 1,000 users), so a burst of control requests for
        cold actors costs a few queries, not one per user.
        """
        cold = [u for u in users if u not in self.slots]
        if cold:
            await self._loader.get_many(cold)

    async def _load_many(self, users: list[str]) -> dict[str, None]:
        await self._load([u for u in users if u not in self.slots])
        return dict.fromkeys(users)

    async def _load(self, users: list[str]) -> None:
        if not users:
            return
        streams = [user_stream(u) for u in users]
        snapshots = await self.store.load_snapshots(streams)
        states = {}
        for user, stream in zip(users, streams, strict=True):
            snap = snapshots.get(stream)
            states[user] = initial_state(user)
            if snap is not None:
                try:
                    states[user] = decode_state(snap.data)
                except Exception:  # the log is the truth: an unreadable snapshot costs a full fold
                    log.exception(
                        "actors: snapshot of user %s unreadable; folding its stream", user
                    )
        tails = await self.store.read_streams(streams, [states[u].version for u in users])
        now = time.monotonic()
        for user, stream in zip(users, streams, strict=True):
            state = states[user]
            tail = tails[stream]
            try:
                for recorded in tail:
                    state = evolve(state, REGISTRY.decode(recorded))
            except Exception:
                # one user's unreadable stream must not fail the bulk read of the others:
                # that user stays without a slot, and each caller refuses them alone
                log.exception("actors: the stream of user %s cannot be folded", user)
                continue
            self.slots[user] = Slot(state=state, since_snapshot=len(tail), last_used=now)
            if len(tail) >= self.snapshot_every:
                self._snapshot_due[user] = None
        self.stats.activations += len(users)

    def _slot(self, user: str) -> Slot:
        slot = self.slots.get(user)
        if slot is None:
            raise ControlError(
                ErrorCode.INTERNAL,
                f"the state of user {user} cannot be read; the operator can find the cause"
                " in the actors' log",
            )
        return slot

    def _forget(self, user: str) -> None:
        self.slots.pop(user, None)

    # --- committing decisions ----------------------------------------------------

    def _append_request(self, user: str, events: list[Any], key: str | None) -> AppendRequest:
        outbox = []
        headers = trace_headers()
        events_subject = subjects.stream_events(user_stream(user))
        for event in events:
            if isinstance(event, (SignalHandled, CloseAllRequested)):
                for intent in event.intents:
                    outbox.append(
                        OutboxMessage(
                            subject=subjects.intent(user),
                            msg_id=intent.intent_id,
                            payload=encode(intent),
                            headers=headers,
                        )
                    )
            if not isinstance(event, _NOT_PUBLISHED):
                outbox.append(
                    OutboxMessage(
                        subject=events_subject,
                        msg_id=event.id,
                        payload=encode(event),
                        headers=headers,
                    )
                )
        return append_request(
            user_stream(user),
            self.slots[user].state.version,
            events,
            idempotency_key=key,
            metadata=headers,
            outbox=outbox,
        )

    async def _commit(
        self, decided: dict[str, list[Any]], key: str | None
    ) -> dict[str, AppendResult | EventStoreError]:
        """Append each user's events (one group commit); fold what was written.

        Returns each user's slot: written when an `AppendResult` that is no duplicate."""
        users = list(decided)
        requests = [self._append_request(u, decided[u], key) for u in users]
        results = await self.committer.submit_many(requests)
        written: dict[str, AppendResult | EventStoreError] = {}
        now = time.monotonic()
        for user, result in zip(users, results, strict=True):
            slot = self.slots[user]
            if isinstance(result, AppendResult) and not result.duplicate:
                state = slot.state
                for event in decided[user]:
                    state = evolve(state, event)
                slot.state = state
                slot.since_snapshot += len(decided[user])
                slot.last_used = now
                if slot.since_snapshot >= self.snapshot_every:
                    self._snapshot_due[user] = None
                self.membership.apply(user, decided[user])
            else:
                # a duplicate (already appended before a crash), another writer, or
                # events the database refused (logged by the committer): the log is
                # the truth, so reload this actor from it next time
                if isinstance(result, ConcurrencyError):
                    self.stats.conflicts += 1
                    log.warning("actors: %s", result)
                self._forget(user)
            written[user] = result
        return written

    # --- control commands --------------------------------------------------------

    async def command(
        self,
        user: str,
        verb: str,
        request: Any,
        make_context: Callable[[UserState], Awaitable[CommandContext]],
        view: Callable[[UserState], Any],
        settle: Callable[[UserState, UserState | None], Awaitable[None]] | None = None,
    ) -> Any:
        """Run one control command for one user; return `view(state after)`.

        `make_context` and `settle` run under the user's lock, so what the shell
        keeps outside the log (account claims) moves in step with the state:
        `settle(before, after)` once the command is in the log, or
        `settle(before, None)` when it was refused or failed.
        """
        async with self.locks.hold(user):
            await self.activate([user])
            before = self._slot(user).state
            try:
                ctx = await make_context(before)
                events = decide_command(before, verb, request, ctx)
                self.stats.commands += 1
                if events:
                    result = (await self._commit({user: events}, key=None))[user]
                    if isinstance(result, AppendRefused):
                        raise result
                    if not isinstance(result, AppendResult) or result.duplicate:
                        raise ControlError(
                            ErrorCode.CONFLICT,
                            f"user {user} was changed concurrently; retry the {verb} request",
                        )
            except Exception:
                if settle is not None:
                    await settle(before, None)
                raise
            after = self.slots[user].state
            if settle is not None:
                await settle(before, after)
            return view(after)

    # --- signals -----------------------------------------------------------------

    async def on_signal(self, signal: ParsedSignal, now_ns: int) -> int:
        """Decide `signal` for every subscriber on this host; returns how many decided."""
        users = self.membership.subscribers(signal.channel)
        if not users:
            return 0
        started = time.perf_counter()
        offset = fnv1a_32(signal.id.encode()) % len(users)  # nobody is always last
        users = users[offset:] + users[:offset]
        self.quotes.now_ns = now_ns
        gate = asyncio.Semaphore(self.parallel_chunks)

        async def run_chunk(chunk: list[str]) -> int:
            async with gate, self.locks.hold_all(chunk):
                await self.activate(chunk)
                decided = {}
                for user in chunk:
                    if user not in self.slots:  # its stream cannot be read (logged)
                        self.stats.unreadable += 1
                        continue
                    events = self._decide_signal(user, signal, now_ns)
                    if events:
                        decided[user] = events
                if decided:
                    await self._commit(decided, key=f"signal:{signal.id}")
                self._count(decided)
                return len(decided)

        chunks = [users[i : i + self.chunk] for i in range(0, len(users), self.chunk)]
        counts = await asyncio.gather(*(run_chunk(c) for c in chunks))
        self.stats.signals += 1
        self.stats.last_fanout_ms = round((time.perf_counter() - started) * 1000, 2)
        return sum(counts)

    def _decide_signal(self, user: str, signal: ParsedSignal, now_ns: int) -> list[Any]:
        """One user's decision; a failure refuses this user alone, so one bad state
        (say, settings from before their bounds) never holds up the whole fan-out."""
        state = self.slots[user].state
        try:
            return list(decide_signal(state, signal, self.quotes, now_ns))
        except Exception as exc:
            if self._failed_signal != signal.id:  # one traceback per signal, not per user
                self._failed_signal = signal.id
                log.exception("actors: deciding signal %s for user %s failed", signal.id, user)
            else:
                log.error("actors: deciding signal %s for user %s failed: %r", signal.id, user, exc)
            return [internal_refusal(state, signal, now_ns, exc)]

    def _count(self, decided: dict[str, list[Any]]) -> None:
        for events in decided.values():
            for event in events:
                self.stats.decisions += 1
                if isinstance(event, SignalHandled):
                    self.stats.intents += len(event.intents)
                else:
                    code = getattr(event, "code", "other")
                    self.stats.refusals[code] = self.stats.refusals.get(code, 0) + 1

    # --- verdicts and reports ----------------------------------------------------

    async def on_verdict(self, verdict: RiskVerdict) -> None:
        user = verdict.intent.user_id
        event = VerdictRecorded(
            id=f"verdict:{verdict.intent.intent_id}",
            ts=verdict.ts,
            correlation_id=verdict.intent.signal_id,
            causation_id=verdict.id,
            verdict=verdict,
        )
        await self._record(user, event, key=event.id)

    async def on_report(self, report: ExecutionReport) -> None:
        event = ReportRecorded(
            id=f"report:{report.id}",
            ts=report.ts,
            correlation_id=report.signal_id,
            causation_id=report.id,
            report=report,
        )
        await self._record(report.user_id, event, key=event.id)

    async def _record(self, user: str, event: Any, key: str) -> None:
        if not self.owns(user):
            return
        async with self.locks.hold(user):
            await self.activate([user])
            if user not in self.slots:
                raise Rejected(f"the stream of user {user} cannot be read (see the actors' log)")
            result = (await self._commit({user: [event]}, key=key))[user]
            if isinstance(result, AppendRefused):  # kept in the dead letters, not dropped
                raise Rejected(f"the store refused {event.id} for user {user}: {result}")

    # --- housekeeping ------------------------------------------------------------

    async def flush_snapshots(self) -> int:
        due = [u for u in self._snapshot_due if u in self.slots]
        self._snapshot_due.clear()
        items = []
        for user in due:
            slot = self.slots[user]
            items.append(
                (
                    user_stream(user),
                    slot.state.version,
                    "actor.user_state",
                    encode_state(slot.state),
                )
            )
            slot.since_snapshot = 0
        for start in range(0, len(items), 1000):
            await self.store.save_snapshots(items[start : start + 1000])
        return len(items)

    async def passivate_idle(self) -> int:
        """Drop actors idle for `idle_s` (after snapshotting them if they moved)."""
        cutoff = time.monotonic() - self.idle_s
        idle = [u for u, s in self.slots.items() if s.last_used < cutoff and u not in self.locks]
        for user in idle:
            if self.slots[user].since_snapshot:
                self._snapshot_due[user] = None
        await self.flush_snapshots()
        for user in idle:
            self.slots.pop(user, None)
        self.stats.passivations += len(idle)
        return len(idle)
