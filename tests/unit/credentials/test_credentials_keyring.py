from __future__ import annotations

import base64
import logging
import stat
from pathlib import Path

import pytest
from credentials_stubs import key_entry

from services.runtime.credentials import (
    InsecureMasterKeyWarning,
    MasterKeyError,
    MasterKeyRing,
    UnknownMasterKey,
    new_entry,
)
from services.runtime.credentials.keyring import ENV_VAR


def test_parse_when_two_entries_then_first_is_active_and_both_known() -> None:
    ring = MasterKeyRing.parse(f"{key_entry('k2', 2)}, {key_entry('k1', 1)}")

    assert ring.active_kid == "k2"
    assert ring.kids == ("k2", "k1")
    assert ring.key("k1") == bytes([1]) * 32


def test_parse_accepts_padded_and_unpadded_base64url() -> None:
    raw = bytes(range(32))
    padded = base64.urlsafe_b64encode(raw).decode()
    assert padded.endswith("=")

    assert MasterKeyRing.parse(f"p:{padded}").key("p") == raw
    assert MasterKeyRing.parse(f"u:{padded.rstrip('=')}").key("u") == raw


def test_repr_when_printed_then_shows_kids_but_no_key_material() -> None:
    entry = key_entry("visible", 7)
    ring = MasterKeyRing.parse(entry)

    assert "visible" in repr(ring)
    assert entry.split(":")[1] not in repr(ring)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a:" + "A" * 43 + ",oops", "entry 2 of 2 has no ':'"),
        (key_entry("a") + ",", "entry 2 of 2 is empty"),
        (key_entry("a") + ",b:" + base64.urlsafe_b64encode(b"x" * 16).decode(), "entry 2 of 2"),
        ("a:not*base64!", "entry 1 of 1"),
        (key_entry("a") + "," + key_entry("a"), "appears twice"),
        (":" + "A" * 43, "entry 1 of 1: key id"),
        ("   ", "set but empty"),
    ],
)
def test_parse_when_entry_malformed_then_error_names_the_entry(value: str, fragment: str) -> None:
    with pytest.raises(MasterKeyError) as info:
        MasterKeyRing.parse(value)

    assert fragment in str(info.value)
    assert ENV_VAR in str(info.value) or "empty" in str(info.value)


def test_parse_when_key_has_wrong_length_then_error_names_kid_and_length_not_key() -> None:
    short = base64.urlsafe_b64encode(b"s" * 16).decode()

    with pytest.raises(MasterKeyError) as info:
        MasterKeyRing.parse(f"{key_entry('good')},bad:{short}")

    message = str(info.value)
    assert "entry 2 of 2" in message
    assert "'bad'" in message
    assert "16 bytes" in message
    assert short not in message


def test_key_when_kid_unknown_then_unknown_master_key_names_it() -> None:
    ring = MasterKeyRing.parse(key_entry("a"))

    with pytest.raises(UnknownMasterKey, match="'zz' is not in the ring"):
        ring.key("zz")


def test_from_env_when_variable_set_then_uses_it_and_writes_no_file(tmp_path: Path) -> None:
    ring = MasterKeyRing.from_env({ENV_VAR: key_entry("prod", 3)}, home=tmp_path)

    assert ring.kids == ("prod",)
    assert not (tmp_path / "master.key").exists()


def test_from_env_when_variable_missing_then_creates_local_key_with_loud_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "state"

    with (
        caplog.at_level(logging.WARNING),
        pytest.warns(InsecureMasterKeyWarning, match="LOCAL master key") as warned,
    ):
        first = MasterKeyRing.from_env({}, home=home)

    key_file = home / "master.key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert str(key_file) in str(warned[0].message)
    assert "set SIGRELAY_MASTER_KEYS in production" in caplog.text
    assert "anyone with this file can decrypt every linked broker token" in caplog.text
    assert first.active_kid.startswith("local-")
    assert list(home.iterdir()) == [key_file]  # no temp file left behind


def test_from_env_when_called_twice_then_reuses_the_same_local_key(tmp_path: Path) -> None:
    with pytest.warns(InsecureMasterKeyWarning):
        first = MasterKeyRing.from_env({}, home=tmp_path)
    content = (tmp_path / "master.key").read_text()

    with pytest.warns(InsecureMasterKeyWarning):
        second = MasterKeyRing.from_env({}, home=tmp_path)

    assert second.kids == first.kids
    assert second.key(second.active_kid) == first.key(first.active_kid)
    assert (tmp_path / "master.key").read_text() == content


def test_from_env_when_variable_empty_then_error_not_local_fallback(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="set but empty"):
        MasterKeyRing.from_env({ENV_VAR: ""}, home=tmp_path)

    assert not (tmp_path / "master.key").exists()


def test_new_entry_round_trips_through_parse() -> None:
    ring = MasterKeyRing.parse(new_entry("2026-11"))

    assert ring.active_kid == "2026-11"
    assert len(ring.key("2026-11")) == 32
