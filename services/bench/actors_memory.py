"""Actor core memory and speed, in-process (no servers): `python -m services.bench.actors_memory`.

- bytes per idle actor: 100,000 registered users, each with a paper account and
  one subscription, built the way a host builds them (events decoded from JSON
  and folded; and, separately, snapshots decoded), measured with tracemalloc.
  Target: at most 4 KB each.
- decisions per second: `decide_signal` of one open signal (3 TPs) for 10,000
  users, and the same with the resulting events folded back into the states.
  Target: at least 20,000 per second.

A measuring script, not a test: the figures go to docs/BENCHMARKS.md by hand.
"""

from __future__ import annotations

import functools
import gc
import json
import time
import tracemalloc
from typing import Any

import msgspec

from contracts.ingest import ParsedSignal
from contracts.orders import Quote
from contracts.settings import LotSizing, UserSettings
from contracts.signals import OpenSignal
from contracts.users import AccountLinked, SettingsChanged, Subscribed, UserRegistered
from services.actors.core import (
    UserState,
    decide_signal,
    decode_state,
    encode_state,
    evolve,
    fold,
    initial_state,
)

USERS = 100_000
DECIDE_USERS = 10_000
T0 = 1_772_445_600_000_000_000
TARGET_BYTES = 4096
TARGET_RATE = 20_000

_events = msgspec.json.Decoder(UserRegistered | AccountLinked | Subscribed)


class _Market:
    def __init__(self, quote: Quote) -> None:
        self._quote = quote

    def quote(self, symbol: str) -> Quote | None:
        return self._quote if symbol == self._quote.symbol else None


def _user_event_bytes(user_id: str) -> list[bytes]:
    return [
        msgspec.json.encode(UserRegistered(id=f"{user_id}:1", ts=T0, user_id=user_id)),
        msgspec.json.encode(
            AccountLinked(id=f"{user_id}:2", ts=T0, account_id=f"paper-{user_id}", broker="paper")
        ),
        msgspec.json.encode(Subscribed(id=f"{user_id}:3", ts=T0, channel="gold")),
    ]


def _build_by_fold(n: int) -> list[UserState]:
    states = []
    for i in range(n):
        user_id = f"user-{i:06d}"
        events = [_events.decode(raw) for raw in _user_event_bytes(user_id)]
        states.append(fold(initial_state(user_id), events))
    return states


def _decode_all(snapshots: list[bytes], n: int) -> list[UserState]:
    return [decode_state(data) for data in snapshots[:n]]


def _measure(build: Any, n: int) -> tuple[list[UserState], float]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    states = build(n)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return states, (after - before) / n


def _signal() -> ParsedSignal:
    result = OpenSignal(
        symbol="XAUUSD", side="buy", entry=2000.0, sl=1990.0, tps=(2005.0, 2010.0, 2015.0)
    )
    return ParsedSignal(
        id="parsed:gold:1:1",
        ts=T0,
        signal_id="gold:1",
        channel="gold",
        message_id=1,
        posted_ns=T0,
        result=result,
    )


def run() -> dict[str, Any]:
    folded, per_fold = _measure(_build_by_fold, USERS)
    snapshots = [encode_state(s) for s in folded]
    del folded
    snapshot_bytes = sum(len(b) for b in snapshots) / len(snapshots)
    _, per_snapshot = _measure(functools.partial(_decode_all, snapshots), USERS)
    snapshots.clear()

    states = _build_by_fold(DECIDE_USERS)
    quote = Quote(
        id="q", ts=T0, symbol="XAUUSD", bid=2000.0, ask=2000.2, pip_size=0.1, pip_value_per_lot=10.0
    )
    market = _Market(quote)
    signal = _signal()
    now = T0 + 1_000_000_000

    start = time.perf_counter()
    decided = [decide_signal(state, signal, market, now) for state in states]
    decide_s = time.perf_counter() - start
    intents = sum(len(e.intents) for events in decided for e in events if hasattr(e, "intents"))

    # the same users at 0.03 lot: three TP legs, three intents per decision
    three = UserSettings(lot=LotSizing(fixed_lot=0.03))
    change = SettingsChanged(id="s", ts=T0, settings=three)
    split_states = [evolve(state, change) for state in states]
    start = time.perf_counter()
    for state in split_states:
        decide_signal(state, signal, market, now)
    split_s = time.perf_counter() - start

    start = time.perf_counter()
    for state in states:
        for event in decide_signal(state, signal, market, now):
            state = evolve(state, event)
    cycle_s = time.perf_counter() - start

    return {
        "name": "actors_memory",
        "users": USERS,
        "bytes_per_actor_folded": round(per_fold),
        "bytes_per_actor_from_snapshot": round(per_snapshot),
        "snapshot_json_bytes": round(snapshot_bytes),
        "target_bytes_per_actor": TARGET_BYTES,
        "memory_ok": max(per_fold, per_snapshot) <= TARGET_BYTES,
        "decide_users": DECIDE_USERS,
        "intents_per_decision": intents / DECIDE_USERS,
        "decisions_per_s": round(DECIDE_USERS / decide_s),
        "decide_and_evolve_per_s": round(DECIDE_USERS / cycle_s),
        "decisions_per_s_three_legs": round(DECIDE_USERS / split_s),
        "target_decisions_per_s": TARGET_RATE,
        "speed_ok": DECIDE_USERS / decide_s >= TARGET_RATE,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
