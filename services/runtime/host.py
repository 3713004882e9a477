"""Runs one service in this process: connects to the bus and the event log,
keeps a standby outbox relay, registers the service with the NATS services
API (so `nats micro ls` and `$SRV.STATS` see it), and shuts down cleanly on
SIGTERM or SIGINT, or when the `sigrelay up` that started it dies: stop taking
work, drain the bus, close the pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from functools import partial
from typing import Any

import msgspec
from nats.micro import add_service
from nats.micro.request import Request

from contracts import subjects
from contracts.control import encode_reply, ok
from eventstore import EventStore
from eventstore.outbox import OutboxRelay
from services.runtime import bus, lifeline, registry
from services.runtime.consumer import recreated_durables
from services.runtime.infrastructure import Infrastructure
from services.runtime.metrics import init_metrics
from services.runtime.service import ServiceContext
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ensure_streams
from services.runtime.tracing import init_tracing

log = logging.getLogger("sigrelay.host")

VERSION = "0.1.0"


async def run_service(
    name: str,
    settings: RuntimeSettings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run service `name` until SIGTERM/SIGINT (or until `stop` is set, when given:
    several services then share one process, as the pipeline tests do)."""
    service_cls = registry.load(name)
    infra = Infrastructure(settings).start()
    provider = init_tracing(name, home=settings.home, env=settings.env)
    try:
        await infra.prepare_database()
        database_url = infra.database_url_for(name)  # the service's own role
        nc = await bus.connect(infra.nats_url_for(name), f"sigrelay-{name}")
        js = bus.jetstream(nc)
        await ensure_streams(js, update=False)  # only admin may change a stream's config
        store = await EventStore.connect(database_url, min_size=1, max_size=8, producer=name)
        service = service_cls()
        ctx = ServiceContext(
            name=name,
            settings=settings,
            nc=nc,
            js=js,
            store=store,
            database_url=database_url,
        )
        relay = OutboxRelay(store, bus.JetStreamPublisher(js))
        started = time.time()

        def runtime_figures() -> dict[str, float]:
            pool = store.pool.get_stats()
            figures = {
                "eventstore.pool_size": float(pool.get("pool_size", 0)),
                "eventstore.pool_available": float(pool.get("pool_available", 0)),
                "eventstore.requests_waiting": float(pool.get("requests_waiting", 0)),
                "outbox.relayed": float(relay.relayed),
                "outbox.dead_lettered": float(relay.dead_lettered),
            }
            for consumer in getattr(service, "consumers", None) or []:
                figures[f"consumer.{consumer.spec.durable}.lag"] = float(consumer.lag)
                figures[f"consumer.{consumer.spec.durable}.dead_lettered"] = float(
                    consumer.dead_lettered
                )
                figures[f"consumer.{consumer.spec.durable}.recreated"] = float(
                    consumer.durables_recreated
                )
            return figures

        meters = init_metrics(
            name, home=settings.home, env=settings.env, stats=service.stats, extra=runtime_figures
        )

        async def health(req: Request) -> None:
            body = {
                "service": name,
                "uptime_s": round(time.time() - started, 1),
                "relay_leader": relay.is_leader,
                "relayed": relay.relayed,
                "outbox_dead_lettered": relay.dead_lettered,
                # a durable someone deleted is made again; this says it happened
                **recreated_durables(getattr(service, "consumers", None) or []),
                **service.stats(),
            }
            await req.respond(encode_reply(ok(body)))

        micro = await add_service(
            nc,
            name=f"sigrelay-{name}",
            version=VERSION,
            description=f"Sigrelay {name} service",
            stats_handler=lambda endpoint: _stats(service),
        )
        await micro.add_endpoint(
            name="health", subject=f"{subjects.CTL_SERVICE}.{name}.health", handler=health
        )
        # System-wide verbs are scatter-gather: every kind of service answers once
        # (its own queue group), and `sigrelay ctl health` collects the replies.
        for verb in ("health", "stats"):
            await micro.add_endpoint(
                name=f"sys-{verb}",
                subject=subjects.ctl_system(verb),
                handler=health,
                queue_group=f"sigrelay-{name}",
            )
        ctx.micro = micro

        if stop is None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
        supervisor = lifeline.supervisor_pid(settings.env)
        if supervisor is not None:  # started by `sigrelay up`: never outlive it
            lifeline.watch_supervisor(
                supervisor, partial(asyncio.get_running_loop().call_soon_threadsafe, stop.set)
            )
        tasks = [
            asyncio.create_task(service.run(ctx), name=f"{name}.run"),
            asyncio.create_task(relay.run(), name=f"{name}.relay"),
        ]
        stopper = asyncio.create_task(stop.wait())
        log.info("%s: serving (%s)", name, infra.describe())
        if ready is not None:
            ready.set()
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("%s: stopped by an error: %r", name, task.exception())
        log.info("%s: shutting down", name)
        began = time.monotonic()
        for task in [stopper, *tasks]:
            task.cancel()
        await asyncio.gather(stopper, *tasks, return_exceptions=True)
        log.debug("%s: tasks stopped after %.2fs", name, time.monotonic() - began)
        with contextlib.suppress(Exception):
            await micro.stop()
        await bus.drain(nc)
        log.debug("%s: bus drained after %.2fs", name, time.monotonic() - began)
        await store.close()
        meters.shutdown()
        log.info("%s: stopped in %.2fs", name, time.monotonic() - began)
    finally:
        provider.shutdown()
        infra.stop()


def _stats(service: Any) -> dict[str, Any]:
    data = service.stats()
    return msgspec.to_builtins(data) if data else {}
