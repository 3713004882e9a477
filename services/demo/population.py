"""The demo's users: many, with the variety real users have, made over the
control plane exactly as any client would make them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.runtime.ctl import request

CHANNELS = {"gold": "XAUUSD", "fx_signals": None, "indices": None}


@dataclass(frozen=True)
class Persona:
    user_id: str
    channels: tuple[str, ...]
    settings: dict[str, Any]
    paused: bool


def persona(i: int) -> Persona:
    """User number i, deterministic: lot modes, suffixes, limits, some paused."""
    channels = ["gold"]
    if i % 2 == 0:
        channels.append("fx_signals")
    if i % 3 == 0:
        channels.append("indices")
    settings: dict[str, Any] = {"lot": round(0.01 * (1 + i % 5), 2)}
    if i % 5 == 4:
        settings.update(lot_mode="multiplier", multiplier=2.0, lot=0.01)
    if i % 4 == 1:
        settings["suffix"] = ".m"
    if i % 6 == 5:
        settings.update(tp_mode="single", tp_number=2)
    if i % 7 == 3:
        settings["allowed_symbols"] = ["XAUUSD"]
    if i % 11 == 7:
        settings["risk.max_open_positions"] = 1
    if i % 13 == 6:
        settings["max_signal_age_s"] = 1.0  # impatient: follow-ups still apply, late opens not
    return Persona(
        user_id=f"demo{i:05d}", channels=tuple(channels), settings=settings, paused=i % 10 == 9
    )


async def create_users(
    nc: Any, count: int, *, progress: Callable[[int], None], concurrency: int = 64
) -> dict[str, int]:
    """Register, link a paper account, subscribe and configure `count` users."""
    gate = asyncio.Semaphore(concurrency)
    outcomes: dict[str, int] = {}
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        p = persona(i)
        async with gate:
            steps: list[tuple[str, dict[str, Any]]] = [
                ("register", {"display_name": f"Demo trader {i}"}),
                ("link_account", {"account_id": "paper"}),
                *(("subscribe", {"channel": c}) for c in p.channels),
                ("settings", p.settings),
            ]
            if p.paused:
                steps.append(("pause", {"reason": "on holiday"}))
            for verb, body in steps:
                reply = await request(nc, verb, p.user_id, body, timeout_s=30)
                key = "ok" if reply.get("ok") else reply["error"]["code"]
                outcomes[key] = outcomes.get(key, 0) + 1
        done += 1
        progress(done)

    await asyncio.gather(*(one(i) for i in range(count)))
    return outcomes
