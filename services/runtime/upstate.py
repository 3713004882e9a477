"""One `sigrelay up` per state directory, and nothing left of one that died.

`up.lock` is held (flock) for the life of the supervisor and names its pid; a
second `up` that cannot take it finds the running system. `up.json` records what
the supervisor runs (its services, the embedded servers it started, its watcher),
so that whoever takes the lock after a SIGKILLed `up` can find and stop the rest.

The watcher is a small process each `up` starts (`python -m services.runtime.upstate`):
when its parent, the supervisor, dies without a clean shutdown, it takes the lock and
stops the services and then the servers that supervisor started. If the watcher is
gone too, the next `up` stops the leftover services and adopts the servers.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import msgspec
import psutil

from services.runtime import lifeline

log = logging.getLogger("sigrelay.upstate")

LOCK = "up.lock"
RECORD = "up.json"
STOP_WAIT_S = 20.0


class AlreadyUp(RuntimeError):
    def __init__(self, home: Path, pid: int) -> None:
        super().__init__(f"sigrelay is already up for {home} (supervisor pid {pid})")
        self.pid = pid


class Proc(msgspec.Struct, frozen=True, kw_only=True):
    """A process by pid and start time, so a reused pid is not mistaken for it."""

    pid: int
    started: float

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        try:
            return cls(pid=pid, started=psutil.Process(pid).create_time())
        except psutil.NoSuchProcess:
            return None

    def process(self) -> psutil.Process | None:
        """The live (non-zombie) process, if it is still this one."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.started) > 0.01:
                return None
            return None if proc.status() == psutil.STATUS_ZOMBIE else proc
        except psutil.NoSuchProcess:
            return None

    def alive(self) -> bool:
        return self.process() is not None


class UpRecord(msgspec.Struct, frozen=True, kw_only=True):
    supervisor: Proc
    services: dict[str, Proc] = {}
    nats: Proc | None = None  # the embedded servers this supervisor started (not attached to)
    postgres: Proc | None = None
    watcher: Proc | None = None


def read_record(home: Path) -> UpRecord | None:
    try:
        return msgspec.json.decode((home / RECORD).read_bytes(), type=UpRecord)
    except FileNotFoundError:
        return None
    except msgspec.ValidationError as exc:
        log.warning("ignoring unreadable %s: %s", home / RECORD, exc)
        return None


def write_record(home: Path, record: UpRecord) -> None:
    tmp = home / f"{RECORD}.tmp"
    tmp.write_bytes(msgspec.json.encode(record))
    os.replace(tmp, home / RECORD)


def clear_record(home: Path) -> None:
    (home / RECORD).unlink(missing_ok=True)


