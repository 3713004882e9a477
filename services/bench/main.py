"""`sigrelay bench [NAME…]`: run benchmarks against the real servers and print
JSON (with --json) or a short table. Results are recorded by hand, with date,
machine and command, in docs/BENCHMARKS.md; they are never test assertions.

Benchmarks run on their own embedded servers under `$SIGRELAY_HOME/bench`
(or NATS_URL / DATABASE_URL) and each in a fresh database, so they never
touch a running system's state.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import platform
import time
from typing import Any

from services.runtime.settings import RuntimeSettings

BENCHMARKS: dict[str, str] = {
    "eventstore": "services.bench.eventstore",
    "parser": "services.bench.parser",
    "actors": "services.bench.actors",
    "audit": "services.bench.audit",
    "execution": "services.bench.execution",
    "execution-metaapi": "services.bench.execution_metaapi",
    "e2e": "services.bench.e2e",
}


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def run_benchmarks(names: list[str], settings: RuntimeSettings, *, as_json: bool) -> int:
    # e2e starts the whole system and is run on its own: `sigrelay bench e2e --users N`
    chosen = names or [n for n in BENCHMARKS if n != "e2e"]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    results = []
    for name in chosen:
        module = importlib.import_module(BENCHMARKS[name])
        outcome = module.run_bench(settings) if hasattr(module, "run_bench") else module.run()
        if asyncio.iscoroutine(outcome):
            outcome = _run(outcome)
        results.append(outcome)
        if not as_json:
            print_table(outcome)
    print(json.dumps({"machine": machine(), "results": results}, indent=None if as_json else 2))
    return 0


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)


def print_table(result: dict[str, Any]) -> None:
    print(f"\n== {result.get('name', '?')}")
    for key, value in result.items():
        if key == "name":
            continue
        if isinstance(value, float):
            value = f"{value:,.1f}" if value >= 100 else f"{value:.3f}"
        elif isinstance(value, int):
            value = f"{value:,}"
        print(f"  {key:38} {value}")
