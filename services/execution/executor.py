"""`ExecutionCore`: one approved intent to the broker and back, exactly once.

The caller (the service, through `AccountScheduler`) runs one call per
account at a time; this module assumes it and keeps no locks.

For each intent:
1. the account's state is folded from `account-<id>` (cached in memory);
   an intent already reported is a duplicate: nothing happens;
2. the request is planned (close volume, target position) from what we
   recorded and what the broker says now; a plan that cannot work (no open
   position to close) is reported `rejected` without calling the broker;
3. `OrderSubmitting` is appended (idempotency key = intent id, consumer
   tracking `("execution", intent_id)`) BEFORE the broker is called;
4. the broker is called under `client_id_for(intent_id)`, with bounded
   retries: `RetryLater` after its `retry_after_s`, `NotConnected` with
   back-off, `OutcomeUnknown` by looking the order up before any resend;
5. `OrderReported` is appended with the `ExecutionReport` in the outbox
   (`orders.report.<user>`, msg id `report:<intent>:<status>`).

A submitting record without a report (a crash between 3 and 5) is finished
by `recover`: the order is looked up at the broker BEFORE anything is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from contracts import broker_codes as codes
from contracts import subjects
from contracts.broker import (
    AuthFailed,
    Broker,
    BrokerError,
    BrokerOrderResult,
    OrderRequest,
    OutcomeUnknown,
    PendingOrder,
    Position,
    Rejected,
    RetryLater,
    SymbolSpec,
    found_as_result,
)
from contracts.broker_codes import reject
from contracts.envelope import encode, new_id, now_ns
from contracts.orders import ExecutionReport, OrderIntent, RiskVerdict
from eventstore import (
    ANY_VERSION,
    ConcurrencyError,
    EventRegistry,
    EventStore,
    EventStoreError,
    request,
)
from eventstore.group_commit import GroupCommitter
from eventstore.records import OutboxMessage
from services.runtime.coalesce import CoalescingLoader
from services.runtime.tracing import trace_headers

from .account import AccountState
from .directory import BrokerDirectory
from .events import (
    EXECUTION_EVENTS,
    OrderReported,
    OrderSubmitting,
    account_stream,
    report_key,
)
from .faults import KILL_AFTER_BROKER_ACCEPT, FaultHook
from .health import BrokerConnectionChanged, ConnectionHealth, classify
from .ids import client_id_for, close_volume
from .reports import report_failure, report_success

log = logging.getLogger("sigrelay.execution")

CONSUMER = "execution"
REGISTRY = EventRegistry(*EXECUTION_EVENTS)
_EPS = 1e-9

Sleep = Callable[[float], Awaitable[None]]


class OutcomeStillUnknown(Exception):
    """The broker may have executed an order and could not be asked whether it did.
    Not a broker answer: nothing is reported; the verdict is retried later."""

    def __init__(self, intent_id: str, last: BrokerError) -> None:
        super().__init__(
            f"intent {intent_id}: the broker may have executed it and cannot be asked"
            f" now ({type(last).__name__}: {last}); it will be looked up again"
        )
        self.intent_id = intent_id
        self.last = last


class ExecutionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the execution service (env: SIGRELAY_EXECUTION_WORKERS,
    SIGRELAY_EXECUTION_BROKER_EVENTS_S for `broker_events_sweep_s`).

    `workers` bounds broker calls in flight across accounts; retries are
    bounded so that one sick account cannot hold a worker for long.
    """

    workers: int = 256
    # how often every account with holdings is asked for broker events anyway; the
    # paper exchange announces the accounts it acted on, so this only covers lost notices
    broker_events_sweep_s: float = 60.0
    broker_events_sweep_per_s: int = 200  # polls a second during a sweep
    consumer_concurrency: int = 4096
    paper_timeout_s: float = 5.0
    retry_later_attempts: int = 4
    retry_later_max_s: float = 5.0
    not_connected_attempts: int = 4
    not_connected_base_s: float = 0.25
    not_connected_max_s: float = 4.0
    unknown_attempts: int = 3
    spec_cache_s: float = 300.0
    # recovery of accounts with orders whose outcome is unknown (recovery.py): how many
    # at once, the back-off between attempts, and how long one attempt may take
    recovery_concurrency: int = 16
    recovery_backoff_base_s: float = 1.0
    recovery_backoff_max_s: float = 60.0
    recovery_attempt_timeout_s: float = 120.0

    @classmethod
    def from_env(cls, env: Any) -> ExecutionConfig:
        fields: dict[str, Any] = {}
        workers = env.get("SIGRELAY_EXECUTION_WORKERS")
        if workers:
            fields["workers"] = int(workers)
        poll = env.get("SIGRELAY_EXECUTION_BROKER_EVENTS_S")
        if poll:
            fields["broker_events_sweep_s"] = float(poll)
        return cls(**fields)


