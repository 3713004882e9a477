"""The broker-events sweep is paced, and a notice polls exactly the accounts it names."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from services.execution import broker_events
from services.execution.broker_events import BrokerEventWatcher


def _watcher(accounts: list[str], per_s: int) -> tuple[BrokerEventWatcher, list[str]]:
    core: Any = SimpleNamespace(accounts_holding=lambda: accounts)
    watcher = BrokerEventWatcher(core, scheduler=None, sweep_s=60.0, sweep_per_s=per_s)  # type: ignore[arg-type]
    asked: list[str] = []
    watcher.request = asked.append  # type: ignore[method-assign,assignment]
    return watcher, asked


async def test_sweep_of_450_accounts_at_200_a_second_then_three_rounds_two_pauses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accounts = [f"paper-u{i}" for i in range(450)]
    watcher, asked = _watcher(accounts, per_s=200)
    rounds: list[int] = []

    async def fake_sleep(seconds: float) -> None:
        rounds.append(len(asked))
        assert seconds == 1.0

    monkeypatch.setattr(broker_events.asyncio, "sleep", fake_sleep)
    await watcher._sweep()

    assert asked == accounts
    assert rounds == [200, 400]  # paused after each full round, not after the last


async def test_notice_polls_named_accounts_and_garbage_is_ignored() -> None:
    watcher, asked = _watcher([], per_s=200)

    watcher.on_notice(b'["paper-a", "paper-b"]')
    watcher.on_notice(b"not json")
    watcher.on_notice(b'{"accounts": 1}')

    assert asked == ["paper-a", "paper-b"]
    assert watcher.notices == 1
    await asyncio.sleep(0)
