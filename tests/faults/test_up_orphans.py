"""`sigrelay up` killed with SIGKILL leaves nothing running, and there is never more
than one set of services on one state directory: a second `up` finds the first, and
the `up` after a dead one stops (or adopts) what that one left before starting."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.processes import REPO

pytestmark = pytest.mark.faults

SERVICES = ("audit", "ingest")  # two light ones: the mechanism is the same for every service
DEADLINE_S = 20.0  # for services to go once their supervisor is gone
SERVERS_DEADLINE_S = 90.0  # a Postgres fast shutdown on a loaded box


def _wait_for(what: str, condition: Callable[[], bool], within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:.0f}s: {what}")
        time.sleep(0.1)


def _start_up(home: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env["SIGRELAY_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    with (home / "up.out").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.runtime.cli", "up", "--only", *SERVICES],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _log_sizes(home: Path) -> dict[str, int]:
    sizes = {}
    for name in SERVICES:
        path = home / "logs" / f"{name}.log"
        sizes[name] = path.stat().st_size if path.exists() else 0
    return sizes


def _wait_ready(
    home: Path, up: subprocess.Popen[bytes], logs_since: dict[str, int]
) -> dict[str, int]:
    """Until each service runs once on `home` and has logged that it serves; their pids."""

    def serving(name: str) -> bool:
        path = home / "logs" / f"{name}.log"
        if not path.exists():
            return False
        with path.open("rb") as log:
            log.seek(logs_since[name])
            return f"{name}: serving".encode() in log.read()

    def ready() -> bool:
        if up.poll() is not None:
            raise AssertionError(f"up exited with {up.returncode}:\n{_tail(home / 'up.out')}")
        names = Counter(name for name, _ in _services_on(home))
        return names == Counter(SERVICES) and all(serving(name) for name in SERVICES)

    _wait_for(f"up for {home} ready", ready, 180)
    return dict(_services_on(home))


def _server_pids(home: Path) -> list[int]:
    """The running nats-server and postmaster of `home`, from their pid files."""
    pids = []
    for path in (home / "nats" / "nats.pid", home / "postgres" / "data" / "postmaster.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(path.read_text().splitlines()[0])
            if not _gone(pid):
                pids.append(pid)
    return pids


def _watchers(home: Path) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter()
        if _on_home(p, home) and "services.runtime.upstate" in " ".join(p.cmdline())
    ]


def _anything_on(home: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if _live(proc) and _on_home(proc, home):
                found.append(f"{proc.pid} {' '.join(proc.cmdline())}")
    return found


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:])
    except OSError as exc:
        return f"({exc})"


def _on_home(proc: psutil.Process, home: Path) -> bool:
    try:
        if any(str(home) in part for part in proc.cmdline()):
            return True
        return proc.environ().get("SIGRELAY_HOME") == str(home)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _services_on(home: Path) -> list[tuple[str, int]]:
    """(service name, pid) of every live `sigrelay service` process on `home`."""
    found = []
    for proc in psutil.process_iter():
        try:
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        is_service = cmdline[-3:-1] == ["services.runtime.cli", "service"]
        if is_service and _live(proc) and _on_home(proc, home):
            found.append((cmdline[-1], proc.pid))
    return found


def _gone(pid: int) -> bool:
    try:
        return not _live(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A state directory; afterwards nothing that mentions it is left running, pass or fail."""
    path = tmp_path / "home"
    try:
        yield path
    finally:
        doomed = [p for p in psutil.process_iter() if _on_home(p, path)]
        for proc in list(doomed):
            with contextlib.suppress(psutil.NoSuchProcess):
                doomed += proc.children(recursive=True)  # the Postgres backends
        for proc in doomed:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(doomed, timeout=10)


