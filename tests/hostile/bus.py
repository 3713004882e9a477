"""The running system the subject tests attack: ingest, actors, risk, execution and
audit in this process, each with its own NATS user and producer, on a NATS server and
a database of the module's own; a tiny price feed puts the market in view so that the
actors take signals at once. And the consumed subjects, each with its consumers, a good
message and messages of absurd values."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.js.errors

from contracts import subjects
from contracts.envelope import Codec, encode, new_id, now_ns
from contracts.ingest import ParsedSignal, RawMessage
from contracts.orders import ExecutionReport, OrderIntent, Quote, RiskVerdict
from contracts.settings import LotSizing, UserSettings
from contracts.signals import Noise, OpenSignal
from contracts.users import USER_EVENTS, SettingsChanged, UserRegistered
from services.actors.service import ActorsService
from services.audit.service import AuditService, durable_name
from services.execution.service import ExecutionService
from services.ingest.service import IngestService
from services.risk.core import RiskConfig
from services.risk.service import RiskService
from tests.support import inprocess

SETTLE_WITHIN_S = 30.0
_serial = itertools.count(1)


class System:
    """The running services, an admin connection, and what the module saw: every dead
    letter, every consumer or relay warning. (Not a dataclass: hypothesis would print
    all of it with every failing example.)"""

    def __init__(
        self,
        admin: Any,
        services: dict[str, Any],
        tasks: dict[str, list[asyncio.Task[Any]]],
        dead_letters: list[Any],
        warnings: list[str],
    ) -> None:
        self.admin = admin
        self.js = admin.jetstream()
        self.services = services
        self.tasks = tasks
        self.dead_letters = dead_letters
        self.warnings = warnings

    def consumer(self, durable: str) -> Any:
        for service in self.services.values():
            for consumer in _consumers_of(service):
                if consumer.spec.durable == durable:
                    return consumer
        raise KeyError(durable)

    def owner(self, durable: str) -> str:
        """The name of the service whose consumer `durable` is."""
        for name, service in self.services.items():
            if any(c.spec.durable == durable for c in _consumers_of(service)):
                return name
        raise KeyError(durable)

    def __repr__(self) -> str:
        return f"System({', '.join(self.services)})"


async def _feed(nc: Any) -> None:
    while True:
        quote = Quote(
            id=new_id(),
            ts=now_ns(),
            symbol="XAUUSD",
            bid=2000.0,
            ask=2000.2,
            pip_size=0.1,
            pip_value_per_lot=10.0,
        )
        await nc.publish(subjects.prices("XAUUSD"), encode(quote))
        await asyncio.sleep(0.25)


def _consumers_of(service: Any) -> list[Any]:
    found = getattr(service, "consumers", None)
    if found is None:  # execution has one
        one = getattr(service, "consumer", None)
        found = [one] if one is not None else []
    return list(found)


def _consumers_running(service: Any) -> bool:
    return bool(_consumers_of(service))


async def _durable_exists(js: Any, stream: str, durable: str, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await js.consumer_info(stream, durable)
            return
        except nats.js.errors.NotFoundError:
            assert loop.time() < deadline, f"no consumer {durable} on {stream} within {within} s"
            await asyncio.sleep(0.05)


async def _until(done: Callable[[], bool], what: str, within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done():
        assert loop.time() < deadline, f"not reached within {within} s: {what}"
        await asyncio.sleep(0.05)


# --- the subjects and their consumers ------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One consumed subject: who consumes it, and a good message to publish after."""

    name: str
    stream: str
    subject: Callable[[str], str]
    consumers: tuple[str, ...]  # durables that must dead-letter a malformed body
    good: Callable[[str], Any]
    absurd: Callable[[str], list[Any]]
    types: tuple[type[Any], ...]  # what its consumers decode

    def decodes(self, body: bytes) -> bool:
        """Whether `body` is a valid message here after all (hypothesis finds the tags)."""
        try:
            Codec(*self.types).decode(body)
        except Exception:
            return False
        return True


def _intent(key: str, **changes: Any) -> OrderIntent:
    fields: dict[str, Any] = {
        "id": new_id(),
        "ts": now_ns(),
        "intent_id": f"sig:{key}:1:open",
        "user_id": key,
        "account_id": f"paper-{key}",
        "broker": "paper",
        "action": "open",
        "signal_id": f"sig:{key}",
        "symbol": "XAUUSD",
        "side": "buy",
        "volume": 0.01,
        "price": 2000.2,
        "sl": 1990.0,
        "tp": 2010.0,
    }
    fields.update(changes)
    return OrderIntent(**fields)


def _verdict(key: str, **changes: Any) -> RiskVerdict:
    return RiskVerdict(
        id=new_id(),
        ts=now_ns(),
        intent=_intent(key, **changes),
        approved=False,
        code="paused",
        reason="hostile suite",
    )


