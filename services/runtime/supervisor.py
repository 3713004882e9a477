"""`sigrelay up`: bring up the servers and every service, each service in its
own process (so one can die, or be killed, without the others), restart a
service that dies, and on Ctrl-C stop everything this run started."""

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
from services.runtime import bus
from services.runtime.infrastructure import Infrastructure
from services.runtime.settings import RuntimeSettings
from services.runtime.streams import ensure_streams

log = logging.getLogger("sigrelay.supervisor")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    last_start: float = 0.0
    log_path: Path = field(default_factory=Path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_supervisor(home: Path) -> int | None:
    """The pid of a live `sigrelay up` for this state directory, if any."""
    try:
        pid = int((home / "up.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


class Supervisor:
    def __init__(self, settings: RuntimeSettings, services: Sequence[str]) -> None:
        self.settings = settings
        self.children = [Child(name) for name in services]
        self.infra = Infrastructure(settings)
        self._stopping = False

    async def prepare(self) -> None:
        """Start or attach to the servers, migrate, and create the streams."""
        self.infra.start()
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

    def _spawn(self, child: Child) -> None:
        # the settings' environment, not only ours: what the supervisor was
        # configured with (master keys, audit key, …) is what its children run with
        env = {**os.environ, **self.settings.env}
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
        child.last_start = time.monotonic()
        log.info("started %s (pid %d, log %s)", child.name, child.proc.pid, child.log_path)

    async def run(self) -> None:
        home = self.settings.home
        other = running_supervisor(home)
        if other is not None:
            print(f"sigrelay is already up for {home} (supervisor pid {other}); nothing to do.")
            return
        await self.prepare()
        (home / "up.pid").write_text(str(os.getpid()))
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
            (home / "up.pid").unlink(missing_ok=True)

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
        print("stopped.")
