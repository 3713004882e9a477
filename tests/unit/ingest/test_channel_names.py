"""Channel names are refused where raw messages are produced (inject, telegram),
by the one rule in contracts.channels."""

from __future__ import annotations

import pytest

from contracts.channels import channel_name_problem
from services.ingest.inject import ScriptLine, build_raw, inject
from services.ingest.sources.base import ChannelMessage
from services.ingest.telegram_bridge import to_raw
from services.runtime.cli import main


@pytest.mark.parametrize("name", ["gold", "fx_vip", "9-to-5", "x" * 64])
def test_channel_name_when_valid_then_no_problem(name: str) -> None:
    assert channel_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("x" * 4200, "channel name of 4200 characters exceeds 64"),
        ("x" * 65, "channel name of 65 characters exceeds 64"),
        ("gold\n", "channel name 'gold\\n' must be 1-64 lower-case"),
        ("-1001234", "channel name '-1001234' must be"),
        ("", "channel name '' must be"),
    ],
)
def test_channel_name_when_invalid_then_problem_says_why(name: str, fragment: str) -> None:
    problem = channel_name_problem(name)

    assert problem is not None and fragment in problem


def test_build_raw_when_channel_too_long_then_refused_with_reason() -> None:
    with pytest.raises(ValueError, match="channel name of 4200 characters exceeds 64"):
        build_raw(ScriptLine(text="XAUUSD BUY", channel="x" * 4200), "gold", 1)


def test_build_raw_when_channel_upper_case_then_lowered_and_accepted() -> None:
    assert build_raw(ScriptLine(text="XAUUSD BUY"), "Gold", 1).channel == "gold"


async def test_inject_when_one_line_has_bad_channel_then_refused_before_publishing() -> None:
    lines = [ScriptLine(text="ok"), ScriptLine(text="bad", channel="x" * 4200)]

    # no connection at all: anything published would fail on it first
    with pytest.raises(ValueError, match="4200 characters exceeds 64"):
        await inject(None, lines, default_channel="gold")  # type: ignore[arg-type]


def test_signals_inject_cli_when_channel_too_long_then_exit_2_with_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["signals", "inject", "--channel", "x" * 4200, "--text", "XAUUSD BUY"])

    assert code == 2
    assert "channel name of 4200 characters exceeds 64" in capsys.readouterr().err


def test_telegram_to_raw_when_channel_not_a_channel_name_then_refused() -> None:
    message = ChannelMessage(
        channel_id=-1001234567890,
        channel="x" * 4200,
        message_id=7,
        date_ns=1,
        edit_date_ns=None,
        text="XAUUSD BUY",
        reply_to_id=None,
        is_forward=False,
        grouped_id=None,
    )

    with pytest.raises(ValueError, match="telegram channel -1001234567890: channel name of 4200"):
        to_raw(message)
