"""Broker client ids and close volumes: small pure rules with exact, tested answers."""

from __future__ import annotations

import base64
import hashlib
import math

CLIENT_ID_PREFIX = "SR"
CLIENT_ID_LENGTH = 20  # the broker port's limit (MetaApi: client id + comment <= 26)


def client_id_for(intent_id: str) -> str:
    """The broker client id of an intent: `SR` + 18 base32 characters of SHA-256(intent id).

    Deterministic (a retry, a redelivery or a restarted process sends the same
    id, so the broker can recognise it), 20 characters of [A-Z2-7] (what MT5
    comments and the port accept), and 90 bits of hash: within one account two
    intents share an id with probability about n^2 / 2^91, nil in practice.
    The prefix marks the order as Sigrelay's at the broker.
    """
    if not intent_id:
        raise ValueError("an intent id is needed to derive a client id")
    digest = hashlib.sha256(intent_id.encode()).digest()
    text = base64.b32encode(digest).decode().rstrip("=")
    return CLIENT_ID_PREFIX + text[: CLIENT_ID_LENGTH - len(CLIENT_ID_PREFIX)]


_EPS = 1e-9


def close_volume(
    remaining: float, fraction: float | None, *, step: float, min_volume: float
) -> float | None:
    """Lots to close for `fraction` of `remaining`, or None for the whole position.

    The share is rounded to the nearest volume step (halves up) and raised to
    the minimum volume; when that leaves less than the minimum open (or
    nothing), the whole position is closed instead, since the broker would
    refuse the remnant.
    """
    if remaining <= 0:
        raise ValueError(f"remaining volume {remaining} must be positive")
    if fraction is None or fraction >= 1.0 - _EPS:
        return None
    if not fraction > 0:
        raise ValueError(f"close fraction {fraction} must be above 0 and at most 1")
    if not step > 0:
        raise ValueError(f"volume step {step} must be positive")
    steps = math.floor(remaining * fraction / step + 0.5 + _EPS)
    volume = round(max(steps * step, min_volume), 8)
    if volume >= remaining - _EPS or remaining - volume < min_volume - _EPS:
        return None
    return volume
