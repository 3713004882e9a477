"""One aiohttp server: the provisioning REST, the socket.io websocket at `/ws`, and `/_sim/`.

`MetaApiSim` runs in any event loop (the tests start it in-process);
`serve()` is the `sigrelay sim metaapi` process: it prints
`SIGRELAY_METAAPI_URL=http://127.0.0.1:<port>` as its first line and runs until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from . import control, rest
from .accounts import SimAccounts
from .faults import Faults
from .rpc import Gateway

log = logging.getLogger(__name__)

URL_ENV = "SIGRELAY_METAAPI_URL"


class MetaApiSim:
    """The stand-in: `await MetaApiSim().start()`, then point the SDK at `url`."""

    def __init__(
        self,
        bids: dict[str, float] | None = None,
        *,
        balance: float = 10_000.0,
        tick_s: float = 0.0,
        status_interval_s: float = 20.0,
    ) -> None:
        self.accounts = SimAccounts(bids, balance=balance)
        self.faults = Faults()
        self.gateway = Gateway(self.accounts, self.faults, status_interval_s=status_interval_s)
        self.tick_s = tick_s
        self.app = web.Application(middlewares=[rest.middleware(self.faults)])  # type: ignore[list-item]
        self.gateway.sio.attach(self.app, socketio_path="ws")
        self.app.add_routes(control.routes(self.accounts, self.faults, self.gateway))
        self.app.add_routes(rest.routes(self.accounts))
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.port = 0

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> MetaApiSim:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server: Any = site._server  # an asyncio.Server once started
        self.port = server.sockets[0].getsockname()[1]
        self.gateway.start()
        if self.tick_s > 0:
            self._ticker = asyncio.create_task(self._tick_loop())
        return self

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        await self.gateway.stop()
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runner.cleanup(), 5)
            self._runner = None
        # engineio starts a service task it keeps no handle to
        for task in asyncio.all_tasks():
            frame = getattr(task.get_coro(), "cr_frame", None)
            if frame is not None and frame.f_locals.get("self") is self.gateway.sio.eio:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.accounts.tick()

    # ---- in-process conveniences (tests) --------------------------------------------

    def book(self, account_id: str) -> Any:
        return self.accounts.book(account_id)

    def fail_next(self, request_type: str, *, error: str, message: str, **extra: Any) -> None:
        self.faults.fail_next(request_type, error=error, message=message, **extra)

    def drop_next(
        self, request_type: str, *, execute: bool = False, disconnect_s: float | None = None
    ) -> None:
        self.faults.drop_next(request_type, execute=execute, disconnect_s=disconnect_s)

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.gateway.requests


async def serve(port: int, bids: dict[str, float] | None, *, balance: float, tick_s: float) -> None:
    """Run the stand-in until SIGINT or SIGTERM; the first stdout line is its URL."""
    sim = await MetaApiSim(bids, balance=balance, tick_s=tick_s).start(port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(f"{URL_ENV}={sim.url}\n")
    sys.stdout.flush()
    log.info("metaapi stand-in listening on %s", sim.url)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await sim.stop()
