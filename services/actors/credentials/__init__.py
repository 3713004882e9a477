"""Broker credentials: envelope encryption, crypto-shredding, key rotation, redaction."""

from services.actors.credentials.envelope import (
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
from services.actors.credentials.keyring import (
    ENV_VAR,
    InsecureMasterKeyWarning,
    MasterKeyError,
    MasterKeyRing,
    UnknownMasterKey,
    new_entry,
)
from services.actors.credentials.keystore import DataKeyStore, InMemoryDataKeyStore
from services.actors.credentials.redact import MASK, is_sensitive_key, redact, redact_text
from services.actors.credentials.vault import (
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
