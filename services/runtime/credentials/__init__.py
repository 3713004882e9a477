"""Broker credentials: envelope encryption, crypto-shredding, key rotation, redaction."""

from services.runtime.credentials.envelope import (
    DecryptionFailed,
    SealedSecret,
    Secret,
    WrappedKey,
    decrypt_secret,
    encrypt_secret,
    new_dek,
    unwrap_dek,
    wrap_dek,
)
from services.runtime.credentials.keyring import (
    ENV_VAR,
    InsecureMasterKeyWarning,
    MasterKeyError,
    MasterKeyRing,
    UnknownMasterKey,
    new_entry,
)
from services.runtime.credentials.keystore import DataKeyStore, InMemoryDataKeyStore
from services.runtime.credentials.keystore_pg import PgDataKeyStore
from services.runtime.credentials.redact import MASK, is_sensitive_key, redact, redact_text
from services.runtime.credentials.vault import (
    CredentialError,
    CredentialVault,
    RotationReport,
    SecretShredded,
    SecretUnreadable,
)

__all__ = [
    "ENV_VAR",
    "MASK",
    "CredentialError",
    "CredentialVault",
    "DataKeyStore",
    "DecryptionFailed",
    "InMemoryDataKeyStore",
    "InsecureMasterKeyWarning",
    "MasterKeyError",
    "MasterKeyRing",
    "PgDataKeyStore",
    "RotationReport",
    "SealedSecret",
    "Secret",
    "SecretShredded",
    "SecretUnreadable",
    "UnknownMasterKey",
    "WrappedKey",
    "decrypt_secret",
    "encrypt_secret",
    "is_sensitive_key",
    "new_dek",
    "new_entry",
    "redact",
    "redact_text",
    "unwrap_dek",
    "wrap_dek",
]
