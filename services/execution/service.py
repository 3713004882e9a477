"""The execution service (`execution`): approved intents to the user's broker account.

Consumes `orders.verdict.>` (stream ORDERS, durable `execution`). Rejected
verdicts are acked and left alone (the actors record them). Approved ones
go to a per-account queue (`AccountScheduler`): one intent at a time per
broker account, in order, accounts served round-robin by a bounded pool of
workers. The message is acked once its report is written; while it waits
the consumer tells JetStream it is still in progress.

Exactly once (`executor.py`): `OrderSubmitting` before the broker call,
the broker's client id derived from the intent id (`ids.client_id_for`),
the report and its `orders.report.<user>` message in one transaction
(outbox, msg id `report:<intent>:<status>`). At start, every account with a
submitting record and no report is held and recovered in the background
(`recovery.py`): its orders are looked up at the broker by client id before
anything is resent, and its new verdicts queue until then; the consumer
starts at once, so other accounts trade meanwhile. An order whose outcome
stays unknown later (`OutcomeStillUnknown`) puts its account in recovery too.
The health reply lists the accounts recovering (`recovering`).

Control: `ctl.svc.execution.reconcile` `{"account_id": str?}` reconciles one
account, or every account execution has sent orders for (`reconcile.py`);
also run once in the background at start.

Brokers: `paper-*` accounts go to the paper exchange (`PaperBrokerClient`
on `broker.paper.>`); MetaApi accounts to `MetaApiBroker`, with the token
opened by `VaultTokenResolver` (`tokens.py`): the token sealed in the user's
`AccountLinked` event, opened with the shared credential vault
(`services.runtime.credentials`, master keys from `SIGRELAY_MASTER_KEYS`).
A token that can no longer be read (account unlinked, user deleted, data
key shredded) makes the intent `rejected`, with the reason in plain words.

Broker events (`broker_events.py`): what the broker does on its own (a
pending order filled, an SL or TP hit, an order cancelled) is polled from
event-capable brokers and reported for the intent that opened the leg.

Test-only fault hook: `SIGRELAY_FAULT=kill_after_broker_accept` (`faults.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, ClassVar

import msgspec
from nats.aio.msg import Msg
from nats.micro import add_service
from nats.micro.request import Request

from contracts import subjects
from contracts.control import ControlError, convert_request, decode_body, encode_reply, ok
from contracts.envelope import Codec
from contracts.orders import RiskVerdict
from eventstore.group_commit import GroupCommitter
from services.runtime.consumer import ConsumerConfigSpec, JetStreamConsumer
from services.runtime.service import ServiceContext
from services.runtime.tracing import in_current_context

from .broker.metaapi_pool import MetaApiConfig
from .broker_events import BrokerEventWatcher
from .directory import (
    BrokerDirectory,
    MetaApiDirectory,
    PaperDirectory,
    RoutingDirectory,
    TokenResolver,
)
from .executor import CONSUMER, ExecutionConfig, ExecutionCore, OutcomeStillUnknown
from .faults import FaultHook
from .reconcile import Reconciler
from .recovery import AccountRecovery
from .scheduler import AccountScheduler, Job
from .tokens import VaultTokenResolver

log = logging.getLogger("sigrelay.execution")

NAME = "execution"
RECONCILE_SUBJECT = f"{subjects.CTL_SERVICE}.{NAME}.reconcile"

_INFLIGHT_ACCOUNTS = """
SELECT DISTINCT s.stream FROM events s
WHERE s.type = 'execution.submitting'
  AND NOT EXISTS (
    SELECT 1 FROM events r WHERE r.stream = s.stream AND r.idempotency_key = 'report:' || s.idempotency_key
  )
