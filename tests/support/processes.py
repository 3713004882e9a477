"""Running services as real subprocesses, so tests can SIGKILL them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def start_service(
    name: str,
    *,
    nats_url: str,
    database_url: str,
    home: Path,
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`sigrelay service NAME` against the given servers; output goes to home/NAME.log."""
    env = dict(os.environ)
    env.update(
        SIGRELAY_HOME=str(home),
        NATS_URL=nats_url,
        DATABASE_URL=database_url,
        **(extra_env or {}),
    )
    home.mkdir(parents=True, exist_ok=True)
    log = (home / f"{name}.log").open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "services.runtime.cli", "service", name],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
