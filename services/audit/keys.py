"""Where the audit chain keys come from: never from the database.

- `SIGRELAY_AUDIT_KEY`, when set: a ring in the master-key format
  (`kid:base64url(32 bytes),…`, the first one signs new records), key ids
  `audit:<kid>`;
- else derived from the master keys (`SIGRELAY_MASTER_KEYS`, or the local
  `SIGRELAY_HOME/master.key`): one audit key per master key, key ids
  `master:<kid>`.

Either way the chain key is HKDF-SHA256 of the key material with the fixed
info label below, so it is never the same bytes as a key that wraps user
data keys. The id is stored with each record, so rotating (a new key first,
the old ones kept for verifying) leaves old records verifiable.

The writer may create the local master key (as the credential vault does);
`verify` never creates one: with no key at all it checks linkage only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.audit.chain import AuditKeys, ChainKey
from services.runtime.credentials.keyring import ENV_VAR as MASTER_ENV_VAR
from services.runtime.credentials.keyring import LOCAL_KEY_FILE, MasterKeyRing

AUDIT_KEY_ENV = "SIGRELAY_AUDIT_KEY"
HKDF_INFO = b"sigrelay/audit-chain/v1"


def derive(kid: str, material: bytes) -> ChainKey:
    """The chain key for one key's material (HKDF-SHA256, no salt, fixed info)."""
    secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(material)
    return ChainKey(kid, secret)


def _from_ring(ring: MasterKeyRing, prefix: str) -> list[ChainKey]:
    return [derive(f"{prefix}:{kid}", ring.key(kid)) for kid in ring.kids]


def keys_for_writing(env: Mapping[str, str], home: Path) -> AuditKeys:
    """The keys of a writer: SIGRELAY_AUDIT_KEY, else the master keys (created
    locally, with the vault's warning, when none are configured)."""
    value = env.get(AUDIT_KEY_ENV)
    if value is not None:
        ring = MasterKeyRing.parse(value, source=AUDIT_KEY_ENV)
        return AuditKeys(_from_ring(ring, "audit"), source=AUDIT_KEY_ENV)
    ring = MasterKeyRing.from_env(env, home=home)
    return AuditKeys(_from_ring(ring, "master"), source=ring.source)


def keys_for_verifying(env: Mapping[str, str], home: Path) -> AuditKeys | None:
    """Every audit key this process can find (SIGRELAY_AUDIT_KEY and the master
    keys both, so records from before a switch still verify); None if none."""
    keys: list[ChainKey] = []
    sources: list[str] = []
    value = env.get(AUDIT_KEY_ENV)
    if value is not None:
        keys += _from_ring(MasterKeyRing.parse(value, source=AUDIT_KEY_ENV), "audit")
        sources.append(AUDIT_KEY_ENV)
    master = env.get(MASTER_ENV_VAR)
    if master is not None:
        keys += _from_ring(MasterKeyRing.parse(master), "master")
        sources.append(MASTER_ENV_VAR)
    elif (home / LOCAL_KEY_FILE).exists():
        # the local key is only read here, never created, and warns as it does everywhere
        ring = MasterKeyRing.from_env(env, home=home)
        keys += _from_ring(ring, "master")
        sources.append(ring.source)
    return AuditKeys(keys, source=", ".join(sources)) if keys else None