"""
_KNOWN_ACCOUNTS = "SELECT DISTINCT stream FROM events WHERE type = 'execution.submitting'"


class ReconcileRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    account_id: str | None = None


class ExecutionService:
    """Runs an `ExecutionCore` on the bus. Arguments are for tests and the bench."""

    name: ClassVar[str] = NAME

    def __init__(
        self,
        config: ExecutionConfig | None = None,
        *,
        directory: BrokerDirectory | None = None,
        token_resolver: TokenResolver | None = None,
        reconcile_on_start: bool = True,
    ) -> None:
        self._config = config
        self._directory = directory
        self._token_resolver = token_resolver
        self._reconcile_on_start = reconcile_on_start
        self.token_resolver: TokenResolver | None = None
        self.core: ExecutionCore | None = None
        self.scheduler: AccountScheduler | None = None
        self.reconciler: Reconciler | None = None
        self.recovery: AccountRecovery | None = None
        self.consumer: JetStreamConsumer | None = None
        self.broker_events: BrokerEventWatcher | None = None
        self.ready = asyncio.Event()
        self.approved = 0
        self.rejected_verdicts = 0
        self._waiting: dict[asyncio.Future[Any], Msg] = {}

    @property
    def consumers(self) -> list[JetStreamConsumer]:
        """For the service host's health reply and metrics."""
        return [self.consumer] if self.consumer else []

    async def run(self, ctx: ServiceContext) -> None:
        env = ctx.settings.env
        config = self._config or ExecutionConfig.from_env(env)
        resolver = self._token_resolver or VaultTokenResolver.from_env(
            ctx.store, env, home=ctx.settings.home
        )
        self.token_resolver = resolver
        directory = self._directory or RoutingDirectory(
            PaperDirectory(ctx.nc, timeout_s=config.paper_timeout_s),
            MetaApiDirectory(resolver, config=MetaApiConfig.from_env(env)),
        )
        committer = GroupCommitter(ctx.store, max_batch=2000, linger_s=0.001)
        committer.start()
        core = self.core = ExecutionCore(
            ctx.store, committer, directory, config, fault=FaultHook.from_env(env)
        )
        scheduler = self.scheduler = AccountScheduler(workers=config.workers)
        watcher = self.broker_events = BrokerEventWatcher(
            core,
            scheduler,
            sweep_s=config.broker_events_sweep_s,
            sweep_per_s=config.broker_events_sweep_per_s,
        )
        self.reconciler = Reconciler(core, catch_up=watcher.poll)
        recovery = self.recovery = AccountRecovery(
            scheduler,
            core.recover,
            concurrency=config.recovery_concurrency,
            backoff_base_s=config.recovery_backoff_base_s,
            backoff_max_s=config.recovery_backoff_max_s,
            attempt_timeout_s=config.recovery_attempt_timeout_s,
        )
        tasks = [asyncio.create_task(scheduler.run(), name="execution.scheduler")]
        micro = None
        notices = None
        try:
            await self._recover_all(ctx)  # holds those accounts before any verdict is taken
            micro = ctx.micro
            if micro is None:  # run without the host (tests, bench): register our own
                micro = await add_service(
                    ctx.nc, name="sigrelay-execution-control", version="0.1.0"
                )
            await micro.add_endpoint(
                name="reconcile", subject=RECONCILE_SUBJECT, handler=self._on_reconcile
            )
            self.consumer = JetStreamConsumer(
                ctx.js,
                ConsumerConfigSpec(
                    service=NAME,
                    stream="ORDERS",
                    durable=CONSUMER,
                    filter_subject=f"{subjects.VERDICT}.>",
                    concurrency=config.consumer_concurrency,
                    batch=512,
                    ack_wait_s=30.0,
                ),
                Codec(RiskVerdict),
                self._on_verdict,
            )
            tasks.append(asyncio.create_task(self.consumer.run(), name="execution.consumer"))
            tasks.append(asyncio.create_task(self._keep_alive(), name="execution.keep_alive"))
            if self._reconcile_on_start:
                tasks.append(asyncio.create_task(self._reconcile_known(ctx), name="reconcile"))
            tasks.append(asyncio.create_task(watcher.run(), name="execution.broker_events"))
            notices = await ctx.nc.subscribe(
                subjects.broker_events_notice("*"), cb=self._on_broker_notice
            )
            self.ready.set()
            await asyncio.gather(*tasks)
        finally:
            await recovery.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if notices is not None:
                with contextlib.suppress(Exception):
                    await notices.unsubscribe()
            if micro is not None and ctx.micro is None:
                with contextlib.suppress(Exception):
                    await micro.stop()
            await committer.stop()
            with contextlib.suppress(Exception):
                await directory.close()

    async def _on_broker_notice(self, msg: Msg) -> None:
        if self.broker_events is not None:
            self.broker_events.on_notice(msg.data)

    # ---- recovery and reconciliation -------------------------------------------------

    async def _accounts(self, ctx: ServiceContext, query: str) -> list[str]:
        async with ctx.store.pool.connection() as conn:
            cur = await conn.execute(query)
            rows = await cur.fetchall()
        return sorted(row[0].removeprefix("account-") for row in rows)

    async def _recover_all(self, ctx: ServiceContext) -> None:
        """Hold and recover, in the background, every account with an order sent without
        a report: only those accounts wait for their broker, the others trade at once."""
        assert self.recovery is not None
        accounts = await self._accounts(ctx, _INFLIGHT_ACCOUNTS)
        if accounts:
            log.info("execution: recovering orders of %d accounts", len(accounts))
        for account in accounts:
            self.recovery.start(account)

    def _guarded(self, account: str, job: Job) -> Job:
        """`job` in the account's queue; if it leaves an order whose outcome is unknown,
        the account is held and recovered before anything else is sent for it."""
        recovery = self.recovery
        assert recovery is not None

        async def run() -> Any:
            try:
                return await job()
            except OutcomeStillUnknown:
                recovery.start(account)  # no await before the worker takes the next job
                raise

        return run

    async def _reconcile_known(self, ctx: ServiceContext) -> None:
        try:
            accounts = await self._accounts(ctx, _KNOWN_ACCOUNTS)
            await self.reconcile(accounts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reconciliation informs; it must not stop execution
            log.warning("execution: reconciliation at start failed: %r", exc)

    async def reconcile(self, accounts: list[str]) -> list[dict[str, Any]]:
        """Reconcile accounts (each in its account's queue, behind its pending intents)."""
        assert self.scheduler is not None and self.reconciler is not None
        assert self.recovery is not None
        reconciler, scheduler, recovery = self.reconciler, self.scheduler, self.recovery
        # an account in recovery would answer only once its broker does: say so now
        busy = {a: recovery.status(a) for a in accounts if recovery.recovering(a)}
        futures = [
            scheduler.submit(
                a,
                self._guarded(a, lambda a=a: reconciler.reconcile(a)),  # type: ignore[misc]
            )
            for a in accounts
            if a not in busy
        ]
        results = iter(await asyncio.gather(*futures, return_exceptions=True))
        out: list[dict[str, Any]] = []
        for account in accounts:
            status = busy.get(account)
            if status is not None:
                out.append(
                    {
                        "account_id": account,
                        "ok": False,
                        "error": f"recovering orders of unknown outcome since"
                        f" {status.as_dict()['since']} ({status.attempts} attempts,"
                        f" last error: {status.last_error or 'none yet'})",
                    }
                )
                continue
            result = next(results)
            if isinstance(result, BaseException):
                out.append({"account_id": account, "ok": False, "error": repr(result)})
            else:
                out.append(result)
        return out

    async def _on_reconcile(self, req: Request) -> None:
        try:
            body = convert_request(decode_body(req.data), ReconcileRequest)
        except ControlError as err:
            await req.respond(encode_reply(err.reply()))
            return
        if body.account_id:
            accounts = [body.account_id]
        else:
            assert self.core is not None
            async with self.core.store.pool.connection() as conn:
                cur = await conn.execute(_KNOWN_ACCOUNTS)
                accounts = sorted(r[0].removeprefix("account-") for r in await cur.fetchall())
        results = await self.reconcile(accounts)
        await req.respond(
            encode_reply(
                ok(
                    {
                        "accounts": len(results),
                        "differences": sum(len(r.get("differences", ())) for r in results),
                        "results": results,
                    }
                )
            )
        )

    # ---- the consumer ----------------------------------------------------------------

    async def _on_verdict(self, verdict: RiskVerdict, msg: Msg) -> None:
        if not verdict.approved:
            self.rejected_verdicts += 1
            return
        assert self.core is not None and self.scheduler is not None
        self.approved += 1
        core = self.core
        account = verdict.intent.account_id
        future = self.scheduler.submit(
            account, self._guarded(account, in_current_context(lambda: core.execute(verdict)))
        )
        self._waiting[future] = msg  # `_keep_alive` tells JetStream we are still on it
        try:
            # an error: the consumer naks, and the redelivery finds our records
            await future
        finally:
            self._waiting.pop(future, None)

    async def _keep_alive(self) -> None:
        """Every 10 s, mark each verdict still queued or running as in progress, so a long
        account queue does not make JetStream redeliver it (ack wait 30 s)."""
        while True:
            await asyncio.sleep(10.0)
            for future, msg in list(self._waiting.items()):
                if not future.done():
                    with contextlib.suppress(Exception):
                        await msg.in_progress()

    def stats(self) -> dict[str, Any]:
        sched = self.scheduler
        return {
            "approved": self.approved,
            "rejected_verdicts": self.rejected_verdicts,
            "recovered_at_start": self.recovery.recovered_orders if self.recovery else 0,
            **(self.recovery.stats() if self.recovery else {}),
            "queued": sched.queued if sched else 0,
            "in_flight": sched.in_flight if sched else 0,
            **(self.core.stats() if self.core else {}),
            **(self.broker_events.stats() if self.broker_events else {}),
            **(
                {"tokens": self.token_resolver.stats()}
                if isinstance(self.token_resolver, VaultTokenResolver)
                else {}
            ),
        }
