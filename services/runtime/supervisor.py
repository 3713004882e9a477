"""`sigrelay up`: bring up the servers and every service, each service in its
own process (so one can die, or be killed, without the others), restart a
service that dies, and on Ctrl-C stop everything this run started.

One supervisor per state directory (services/runtime/upstate.py holds the lock and
the record of what runs), and its services die with it, SIGKILL included
(services/runtime/lifeline.py); what a SIGKILLed one left is stopped by its watcher,
or else by the next `up` before it starts anything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import subjects
from services.runtime import bus, lifeline, upstate
from services.runtime.infrastructure import Infrastructure
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ensure_streams
from services.runtime.upstate import AlreadyUp, Proc, UpRecord, running_supervisor

__all__ = ["AlreadyUp", "Child", "Supervisor", "running_supervisor"]

log = logging.getLogger("sigrelay.supervisor")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    last_start: float = 0.0
    log_path: Path = field(default_factory=Path)


class Supervisor:
    def __init__(self, settings: RuntimeSettings, services: Sequence[str]) -> None:
        self.settings = settings
        self.children = [Child(name) for name in services]
        self.infra = Infrastructure(settings)
        self._stopping = False
        self._lock: upstate.UpLock | None = None
        self._watcher: subprocess.Popen[bytes] | None = None
        self._servers: dict[str, Proc | None] = {"nats": None, "postgres": None}

    async def prepare(self) -> None:
        """Take the state directory (AlreadyUp if a live `up` has it), stop what a dead
        one left, start or attach to the servers, migrate, and create the streams."""
        home = self.settings.home
        self._lock = upstate.claim(home)
        previous = upstate.read_record(home)
        if previous is not None:
            log.warning(
                "a previous `up` (pid %d) died without stopping; stopping its services",
                previous.supervisor.pid,
            )
            await asyncio.to_thread(upstate.clean_up_after, home, previous, servers=False)
        self._watcher = upstate.spawn_watcher(home)
        try:
            self.infra.start()
            if previous is not None:  # its servers are ours to stop now
                self.infra.adopt(
                    nats_pid=previous.nats.pid if previous.nats else None,
                    postgres_pid=previous.postgres.pid if previous.postgres else None,
                )
        finally:
            for name, server in (
                ("nats", self.infra.embedded_nats),
                ("postgres", self.infra.embedded_postgres),
            ):
                pid = server.pid if server is not None and server.started_here else None
                self._servers[name] = Proc.of(pid) if pid is not None else None
            self._write_record()
        await self.infra.prepare_database()
        nc = await bus.connect(self.infra.nats_url_for("admin"), "sigrelay-supervisor")
        try:
            await ensure_streams(bus.jetstream(nc))
        finally:
            await bus.drain(nc)

    def start_children(self) -> None:
        for child in self.children:
            self._spawn(child)

    def child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(f"no service {name!r} under this supervisor")

    async def wait_ready(
        self, nc: Any, *, within_s: float = 60.0, restarting: bool = False
    ) -> None:
        """Until every child answers its `ctl.svc.<name>.health`. With `restarting`, a
        child found dead is waited for (something calls `supervise()` meanwhile)."""
        deadline = asyncio.get_running_loop().time() + within_s
        for child in self.children:
            while True:
                try:
                    await nc.request(f"{subjects.CTL_SERVICE}.{child.name}.health", b"", timeout=1)
                    break
                except Exception:
                    code = child.proc.poll() if child.proc is not None else None
                    if code is not None and not restarting:
                        raise RuntimeError(
                            f"{child.name} exited with {code} while starting; see {child.log_path}"
                        ) from None
                    if asyncio.get_running_loop().time() > deadline:
                        raise TimeoutError(
                            f"{child.name} did not become ready; see {child.log_path}"
                        ) from None
                    await asyncio.sleep(0.1)

    def supervise(self) -> None:
        """Restart children that died (call it periodically)."""
        self._restart_dead()

    def _write_record(self) -> None:
        me = Proc.of(os.getpid())
        assert me is not None
        services = {}
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                proc = Proc.of(child.proc.pid)
                if proc is not None:
                    services[child.name] = proc
        watcher = Proc.of(self._watcher.pid) if self._watcher is not None else None
        record = UpRecord(
            supervisor=me,
            services=services,
            nats=self._servers["nats"],
            postgres=self._servers["postgres"],
            watcher=watcher,
        )
        upstate.write_record(self.settings.home, record)

    def _spawn(self, child: Child) -> None:
        # the settings' environment, not only ours: what the supervisor was
        # configured with (master keys, audit key, …) is what its children run with
        env = lifeline.child_env({**os.environ, **self.settings.env})
        env.update(
            SIGRELAY_HOME=str(self.settings.home),
            NATS_URL=self.infra.nats_url_for(child.name),
            DATABASE_URL=self.infra.database_url_for(child.name),  # its own role
            SIGRELAY_PARTITIONS=str(self.settings.partitions),
        )
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        child.log_path = logs / f"{child.name}.log"
        out = child.log_path.open("ab")
        child.proc = subprocess.Popen(
            [sys.executable, "-m", "services.runtime.cli", "service", child.name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops children in order
        )
        out.close()
        self._write_record()  # before anything else: a SIGKILL now must find it
        child.last_start = time.monotonic()
        log.info("started %s (pid %d, log %s)", child.name, child.proc.pid, child.log_path)

    async def run(self) -> None:
        try:
            await self.prepare()
        except AlreadyUp as exc:
            print(f"{exc}; nothing to do.")
            return
        except BaseException:
            await self.shutdown()
            raise
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            self.start_children()
            for key, value in self.infra.describe().items():
                print(f"  {key:9} {value}")
            print(f"sigrelay is up: {', '.join(c.name for c in self.children)}. Ctrl-C stops it.")
            while not stop.is_set():
                self._restart_dead()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        finally:
            await self.shutdown()

    def _restart_dead(self) -> None:
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            backoff = min(2**child.restarts * 0.5, 30.0)
            if time.monotonic() - child.last_start < backoff:
                continue
            log.warning(
                "%s exited with %s; restarting (see %s)",
                child.name,
                child.proc.returncode,
                child.log_path,
            )
            child.restarts += 1
            self._spawn(child)

    async def shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        print("stopping services…")
        for child in self.children:
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        for child in self.children:
            if child.proc is None:
                continue
            try:
                await asyncio.to_thread(child.proc.wait, 15)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.name)
                child.proc.kill()
                child.proc.wait()
        self.infra.stop()
        if self._lock is not None:
            upstate.clear_record(self.settings.home)
            if self._watcher is not None:
                self._watcher.terminate()
                await asyncio.to_thread(self._watcher.wait)
            self._lock.release()
            self._lock = None
        print("stopped.")
