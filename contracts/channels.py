"""The channel directory: which channels exist and their defaults.

A JSON file, `$SIGRELAY_HOME/channels.json` (or `SIGRELAY_CHANNELS`), read by
ingest (default symbols for parsing) and by the actor host (subscribing to a
channel not in it, and never seen on the bus, is an `unknown_channel` error):

    {"channels": {"gold": {"default_symbol": "XAUUSD"}, "fx_vip": {}}}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import msgspec

# A channel name is one subject token (`signals.parsed.<channel>`): checked, never rewritten.
CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_channel_name(channel: str) -> str:
    """`channel` if it is a valid channel name, else ValueError saying the grammar."""
    if not CHANNEL_NAME.match(channel):
        raise ValueError(
            f"channel {channel[:70]!r} must be 1-64 lower-case letters, digits, '_' or '-'"
        )
    return channel


class ChannelInfo(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    default_symbol: str | None = None
    title: str = ""


class ChannelDirectory(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channels: dict[str, ChannelInfo] = {}

    def default_symbol(self, channel: str) -> str | None:
        info = self.channels.get(channel)
        return info.default_symbol if info else None


def directory_path(home: Path, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("SIGRELAY_CHANNELS", str(home / "channels.json")))


def load_directory(home: Path, env: Mapping[str, str] | None = None) -> ChannelDirectory:
    path = directory_path(home, env)
    if not path.exists():
        return ChannelDirectory()
    try:
        directory = msgspec.json.decode(path.read_bytes(), type=ChannelDirectory)
    except msgspec.MsgspecError as exc:
        raise ValueError(f"channel directory {path}: {exc}") from exc
    for name in directory.channels:
        if not CHANNEL_NAME.match(name):
            raise ValueError(
                f"channel directory {path}: channel name {name!r} must be lower-case "
                "letters, digits, '_' or '-'"
            )
    return directory


def save_directory(
    home: Path, directory: ChannelDirectory, env: Mapping[str, str] | None = None
) -> Path:
    path = directory_path(home, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(directory)))
    tmp.replace(path)
    return path