def _report(key: str, **changes: Any) -> ExecutionReport:
    fields: dict[str, Any] = {
        "id": new_id(),
        "ts": now_ns(),
        "intent_id": f"sig:{key}:1:open",
        "user_id": key,
        "account_id": f"paper-{key}",
        "signal_id": f"sig:{key}",
        "action": "open",
        "status": "failed",
    }
    fields.update(changes)
    return ExecutionReport(**fields)


def raw_message(key: str, **changes: Any) -> RawMessage:
    fields: dict[str, Any] = {
        "id": new_id(),
        "ts": now_ns(),
        "channel": key,
        "message_id": 1,
        "date_ns": now_ns(),
        "text": "XAUUSD BUY NOW 2000\nSL 1990\nTP 2010",
    }
    fields.update(changes)
    return RawMessage(**fields)


def _parsed(key: str, **changes: Any) -> ParsedSignal:
    fields: dict[str, Any] = {
        "id": new_id(),
        "ts": now_ns(),
        "signal_id": f"{key}:1",
        "channel": key,
        "message_id": 1,
        "posted_ns": now_ns(),
        "result": Noise(),
    }
    fields.update(changes)
    return ParsedSignal(**fields)


def _settings_changed(key: str) -> SettingsChanged:
    absurd = UserSettings(lot=LotSizing(fixed_lot=1e308, max_lot=1e308))
    return SettingsChanged(id=new_id(), ts=now_ns(), settings=absurd)


CASES = (
    Case(
        "signals.raw",
        "SIGNALS",
        subjects.raw,
        ("ingest",),
        raw_message,
        lambda key: [
            raw_message(key, message_id=2**63 - 1, date_ns=-1, edit_ns=2**63 - 1),
            raw_message(key, message_id=2, text="TP 1\n" * 20_000),
        ],
        (RawMessage,),
    ),
    Case(
        "signals.parsed",
        "SIGNALS",
        subjects.parsed,
        ("actors-signals-all",),
        _parsed,
        lambda key: [
            _parsed(key, message_id=2**63 - 1, revision=-5, posted_ns=0),
            _parsed(
                key,
                result=OpenSignal(
                    symbol="XAUUSD",
                    side="buy",
                    entry=1e308,
                    sl=-1e308,
                    tps=tuple(float(i) for i in range(3000)),
                ),
            ),
        ],
        (ParsedSignal,),
    ),
    Case(
        "orders.intent",
        "ORDERS",
        subjects.intent,
        ("risk",),
        _intent,
        lambda key: [
            _intent(key, volume=1e308, price=-1e308, sl=1e308),
            _intent(key, leg=2**63 - 1, close_fraction=-3.0, signal_posted_ns=-1),
        ],
        (OrderIntent,),
    ),
    Case(
        "orders.verdict",
        "ORDERS",
        subjects.verdict,
        ("actors-verdicts-all", "execution"),
        _verdict,
        lambda key: [_verdict(key, volume=1e308, price=-1e308), _verdict(key, leg=-(2**63))],
        (RiskVerdict,),
    ),
    Case(
        "orders.report",
        "ORDERS",
        subjects.report,
        ("actors-reports-all", "risk-reports"),
        _report,
        lambda key: [
            _report(key, status="filled", volume=1e308, price=-1e308, balance=-1e308),
            _report(key, leg=2**63 - 1, status="closed", profit=1e308, broker_code=2**63 - 1),
        ],
        (ExecutionReport,),
    ),
    Case(
        "events.user",
        "EVENTS",
        lambda key: subjects.stream_events(f"user-{key}"),
        ("risk-users",),
        lambda key: UserRegistered(id=new_id(), ts=now_ns(), user_id=key),
        lambda key: [_settings_changed(key)],
        USER_EVENTS,
    ),
)
CASE_IDS = [c.name for c in CASES]


def audit_durable(case: Case) -> str:
    filters = {"SIGNALS": f"{case.name}.>", "ORDERS": f"{case.name}.>", "EVENTS": "events.>"}
    return durable_name(filters[case.stream])


# --- publishing and waiting ---------------------------------------------------------------


async def publish(system: System, subject: str, body: bytes) -> int:
    ack = await system.js.publish(subject, body)
    return int(ack.seq)


def dead_letter_of(system: System, durable: str, seq: int) -> Any:
    for msg in system.dead_letters:
        headers = msg.headers or {}
        if headers.get("Sigrelay-Consumer") == durable and headers.get(
            "Sigrelay-Stream-Seq"
        ) == str(seq):
            return msg
    return None


