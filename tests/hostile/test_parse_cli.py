"""`sigrelay signals parse` on hostile JSON lines: exit code 0, never a traceback, and
every input line accounted for by one output line (a parse, or an error row saying
what was wrong with that line)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.parse_cli import run
from tests.hostile.hostile import deep, encode_body, json_values, nasty_text, raw_bytes
from tests.support.processes import REPO

_lines = st.one_of(
    json_values.map(encode_body),
    st.builds(lambda i, t: encode_body({"id": i, "text": t}), json_values, nasty_text),
    st.builds(
        lambda d, k: b'{"id": ' + deep(d, k) + b', "text": "x"}',
        st.sampled_from([10, 1000, 3000, 10_000]),
        st.sampled_from(["list", "dict"]),
    ),
    st.builds(
        lambda d, k: deep(d, k), st.sampled_from([1000, 3000]), st.sampled_from(["list", "dict"])
    ),
    raw_bytes,
).map(lambda line: line.decode("utf-8", errors="replace").replace("\n", " ").replace("\r", " "))


def _run(lines: list[str]) -> tuple[int, list[dict]]:
    stdout = io.StringIO()
    code = run(io.StringIO("".join(f"{line}\n" for line in lines)), stdout)
    return code, [json.loads(row) for row in stdout.getvalue().split("\n") if row]


def _counted(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip())


@settings(max_examples=200)
@given(st.lists(_lines, min_size=1, max_size=6))
def test_hostile_lines_then_exit_0_and_one_row_per_line(lines: list[str]) -> None:
    code, rows = _run(lines)

    assert code == 0
    assert len(rows) == _counted(lines), (lines, rows)
    for row in rows:
        assert isinstance(row.get("kind"), str), row


def test_3000_deep_id_then_an_error_row_and_the_next_line_parsed() -> None:
    lines = [
        '{"id": ' + deep(3000, "list").decode() + ', "text": "x"}',
        '{"id": 2, "text": "XAUUSD BUY 2650 SL 2640 TP 2660"}',
    ]

    code, rows = _run(lines)

    assert code == 0 and len(rows) == 2
    assert rows[0]["id"] is None and "error" in rows[0]
    assert rows[1]["id"] == 2 and rows[1]["kind"] == "open"


def test_the_command_on_hostile_lines_then_exit_0_and_no_traceback() -> None:
    lines = [
        '{"id": ' + deep(3000, "dict").decode() + ', "text": "x"}',
        deep(3000, "list").decode(),
        "\x00\ufffd not json",
        '{"id": 1e400, "text": "SL 2640"}',
        '{"id": 3, "text": "XAUUSD SELL 2650 SL 2660 TP 2640"}',
    ]
    done = subprocess.run(
        [sys.executable, "-m", "services.runtime.cli", "signals", "parse"],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )

    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(row) for row in done.stdout.split("\n") if row]
    assert len(rows) == len(lines)
    assert rows[-1]["id"] == 3 and rows[-1]["kind"] == "open"