class ExecutionCore:
    def __init__(
        self,
        store: EventStore,
        committer: GroupCommitter,
        directory: BrokerDirectory,
        config: ExecutionConfig | None = None,
        *,
        fault: FaultHook | None = None,
        clock: Callable[[], int] = now_ns,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.store = store
        self.committer = committer
        self.directory = directory
        self.config = config or ExecutionConfig()
        self._fault = fault or FaultHook()
        self.health = ConnectionHealth()
        self._clock = clock
        self._sleep = sleep
        self._accounts: dict[str, AccountState] = {}
        self._loader = CoalescingLoader(self._load_many, name="execution.load-accounts")
        self._specs: dict[tuple[str, str], tuple[float, SymbolSpec]] = {}
        self.executed = 0
        self.duplicates = 0
        self.recovered = 0
        self.reports: dict[str, int] = {}

    # ---- account state ---------------------------------------------------------------

    def now(self) -> int:
        return self._clock()

    def accounts_holding(self) -> list[str]:
        """Loaded accounts where our intents left positions or pending orders."""
        return [a for a, state in self._accounts.items() if state.holdings]

    async def account(self, account_id: str) -> AccountState:
        found = self._accounts.get(account_id)
        if found is None:
            # the accounts a fan-out meets for the first time are read together
            loaded = await self._loader.get(account_id)
            found = self._accounts.setdefault(account_id, loaded)
        return found

    async def load(self, account_id: str) -> AccountState:
        return (await self._load_many([account_id]))[account_id]

    async def _load_many(self, account_ids: list[str]) -> dict[str, AccountState]:
        streams = [account_stream(a) for a in account_ids]
        tails = await self.store.read_streams(streams, [0] * len(streams))
        states = {}
        for account_id, stream in zip(account_ids, streams, strict=True):
            state = AccountState(account_id)
            for recorded in tails[stream]:
                event = REGISTRY.decode(recorded) if REGISTRY.knows(recorded.type) else None
                state.apply(event, recorded.version)
            states[account_id] = state
        return states

    async def reload(self, account_id: str) -> AccountState:
        state = self._accounts[account_id] = await self.load(account_id)
        return state

    async def append(
        self,
        state: AccountState,
        events: list[Any],
        *,
        idempotency_key: str,
        outbox: list[OutboxMessage] | None = None,
        processed: list[tuple[str, str]] | None = None,
    ) -> bool:
        """Append to the account stream at its version; False if the key was seen before.

        A concurrent writer (ConcurrencyError) makes us re-read the stream: the
        caller then looks at the fresh state before deciding again."""
        result = await self.committer.submit(
            request(
                account_stream(state.account_id),
                state.version,
                events,
                idempotency_key=idempotency_key,
                outbox=outbox or (),
                processed=processed or (),
            )
        )
        if isinstance(result, ConcurrencyError):
            raise result
        if isinstance(result, EventStoreError):
            raise result
        if result.duplicate:
            return False
        for offset, event in enumerate(events):
            state.apply(event, result.first_version + offset)
        return True

    # ---- one intent -------------------------------------------------------------------

    async def execute(self, verdict: RiskVerdict) -> ExecutionReport | None:
        """Carry out one approved intent; None when it had been carried out already."""
        intent = verdict.intent
        for _attempt in range(3):
            try:
                return await self._execute(verdict, intent)
            except ConcurrencyError:
                await self.reload(intent.account_id)
        raise RuntimeError(
            f"account {intent.account_id}: intent {intent.intent_id} lost 3 races to other writers"
        )

    async def _execute(self, verdict: RiskVerdict, intent: OrderIntent) -> ExecutionReport | None:
        state = await self.account(intent.account_id)
        if intent.intent_id in state.reported:
            self.duplicates += 1
            return None
        pending = state.submitting.get(intent.intent_id)
        try:
            broker = await self.directory.broker_for(intent.account_id, intent.user_id)
        except BrokerError as exc:
            if pending is not None:  # its outcome may sit at a broker we cannot reach now
                raise
            return await self._report_without_broker(state, verdict, exc)
        if pending is not None:
            return await self._finish(state, broker, pending, recovering=True)
        plan = await self._plan(state, broker, verdict)
        if isinstance(plan, BrokerError):
            return await self._report_without_broker(state, verdict, plan)
        appended = await self.append(
            state,
            [plan],
            idempotency_key=intent.intent_id,
            processed=[(CONSUMER, intent.intent_id)],
        )
        if not appended:  # written by an earlier delivery: its outcome may be at the broker
            state = await self.reload(intent.account_id)
            if intent.intent_id in state.reported:
                self.duplicates += 1
                return None
            pending = state.submitting.get(intent.intent_id)
            if pending is None:
                raise RuntimeError(f"intent {intent.intent_id}: submitting record vanished")
            return await self._finish(state, broker, pending, recovering=True)
        return await self._finish(state, broker, plan, recovering=False)

    async def recover(self, account_id: str) -> list[ExecutionReport]:
        """Finish every order of the account that was sent without a recorded outcome,
        looking each up at the broker before anything is sent again."""
        state = await self.reload(account_id)
        reports = []
        for pending in list(state.submitting.values()):
            broker = await self.directory.broker_for(account_id, pending.intent.user_id)
            report = await self._finish(state, broker, pending, recovering=True)
            if report is not None:
                reports.append(report)
        return reports

    async def _finish(
        self, state: AccountState, broker: Broker, sub: OrderSubmitting, *, recovering: bool
    ) -> ExecutionReport | None:
        submitted_ns = sub.ts if recovering else self._clock()
        outcome = await self.send(broker, sub, recovering=recovering)
        reported_ns = self._clock()
        causation = sub.verdict_id or sub.id
        if isinstance(outcome, BrokerError):
            report = report_failure(
                sub.intent,
                outcome,
                causation_id=causation,
                submitted_ns=submitted_ns,
                reported_ns=reported_ns,
            )
        else:
            report = report_success(
                sub,
                outcome,
                causation_id=causation,
                submitted_ns=submitted_ns,
                reported_ns=reported_ns,
            )
        event = OrderReported(
            id=new_id(),
            ts=reported_ns,
            correlation_id=report.correlation_id,
            causation_id=causation,
            report=report,
            client_id=sub.client_id,
            target_intent_id=sub.intent.target_intent_id,
            recovered=recovering,
        )
        written = await self.append(
            state,
            [event],
            idempotency_key=report_key(sub.intent.intent_id),
            outbox=[_outbox(report)],
        )
        if not written:
            self.duplicates += 1
            return None
        if recovering:
            self.recovered += 1
        self.executed += 1
        self.reports[report.status] = self.reports.get(report.status, 0) + 1
        return report

    async def _report_without_broker(
        self, state: AccountState, verdict: RiskVerdict, error: BrokerError
    ) -> ExecutionReport | None:
        now = self._clock()
        intent = verdict.intent
        report = report_failure(
            intent, error, causation_id=verdict.id, submitted_ns=0, reported_ns=now
        )
        event = OrderReported(
            id=new_id(),
            ts=now,
            correlation_id=report.correlation_id,
            causation_id=verdict.id,
            report=report,
            client_id=client_id_for(intent.intent_id),
            target_intent_id=intent.target_intent_id,
        )
        written = await self.append(
            state,
            [event],
            idempotency_key=report_key(intent.intent_id),
            outbox=[_outbox(report)],
            processed=[(CONSUMER, intent.intent_id)],
        )
        if not written:
            self.duplicates += 1
            return None
        self.executed += 1
        self.reports[report.status] = self.reports.get(report.status, 0) + 1
        return report

    # ---- planning ----------------------------------------------------------------------

    async def _plan(
        self, state: AccountState, broker: Broker, verdict: RiskVerdict
    ) -> OrderSubmitting | BrokerError:
        """The submitting record for an intent, or the reason it cannot be sent."""
        intent = verdict.intent
        fields: dict[str, Any] = {
            "id": new_id(),
            "ts": self._clock(),
            "correlation_id": intent.correlation_id or intent.signal_id,
            "causation_id": verdict.id,
            "intent": intent,
            "client_id": client_id_for(intent.intent_id),
            "verdict_id": verdict.id,
        }
        if intent.action == "open":
            try:
                order_request(intent, fields["client_id"])
            except ValueError as exc:
                return reject(codes.INVALID, f"intent {intent.intent_id} cannot be sent: {exc}")
            return OrderSubmitting(**fields)
        target = state.holdings.get(intent.target_intent_id or "")
        if target is None:
            return reject(
                codes.POSITION_NOT_FOUND,
                f"{intent.action} of intent {intent.target_intent_id}: account"
                f" {intent.account_id} has no open position or order from it",
            )
        fields.update(position_id=target.position_id, order_id=target.order_id)
        if target.pending:
            # a pending order may have filled at the broker since we placed it
            live = await self._retrying(lambda: broker.find_by_client_id(target.client_id))
            if isinstance(live, BrokerError):
                return live
            if isinstance(live, Position):
                fields.update(position_id=live.position_id)
                target_volume = live.volume
            elif isinstance(live, PendingOrder):
                target_volume = live.volume
            else:
                return reject(
                    codes.ORDER_NOT_FOUND,
                    f"pending order {target.order_id} of intent {target.intent_id}"
                    " is no longer at the broker",
                )
        else:
            target_volume = target.volume
        if intent.action == "modify":
            return OrderSubmitting(**fields, price=target.price, volume_before=target_volume)
        if intent.action == "cancel":
            if fields["position_id"] is not None:
                return reject(
                    codes.ORDER_NOT_FOUND,
                    f"the order of intent {target.intent_id} has already filled: nothing to cancel",
                )
            return OrderSubmitting(**fields, volume_before=target_volume)
        # close: of a pending order it is a cancel; of a position, all or a fraction of it
        if fields["position_id"] is None:
            return OrderSubmitting(**fields, volume_before=target_volume)
        live_pos = await self._retrying(lambda: broker.find_by_client_id(target.client_id))
        if isinstance(live_pos, BrokerError):
            return live_pos
        if isinstance(live_pos, Position):
            target_volume = live_pos.volume
        elif live_pos is None:
            return reject(
                codes.POSITION_NOT_FOUND,
                f"position {fields['position_id']} of intent {target.intent_id}"
                " is no longer open at the broker",
            )
        volume: float | None = None
        if intent.close_fraction is not None:
            spec = await self._spec(broker, intent.account_id, target.symbol)
            if isinstance(spec, BrokerError):
                return spec
            try:
                volume = close_volume(
                    target_volume,
                    intent.close_fraction,
                    step=spec.volume_step,
                    min_volume=spec.min_volume,
                )
            except ValueError as exc:
                return reject(codes.INVALID_VOLUME, f"intent {intent.intent_id}: {exc}")
        return OrderSubmitting(**fields, volume=volume, volume_before=target_volume)

    async def _spec(self, broker: Broker, account_id: str, symbol: str) -> SymbolSpec | BrokerError:
        key = (account_id, symbol)
        now = asyncio.get_running_loop().time()
        cached = self._specs.get(key)
        if cached is not None and now - cached[0] < self.config.spec_cache_s:
            return cached[1]
        spec = await self._retrying(lambda: broker.symbol_spec(symbol))
        if isinstance(spec, SymbolSpec):
            self._specs[key] = (now, spec)
        return spec

    # ---- talking to the broker ----------------------------------------------------------

    async def _retrying(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """A read with the same bounded retries as a trade; the error when they run out."""
        attempts = 0
        while True:
            try:
                return await call()
            except (Rejected, AuthFailed) as exc:
                return exc
            except BrokerError as exc:
                attempts += 1
                if attempts > self.config.not_connected_attempts:
                    return exc
                await self._sleep(self._backoff(attempts, exc))

    def _backoff(self, attempt: int, exc: BrokerError) -> float:
        cfg = self.config
        if isinstance(exc, RetryLater) and exc.retry_after_s is not None:
            return min(max(exc.retry_after_s, 0.0), cfg.retry_later_max_s)
        return min(cfg.not_connected_base_s * 2 ** (attempt - 1), cfg.not_connected_max_s)

    async def send(
        self, broker: Broker, sub: OrderSubmitting, *, recovering: bool
    ) -> BrokerOrderResult | BrokerError:
        """Call the broker for `sub` until it answers for good, or the retries run out.

        Raises `OutcomeStillUnknown` rather than give up while an earlier attempt may
        have executed and no look-up has said otherwise: reporting that order `failed`
        could hide an open position (fail closed; the submitting record stays, and the
        next delivery or recovery looks it up before sending anything)."""
        attempts: dict[str, int] = {}
        look_first = recovering
        maybe_executed = recovering
        while True:
            try:
                if look_first:
                    done = await self.look_up(broker, sub)
                    if done is not None:
                        return done
                    look_first = False
                    maybe_executed = False  # the broker says it has not: sending is safe
                result = await self._call(broker, sub)
                if sub.intent.action == "open":
                    self._fault(KILL_AFTER_BROKER_ACCEPT)
                await self._observe_health(sub.intent.account_id, result)
                return result
            except BrokerError as exc:
                await self._observe_health(sub.intent.account_id, exc)
                if isinstance(exc, (Rejected, AuthFailed)) and not maybe_executed:
                    return exc
                if isinstance(exc, OutcomeUnknown):
                    maybe_executed = True
                outcome = await self._retry_or_give_up(exc, attempts)
                if outcome is not None:
                    if maybe_executed:
                        raise OutcomeStillUnknown(sub.intent.intent_id, outcome) from exc
                    return outcome
                if isinstance(exc, OutcomeUnknown):
                    look_first = True  # it may have executed: never resend before looking

    async def _retry_or_give_up(
        self, exc: BrokerError, attempts: dict[str, int]
    ) -> BrokerError | None:
        """Sleep before the next try, or return the error when its retries ran out."""
        cfg = self.config
        kind = type(exc).__name__
        attempts[kind] = attempts.get(kind, 0) + 1
        limit = {
            "RetryLater": cfg.retry_later_attempts,
            "NotConnected": cfg.not_connected_attempts,
            "OutcomeUnknown": cfg.unknown_attempts,
        }.get(kind)
        if limit is None or attempts[kind] > limit:
            return exc
        if not isinstance(exc, OutcomeUnknown):
            await self._sleep(self._backoff(attempts[kind], exc))
        return None

    async def _observe_health(self, account_id: str, outcome: object) -> None:
        """Record a change of the account's broker connection (see health.py)."""
        state = classify(outcome)
        if state is None:
            return
        previous = self.health.observe(account_id, state)
        if previous is None:
            return
        event = BrokerConnectionChanged(
            id=f"health:{account_id}:{new_id()}",
            ts=now_ns(),
            account_id=account_id,
            state=state,
            previous=previous,
            reason=getattr(outcome, "reason", "") if state != "up" else "",
        )
        log.info("broker connection of %s: %s -> %s %s", account_id, previous, state, event.reason)
        if self.committer is None:
            return
        try:  # operators' information: failing to record it must not stop an order
            await self.committer.submit(
                request(
                    f"broker-health-{account_id}",
                    ANY_VERSION,
                    [event],
                    outbox=[
                        OutboxMessage(
                            subject=subjects.stream_events(f"account-{account_id}"),
                            msg_id=event.id,
                            payload=encode(event),
                        )
                    ],
                )
            )
        except Exception as exc:
            log.warning("could not record the broker health of %s: %r", account_id, exc)

    async def _call(self, broker: Broker, sub: OrderSubmitting) -> BrokerOrderResult:
        intent = sub.intent
        if intent.action == "open":
            return await broker.place_order(order_request(intent, sub.client_id))
        if intent.action == "modify":
            if sub.position_id is not None:
                return await broker.modify_position(sub.position_id, intent.sl, intent.tp)
            assert sub.order_id is not None
            price = intent.price or sub.price
            if price is None:
                raise reject(codes.INVALID_PRICE, f"pending order {sub.order_id} has no price")
            return await broker.modify_order(sub.order_id, price, intent.sl, intent.tp)
        if intent.action == "close" and sub.position_id is not None:
            return await broker.close_position(sub.position_id, sub.volume)
        assert sub.order_id is not None  # cancel, or close of a pending order
        return await broker.cancel_order(sub.order_id)

    async def look_up(self, broker: Broker, sub: OrderSubmitting) -> BrokerOrderResult | None:
        """What the broker already did with `sub`, or None if it must be sent (again)."""
        intent = sub.intent
        if intent.action == "open":
            found = await broker.find_by_client_id(sub.client_id)
            return None if found is None else found_as_result(found, duplicate=True)
        if intent.action == "modify":
            return None  # setting the same stops again changes nothing
        if intent.action == "close" and sub.position_id is not None:
            live = next(
                (p for p in await broker.positions() if p.position_id == sub.position_id), None
            )
            before = sub.volume_before
            if live is None:
                closed = sub.volume if sub.volume is not None else before
                return BrokerOrderResult(
                    status="filled",
                    position_id=sub.position_id,
                    volume=closed,
                    reason=f"position {sub.position_id} was already closed at the broker",
                )
            if before is not None and live.volume < before - _EPS:
                return BrokerOrderResult(
                    status="filled",
                    position_id=sub.position_id,
                    volume=round(before - live.volume, 8),
                    reason=f"position {sub.position_id} was already reduced at the broker",
                )
            return None
        orders = await broker.orders()
        if any(o.order_id == sub.order_id for o in orders):
            return None
        return BrokerOrderResult(
            status="accepted",
            order_id=sub.order_id,
            reason=f"order {sub.order_id} was no longer pending at the broker",
        )

    def stats(self) -> dict[str, Any]:
        return {
            "executed": self.executed,
            "duplicates": self.duplicates,
            "recovered": self.recovered,
            "accounts": len(self._accounts),
            "reports": dict(self.reports),
        }


def order_request(intent: OrderIntent, client_id: str) -> OrderRequest:
    if intent.side is None:
        raise ValueError(f"an open intent needs a side; intent {intent.intent_id} has none")
    return OrderRequest(
        client_id=client_id,
        symbol=intent.symbol,
        side=intent.side,
        volume=intent.volume,
        order_type=intent.order_type,
        price=intent.price if intent.order_type != "market" else None,
        sl=intent.sl,
        tp=intent.tp,
    )


def _outbox(report: ExecutionReport) -> OutboxMessage:
    return OutboxMessage(
        subject=subjects.report(report.user_id),
        msg_id=f"report:{report.intent_id}:{report.status}",
        payload=encode(report),
        headers=trace_headers(),
    )
