"""`sigrelay signals parse`: every input line gets one output line, whatever it holds."""

from __future__ import annotations

import io

import msgspec

from contracts.envelope import Codec
from contracts.ingest import ParsedSignal
from services.ingest.parse_cli import run


def parse_lines(data: bytes) -> list[dict]:
    stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
    stdout = io.StringIO()

    assert run(stdin, stdout) == 0
    return [msgspec.json.decode(line) for line in stdout.getvalue().splitlines()]


def test_deeply_nested_line_then_its_own_error_and_the_next_line_parsed() -> None:
    deep = b'{"id": ' + b"[" * 3000 + b"]" * 3000 + b', "text": "x"}'

    rows = parse_lines(deep + b'\n{"id": 2, "text": "buy gold"}\n')

    assert rows[0]["id"] is None and "nested too deeply" in rows[0]["error"]
    assert rows[1]["id"] == 2 and rows[1]["kind"] == "open"


def test_line_not_utf8_then_its_own_error_and_the_next_line_parsed() -> None:
    rows = parse_lines(b'{"id": 1, "text": "\xff"}\n{"id": 2, "text": "buy gold"}\n')

    assert rows[0]["id"] is None and "UTF-8" in rows[0]["error"]
    assert rows[1]["id"] == 2 and rows[1]["kind"] == "open"


def test_deeply_nested_bus_message_then_a_decode_error_not_a_recursion_error() -> None:
    # an unknown field is skipped, and skipping recurses as deep as the value goes
    body = b'{"type": "signal.parsed", "extra": ' + b"[" * 3000 + b"]" * 3000 + b"}"

    try:
        Codec(ParsedSignal).decode(body)
    except msgspec.DecodeError as exc:
        assert "nested too deeply" in str(exc)
    else:
        raise AssertionError("a 3,000-deep message decoded")
