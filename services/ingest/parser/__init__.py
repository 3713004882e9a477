"""The signal parser: channel message text in, a `ParseResult` out. Pure, never raises.

    from services.ingest.parser import parse, to_public
    result = parse("XAUUSD BUY NOW 4357\\nSL 4347\\nTP 4360", ParseContext(default_symbol="XAUUSD"))
    to_public(result)  # {"kind": "open", "symbol": "XAUUSD", "side": "buy", ...}

Modules by concern: `normalize` (markup, emoji, number notation), `tokens`
(one regex pass), `lexicon` (words in several languages), `numbers`
(shorthand and abbreviated prices), `levels` (which number is which),
`geometry` (zones, side, safety checks), `manage` (management prose),
`classify` (the decision), `public` (the public JSON shape).
"""

from __future__ import annotations

from contracts.signals import Instruction, ParseContext, ParseResult, Rejected

from .classify import parse_text
from .public import KINDS, to_public


def parse(text: str, context: ParseContext | None = None) -> ParseResult:
    """The parse result of one message. Never raises.

    A bug that raises inside the parser yields `Rejected` with rule
    `parser_error` (the message is not traded, and the audit trail says why).
    """
    try:
        return parse_text(text if isinstance(text, str) else str(text), context)
    except Exception as exc:  # last-resort guard; a failure here is a parser bug
        return Rejected(
            reason=f"parser error: {type(exc).__name__}: {exc}"[:300], rule="parser_error"
        )


__all__ = ["KINDS", "Instruction", "ParseContext", "ParseResult", "parse", "to_public"]
