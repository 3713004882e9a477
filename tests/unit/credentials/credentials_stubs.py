"""Stub factories for the credential tests (imported by the test modules and conftest)."""

from __future__ import annotations

import base64
import os


def key_entry(kid: str, fill: int | None = None) -> str:
    """A `kid:base64url` entry; `fill` gives a recognisable fixed key, else random."""
    raw = bytes([fill]) * 32 if fill is not None else os.urandom(32)
    return f"{kid}:{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"