class UpLock:
    """The exclusive lock on a state directory (flock on `home/up.lock`)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / LOCK
        self._handle: IO[str] | None = None

    def try_acquire(self) -> bool:
        self.home.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._handle = handle
        return True

    def name_holder(self) -> None:
        """Write this process into the lock file (what `holder()` reads)."""
        assert self._handle is not None, "name_holder() without the lock"
        me = Proc.of(os.getpid())
        assert me is not None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(msgspec.json.encode(me).decode())
        self._handle.flush()

    def holder(self) -> Proc | None:
        """The supervisor named in the lock file, if it is alive."""
        try:
            named = msgspec.json.decode(self.path.read_bytes(), type=Proc)
        except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        return named if named.alive() else None

    def is_free(self) -> bool:
        if self._handle is not None:
            return False
        if not self.try_acquire():
            return False
        self.release()
        return True

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def claim(home: Path, *, wait_s: float = 120.0) -> UpLock:
    """The lock for a new supervisor, or AlreadyUp when a live one holds it. While a
    watcher holds it (cleaning up after a dead `up`), wait for it."""
    lock = UpLock(home)
    deadline = time.monotonic() + wait_s
    while not lock.try_acquire():
        holder = lock.holder()
        if holder is not None:
            raise AlreadyUp(home, holder.pid)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{lock.path} stayed locked for {wait_s:.0f}s by a process that is not a "
                "live supervisor (a watcher stopping what a dead `up` left)"
            )
        time.sleep(0.2)
    lock.name_holder()
    return lock


def running_supervisor(home: Path) -> int | None:
    """The pid of a live `sigrelay up` for this state directory, if any."""
    lock = UpLock(home)
    if not lock.path.exists() or lock.is_free():
        return None
    holder = lock.holder()
    return holder.pid if holder is not None else None


def stop_processes(procs: dict[str, Proc], *, wait_s: float = STOP_WAIT_S) -> list[str]:
    """SIGTERM (and SIGCONT, should one be stopped) each live one, SIGKILL what is
    still there after `wait_s`; the names of those that had to be killed."""
    live = {name: p for name, p in procs.items() if p.process() is not None}
    for name, proc in live.items():
        log.warning("stopping leftover %s (pid %d)", name, proc.pid)
        _signal(proc, signal.SIGTERM)
        _signal(proc, signal.SIGCONT)
    if _wait_gone(live.values(), wait_s):
        return []
    killed = [name for name, proc in live.items() if proc.alive()]
    for name in killed:
        log.warning("leftover %s (pid %d) ignored SIGTERM; killing it", name, live[name].pid)
        _signal(live[name], signal.SIGKILL)
    _wait_gone(live.values(), 10)
    return killed


def _signal(proc: Proc, sig: signal.Signals) -> None:
    found = proc.process()
    if found is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.send_signal(sig)


def _wait_gone(procs: Iterable[Proc], within_s: float) -> bool:
    # polled, not waited for: they are not our children, and a zombie counts as gone
    # (their new parent may reap it late)
    pending = list(procs)
    deadline = time.monotonic() + within_s
    while pending := [p for p in pending if p.alive()]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def clean_up_after(home: Path, record: UpRecord, *, servers: bool) -> None:
    """Stop what the dead supervisor of `record` left: its watcher and services, and
    with `servers` also the embedded servers it started. The caller holds the lock."""
    from infra.embedded import EmbeddedNats, EmbeddedPostgres

    leftovers = dict(record.services)
    if record.watcher is not None and record.watcher.pid != os.getpid():
        leftovers["watcher"] = record.watcher
    stop_processes(leftovers)
    if servers:
        if record.nats is not None and record.nats.alive():
            nats = EmbeddedNats.at(home)
            if nats.pid == record.nats.pid:
                nats.shutdown()
        if record.postgres is not None and record.postgres.alive():
            postgres = EmbeddedPostgres.at(home)
            if postgres.pid == record.postgres.pid:
                postgres.shutdown()
        clear_record(home)


def spawn_watcher(home: Path) -> subprocess.Popen[bytes]:
    """The watcher of this supervisor (see the module doc)."""
    env = lifeline.child_env(dict(os.environ))
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "watcher.log").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.runtime.upstate", "--home", str(home)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C is for the supervisor, which stops it last
        )


def watch(home: Path, supervisor: int) -> int:
    """Wait for the supervisor to die; then, unless a new `up` already holds the lock
    (it takes over what is left), stop what the dead one started."""
    while lifeline.supervisor_alive(supervisor):
        time.sleep(lifeline.CHECK_EVERY_S)
    lock = UpLock(home)
    deadline = time.monotonic() + 120
    while not lock.try_acquire():
        # held by a new `up` (it takes over), or only for a moment by a look at it
        holder = lock.holder()
        if holder is not None or time.monotonic() > deadline:
            log.info("supervisor %d is gone and %s is held; leaving the rest", supervisor, home)
            return 0
        time.sleep(0.2)
    try:
        record = read_record(home)
        if record is None or record.supervisor.pid != supervisor:
            return 0  # it shut down cleanly, or a later `up` already cleaned up
        log.warning("supervisor %d died; stopping what it started under %s", supervisor, home)
        clean_up_after(home, record, servers=True)
    finally:
        lock.release()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="stops what a dead `sigrelay up` left")
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    supervisor = lifeline.supervisor_pid(os.environ)
    if supervisor is None:
        parser.error(f"{lifeline.SUPERVISOR_PID} is not set")
    return watch(args.home.resolve(), supervisor)


if __name__ == "__main__":
    sys.exit(main())
