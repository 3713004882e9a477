"""Master keys: the key-encryption keys that wrap every user's data key.

The ring comes from `SIGRELAY_MASTER_KEYS`, a comma-separated list of
`kid:base64url(32 bytes)` entries. The first entry is the active key (new
wraps use it); every entry can unwrap, so an operator rotates by putting a
new key first, running `sigrelay keys rotate`, and later dropping the old one.

Without the variable, a local key file under the state directory is created
once and used, with a loud warning: fine for a laptop, never for production.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import stat
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

ENV_VAR = "SIGRELAY_MASTER_KEYS"
LOCAL_KEY_FILE = "master.key"
KEY_BYTES = 32

_KID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+={0,2}")

log = logging.getLogger(__name__)


class MasterKeyError(ValueError):
    """The master key configuration is unusable. The message never contains key material."""


class UnknownMasterKey(KeyError):
    """A wrapped key names a master key id that is not in the ring."""

    def __init__(self, kid: str, known: Iterable[str]) -> None:
        self.kid = kid
        self.known = tuple(known)
        super().__init__(kid)

    def __str__(self) -> str:
        return (
            f"master key {self.kid!r} is not in the ring (known: {', '.join(self.known)}); "
            f"add it back to {ENV_VAR} to read data wrapped under it"
        )


class InsecureMasterKeyWarning(UserWarning):
    """Emitted when the master key comes from a local file instead of the environment."""


class MasterKeyRing:
    """An ordered set of master keys; the first is active.

    Key bytes are kept private and never appear in `repr`.
    """

    __slots__ = ("_keys", "_order", "source")

    def __init__(self, keys: Iterable[tuple[str, bytes]], *, source: str = "explicit") -> None:
        order: list[str] = []
        table: dict[str, bytes] = {}
        for index, (kid, key) in enumerate(keys, start=1):
            if not _KID_RE.fullmatch(kid):
                raise MasterKeyError(
                    f"master key #{index}: key id {kid!r} must be 1-64 characters of "
                    "[A-Za-z0-9._-] starting with a letter or digit"
                )
            if len(key) != KEY_BYTES:
                raise MasterKeyError(
                    f"master key #{index} ({kid!r}): {len(key)} bytes, expected {KEY_BYTES}"
                )
            if kid in table:
                raise MasterKeyError(f"master key #{index}: key id {kid!r} appears twice")
            order.append(kid)
            table[kid] = bytes(key)
        if not order:
            raise MasterKeyError("a master key ring needs at least one key")
        self._order: tuple[str, ...] = tuple(order)
        self._keys = table
        self.source = source

    @property
    def active_kid(self) -> str:
        """The id of the key new wraps use."""
        return self._order[0]

    @property
    def kids(self) -> tuple[str, ...]:
        """All key ids, active first."""
        return self._order

    def key(self, kid: str) -> bytes:
        """The key bytes for `kid`; raises `UnknownMasterKey`."""
        try:
            return self._keys[kid]
        except KeyError:
            raise UnknownMasterKey(kid, self._order) from None

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __repr__(self) -> str:
        return f"MasterKeyRing(kids={list(self._order)!r}, source={self.source!r})"

    @classmethod
    def parse(cls, value: str, *, source: str = ENV_VAR) -> MasterKeyRing:
        """Parse `kid:base64url,kid:base64url,…`.

        Errors name the entry by its 1-based position and its key id, never
        the key material.
        """
        if not value.strip():
            raise MasterKeyError(f"{source} is set but empty; give at least one kid:key entry")
        raw_entries = value.split(",")
        total = len(raw_entries)
        keys: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        for index, raw in enumerate(raw_entries, start=1):
            where = f"{source} entry {index} of {total}"
            entry = raw.strip()
            if not entry:
                raise MasterKeyError(f"{where} is empty (stray comma?)")
            kid, sep, encoded = entry.partition(":")
            kid, encoded = kid.strip(), encoded.strip()
            if not sep:
                raise MasterKeyError(f"{where} has no ':'; expected kid:base64url-key")
            if not _KID_RE.fullmatch(kid):
                raise MasterKeyError(
                    f"{where}: key id {kid[:64]!r} must be 1-64 characters of [A-Za-z0-9._-] "
                    "starting with a letter or digit"
                )
            if kid in seen:
                raise MasterKeyError(f"{where}: key id {kid!r} appears twice")
            seen.add(kid)
            key = _decode_key(encoded, where=f"{where} (kid {kid!r})")
            keys.append((kid, key))
        return cls(keys, source=source)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, home: Path) -> MasterKeyRing:
        """The ring from `SIGRELAY_MASTER_KEYS`, else from the local key file under `home`.

        The local file (`home/master.key`, mode 0600) is created on first use
        and reused afterwards; each use warns loudly.
        """
        value = env.get(ENV_VAR)
        if value is not None:
            return cls.parse(value)
        path = home / LOCAL_KEY_FILE
        entry = _load_or_create_local_key(path)
        message = (
            f"no {ENV_VAR} set: using a LOCAL master key at {path}; anyone with this file "
            f"can decrypt every linked broker token; set {ENV_VAR} in production"
        )
        log.warning(message)
        warnings.warn(message, InsecureMasterKeyWarning, stacklevel=2)
        return cls.parse(entry, source=str(path))


def new_entry(kid: str) -> str:
    """A fresh `kid:base64url-key` entry, for an operator adding a key to the ring."""
    if not _KID_RE.fullmatch(kid):
        raise MasterKeyError(f"key id {kid!r} must be 1-64 characters of [A-Za-z0-9._-]")
    return f"{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def _decode_key(encoded: str, *, where: str) -> bytes:
    if not _B64URL_RE.fullmatch(encoded):
        raise MasterKeyError(
            f"{where}: key is not base64url (allowed: A-Z a-z 0-9 - _ and = padding)"
        )
    padded = encoded.rstrip("=")
    padded += "=" * (-len(padded) % 4)
    try:
        key = base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{where}: key is not valid base64url") from None
    if len(key) != KEY_BYTES:
        raise MasterKeyError(f"{where}: key decodes to {len(key)} bytes, expected {KEY_BYTES}")
    return key


def _load_or_create_local_key(path: Path) -> str:
    if path.exists():
        return _read_local_key(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    entry = new_entry(f"local-{secrets.token_hex(4)}")
    # Write a private temp file, then hard-link it into place: the link is atomic and
    # fails if the file exists, so two processes starting together agree on one key and
    # nobody ever reads a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(entry + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return _read_local_key(path)
    finally:
        tmp.unlink(missing_ok=True)
    return entry


def _read_local_key(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "local master key file %s has mode %o; it should be 0600 (chmod 600 %s)",
            path,
            mode,
            path,
        )
    text = path.read_text(encoding="ascii").strip()
    if not text:
        raise MasterKeyError(
            f"local master key file {path} is empty; restore it from backup, or delete it "
            "only if no broker token was ever linked with it"
        )
    return text