async def settled(
    system: System, case: Case, durable: str, seq: int, subject: str, mark: int
) -> None:
    """Until `durable` has acknowledged or terminated everything up to `seq`; fails at once
    when its consumer could not settle a message or its handler raised (a malformed message
    treated as a passing failure: it would come back again and again)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_WITHIN_S
    while True:
        trouble = [
            w
            for w in system.warnings[mark:]
            if w.startswith(f"sigrelay.consumer: {durable}: could not settle")
            or (w.startswith(f"sigrelay.consumer: {durable}: handler failed on {subject} "))
        ]
        assert not trouble, f"{durable} on {subject} (seq {seq}): {trouble[:3]}"
        info = await system.js.consumer_info(case.stream, durable)
        if info.ack_floor.stream_seq >= seq and info.num_ack_pending == 0:
            return
        stopped = [
            name
            for name in (system.owner(durable), "audit")
            if any(t.done() for t in system.tasks[name])
        ]
        assert not stopped, f"{stopped} stopped: " + "; ".join(
            repr(t.exception()) for n in stopped for t in system.tasks[n] if t.done()
        )
        assert loop.time() < deadline, (
            f"{durable} did not settle seq {seq} on {subject} within {SETTLE_WITHIN_S} s:"
            f" ack floor {info.ack_floor.stream_seq}, pending {info.num_ack_pending},"
            f" redelivered {info.num_redelivered}; warnings {system.warnings[mark:][-3:]}"
        )
        await asyncio.sleep(0.05)


async def good_message_handled(system: System, case: Case, key: str, mark: int) -> None:
    subject = case.subject(key)
    before = {d: system.consumer(d).handled for d in case.consumers}
    parsed = None
    if case.name == "signals.raw":
        parsed = await system.admin.subscribe(subjects.parsed(key), max_msgs=1)
    try:
        seq = await publish(system, subject, encode(case.good(key)))
        for durable in case.consumers:
            await settled(system, case, durable, seq, subject, mark)
            assert dead_letter_of(system, durable, seq) is None, f"{durable} refused a good message"
            assert system.consumer(durable).handled > before[durable]
        if parsed is not None:  # ingest's output goes out through its outbox relay
            try:
                msg = await parsed.next_msg(timeout=SETTLE_WITHIN_S)
            except Exception as exc:
                relay = [w for w in system.warnings[mark:] if "outbox" in w]
                raise AssertionError(
                    f"no parsed signal for {key}: {exc!r}; relay: {relay[-3:]}"
                ) from None
            assert msgspec.json.decode(msg.data)["channel"] == key
    finally:
        if parsed is not None:
            await parsed.unsubscribe()


def new_key(case: Case) -> str:
    return f"hx{next(_serial)}"


@contextlib.asynccontextmanager
async def running_system(
    hostile_nats: Any, hostile_database: str, hostile_home: Path, consumer_warnings: list[str]
) -> AsyncIterator[System]:
    """Ingest, actors, risk, execution and audit in this process, with a price feed."""
    admin = await nats.connect(hostile_nats.admin_url, name="tests-hostile-admin")
    dead: list[Any] = []

    async def keep(msg: Any) -> None:
        dead.append(msg)

    dlq = await admin.subscribe(f"{subjects.DEAD_LETTER}.>", cb=keep)
    feed = asyncio.create_task(_feed(admin))
    made = {
        "ingest": IngestService(),
        "actors": ActorsService(),
        "risk": RiskService(RiskConfig(market_view_wait_s=0.0)),
        "execution": ExecutionService(reconcile_on_start=False),
        "audit": AuditService(),
    }
    contexts, tasks = {}, {}
    try:
        for name, service in made.items():
            contexts[name] = await inprocess.open_context(
                name,
                nats_url=hostile_nats.url_for(name),
                database_url=hostile_database,
                home=hostile_home,
            )
            tasks[name] = inprocess.start(service, contexts[name])
        system = System(admin, made, tasks, dead, consumer_warnings)
        await _until(lambda: all(_consumers_running(s) for s in made.values()), "services up")
        for case in CASES:  # every durable made (the actors' signals wait for the feed)
            for durable in (*case.consumers, audit_durable(case)):
                await _durable_exists(system.js, case.stream, durable)
        yield system
    finally:
        # stop every service and close every connection even when one will not stop:
        # a service left running would go on talking to the next module's servers
        unstopped = []
        for name in reversed(list(tasks)):
            try:
                await inprocess.stop(tasks[name], contexts[name])
            except AssertionError as exc:
                unstopped.append(f"{name}: {exc}"[:2000])
                with contextlib.suppress(Exception):
                    await inprocess.close_context(contexts[name])
        feed.cancel()
        await dlq.unsubscribe()
        await admin.close()
        assert not unstopped, unstopped
