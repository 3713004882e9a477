"""What the broker does on its own, reported to the user as it happens.

A pending order filled by the market, a position closed by its stop loss or
take profit, an order cancelled by the broker: none of these answers a
request of ours, so without this module the actors and risk would believe a
filled limit order still pending and a stopped-out position still open.

Pull, not push: execution asks each paper account for its broker events
after the last one it applied (`BrokerEventSource.events_since`, on
`broker.paper.<account>.events_since`, a subject execution may already
request). The events are numbered per account by the stream version of the
paper fact behind them, so:

- nothing is missed: a poll resumes after the last applied `seq`, and
  after a restart from the `seq` of the last `BrokerEventRecorded` in
  `account-<id>` (the cursor is written in the same transaction as the
  report, so it can never run ahead of, or behind, what was reported);
- nothing is doubled: each event is appended with idempotency key
  `broker-event:<account>:<seq>`, its report through the outbox under msg id
  `report:<intent>:<status>:<seq>`.

`report_for_event` is the pure mapping (the holding our intent left, plus the
event, to the `ExecutionReport` of the intent that opened the leg);
`BrokerEventWatcher` is the shell: at start it catches up every account
execution has sent orders for; then it polls an account when the broker
announces new events for it (`broker.events.<broker>`, a core-NATS cue), and
every `broker_events_sweep_s` it sweeps the accounts that hold positions or
pending orders (the only ones the broker can act on), paced at
`broker_events_sweep_per_s`, in case a cue was lost.
Each poll runs in the account's queue behind its pending intents. (Polling
every holding account every second cost a request and a query per account
per second: with 1,000 accounts, more CPU than the orders themselves.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec

from contracts import subjects
from contracts.broker import BrokerEvent, BrokerEventSource
from contracts.envelope import encode, new_id
from contracts.orders import ExecutionReport, ReportStatus
from eventstore import ConcurrencyError
from eventstore.cancellation import reraise_if_cancelling
from eventstore.records import OutboxMessage

from .account import AccountState, Holding
from .directory import NoBroker, is_paper
from .events import BrokerEventRecorded, broker_event_key
from .executor import ExecutionCore
from .scheduler import AccountScheduler

log = logging.getLogger("sigrelay.execution")

_notice_decoder = msgspec.json.Decoder(list[str])
_KNOWN_ACCOUNTS = "SELECT DISTINCT stream FROM events WHERE type = 'execution.submitting'"
_STATUS: dict[str, ReportStatus] = {
    "filled": "filled",
    "closed": "closed",
    "cancelled": "cancelled",
}


# ---- the pure part ---------------------------------------------------------------------


def report_for_event(
    state: AccountState, event: BrokerEvent, *, reported_ns: int
) -> tuple[Holding, ExecutionReport] | None:
    """The report of `event` for the intent that opened the leg, or None when the event
    is not about a leg we hold, or tells what we know already (a fill we recorded when
    looking the order up after a restart, a cancel of an order that has filled)."""
    holding = state.holding_for(event.client_id, event.order_id, event.position_id)
    if holding is None or holding.opened is None:
        return None
    if event.kind in ("filled", "cancelled") and not holding.pending:
        return None
    opened = holding.opened
    fields: dict[str, Any] = {
        "id": new_id(),
        "ts": reported_ns,
        "correlation_id": opened.correlation_id or opened.signal_id,
        "causation_id": broker_event_key(state.account_id, event.seq),
        "intent_id": holding.intent_id,
        "user_id": opened.user_id or state.user_id,
        "account_id": state.account_id,
        "signal_id": opened.signal_id,
        "action": "open",
        "leg": opened.leg,
        "symbol": holding.symbol,
        "side": holding.side,
        "status": _STATUS[event.kind],
        "reason": event.reason,
        "submitted_ns": opened.submitted_ns,
        "reported_ns": reported_ns,
    }
    if event.kind == "filled":
        fields.update(
            order_id=event.order_id or holding.order_id,
            position_id=event.position_id or event.order_id or holding.order_id,
            price=event.price,
            volume=event.volume if event.volume is not None else holding.volume,
            sl=holding.sl,
            tp=holding.tp,
        )
    elif event.kind == "closed":
        closed = event.volume if event.volume is not None else holding.volume
        remaining = event.remaining_volume
        if remaining is None:
            remaining = max(round(holding.volume - closed, 8), 0.0)
        fields.update(
            order_id=holding.order_id,
            position_id=event.position_id or holding.position_id,
            price=event.price,
            volume=closed,
            remaining_volume=remaining,
            profit=event.profit,
        )
    else:
        fields.update(order_id=event.order_id or holding.order_id, remaining_volume=0.0)
    return holding, ExecutionReport(**fields)


def report_message(report: ExecutionReport, seq: int) -> OutboxMessage:
    """The report on `orders.report.<user>`; the seq keeps it apart from the intent's own
    report of the same status (`report:<intent>:<status>`)."""
    return OutboxMessage(
        subject=subjects.report(report.user_id),
        msg_id=f"report:{report.intent_id}:{report.status}:{seq}",
        payload=encode(report),
    )


# ---- the shell -------------------------------------------------------------------------


class BrokerEventWatcher:
    """Polls brokers for what they did on their own and reports it (see the module doc).

    Every poll of an account runs in its `AccountScheduler` queue, so it never
    races an intent of the same account for the account stream.
    """

    def __init__(
        self,
        core: ExecutionCore,
        scheduler: AccountScheduler,
        *,
        sweep_s: float,
        sweep_per_s: int = 200,
        page: int = 500,
    ) -> None:
        self.core = core
        self.scheduler = scheduler
        self.sweep_s = sweep_s
        self.sweep_per_s = max(1, sweep_per_s)
        self.page = page
        self._queued: set[str] = set()
        self._silent: set[str] = set()  # accounts whose broker has no event source
        self.polls = 0
        self.notices = 0
        self.applied = 0
        self.errors = 0

    async def run(self) -> None:
        """Catch up every account execution has sent orders for, then sweep for ever."""
        async with self.core.store.pool.connection() as conn:
            cur = await conn.execute(_KNOWN_ACCOUNTS)
            known = sorted(row[0].removeprefix("account-") for row in await cur.fetchall())
        for account in known:
            self.request(account)
        while True:
            await asyncio.sleep(self.sweep_s)
            await self._sweep()

    async def _sweep(self) -> None:
        """Poll every account with holdings, paced: a sweep is a safety net for lost
        notices and must not compete with orders (10,000 accounts at once would be
        10,000 requests and queries in a burst)."""
        accounts = list(self.core.accounts_holding())
        for start in range(0, len(accounts), self.sweep_per_s):
            if start:
                await asyncio.sleep(1.0)
            for account in accounts[start : start + self.sweep_per_s]:
                self.request(account)

    def on_notice(self, data: bytes) -> None:
        """A broker announced new events for these accounts: poll them now."""
        try:
            accounts = _notice_decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            # a cue, not a fact: a bad one costs nothing but the wait for the sweep
            log.warning("execution: malformed broker-events notice ignored: %s", exc)
            return
        self.notices += 1
        for account in accounts:
            self.request(account)

    def request(self, account_id: str) -> None:
        """Queue one poll of the account (at most one waits at a time)."""
        if account_id in self._queued or account_id in self._silent:
            return
        self._queued.add(account_id)
        future = self.scheduler.submit(account_id, lambda: self._guarded(account_id))
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

    async def _guarded(self, account_id: str) -> int:
        self._queued.discard(account_id)
        self.polls += 1
        try:
            return await self.poll(account_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next poll tries again; nothing was applied twice
            reraise_if_cancelling(exc)
            self.errors += 1
            log.warning("execution: broker events of %s: %r", account_id, exc)
            return 0

    async def poll(self, account_id: str) -> int:
        """Apply every broker event of the account not applied yet; how many were reported.
        The caller runs it in the account's queue."""
        for _attempt in range(3):
            try:
                return await self._poll(account_id)
            except ConcurrencyError:
                await self.core.reload(account_id)
        raise RuntimeError(f"account {account_id}: broker events lost 3 races to other writers")

    async def _poll(self, account_id: str) -> int:
        core = self.core
        if not is_paper(account_id):
            # only the paper exchange lists its own events; MetaApi's equivalent (its
            # streaming listener) is not wired: reconciliation still catches those
            self._silent.add(account_id)
            return 0
        state = await core.account(account_id)
        if not state.holdings:
            return 0  # the broker can act on nothing of ours
        if state.submitting:
            # an order sent without a recorded outcome: its events must not be passed over
            # before recovery records it (the next poll after that applies them)
            return 0
        try:
            broker = await core.directory.broker_for(account_id, state.user_id)
        except NoBroker:
            self._silent.add(account_id)  # this process cannot reach its broker at all
            return 0
        if not isinstance(broker, BrokerEventSource):
            self._silent.add(account_id)
            return 0
        applied = 0
        while True:
            start = state.broker_seq
            page = await broker.events_since(start, self.page)
            for event in page.events:
                if event.seq > state.broker_seq:
                    applied += await self._apply(state, event)
                    state = await core.account(account_id)  # a duplicate reloaded it
            state.broker_seq = max(state.broker_seq, page.last_seq)  # facts that are no event
            if not page.more or state.broker_seq <= start:
                return applied

    async def _apply(self, state: AccountState, event: BrokerEvent) -> int:
        core = self.core
        found = report_for_event(state, event, reported_ns=core.now())
        if found is None:
            state.broker_seq = max(state.broker_seq, event.seq)
            return 0
        holding, report = found
        recorded = BrokerEventRecorded(
            id=new_id(),
            ts=report.reported_ns,
            correlation_id=report.correlation_id,
            causation_id=report.causation_id,
            event=event,
            report=report,
            client_id=holding.client_id,
        )
        written = await core.append(
            state,
            [recorded],
            idempotency_key=broker_event_key(state.account_id, event.seq),
            outbox=[report_message(report, event.seq)],
        )
        if not written:  # applied by an earlier run: our state had not folded it yet
            await core.reload(state.account_id)
            return 0
        self.applied += 1
        core.reports[report.status] = core.reports.get(report.status, 0) + 1
        return 1

    def stats(self) -> dict[str, Any]:
        return {
            "broker_event_polls": self.polls,
            "broker_event_notices": self.notices,
            "broker_events_applied": self.applied,
            "broker_event_errors": self.errors,
        }
