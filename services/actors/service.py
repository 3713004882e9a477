"""The actors service: wires an ActorHost to the bus.

- parsed signals (`signals.parsed.>`, one durable consumer per partition set:
  the host consumes the stream once and routes locally);
- risk verdicts and execution reports (`orders.verdict.>`, `orders.report.>`);
- quotes (`prices.>`) for the market view;
- the control plane: one NATS services endpoint per owned partition,
  `ctl.p.<p>.*.*`, to which the server maps `ctl.user.<verb>.<user>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from nats.aio.msg import Msg
from nats.micro import add_service
from nats.micro.request import Request

from contracts import subjects
from contracts.channels import CHANNEL_NAME, ChannelDirectory, directory_path, load_directory
from contracts.control import ControlError, encode_reply, internal_error, ok
from contracts.envelope import Codec, new_id, now_ns
from contracts.errors import ErrorCode
from contracts.ingest import ParsedSignal
from contracts.orders import ExecutionReport, RiskVerdict
from contracts.partitions import partition_of
from contracts.users import LinkAccountRequest, SealedToken
from eventstore.cancellation import reraise_if_cancelling
from eventstore.group_commit import GroupCommitter
from services.actors.control import check_verb_and_user, decode_request, parse_subject
from services.actors.core import (
    Claim,
    CommandContext,
    UserState,
    claims_to_release,
    link_target,
    positions_view,
    release_all,
    settings_view,
    status_view,
)
from services.actors.host import ActorHost
from services.actors.keystore_pg import AccountClaims
from services.actors.leases import PartitionLeases
from services.actors.redaction import audit_record
from services.runtime.consumer import ConsumerConfigSpec, JetStreamConsumer
from services.runtime.credentials import CredentialVault, MasterKeyRing, PgDataKeyStore
from services.runtime.host import VERSION
from services.runtime.service import ServiceContext

log = logging.getLogger("sigrelay.actors")

# How long a starting host waits for a full round of quotes before it takes signals
# anyway (the paper feed sends every symbol each 0.25 s; without a feed an open is
# refused no_price, as it would be after the wait).
MARKET_VIEW_WAIT_S = 10.0


def owned_partitions(text: str, partitions: int) -> list[int]:
    """`all`, `3`, `0-7` or `0,2,4-6` -> partition numbers, each checked."""
    if text.strip() in ("", "all"):
        return list(range(partitions))
    out: set[int] = set()
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError:
            raise ValueError(
                f"owned partitions {text!r}: {part!r} is not a number or range"
            ) from None
        if not 0 <= first <= last < partitions:
            raise ValueError(f"owned partitions {text!r}: {part!r} is outside 0-{partitions - 1}")
        out.update(range(first, last + 1))
    return sorted(out)


class ActorsService:
    name: ClassVar[str] = "actors"

    def __init__(self) -> None:
        self.host: ActorHost | None = None
        self._ctx: ServiceContext | None = None
        self._vault: CredentialVault | None = None
        self._claims: AccountClaims | None = None
        self._seen_channels: set[str] = set()
        self._cached_directory: ChannelDirectory | None = None
        self._directory_stamp: int | None = None
        self._partition_services: dict[int, Any] = {}
        self._desired: list[int] = []
        self.consumers: list[JetStreamConsumer] = []

    # --- running -------------------------------------------------------------------

    async def run(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        env = ctx.settings.env
        desired = owned_partitions(
            env.get("SIGRELAY_OWNED_PARTITIONS", "all"), ctx.settings.partitions
        )
        host_id = env.get("SIGRELAY_HOST_ID") or f"{socket.gethostname()}-{os.getpid()}"
        self._leases = PartitionLeases(ctx.store, host_id)
        owned = sorted(await self._leases.claim(desired))
        self._desired = desired
        committer = GroupCommitter(ctx.store, max_batch=1000)
        committer.start()
        self.host = ActorHost(
            ctx.store,
            committer,
            partitions=ctx.settings.partitions,
            owned=owned,
            snapshot_every=int(env.get("SIGRELAY_SNAPSHOT_EVERY", "50")),
        )
        ring = MasterKeyRing.from_env(env, home=ctx.settings.home)
        self._vault = CredentialVault(ring, PgDataKeyStore(ctx.store))
        self._claims = AccountClaims(ctx.store)
        await self.host.start()
        await self.host.quotes.subscribe(ctx.nc)
        for partition in owned:
            await self._serve_partition(ctx, partition)
        tag = "all" if len(desired) == ctx.settings.partitions else "-".join(map(str, desired))
        signals = self._consumer(
            ctx,
            f"actors-signals-{tag}",
            f"{subjects.PARSED}.>",
            ParsedSignal,
            self._on_signal,
            concurrency=1,
        )
        self.consumers = [
            signals,
            self._consumer(
                ctx,
                f"actors-verdicts-{tag}",
                f"{subjects.VERDICT}.>",
                RiskVerdict,
                self._on_verdict,
            ),
            self._consumer(
                ctx,
                f"actors-reports-{tag}",
                f"{subjects.REPORT}.>",
                ExecutionReport,
                self._on_report,
            ),
        ]
        tasks = [
            asyncio.create_task(
                self._take_signals(c) if c is signals else c.run(), name=c.spec.durable
            )
            for c in self.consumers
        ]
        tasks.append(asyncio.create_task(self._housekeeping(), name="actors.housekeeping"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.host.flush_snapshots()
            for partition in list(self._partition_services):
                await self._unserve_partition(partition)
            with contextlib.suppress(Exception):
                await self._leases.release(self.host.owned)
            await committer.stop()
            await self.host.quotes.close()

    async def _take_signals(self, consumer: JetStreamConsumer) -> None:
        """Consume signals once the market is in view. A host that has just started
        has heard no quote yet: a signal waiting in the stream would be decided at
        once and refused `no_price` for every subscriber (a final decision), for want
        of a price the feed delivers a moment later."""
        assert self.host is not None
        if not await self.host.quotes.wait_complete(MARKET_VIEW_WAIT_S):
            log.warning(
                "actors: no full round of quotes within %.0f s of starting; taking signals"
                " anyway (an open without a current price is refused no_price)",
                MARKET_VIEW_WAIT_S,
            )
        await consumer.run()

    def _consumer(
        self,
        ctx: ServiceContext,
        durable: str,
        subject: str,
        type_: type[Any],
        handler: Callable[[Any, Msg], Awaitable[None]],
        *,
        concurrency: int = 256,
    ) -> JetStreamConsumer:
        stream = "SIGNALS" if subject.startswith(subjects.PARSED) else "ORDERS"
        return JetStreamConsumer(
            ctx.js,
            ConsumerConfigSpec(
                service="actors",
                stream=stream,
                durable=durable,
                filter_subject=subject,
                concurrency=concurrency,
                ack_wait_s=10.0,
                # a host set up for new partitions starts near now, not at the dawn of
                # the stream: what came before was the previous owner's to handle
                deliver_since_s=600.0,
            ),
            Codec(type_),
            handler,
        )

    async def _serve_partition(self, ctx: ServiceContext, partition: int) -> None:
        """One NATS services instance per partition (metadata names it), so that a
        partition handed to another host can be let go by stopping its instance."""
        service = await add_service(
            ctx.nc,
            name="sigrelay-actors",
            version=VERSION,
            description=f"Sigrelay actors, partition {partition}",
            metadata={"partition": str(partition)},
        )
        await service.add_endpoint(
            name=f"p{partition}",
            subject=subjects.ctl_partition(partition),
            handler=self._on_control,
            queue_group=f"actors-p{partition}",
        )
        self._partition_services[partition] = service

    async def _unserve_partition(self, partition: int) -> None:
        service = self._partition_services.pop(partition, None)
        if service is not None:
            with contextlib.suppress(Exception):
                await service.stop()

    async def _follow_leases(self) -> None:
        """Renew our leases, adopt desired partitions nobody renews, let go of taken ones."""
        assert self.host is not None and self._ctx is not None
        held = await self._leases.adopt_expired(self._desired)
        if held == set(self.host.owned):
            return
        lost = set(self.host.owned) - held
        won = held - set(self.host.owned)
        for partition in sorted(lost):
            await self._unserve_partition(partition)
        await self.host.set_owned(held)
        for partition in sorted(won):
            await self._serve_partition(self._ctx, partition)
        log.info("actors: partitions lost %s, won %s", sorted(lost), sorted(won))

    async def _housekeeping(self) -> None:
        assert self.host is not None
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            try:
                await self._follow_leases()
                await self.host.flush_snapshots()
                if ticks % 60 == 0:
                    await self.host.passivate_idle()
            except Exception as exc:  # a failed snapshot only costs recovery time
                reraise_if_cancelling(exc)
                log.warning("actors: housekeeping failed: %r", exc)

    # --- bus handlers ----------------------------------------------------------------

    async def _on_signal(self, signal: ParsedSignal, msg: Msg) -> None:
        assert self.host is not None
        self._seen_channels.add(signal.channel)
        await self.host.on_signal(signal, now_ns())

    async def _on_verdict(self, verdict: RiskVerdict, msg: Msg) -> None:
        assert self.host is not None
        await self.host.on_verdict(verdict)

    async def _on_report(self, report: ExecutionReport, msg: Msg) -> None:
        assert self.host is not None
        await self.host.on_report(report)

    # --- control plane ---------------------------------------------------------------

    async def _on_control(self, req: Request) -> None:
        user = ""
        verb = ""
        try:
            partition, verb, user = parse_subject(req.subject)
            check_verb_and_user(verb, user)
            self._check_partition(partition, user)
            request = decode_request(verb, req.data)
            data = await self._command(user, verb, request)
            reply = ok(data)
        except ControlError as exc:
            reply = exc.reply()
        except Exception:  # never die on input; the detail goes to the log only
            error, reference = internal_error(verb or "control request")
            log.exception("actors: control %s for %s failed (reference %s)", verb, user, reference)
            reply = error.reply()
        body = encode_reply(reply)
        await req.respond(body)
        await self._audit(user, verb, req.data, body)

    def _check_partition(self, partition: int, user: str) -> None:
        assert self.host is not None
        expected = partition_of(user, self.host.partitions)
        if partition != expected or partition not in self.host.owned:
            # a client may address ctl.p.<n> directly (permissions allow it): refuse
            # a user that does not live there, so no host touches another's users
            raise ControlError(
                ErrorCode.INVALID_VALUE,
                f"user {user} belongs to partition {expected}, not {partition}",
                field="user",
            )

    async def _command(self, user: str, verb: str, request: Any) -> Any:
        assert self.host is not None and self._vault is not None and self._claims is not None
        vault, claims = self._vault, self._claims
        request_id = new_id()
        # what this request claimed, and what claiming found (see core.claims)
        claimed: str | None = None
        found: Claim | None = None

        async def make_context(state: UserState) -> CommandContext:
            nonlocal claimed, found
            sealed: SealedToken | None = None
            if verb == "link_account":
                assert isinstance(request, LinkAccountRequest)
                account_id, broker = link_target(user, request)
                if broker == "metaapi" and request.token:
                    secret = await vault.seal(user, f"metaapi-token:{account_id}", request.token)
                    sealed = SealedToken(
                        key_version=secret.key_version,
                        nonce=secret.nonce,
                        ciphertext=secret.ciphertext,
                    )
                found = await claims.claim(account_id, user)
                claimed = account_id
            return CommandContext(
                now_ns=now_ns(),
                user_id=user,
                request_id=request_id,
                sealed_token=sealed,
                account_taken=found is Claim.TAKEN,
                known_channels=self._known_channel,
            )

        async def settle(before: UserState, after: UserState | None) -> None:
            if release_all(after):
                await vault.shred(user)
                await claims.release(user)
                return
            for account_id in claims_to_release(before, after, claimed, found):
                await claims.release(user, account_id)

        view = _VIEWS.get(verb, status_view)
        return await self.host.command(user, verb, request, make_context, view, settle)

    def _known_channel(self, channel: str) -> bool:
        if not CHANNEL_NAME.match(channel):
            return False
        if channel in self._seen_channels or (
            self.host is not None and channel in self.host.membership.by_channel
        ):
            return True
        return channel in self._directory().channels

    def _directory(self) -> ChannelDirectory:
        """The channel directory, re-read only when its file changed."""
        assert self._ctx is not None
        path = directory_path(self._ctx.settings.home, self._ctx.settings.env)
        try:
            stamp: int | None = path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp != self._directory_stamp or self._cached_directory is None:
            self._cached_directory = load_directory(self._ctx.settings.home, self._ctx.settings.env)
            self._directory_stamp = stamp
        return self._cached_directory

    async def _audit(self, user: str, verb: str, request: bytes, reply: bytes) -> None:
        if self._ctx is None or not user:
            return
        nc = self._ctx.nc
        try:
            record = audit_record(
                record_id=new_id(),
                ts=now_ns(),
                user=user,
                verb=verb,
                request=request,
                reply=reply,
                max_bytes=nc.max_payload,
            )
            await nc.publish(f"{subjects.AUDIT}.control.{subjects.token(user)}", record)
        except Exception as exc:  # the reply went out; a lost audit record is said, not hidden
            reraise_if_cancelling(exc)
            log.error(
                "actors: audit record of control %s for %s not published: %r", verb, user, exc
            )

    def stats(self) -> dict[str, Any]:
        host = self.host
        if host is None:
            return {}
        s = host.stats
        return {
            "partitions_owned": len(host.owned),
            "users": len(host.membership.users),
            "actors_in_memory": len(host.slots),
            "channels": len(host.membership.channels()),
            "signals": s.signals,
            "decisions": s.decisions,
            "intents": s.intents,
            "refusals": dict(s.refusals),
            "commands": s.commands,
            "activations": s.activations,
            "passivations": s.passivations,
            "conflicts": s.conflicts,
            "unreadable_users_skipped": s.unreadable,
            "last_fanout_ms": s.last_fanout_ms,
            "quotes": len(host.quotes),
            "group_commits": host.committer.commits,
        }


_VIEWS: dict[str, Callable[[UserState], Any]] = {
    "positions": positions_view,
    "settings": settings_view,
}
