"""The paper exchange's request/reply protocol on NATS (JSON).

Subject: `broker.paper.<account>.<op>` (the account as one subject token).
Request: `{"account": "<account id>", "args": {...}}` — the account in full,
since a subject token cannot carry every character an account id may have.
Reply: `{"ok": true, "result": ...}` or `{"ok": false, "error": {"kind",
"reason", "broker_code", "broker_code_name", "retry_after_s"}}`, where
`kind` names the port error (`rejected`, `retry_later`, `outcome_unknown`,
`not_connected`, `auth_failed`).

| op | args | result |
| --- | --- | --- |
| place_order | OrderRequest | BrokerOrderResult |
| modify_position | {position_id, sl, tp} | BrokerOrderResult |
| close_position | {position_id, volume} | BrokerOrderResult |
| cancel_order | {order_id} | BrokerOrderResult |
| modify_order | {order_id, price, sl, tp} | BrokerOrderResult |
| positions | {} | [Position] |
| orders | {} | [PendingOrder] |
| find_by_client_id | {client_id} | {position, order} (one or neither set) |
| account_info | {} | AccountInfo |
| symbol_spec | {symbol} | SymbolSpec |
| quote | {symbol} | Quote (the port's) |
| events_since | {after, limit} | BrokerEventPage: what the exchange did on its own |

`events_since` is how the exchange tells what it did without being asked (a
pending order filled by the market, a position closed by its SL or TP, an
order cancelled for want of margin): the client pulls the events after the
last `seq` it applied (`seq` = the fact's version in `paper-<account>`), so a
client that was down misses nothing and one that asks twice applies nothing
twice. Pulled rather than pushed: it needs no new NATS permission (execution
may already request `broker.paper.>`) and no delivery guarantee from core NATS.

Test-only control (`CONTROL_SET_QUOTE`, `broker.paper.control.set_quote`,
body `SetQuoteArgs`): sets a symbol's quote now and moves the feed's walk
there; answered only when the exchange runs with `SIGRELAY_PAPER_CONTROL=1`,
refused otherwise.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.broker import (
    AuthFailed,
    BrokerError,
    NotConnected,
    OutcomeUnknown,
    PendingOrder,
    Position,
    Rejected,
    RetryLater,
)
from contracts.subjects import BROKER_PAPER, token

PREFIX = BROKER_PAPER
SUBSCRIPTION = f"{PREFIX}.>"

TRADE_OPS = frozenset(
    {"place_order", "modify_position", "close_position", "cancel_order", "modify_order"}
)
READ_OPS = frozenset(
    {"positions", "orders", "find_by_client_id", "account_info", "symbol_spec", "quote"}
)
EVENTS_SINCE = "events_since"  # served from the stored facts, not the book
OPS = TRADE_OPS | READ_OPS | {EVENTS_SINCE}

CONTROL_SET_QUOTE = f"{PREFIX}.control.set_quote"
CONTROL_ENV = "SIGRELAY_PAPER_CONTROL"


def subject(account_id: str, op: str) -> str:
    return f"{PREFIX}.{token(account_id)}.{op}"


class Call(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    args: msgspec.Raw = msgspec.Raw(b"{}")


class ModifyPositionArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    position_id: str
    sl: float | None = None
    tp: float | None = None


class ClosePositionArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    position_id: str
    volume: float | None = None


class OrderIdArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    order_id: str


class ModifyOrderArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    order_id: str
    price: float
    sl: float | None = None
    tp: float | None = None


class ClientIdArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    client_id: str


class SymbolArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbol: str


class EventsSinceArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    after: int = 0
    limit: int = 500


class SetQuoteArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    symbol: str
    bid: float
    ask: float


class NoArgs(msgspec.Struct, frozen=True, kw_only=True):
    pass


class Found(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    position: Position | None = None
    order: PendingOrder | None = None


class WireError(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    kind: str
    reason: str
    broker_code: int | None = None
    broker_code_name: str | None = None
    retry_after_s: float | None = None


class Reply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    ok: bool
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: WireError | None = None


_KINDS: dict[type[BrokerError], str] = {
    Rejected: "rejected",
    RetryLater: "retry_later",
    OutcomeUnknown: "outcome_unknown",
    NotConnected: "not_connected",
    AuthFailed: "auth_failed",
}
_ERRORS: dict[str, type[BrokerError]] = {kind: cls for cls, kind in _KINDS.items()}

_encoder = msgspec.json.Encoder()
call_decoder = msgspec.json.Decoder(Call)
reply_decoder = msgspec.json.Decoder(Reply)


def encode_call(account_id: str, args: msgspec.Struct | None) -> bytes:
    raw = _encoder.encode(args) if args is not None else b"{}"
    return _encoder.encode(Call(account=account_id, args=msgspec.Raw(raw)))


def encode_ok(result: Any) -> bytes:
    return _encoder.encode(Reply(ok=True, result=msgspec.Raw(_encoder.encode(result))))


def encode_error(exc: BrokerError) -> bytes:
    kind = next((k for cls, k in _KINDS.items() if isinstance(exc, cls)), "rejected")
    return _encoder.encode(
        Reply(
            ok=False,
            error=WireError(
                kind=kind,
                reason=exc.reason,
                broker_code=exc.broker_code,
                broker_code_name=exc.broker_code_name,
                retry_after_s=exc.retry_after_s,
            ),
        )
    )


def error_from_wire(error: WireError) -> BrokerError:
    cls = _ERRORS.get(error.kind, Rejected)
    return cls(
        error.reason,
        broker_code=error.broker_code,
        broker_code_name=error.broker_code_name,
        retry_after_s=error.retry_after_s,
    )
