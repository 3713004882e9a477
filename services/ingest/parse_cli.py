"""Parse JSON lines `{"id", "text"}` from stdin, one public result per line to stdout.

A malformed line (not JSON, not UTF-8, nested too deeply) yields `{"id": null, "kind": "noise", "error": "..."}` on its
own line and the loop goes on: the command never dies on input.

    python -m services.ingest.parse_cli < messages.jsonl
"""

from __future__ import annotations

import io
import sys
from typing import Any, TextIO

import msgspec

from contracts.envelope import decode_json
from services.ingest.parser import parse, to_public


class _Line(msgspec.Struct):
    id: Any = None
    text: str = ""


_decoder = msgspec.json.Decoder(_Line)
_encoder = msgspec.json.Encoder()


def _row(line: str) -> dict[str, Any]:
    try:
        item = decode_json(_decoder, line)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return {"id": None, "kind": "noise", "error": f"bad input line: {exc}"[:300]}
    return {"id": item.id, **to_public(parse(item.text))}


def run(stdin: TextIO, stdout: TextIO) -> int:
    """Parse every line of `stdin`; returns the exit code (0)."""
    if isinstance(stdin, io.TextIOWrapper):
        # bytes that are not UTF-8 become lone surrogates, then that line's error, not a crash
        stdin.reconfigure(errors="surrogateescape")
    for line in stdin:
        if not line.strip():
            continue
        row = _row(line)
        try:
            data = _encoder.encode(row)
        except (TypeError, OverflowError) as exc:  # an id msgspec cannot encode
            data = _encoder.encode({"id": None, "kind": "noise", "error": f"bad id: {exc}"[:300]})
        stdout.write(data.decode())
        stdout.write("\n")
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.stdin, sys.stdout))
