"""The folder layout is the architecture: these are the imports it allows.

Services meet only on the bus, so a service package imports `contracts`,
`eventstore`, `infra` and the runtime, and never another service; the runtime
imports no service at all (it loads them by name, `services/runtime/registry.py`).
The stand-ins in `services/sims` run the paper exchange's book; the demo and the
benchmarks drive the whole system and may import any of it. The command line
(`services/runtime/cli.py`) is the composition root: it may reach a service's
tool, but only inside the command that runs it, never at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ("contracts", "eventstore", "infra", "services.runtime")
ALLOWED: dict[str, tuple[str, ...]] = {
    "contracts": ("contracts",),
    "eventstore": ("contracts", "eventstore"),
    "infra": ("contracts", "infra"),
    "services.runtime": SHARED,
    "services.sims": (*SHARED, "services.sims", "services.paper"),
}
TOOLS = ("services.bench", "services.demo")
COMPOSITION_ROOT = ROOT / "services" / "runtime" / "cli.py"


def _package_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[0] == "services" and len(parts) > 2:
        return f"services.{parts[1]}"
    return parts[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    nodes = tree.body if path == COMPOSITION_ROOT else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _ours(module: str) -> bool:
    return module.split(".")[0] in ("contracts", "eventstore", "infra", "services")


def _sources() -> list[Path]:
    return sorted(
        p
        for top in ("contracts", "eventstore", "infra", "services")
        for p in (ROOT / top).rglob("*.py")
        if _package_of(p) not in TOOLS
    )


def test_the_layout_finds_the_packages() -> None:
    packages = {_package_of(p) for p in _sources()}
    assert {"contracts", "services.execution", "services.paper", "services.runtime"} <= packages


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layout(path: Path) -> None:
    package = _package_of(path)
    allowed = ALLOWED.get(package, (*SHARED, package))
    wrong = sorted(
        m
        for m in _imports(path)
        if _ours(m) and not any(m == a or m.startswith(a + ".") for a in allowed)
    )
    assert not wrong, f"{package} may import only {', '.join(allowed)}; found {wrong}"
