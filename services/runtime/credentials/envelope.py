"""Envelope encryption: secrets sealed under per-user data keys, data keys wrapped under master keys.

Two layers, both AES-256-GCM with a fresh 96-bit random nonce per encryption:

- a user's **data key** (DEK, 32 random bytes) is wrapped under the active
  master key, with the user id as associated data, so a wrapped key copied
  to another user's row does not unwrap;
- each **secret** (a broker token) is sealed under the user's DEK, with the
  user id and a purpose string (`"metaapi-token:<account_id>"`) as associated
  data, so a sealed secret moved to another user or another account does not
  open.

`SealedSecret` goes into the immutable event log; `WrappedKey` lives in a
mutable key table, so deleting it crypto-shreds every secret of that user.
Both are msgspec Structs whose `bytes` fields encode as standard base64 in JSON.
"""

from __future__ import annotations

import hmac
import secrets
from typing import NoReturn

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.runtime.credentials.keyring import MasterKeyRing

DEK_BYTES = 32
NONCE_BYTES = 12

_WRAP_DOMAIN = "sigrelay/dek-wrap/v1"
_SEAL_DOMAIN = "sigrelay/secret/v1"


class WrappedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A user's data key encrypted under master key `kid`.

    `key_version` identifies this data key (not the master key): it stays the
    same when the key is re-wrapped by a rotation and changes only when a new
    data key is created, e.g. after the old one was shredded.
    """

    kid: str
    nonce: bytes
    ciphertext: bytes
    key_version: int = 1

    def __repr__(self) -> str:
        return f"WrappedKey(kid={self.kid!r}, key_version={self.key_version})"


class SealedSecret(msgspec.Struct, frozen=True, kw_only=True):
    """A secret encrypted under the data key with version `key_version`."""

    key_version: int
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"SealedSecret(key_version={self.key_version}, {len(self.ciphertext)} bytes)"


class DecryptionFailed(Exception):
    """AES-GCM authentication failed: wrong key, wrong user or purpose, or tampered data."""


class Secret:
    """A plaintext secret held in memory that does not print itself.

    `repr`, `str` and f-strings show `Secret('****')`; call `reveal()` at the
    single place the real value is needed (handing the token to the SDK).
    Pickling is refused so the value cannot slip into a cache or a queue.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"Secret wraps a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The plaintext. Do not log it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    __hash__ = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


def new_dek() -> bytes:
    """A fresh random data key."""
    return secrets.token_bytes(DEK_BYTES)


def wrap_dek(ring: MasterKeyRing, dek: bytes, user_id: str, *, key_version: int = 1) -> WrappedKey:
    """Encrypt `dek` under the ring's active master key, bound to `user_id`."""
    if len(dek) != DEK_BYTES:
        raise ValueError(f"a data key is {DEK_BYTES} bytes, got {len(dek)}")
    kid = ring.active_kid
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = AESGCM(ring.key(kid)).encrypt(nonce, dek, _wrap_aad(user_id, kid, key_version))
    return WrappedKey(kid=kid, nonce=nonce, ciphertext=ciphertext, key_version=key_version)


def unwrap_dek(ring: MasterKeyRing, wrapped: WrappedKey, user_id: str) -> bytes:
    """The data key inside `wrapped`.

    Raises `UnknownMasterKey` when the ring lacks `wrapped.kid`, and
    `DecryptionFailed` when the key belongs to another user or was altered.
    """
    master = ring.key(wrapped.kid)
    aad = _wrap_aad(user_id, wrapped.kid, wrapped.key_version)
    try:
        dek = AESGCM(master).decrypt(wrapped.nonce, wrapped.ciphertext, aad)
    except (InvalidTag, ValueError):
        _fail(
            f"data key v{wrapped.key_version} of user {user_id!r} does not unwrap under master "
            f"key {wrapped.kid!r}: it belongs to another user or was altered"
        )
    if len(dek) != DEK_BYTES:
        _fail(f"data key of user {user_id!r} unwrapped to {len(dek)} bytes, expected {DEK_BYTES}")
    return dek


def encrypt_secret(
    dek: bytes, plaintext: str, *, user_id: str, purpose: str, key_version: int = 1
) -> SealedSecret:
    """Seal `plaintext` under `dek`, bound to `user_id` and `purpose`."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    aad = _seal_aad(user_id, purpose, key_version)
    ciphertext = AESGCM(dek).encrypt(nonce, plaintext.encode("utf-8"), aad)
    return SealedSecret(key_version=key_version, nonce=nonce, ciphertext=ciphertext)


def decrypt_secret(dek: bytes, sealed: SealedSecret, *, user_id: str, purpose: str) -> Secret:
    """Open `sealed`; raises `DecryptionFailed` for a wrong key, user, purpose or tampering."""
    aad = _seal_aad(user_id, purpose, sealed.key_version)
    try:
        data = AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, aad)
    except (InvalidTag, ValueError):
        _fail(
            f"secret {purpose!r} of user {user_id!r} does not decrypt: wrong data key, "
            "sealed for another user or purpose, or altered"
        )
    return Secret(data.decode("utf-8"))


def _wrap_aad(user_id: str, kid: str, key_version: int) -> bytes:
    # JSON of a list is an unambiguous encoding: no separator can be forged inside a user id.
    return msgspec.json.encode([_WRAP_DOMAIN, user_id, kid, key_version])


def _seal_aad(user_id: str, purpose: str, key_version: int) -> bytes:
    return msgspec.json.encode([_SEAL_DOMAIN, user_id, purpose, key_version])


def _fail(message: str) -> NoReturn:
    raise DecryptionFailed(message) from None
