"""Ids that become subject tokens are checked, never rewritten into someone else's."""

from __future__ import annotations

import pytest

from contracts import subjects
from contracts.control import ControlError
from contracts.errors import ErrorCode
from services.actors.control import check_verb_and_user
from services.ingest.inject import ScriptLine, build_raw, parse_script
from services.runtime.cli import main
from services.runtime.ctl import parse_assignments

BAD_IDS = ["a.b", "*", ">", "a b", "", "x" * 65, "u\x00"]


@pytest.mark.parametrize("user", BAD_IDS)
def test_user_subject_for_an_invalid_id_then_refused_not_rewritten(user: str) -> None:
    with pytest.raises(ValueError, match="user id"):
        subjects.ctl_user("status", user)


@pytest.mark.parametrize("user", BAD_IDS)
def test_control_plane_invalid_user_id_then_invalid_value_field_user(user: str) -> None:
    with pytest.raises(ControlError) as err:
        check_verb_and_user("status", user)

    assert err.value.code is ErrorCode.INVALID_VALUE and err.value.field == "user"


@pytest.mark.parametrize("user", ["a.b", "*", ">"])
def test_cli_ctl_with_an_invalid_user_then_one_line_error_and_exit_2(
    user: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ctl", "status", "--user", user])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "user id" in err and repr(user) in err


def test_cli_inject_with_an_invalid_channel_then_one_line_error_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["signals", "inject", "--channel", "gold.vip", "--text", "buy gold"])

    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'gold.vip'" in err


def test_injected_line_with_an_invalid_channel_then_refused_naming_the_line() -> None:
    with pytest.raises(ValueError, match=r"script line 2: channel name 'a\.b'"):
        parse_script(['{"text": "x"}', '{"text": "x", "channel": "a.b"}'], source="script")
    with pytest.raises(ValueError, match="channel"):
        build_raw(ScriptLine(text="x"), "a*b", 1)


def test_cli_ctl_with_a_lone_surrogate_in_a_value_then_one_line_error_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # what Python makes of argv bytes that are not UTF-8
    code = main(["ctl", "register", "--user", "u1", "display_name=A\udcff"])

    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "display_name" in err and "U+DCFF" in err


def test_cli_ctl_value_too_deep_to_be_json_then_sent_as_the_string_it_is() -> None:
    value = "[" * 3000 + "]" * 3000

    assert parse_assignments([f"display_name={value}"]) == {"display_name": value}
