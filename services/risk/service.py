"""The risk service: approves or rejects each order intent.

Consumes (JetStream, durable):
- `orders.intent.>` (ORDERS, durable `risk`): evaluate, record `risk.decided`
  in `risk-<user>` and queue the verdict for `orders.verdict.<user>` through
  the outbox, in one transaction; a redelivered intent appends nothing and
  publishes nothing (consumer tracking on the intent id).
- `orders.report.>` (ORDERS, durable `risk-reports`): fold the report into
  the user's exposure, recorded as `risk.report` in `risk-<user>`.
- `events.user.>` (EVENTS, durable `risk-users`): the cue to fold the user's
  stream (`user-<id>`) from the log, for state and limits.

Quotes: `prices.<symbol>` (core NATS, latest only) for the spread check.

Control (NATS services API, on the service's own `sigrelay-risk` registration):
- `ctl.svc.risk.kill_switch` `{"on": bool, "reason": str, "user_id": str?}`:
  without `user_id` the global switch, with it that user's; recorded as a
  `risk.kill_switch` event (in `riskctl-global` or `risk-<user>`).
- `ctl.svc.risk.exposure` `{"user_id": str}`: what risk knows of one user.

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
from contracts.control import (
    ControlError,
    convert_request,
    decode_body,
    encode_reply,
    internal_error,
    ok,
)
from contracts.envelope import Codec, tag_of
from contracts.errors import ErrorCode
from contracts.orders import ExecutionReport, OrderIntent, Quote
from contracts.users import USER_EVENTS
from eventstore.cancellation import reraise_if_cancelling
from services.risk.core import RiskConfig, RiskCore
from services.risk.projection import USER_STATE_EVENTS
from services.runtime.consumer import ConsumerConfigSpec, JetStreamConsumer, Rejected
from services.runtime.market_view import FeedRound
from services.runtime.service import ServiceContext

log = logging.getLogger("sigrelay.risk")

NAME = "risk"
PRICES = "prices"  # prices.<symbol>: named in contracts/orders.py, missing from contracts.subjects

_STATE_TAGS = frozenset(tag_of(t) for t in USER_STATE_EVENTS)


class KillSwitchRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    on: bool
    reason: str = ""
    user_id: str | None = None  # None: the global switch


_quote_decoder = msgspec.json.Decoder(Quote)


class ExposureRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: str


class RiskService:
    """Runs the risk core on the bus; `clock` and `config` are for tests and tuning."""

    name: ClassVar[str] = NAME

    def __init__(self, config: RiskConfig | None = None, *, clock: Any = None) -> None:
        self.config = config or RiskConfig()
        self._clock = clock
        self.core: RiskCore | None = None
        self.consumers: list[JetStreamConsumer] = []
        self.ready = asyncio.Event()
        self._feed_round = FeedRound()

    async def run(self, ctx: ServiceContext) -> None:
        core = RiskCore(ctx.store, self.config, **({"clock": self._clock} if self._clock else {}))
        self.core = core
        await core.refresh_control()
        self.consumers = [
            JetStreamConsumer(
                ctx.js,
                ConsumerConfigSpec(
                    service=NAME,
                    stream="ORDERS",
                    durable="risk",
                    filter_subject=f"{subjects.INTENT}.>",
                    concurrency=512,
                ),
                Codec(OrderIntent),
                self._on_intent,
            ),
            JetStreamConsumer(
                ctx.js,
                ConsumerConfigSpec(
                    service=NAME,
                    stream="ORDERS",
                    durable="risk-reports",
                    filter_subject=f"{subjects.REPORT}.>",
                    concurrency=256,
                ),
                Codec(ExecutionReport),
                self._on_report,
            ),
            JetStreamConsumer(
                ctx.js,
                ConsumerConfigSpec(
                    service=NAME,
                    stream="EVENTS",
                    durable="risk-users",
                    filter_subject=f"{subjects.EVENTS}.user.>",
                    concurrency=64,
                    traced=False,  # a cue to re-read a user's settings, not a step of a trade
                ),
                Codec(*USER_EVENTS),
                self._on_user_event,
            ),
        ]
        quotes = await ctx.nc.subscribe(f"{subjects.PRICES}.>", cb=self._on_quote)
        micro = ctx.micro
        if micro is None:  # run outside the service host (tests): register our own
            micro = await add_service(ctx.nc, name="sigrelay-risk", version="0.1.0")
        await micro.add_endpoint(
            name="kill_switch",
            subject=f"{subjects.CTL_SERVICE}.{NAME}.kill_switch",
            handler=self._on_kill_switch,
        )
        await micro.add_endpoint(
            name="exposure",
            subject=f"{subjects.CTL_SERVICE}.{NAME}.exposure",
            handler=self._on_exposure,
        )
        await ctx.nc.flush()  # the endpoints are subscribed at the server before anyone asks
        core.writer.start()
        intents, *others = self.consumers
        tasks = [
            asyncio.create_task(self._housekeeping(core), name="risk.housekeeping"),
            asyncio.create_task(self._take_intents(intents), name=f"risk.{intents.spec.durable}"),
            *(asyncio.create_task(c.run(), name=f"risk.{c.spec.durable}") for c in others),
        ]
        self.ready.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            # consumers first, so the messages in hand finish their appends; then the writer
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await core.writer.stop()
            with contextlib.suppress(Exception):
                await quotes.unsubscribe()
            if micro is not ctx.micro:
                with contextlib.suppress(Exception):
                    await micro.stop()
            with contextlib.suppress(Exception):
                await core.flush_snapshots(every=1)

    async def _take_intents(self, consumer: JetStreamConsumer) -> None:
        """Decide intents once the market is in view (see `RiskConfig.market_view_wait_s`);
        without quotes after the wait, the spread check fails closed as before."""
        wait_s = self.config.market_view_wait_s
        if wait_s > 0 and not await self._feed_round.wait(wait_s):
            log.warning(
                "risk: no full round of quotes within %.0f s of starting; taking intents", wait_s
            )
        await consumer.run()

    async def _housekeeping(self, core: RiskCore) -> None:
        """Read the global switch others may have set, and save due snapshots."""
        next_flush = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.control_poll_s)
            try:
                await core.refresh_control()
                if loop.time() >= next_flush:
                    await core.flush_snapshots()
                    next_flush = loop.time() + self.config.snapshot_flush_s
            except Exception as exc:  # the database is away: the next round tries again
                reraise_if_cancelling(exc)
                log.warning("risk housekeeping failed: %r", exc)

    # --- consumers ----------------------------------------------------------------------

    async def _on_quote(self, msg: Msg) -> None:
        if self.core is None:
            return
        # a bad quote is no quote: the spread check then fails closed
        with contextlib.suppress(msgspec.MsgspecError):
            quote = _quote_decoder.decode(msg.data)
            self.core.apply_quote(quote)
            self._feed_round.observe(quote.symbol, quote.ts)

    async def _on_intent(self, intent: OrderIntent, msg: Msg) -> None:
        assert self.core is not None
        _same_user(msg.subject, intent.user_id, "intent")
        await self.core.decide(intent)

    async def _on_report(self, report: ExecutionReport, msg: Msg) -> None:
        assert self.core is not None
        _same_user(msg.subject, report.user_id, "report")
        await self.core.apply_report(report)

    async def _on_user_event(self, event: Any, msg: Msg) -> None:
        assert self.core is not None
        if tag_of(type(event)) not in _STATE_TAGS:
            return  # signals, verdicts, reports: not what risk learns from this stream
        await self.core.refresh_user(msg.subject.rsplit(".", 1)[-1])

    # --- control --------------------------------------------------------------------------

    async def _on_kill_switch(self, req: Request) -> None:
        async def act(body: KillSwitchRequest) -> dict[str, Any]:
            assert self.core is not None
            if body.user_id is None:
                event = await self.core.set_global_kill_switch(body.on, body.reason)
            else:
                event = await self.core.set_user_kill_switch(body.user_id, body.on, body.reason)
            return {
                "scope": "global" if body.user_id is None else "user",
                "user_id": body.user_id,
                "on": event.on,
                "reason": event.reason,
                "event_id": event.id,
            }

        await _serve(req, KillSwitchRequest, act)

    async def _on_exposure(self, req: Request) -> None:
        async def act(body: ExposureRequest) -> dict[str, Any]:
            assert self.core is not None
            ulog = await self.core.user(body.user_id)
            market = self.core.market
            return {
                "exposure": msgspec.to_builtins(ulog.state),
                "version": ulog.version,
                "global_kill_switch": market.kill_switch,
                "global_kill_reason": market.kill_reason,
            }

        await _serve(req, ExposureRequest, act)

    def stats(self) -> dict[str, Any]:
        core = self.core
        return {
            "approved": core.approved if core else 0,
            "rejected": core.rejected if core else 0,
            "duplicates": core.duplicates if core else 0,
            "reports": core.reports if core else 0,
            "conflicts": core.conflicts if core else 0,
            "global_kill_switch": core.market.kill_switch if core else False,
            "dead_lettered": sum(c.dead_lettered for c in self.consumers),
        }


def _same_user(subject: str, user_id: str, what: str) -> None:
    # a message on one user's subject must not touch another user's exposure
    if subject.rsplit(".", 1)[-1] != subjects.token(user_id):
        raise Rejected(f"{what} for user {user_id!r} arrived on {subject!r}")


async def _serve(req: Request, shape: type[Any], act: Any) -> None:
    try:
        body = convert_request(decode_body(req.data), shape)
        reply = ok(await act(body))
    except ControlError as exc:
        reply = exc.reply()
    except Exception as exc:
        error, reference = internal_error(f"risk {req.subject}", ErrorCode.UNAVAILABLE)
        log.warning(
            "risk control request on %s failed (reference %s): %r", req.subject, reference, exc
        )
        reply = error.reply()
    await req.respond(encode_reply(reply))