def test_sigkilled_up_leaves_nothing_and_the_next_up_runs_one_set(home: Path):
    up = _start_up(home)
    try:
        services = _wait_ready(home, up, _log_sizes(home))
        servers = _server_pids(home)
        assert len(servers) == 2, servers  # this `up` started both servers
        up.send_signal(signal.SIGKILL)
        up.wait()

        _wait_for(
            f"services {services} exit after their supervisor was killed",
            lambda: all(_gone(pid) for pid in services.values()),
            DEADLINE_S,
        )
        _wait_for(
            f"servers {servers} stopped after their supervisor was killed",
            lambda: all(_gone(pid) for pid in servers),
            SERVERS_DEADLINE_S,
        )
        _wait_for("nothing left on the home", lambda: not _anything_on(home), DEADLINE_S)

        up = _start_up(home)
        second = _wait_ready(home, up, _log_sizes(home))
        running = _services_on(home)
        assert Counter(name for name, _ in running) == Counter(SERVICES), running
        assert not set(second.values()) & set(services.values())

        up.send_signal(signal.SIGTERM)
        assert up.wait(120) == 0
        _wait_for(
            "a stopped `up` leaves no service, server or watcher",
            lambda: not _anything_on(home),
            DEADLINE_S,
        )
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_a_second_up_while_the_first_runs_starts_nothing(home: Path):
    up = _start_up(home)
    try:
        first = _wait_ready(home, up, _log_sizes(home))
        env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
        second = subprocess.run(
            [sys.executable, "-m", "services.runtime.cli", "up", "--only", *SERVICES],
            cwd=REPO,
            env={**env, "SIGRELAY_HOME": str(home)},
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert second.returncode == 0, second.stderr.decode()
        assert f"supervisor pid {up.pid}" in second.stdout.decode(), second.stdout.decode()
        assert sorted(_services_on(home)) == sorted(first.items())
        assert up.poll() is None
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(120)


def test_the_next_up_stops_services_a_dead_up_left_and_adopts_its_servers(home: Path):
    """Both the supervisor and its watcher are killed, and one service cannot act
    on its supervisor's death (stopped): the next `up` must stop it before starting
    its own set, and take over the running servers."""
    up = _start_up(home)
    try:
        first = _wait_ready(home, up, _log_sizes(home))
        servers = _server_pids(home)
        stuck = first["ingest"]
        os.kill(stuck, signal.SIGSTOP)
        for watcher in _watchers(home):
            watcher.kill()  # a zombie until its parent is gone: _gone() counts that
            _wait_for("the watcher is killed", lambda w=watcher.pid: _gone(w), DEADLINE_S)
        up.send_signal(signal.SIGKILL)
        up.wait()
        assert not _gone(stuck)

        up = _start_up(home)
        _wait_ready(home, up, _log_sizes(home))
        assert _gone(stuck)
        running = _services_on(home)
        assert Counter(name for name, _ in running) == Counter(SERVICES), running
        # the servers were taken over, not started again, and this `up` now owns them
        assert _server_pids(home) == servers
        up.send_signal(signal.SIGTERM)
        assert up.wait(120) == 0
        _wait_for(
            "the adopted servers stop with the `up` that adopted them",
            lambda: all(_gone(pid) for pid in servers),
            DEADLINE_S,
        )
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


# a stand-in supervisor: starts one service marked as its child, but without the
# kernel's parent-death signal, then waits to be killed
_STAND_IN = """
import os, subprocess, sys, time
env = dict(os.environ, SIGRELAY_SUPERVISOR_PID=str(os.getpid()))
env.pop("SIGRELAY_PARENT_DEATH_SIGNAL", None)
with open(sys.argv[1], "ab") as log:
    child = subprocess.Popen(
        [sys.executable, "-m", "services.runtime.cli", "service", "audit"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_service_stops_when_its_supervisor_dies_without_the_kernel_telling_it(
    home: Path, nats_url: str, database_url: str
):
    """The parent-pid watch alone (where prctl is missing or the signal was lost)."""
    home.mkdir(parents=True)
    log = home / "audit.log"
    env = dict(os.environ, SIGRELAY_HOME=str(home), NATS_URL=nats_url, DATABASE_URL=database_url)
    stand_in = subprocess.Popen(
        [sys.executable, "-c", _STAND_IN, str(log)], cwd=REPO, env=env, stdout=subprocess.PIPE
    )
    try:
        assert stand_in.stdout is not None
        service = int(stand_in.stdout.readline())
        _wait_for(
            "audit serving",
            lambda: log.exists() and b"audit: serving" in log.read_bytes(),
            120,
        )
        stand_in.kill()
        stand_in.wait()
        _wait_for(
            f"audit (pid {service}) exits after its supervisor was killed",
            lambda: _gone(service),
            DEADLINE_S,
        )
        assert f"supervisor pid {stand_in.pid} is gone" in log.read_text()
    finally:
        if stand_in.poll() is None:
            stand_in.kill()
            stand_in.wait()
