"""The paper exchange service (`paper`): a simulated broker as external as a real one.

- Serves the `Broker` operations of every paper account on
  `broker.paper.<account>.<op>` (request/reply, JSON; see
  `contracts/paper_wire.py`), queue group `paper`.
- Owns one shared seeded price feed and publishes every symbol's quote each
  `tick_interval_s` (250 ms) on `prices.<symbol>` as `contracts.orders.Quote`.
- Keeps each account's book as facts in the event log (stream
  `paper-<account>`, `facts.py`), written through a
  `GroupCommitter` before the reply leaves, so a reply is never ahead of the
  log. A restart folds every stream back into its book.

One account's calls run one at a time (a lock per account); accounts run
in parallel and their facts share commits. A store that fails leaves the
book marked dirty: the caller hears `outcome_unknown` and the next call
rebuilds the book from the log first, so the book never claims what the log
does not hold.

What the exchange does on its own (a pending order filled, a position closed
by its SL or TP, an order cancelled for want of margin) is served on
`broker.paper.<account>.events_since`: the broker events among the stored
facts after a given stream version (`broker_events.py`). Served
from the log, so an event exists only once its fact is stored.

Test-only: `broker.paper.control.set_quote` (`paper_wire.CONTROL_SET_QUOTE`)
moves a symbol's market, when started with `SIGRELAY_PAPER_CONTROL=1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import msgspec
from nats.aio.msg import Msg

from contracts import paper_wire as wire
from contracts import subjects
from contracts.broker import BrokerError, BrokerEventPage, NotConnected, OutcomeUnknown, Rejected
from contracts.envelope import encode, new_id
from eventstore import EventRegistry, EventStore, EventStoreError, request
from eventstore.cancellation import reraise_if_cancelling
from eventstore.group_commit import GroupCommitter

from .broker_events import broker_events
from .exchange import PaperAccount, PaperExchange, PaperExchangeConfig
from .facts import PAPER_EVENTS, PaperFact, paper_stream

log = logging.getLogger("sigrelay.paper")

NAME = "paper"
REGISTRY = EventRegistry(*PAPER_EVENTS)
_OPENED = "paper.account_opened"
_NOTICE_CHUNK = 1000  # accounts per broker-events notice (a message stays well under 1 MB)


class PaperExchangeService:
    """Runs a `PaperExchange` on the bus. `config` and `clock` are for tests and the bench."""

    name: ClassVar[str] = NAME

    def __init__(
        self,
        config: PaperExchangeConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        control: bool | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._control = control  # None: from SIGRELAY_PAPER_CONTROL
        self.exchange: PaperExchange | None = None
        self.ready = asyncio.Event()
        self._store: EventStore | None = None
        self._committer: GroupCommitter | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.facts_stored = 0
        self.store_failures = 0
        self.quotes_published = 0
        self.notices_published = 0
        self._nc: Any = None

    async def run(self, ctx: Any) -> None:
        config = self._config or PaperExchangeConfig.from_env(ctx.settings.env)
        self.exchange = PaperExchange(config, start_time=self._clock())
        if self._control is None:
            self._control = ctx.settings.env.get(wire.CONTROL_ENV) == "1"
        self._store = ctx.store
        self._nc = ctx.nc
        self._committer = GroupCommitter(ctx.store, max_batch=2000, linger_s=0.001)
        self._committer.start()
        try:
            await self._rebuild()
            sub = await ctx.nc.subscribe(
                wire.SUBSCRIPTION,
                queue=NAME,
                cb=self._on_request,
                pending_msgs_limit=1_000_000,
                pending_bytes_limit=512 * 1024 * 1024,
            )
            await ctx.nc.flush()  # the server knows the subscription before we say ready
            ticker = asyncio.create_task(self._ticker(ctx.nc), name="paper.ticker")
            self.ready.set()
            log.info("paper: serving %d accounts", len(self.exchange.accounts))
            try:
                await ticker
            finally:
                ticker.cancel()
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            await self._committer.stop()

    # ---- recovery -------------------------------------------------------------------

    async def _rebuild(self) -> None:
        """Fold every `paper-<account>` stream into its book (accounts found through the
        partial index on `paper.account_opened`, migration 004)."""
        assert self._store is not None and self.exchange is not None
        async with self._store.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT stream, data->>'account_id' FROM events WHERE type = %s", (_OPENED,)
            )
            rows = await cur.fetchall()
        streams = {row[0]: row[1] for row in rows}
        names = sorted(streams)
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            tails = await self._store.read_streams(chunk, [0] * len(chunk))
            fired: dict[str, list[PaperFact]] = {}
            for stream in chunk:
                recorded = tails[stream]
                facts = [REGISTRY.decode(r) for r in recorded]
                version = recorded[-1].version if recorded else 0
                caught_up = self.exchange.restore(streams[stream], facts, version)
                if caught_up:  # stops hit while the exchange was away
                    fired[streams[stream]] = caught_up
            if fired:
                await self._announce(await self._persist_many(fired))

    async def _reload(self, acct: PaperAccount) -> PaperAccount:
        assert self._store is not None and self.exchange is not None
        recorded = await self._store.read_stream(paper_stream(acct.account_id))
        facts = [REGISTRY.decode(r) for r in recorded]
        version = recorded[-1].version if recorded else 0
        caught_up = self.exchange.restore(acct.account_id, facts, version)
        fresh = self.exchange.accounts[acct.account_id]
        if not recorded:  # never stored: start the account afresh
            del self.exchange.accounts[acct.account_id]
            fresh = self.exchange.account(acct.account_id)
        elif caught_up:
            await self._persist(fresh, caught_up)
        return fresh

    # ---- storing --------------------------------------------------------------------

    async def _persist(self, acct: PaperAccount, facts: Sequence[PaperFact]) -> bool:
        """Store facts in the account's stream; False (and the book marked dirty) if not.

        No await before the committer's queue takes the request: appends of one
        account enter the queue in the order the book made them.
        """
        assert self._committer is not None and self.exchange is not None
        stamped = [_stamp(f) for f in facts]
        expected = acct.version
        acct.version += len(stamped)
        try:
            result = await self._committer.submit(
                request(paper_stream(acct.account_id), expected, stamped)
            )
        except Exception as exc:
            result = EventStoreError(f"commit failed: {exc!r}")
        if isinstance(result, EventStoreError):
            self.store_failures += 1
            log.warning("paper: could not store %s: %s", acct.account_id, result)
            self.exchange.mark_dirty(acct)
            return False
        self.facts_stored += len(stamped)
        return True

    # ---- serving --------------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        # nats-py runs a subscription's callbacks one after another: hand each off
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        assert self.exchange is not None
        self.requests += 1
        if msg.subject == wire.CONTROL_SET_QUOTE:
            await self._set_quote(msg)
            return
        op = msg.subject.rsplit(".", 1)[-1]
        try:
            call = wire.call_decoder.decode(msg.data)
        except Exception as exc:
            await _respond(msg, wire.encode_error(_malformed(f"malformed paper request: {exc}")))
            return
        if op == wire.EVENTS_SINCE:
            await self._events_since(msg, call)
            return
        lock = self._locks.get(call.account)
        if lock is None:
            lock = self._locks[call.account] = asyncio.Lock()
        async with lock:
            acct = self.exchange.accounts.get(call.account)
            if acct is not None and acct.dirty:
                acct = await self._reload(acct)
            result, facts = self.exchange.execute(call.account, op, bytes(call.args))
            if facts:
                stored = await self._persist(self.exchange.accounts[call.account], facts)
                if not stored and op in wire.TRADE_OPS:
                    result = OutcomeUnknown(
                        f"the paper exchange could not record {op} for {call.account};"
                        " look the order up before sending it again"
                    )
        if isinstance(result, BrokerError):
            await _respond(msg, wire.encode_error(result))
        else:
            await _respond(msg, wire.encode_ok(result))

    async def _events_since(self, msg: Msg, call: wire.Call) -> None:
        """The broker events of `call.account` after stream version `after`, from the log."""
        assert self._store is not None
        try:
            args = msgspec.json.decode(bytes(call.args), type=wire.EventsSinceArgs)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            await _respond(msg, wire.encode_error(_malformed(f"malformed events_since: {exc}")))
            return
        limit = min(max(args.limit, 1), 1_000)
        after = max(args.after, 0)
        try:
            recorded = await self._store.read_stream(paper_stream(call.account), after + 1)
        except Exception as exc:  # the log is away: the caller asks again later
            error = NotConnected(f"the paper exchange cannot read {call.account}'s log: {exc!r}")
            await _respond(msg, wire.encode_error(error))
            return
        page = recorded[:limit]
        facts = [(r.version, REGISTRY.decode(r)) for r in page]
        reply = BrokerEventPage(
            events=broker_events(call.account, facts),
            last_seq=page[-1].version if page else after,
            more=len(recorded) > limit,
        )
        await _respond(msg, wire.encode_ok(reply))

    async def _set_quote(self, msg: Msg) -> None:
        assert self.exchange is not None
        if not self._control:
            off = f"the paper exchange's test control is off ({wire.CONTROL_ENV}=1 turns it on)"
            await _respond(msg, wire.encode_error(_malformed(off)))
            return
        try:
            args = msgspec.json.decode(msg.data, type=wire.SetQuoteArgs)
            fired = self.exchange.set_quote(args.symbol, args.bid, args.ask, self._clock())
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            await _respond(msg, wire.encode_error(_malformed(f"set_quote: {exc}")))
            return
        if fired:
            await self._announce(await self._persist_many(fired))
        await _respond(msg, wire.encode_ok({"accounts": sorted(fired)}))

    async def _ticker(self, nc: Any) -> None:
        assert self.exchange is not None
        interval = self.exchange.config.tick_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                fired = self.exchange.tick(self._clock())
                # one await for all of a tick's facts: they join the queue in book order
                if fired:
                    await self._announce(await self._persist_many(fired))
                for quote in self.exchange.market_quotes():
                    await nc.publish(subjects.prices(quote.symbol), encode(quote))
                    self.quotes_published += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bad tick must not stop the feed
                reraise_if_cancelling(exc)
                log.warning("paper: tick failed: %r", exc)

    async def _persist_many(self, fired: dict[str, list[PaperFact]]) -> list[str]:
        """Store what the market did to each account; the accounts whose facts are stored."""
        assert self._committer is not None and self.exchange is not None
        accts = [self.exchange.accounts[a] for a in fired]
        requests = []
        for acct in accts:
            stamped = [_stamp(f) for f in fired[acct.account_id]]
            requests.append(request(paper_stream(acct.account_id), acct.version, stamped))
            acct.version += len(stamped)
        try:
            results = await self._committer.submit_many(requests)
        except Exception as exc:
            results = [EventStoreError(f"commit failed: {exc!r}")] * len(requests)
        stored = []
        for acct, result, req in zip(accts, results, requests, strict=True):
            if isinstance(result, EventStoreError):
                self.store_failures += 1
                self.exchange.mark_dirty(acct)
            else:
                self.facts_stored += len(req.types)
                stored.append(acct.account_id)
        return stored

    async def _announce(self, accounts: list[str]) -> None:
        """Tell execution which accounts have new broker events, so it pulls them now
        rather than at its next sweep. Only after the facts are stored: a pull
        that follows the notice finds them."""
        if not accounts or self._nc is None:
            return
        for start in range(0, len(accounts), _NOTICE_CHUNK):
            chunk = sorted(accounts[start : start + _NOTICE_CHUNK])
            try:
                await self._nc.publish(
                    subjects.broker_events_notice("paper"), msgspec.json.encode(chunk)
                )
                self.notices_published += 1
            except Exception as exc:  # a lost cue: the sweep pulls these accounts later
                reraise_if_cancelling(exc)
                log.warning("paper: broker-events notice not sent: %r", exc)

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "facts_stored": self.facts_stored,
            "store_failures": self.store_failures,
            "quotes_published": self.quotes_published,
            "broker_event_notices": self.notices_published,
            **(self.exchange.stats() if self.exchange else {}),
        }


def _stamp(fact: PaperFact) -> PaperFact:
    return msgspec.structs.replace(fact, id=new_id())


def _malformed(reason: str) -> BrokerError:
    return Rejected(reason, broker_code=10013, broker_code_name="TRADE_RETCODE_INVALID")


async def _respond(msg: Msg, data: bytes) -> None:
    if not msg.reply:
        return
    with contextlib.suppress(Exception):  # the caller gave up or the connection is gone
        await msg.respond(data)
