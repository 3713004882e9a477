"""What of a control request may be kept: everything but its secrets."""

from __future__ import annotations

from typing import Any

import msgspec

from services.runtime.credentials.redact import redact


def redacted_request(body: bytes) -> Any:
    try:
        return redact(msgspec.json.decode(body)) if body.strip() else {}
    except msgspec.DecodeError:
        return {"unparsed": "****"}  # malformed input may hold anything: keep none of it
