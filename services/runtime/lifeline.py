"""A process `sigrelay up` starts dies with it, even when `up` is SIGKILLed.

Two mechanisms, because either alone can fail: on Linux the child asks the kernel
for SIGTERM when its parent dies (PR_SET_PDEATHSIG), and every child also watches
its parent pid itself, once a second, and drains and exits when the supervisor is
gone. The watch is the guarantee: the kernel signal is tied to the parent *thread*
that forked the child (so it is only asked for when the supervisor spawns from its
main thread), and it does not exist outside Linux.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping

log = logging.getLogger("sigrelay.lifeline")

SUPERVISOR_PID = "SIGRELAY_SUPERVISOR_PID"
# set only when the child was forked by the supervisor's main thread (see the module doc)
PARENT_DEATH_SIGNAL = "SIGRELAY_PARENT_DEATH_SIGNAL"
PR_SET_PDEATHSIG = 1
CHECK_EVERY_S = 1.0


def child_env(env: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Mark the environment of a child of this process (the supervisor)."""
    env[SUPERVISOR_PID] = str(os.getpid())
    if threading.current_thread() is threading.main_thread():
        env[PARENT_DEATH_SIGNAL] = "1"
    else:
        env.pop(PARENT_DEATH_SIGNAL, None)
    return env


def supervisor_pid(env: Mapping[str, str]) -> int | None:
    """The pid of the supervisor this process must not outlive, if it has one."""
    text = env.get(SUPERVISOR_PID)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{SUPERVISOR_PID}={text!r} is not a pid") from None


def supervisor_alive(pid: int) -> bool:
    # a dead parent's children are re-parented (to init or a subreaper), so this
    # cannot be fooled by the pid being reused
    return os.getppid() == pid


def ask_parent_death_signal(env: Mapping[str, str]) -> bool:
    """SIGTERM from the kernel when the parent dies (Linux); whether it was set."""
    if env.get(PARENT_DEATH_SIGNAL) != "1" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
            return False
    except (OSError, AttributeError) as exc:
        log.warning("prctl(PR_SET_PDEATHSIG) unavailable: %r", exc)
        return False
    return True


def watch_supervisor(
    pid: int, on_gone: Callable[[], object], *, exit_after_s: float = 30.0
) -> threading.Thread:
    """A daemon thread that calls `on_gone` once the supervisor `pid` has died and,
    should the orderly stop hang (the bus gone meanwhile), ends the process
    `exit_after_s` later. A thread, not a task: it must fire while the event loop
    is busy or already shutting down."""

    def watch() -> None:
        while supervisor_alive(pid):
            time.sleep(CHECK_EVERY_S)
        log.warning("supervisor pid %d is gone; stopping (parent now %d)", pid, os.getppid())
        with contextlib.suppress(Exception):
            on_gone()
        time.sleep(exit_after_s)
        log.error("still running %.0fs after the supervisor died; exiting", exit_after_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="supervisor-watch", daemon=True)
    thread.start()
    return thread
