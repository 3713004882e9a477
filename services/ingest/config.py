"""Ingest settings: linking windows and the optional Telegram source.

Read from `$SIGRELAY_HOME/ingest.json` when present (per-channel defaults
live in the shared channel directory, contracts/channels.py). Secrets (the
Telegram api hash and session string) are never in that file: they come
from the environment variables it names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec


class TelegramSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    api_id: int
    channels: list[str]
    api_hash_env: str = "TELEGRAM_API_HASH"
    session_env: str = "TELEGRAM_SESSION"
    backfill_interval_s: float = 120.0


class IngestConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    alert_window_s: float = 180.0  # how long a bare alert waits for its ticket
    snapshot_every: int = 200  # channel-state snapshot every this many events
    telegram: TelegramSettings | None = None


def load_config(home: Path, env: Mapping[str, str] | None = None) -> IngestConfig:
    env = os.environ if env is None else env
    path = Path(env.get("SIGRELAY_INGEST_CONFIG", str(home / "ingest.json")))
    if not path.exists():
        return IngestConfig()
    try:
        return msgspec.json.decode(path.read_bytes(), type=IngestConfig)
    except msgspec.ValidationError as exc:
        raise ValueError(f"ingest config {path}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ValueError(f"ingest config {path} is not valid JSON: {exc}") from exc
