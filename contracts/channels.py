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

CHANNEL_NAME_MAX = 64
# \Z, not $: `$` would also match before a trailing newline ("gold\n")
CHANNEL_NAME = re.compile(rf"^[a-z0-9][a-z0-9_-]{{0,{CHANNEL_NAME_MAX - 1}}}\Z")


def channel_name_problem(name: str) -> str | None:
    """Why `name` is not a channel name (the subject token of a channel), or None if it is."""
    if CHANNEL_NAME.match(name):
        return None
    if len(name) > CHANNEL_NAME_MAX:
        return f"channel name of {len(name)} characters exceeds {CHANNEL_NAME_MAX}"
    return (
        f"channel name {name!r} must be 1-{CHANNEL_NAME_MAX} lower-case letters, digits, "
        "'_' or '-', starting with a letter or digit"
    )


def check_channel_name(channel: str) -> str:
    """`channel` if it is a valid channel name (a subject token: checked, never
    rewritten), else ValueError saying why."""
    problem = channel_name_problem(channel)
    if problem is not None:
        raise ValueError(problem)
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
