from __future__ import annotations

import logging
import pickle

import msgspec
import pytest

from services.runtime.credentials import (
    DecryptionFailed,
    MasterKeyRing,
    SealedSecret,
    Secret,
    WrappedKey,
    decrypt_secret,
    encrypt_secret,
    new_dek,
    unwrap_dek,
    wrap_dek,
)

TOKEN = "eyJhbGciOiJSUzUxMiJ9.eyJfaWQiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"


def test_wrap_then_unwrap_when_same_user_then_same_dek(ring_a: MasterKeyRing) -> None:
    dek = new_dek()

    wrapped = wrap_dek(ring_a, dek, "u1")

    assert wrapped.kid == "a"
    assert dek not in wrapped.ciphertext
    assert unwrap_dek(ring_a, wrapped, "u1") == dek


def test_unwrap_when_wrapped_key_copied_to_another_user_then_fails(ring_a: MasterKeyRing) -> None:
    wrapped = wrap_dek(ring_a, new_dek(), "u1")

    with pytest.raises(DecryptionFailed, match="'u2'"):
        unwrap_dek(ring_a, wrapped, "u2")


def test_unwrap_when_ciphertext_tampered_then_fails(ring_a: MasterKeyRing) -> None:
    wrapped = wrap_dek(ring_a, new_dek(), "u1")
    flipped = bytes([wrapped.ciphertext[0] ^ 1]) + wrapped.ciphertext[1:]

    with pytest.raises(DecryptionFailed):
        unwrap_dek(ring_a, msgspec.structs.replace(wrapped, ciphertext=flipped), "u1")


def test_encrypt_then_decrypt_round_trips_unicode() -> None:
    dek = new_dek()

    sealed = encrypt_secret(dek, "tök€n", user_id="u1", purpose="metaapi-token:acc1")

    assert decrypt_secret(dek, sealed, user_id="u1", purpose="metaapi-token:acc1").reveal() == (
        "tök€n"
    )


@pytest.mark.parametrize(
    ("user_id", "purpose"),
    [("u2", "metaapi-token:acc1"), ("u1", "metaapi-token:acc2"), ("u1", "other")],
)
def test_decrypt_when_user_or_purpose_differs_then_fails(user_id: str, purpose: str) -> None:
    dek = new_dek()
    sealed = encrypt_secret(dek, TOKEN, user_id="u1", purpose="metaapi-token:acc1")

    with pytest.raises(DecryptionFailed):
        decrypt_secret(dek, sealed, user_id=user_id, purpose=purpose)


def test_decrypt_when_separator_shifted_between_user_and_purpose_then_fails() -> None:
    # "u1:" + "x" and "u1" + ":x" must not give the same associated data.
    dek = new_dek()
    sealed = encrypt_secret(dek, TOKEN, user_id="u1:", purpose="x")

    with pytest.raises(DecryptionFailed):
        decrypt_secret(dek, sealed, user_id="u1", purpose=":x")


def test_structs_when_encoded_as_json_then_bytes_are_base64_and_round_trip(
    ring_a: MasterKeyRing,
) -> None:
    dek = new_dek()
    wrapped = wrap_dek(ring_a, dek, "u1", key_version=5)
    sealed = encrypt_secret(dek, TOKEN, user_id="u1", purpose="p", key_version=5)

    wrapped_json = msgspec.json.encode(wrapped)
    sealed_json = msgspec.json.encode(sealed)

    as_dict = msgspec.json.decode(sealed_json)
    assert isinstance(as_dict["ciphertext"], str)
    assert set(as_dict) == {"key_version", "nonce", "ciphertext"}
    assert TOKEN.encode() not in sealed_json
    assert msgspec.json.decode(wrapped_json, type=WrappedKey) == wrapped
    back = msgspec.json.decode(sealed_json, type=SealedSecret)
    assert decrypt_secret(dek, back, user_id="u1", purpose="p").reveal() == TOKEN


def test_encrypt_twice_then_fresh_nonce_each_time() -> None:
    dek = new_dek()

    one = encrypt_secret(dek, TOKEN, user_id="u1", purpose="p")
    two = encrypt_secret(dek, TOKEN, user_id="u1", purpose="p")

    assert one.nonce != two.nonce
    assert one.ciphertext != two.ciphertext


def test_secret_when_printed_logged_or_formatted_then_plaintext_never_shows(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = Secret(TOKEN)

    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("token is %s / %r", secret, secret)
    renderings = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>80}",
        "%s" % secret,  # noqa: UP031
        repr([secret]),
        repr({"token": secret}),
        caplog.text,
    ]

    assert all(TOKEN not in text for text in renderings)
    assert repr(secret) == "Secret('****')"
    assert secret.reveal() == TOKEN


def test_secret_equality_and_refusals() -> None:
    assert Secret("x") == Secret("x")
    assert Secret("x") != Secret("y")
    with pytest.raises(TypeError):
        hash(Secret("x"))
    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))
    with pytest.raises(TypeError):
        msgspec.json.encode(Secret("x"))


def test_structs_repr_shows_no_ciphertext(ring_a: MasterKeyRing) -> None:
    wrapped = wrap_dek(ring_a, new_dek(), "u1")

    assert repr(wrapped.ciphertext) not in repr(wrapped)
