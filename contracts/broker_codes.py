"""Broker result codes: MT5 trade return codes plus the ones MetaApi adds, in plain words.

Shared by the paper broker (which rejects with the same codes a real MT5 server
would) and the MetaApi adapter (which maps `TradeException.numericCode`).
Each code also carries the outcome the execution service should act on.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

from contracts.broker import Rejected


class CodeOutcome(Enum):
    """What a code means for the order that produced it."""

    OK = "ok"  # done, placed or nothing to change
    REJECTED = "rejected"  # final: resending the same request cannot help
    RETRY = "retry"  # transient: the request was not executed, send again later
    UNKNOWN = "unknown"  # may or may not have executed: reconcile by client id first
    NOT_CONNECTED = "not_connected"  # terminal or account unusable for now


class BrokerCode(NamedTuple):
    numeric: int
    name: str
    reason: str
    outcome: CodeOutcome


_OK, _REJ, _RETRY, _UNK, _NC = (
    CodeOutcome.OK,
    CodeOutcome.REJECTED,
    CodeOutcome.RETRY,
    CodeOutcome.UNKNOWN,
    CodeOutcome.NOT_CONNECTED,
)

_TABLE: tuple[BrokerCode, ...] = (
    BrokerCode(0, "ERR_NO_ERROR", "done", _OK),
    BrokerCode(-1, "TRADE_RETCODE_UNKNOWN", "the broker returned an unknown result", _UNK),
    BrokerCode(
        -4,
        "TRADE_RETCODE_ORDER_TYPE_NOT_SUPPORTED",
        "this order type is not supported for the symbol or account",
        _REJ,
    ),
    BrokerCode(-5, "ERR_NOT_SYNCHRONIZED", "the trading terminal is not synchronized yet", _NC),
    BrokerCode(-6, "ERR_NO_QUOTES", "there are no quotes for the symbol right now", _RETRY),
    BrokerCode(-7, "ERR_TRADE_TIMED_OUT", "the trade timed out and may still have executed", _UNK),
    BrokerCode(
        -8,
        "ERR_INVESTOR",
        "the account is connected with the read-only investor password",
        _REJ,
    ),
    BrokerCode(
        -9,
        "ERR_PIP_SIZE_NOT_DEFINED",
        "stops given in pips, but the symbol has no pip size",
        _REJ,
    ),
    BrokerCode(4753, "ERR_TRADE_POSITION_NOT_FOUND", "the position does not exist", _REJ),
    BrokerCode(4754, "ERR_TRADE_ORDER_NOT_FOUND", "the order does not exist", _REJ),
    BrokerCode(10004, "TRADE_RETCODE_REQUOTE", "the broker requoted the price", _RETRY),
    BrokerCode(10006, "TRADE_RETCODE_REJECT", "the broker rejected the request", _REJ),
    BrokerCode(10007, "TRADE_RETCODE_CANCEL", "the request was cancelled by the trader", _REJ),
    BrokerCode(10008, "TRADE_RETCODE_PLACED", "order placed", _OK),
    BrokerCode(10009, "TRADE_RETCODE_DONE", "done", _OK),
    BrokerCode(10010, "TRADE_RETCODE_DONE_PARTIAL", "only part of the volume was filled", _OK),
    BrokerCode(
        10011, "TRADE_RETCODE_ERROR", "the broker failed while processing the request", _UNK
    ),
    BrokerCode(10012, "TRADE_RETCODE_TIMEOUT", "the request timed out at the broker", _UNK),
    BrokerCode(10013, "TRADE_RETCODE_INVALID", "the request is invalid", _REJ),
    BrokerCode(
        10014,
        "TRADE_RETCODE_INVALID_VOLUME",
        "the volume is not allowed for this symbol (below minimum, above maximum or off the step)",
        _REJ,
    ),
    BrokerCode(10015, "TRADE_RETCODE_INVALID_PRICE", "the price is not valid", _REJ),
    BrokerCode(
        10016,
        "TRADE_RETCODE_INVALID_STOPS",
        "the stop loss or take profit is on the wrong side of the price or too close to it",
        _REJ,
    ),
    BrokerCode(10017, "TRADE_RETCODE_TRADE_DISABLED", "trading is disabled", _REJ),
    BrokerCode(10018, "TRADE_RETCODE_MARKET_CLOSED", "the market is closed", _REJ),
    BrokerCode(10019, "TRADE_RETCODE_NO_MONEY", "not enough free margin for this order", _REJ),
    BrokerCode(10020, "TRADE_RETCODE_PRICE_CHANGED", "the price changed", _RETRY),
    BrokerCode(10021, "TRADE_RETCODE_PRICE_OFF", "there are no quotes to fill at", _RETRY),
    BrokerCode(
        10022, "TRADE_RETCODE_INVALID_EXPIRATION", "the order expiration is not valid", _REJ
    ),
    BrokerCode(10023, "TRADE_RETCODE_ORDER_CHANGED", "the order state changed", _RETRY),
    BrokerCode(10024, "TRADE_RETCODE_TOO_MANY_REQUESTS", "too many requests to the broker", _RETRY),
    BrokerCode(10025, "TRADE_RETCODE_NO_CHANGES", "nothing to change", _OK),
    BrokerCode(
        10026, "TRADE_RETCODE_SERVER_DISABLES_AT", "the broker disabled automated trading", _REJ
    ),
    BrokerCode(
        10027,
        "TRADE_RETCODE_CLIENT_DISABLES_AT",
        "automated trading is disabled in the terminal",
        _REJ,
    ),
    BrokerCode(10028, "TRADE_RETCODE_LOCKED", "the request is locked for processing", _RETRY),
    BrokerCode(
        10029, "TRADE_RETCODE_FROZEN", "the order or position is frozen near the price", _REJ
    ),
    BrokerCode(10030, "TRADE_RETCODE_INVALID_FILL", "the filling mode is not supported", _REJ),
    BrokerCode(
        10031, "TRADE_RETCODE_CONNECTION", "the terminal has no connection to the broker", _NC
    ),
    BrokerCode(10032, "TRADE_RETCODE_ONLY_REAL", "allowed for live accounts only", _REJ),
    BrokerCode(10033, "TRADE_RETCODE_LIMIT_ORDERS", "the limit of pending orders is reached", _REJ),
    BrokerCode(
        10034, "TRADE_RETCODE_LIMIT_VOLUME", "the volume limit for the symbol is reached", _REJ
    ),
    BrokerCode(10035, "TRADE_RETCODE_INVALID_ORDER", "the order type is not valid", _REJ),
    BrokerCode(10036, "TRADE_RETCODE_POSITION_CLOSED", "the position is already closed", _REJ),
    BrokerCode(
        10038,
        "TRADE_RETCODE_INVALID_CLOSE_VOLUME",
        "the close volume exceeds the position volume",
        _REJ,
    ),
    BrokerCode(
        10039,
        "TRADE_RETCODE_CLOSE_ORDER_EXIST",
        "a close order for this position already exists",
        _REJ,
    ),
    BrokerCode(
        10040, "TRADE_RETCODE_LIMIT_POSITIONS", "the limit of open positions is reached", _REJ
    ),
    BrokerCode(
        10041, "TRADE_RETCODE_REJECT_CANCEL", "the pending order activation was rejected", _REJ
    ),
    BrokerCode(10042, "TRADE_RETCODE_LONG_ONLY", "only buy positions are allowed", _REJ),
    BrokerCode(10043, "TRADE_RETCODE_SHORT_ONLY", "only sell positions are allowed", _REJ),
    BrokerCode(10044, "TRADE_RETCODE_CLOSE_ONLY", "only closing positions is allowed", _REJ),
    BrokerCode(
        10045, "TRADE_RETCODE_FIFO_CLOSE", "positions must be closed first-in, first-out", _REJ
    ),
    BrokerCode(
        10046,
        "TRADE_RETCODE_HEDGE_PROHIBITED",
        "opposite positions on one symbol are not allowed (hedging prohibited)",
        _REJ,
    ),
)

CODES: dict[int, BrokerCode] = {c.numeric: c for c in _TABLE}
CODES_BY_NAME: dict[str, BrokerCode] = {c.name: c for c in _TABLE}

# Named constants for the codes the paper broker produces.
NO_ERROR = 0
POSITION_NOT_FOUND = 4753
ORDER_NOT_FOUND = 4754
PLACED = 10008
DONE = 10009
INVALID = 10013
INVALID_VOLUME = 10014
INVALID_PRICE = 10015
INVALID_STOPS = 10016
MARKET_CLOSED = 10018
NO_MONEY = 10019
NO_CHANGES = 10025
INVALID_CLOSE_VOLUME = 10038


def lookup(numeric: int | None, name: str | None = None) -> BrokerCode:
    """The table entry for a code; unknown codes are REJECTED with the broker's own name."""
    if numeric is not None and numeric in CODES:
        return CODES[numeric]
    if name and name in CODES_BY_NAME:
        return CODES_BY_NAME[name]
    label = name or "UNKNOWN"
    return BrokerCode(
        numeric if numeric is not None else -1,
        label,
        f"the broker refused the request with code {numeric} {label}",
        _REJ,
    )


def describe(numeric: int | None, name: str | None = None) -> str:
    """Plain-words reason for a code, e.g. `describe(10019)` -> 'not enough free margin ...'."""
    return lookup(numeric, name).reason


def reject(code: int, reason: str) -> Rejected:
    """A `Rejected` carrying the code's numeric and string forms."""
    return Rejected(reason, broker_code=code, broker_code_name=lookup(code).name)
