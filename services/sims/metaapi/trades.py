"""A MetaApi `trade` request as a paper book operation, and the book's answer as MetaApi's.

`to_operation` reads the trade dict the SDK sends (`actionType`, `symbol`,
`volume`, `openPrice`, `stopLoss`, `takeProfit`, `positionId`, `orderId`, ...) and
names the paper operation with its arguments (the ops of `paper_wire`). The
client id handed to the book is the caller's: the stand-in passes a fresh
internal one per trade, because MetaApi, unlike the paper book, does not
deduplicate client ids (a second trade with the same clientId opens a second
position), and the adapter's own look-up must be what prevents duplicates.
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts import broker_codes as codes
from contracts import paper_wire as wire
from contracts.broker import BrokerError, BrokerOrderResult, OrderRequest
from services.paper.book import PaperBook

# MetaApi's own addition to the MT5 codes (sdk-notes A7)
ORDER_TYPE_NOT_SUPPORTED = (-4, "TRADE_RETCODE_ORDER_TYPE_NOT_SUPPORTED")

OPENING: dict[str, tuple[str, str]] = {
    "ORDER_TYPE_BUY": ("buy", "market"),
    "ORDER_TYPE_SELL": ("sell", "market"),
    "ORDER_TYPE_BUY_LIMIT": ("buy", "limit"),
    "ORDER_TYPE_SELL_LIMIT": ("sell", "limit"),
    "ORDER_TYPE_BUY_STOP": ("buy", "stop"),
    "ORDER_TYPE_SELL_STOP": ("sell", "stop"),
}

# what a trade dict may carry in MetaApi that the paper book has no equivalent for
_ABSOLUTE = (None, "ABSOLUTE_PRICE")


class TradeRefused(Exception):
    """The trade cannot be run here; answered as a trade response with this code."""

    def __init__(self, numeric: int, name: str, message: str) -> None:
        super().__init__(message)
        self.numeric, self.name, self.message = numeric, name, message


Operation = tuple[str, msgspec.Struct]


def _units_absolute(trade: dict[str, Any]) -> None:
    for key in ("stopLossUnits", "takeProfitUnits", "openPriceUnits"):
        if trade.get(key) not in _ABSOLUTE:
            raise TradeRefused(
                codes.INVALID,
                codes.lookup(codes.INVALID).name,
                f"{key} {trade[key]!r} is not supported by the stand-in (only ABSOLUTE_PRICE)",
            )


def to_operation(trade: dict[str, Any], client_id: str, comment: str | None = None) -> Operation:
    """The paper operation for a MetaApi trade dict (`TradeRefused` if there is none)."""
    action = trade.get("actionType")
    _units_absolute(trade)
    try:
        if action in OPENING:
            side, order_type = OPENING[action]
            return "place_order", OrderRequest(
                client_id=client_id,
                symbol=trade["symbol"],
                side=side,  # type: ignore[arg-type]
                order_type=order_type,  # type: ignore[arg-type]
                volume=float(trade["volume"]),
                price=None if order_type == "market" else trade.get("openPrice"),
                sl=trade.get("stopLoss") or None,
                tp=trade.get("takeProfit") or None,
                comment=comment,
            )
        if action == "POSITION_MODIFY":
            return "modify_position", wire.ModifyPositionArgs(
                position_id=str(trade["positionId"]),
                sl=trade.get("stopLoss"),
                tp=trade.get("takeProfit"),
            )
        if action == "POSITION_CLOSE_ID":
            return "close_position", wire.ClosePositionArgs(position_id=str(trade["positionId"]))
        if action == "POSITION_PARTIAL":
            return "close_position", wire.ClosePositionArgs(
                position_id=str(trade["positionId"]), volume=float(trade["volume"])
            )
        if action == "ORDER_CANCEL":
            return "cancel_order", wire.OrderIdArgs(order_id=str(trade["orderId"]))
        if action == "ORDER_MODIFY":
            return "modify_order", wire.ModifyOrderArgs(
                order_id=str(trade["orderId"]),
                price=float(trade["openPrice"]),
                sl=trade.get("stopLoss"),
                tp=trade.get("takeProfit"),
            )
    except KeyError as exc:
        raise TradeRefused(
            codes.INVALID, codes.lookup(codes.INVALID).name, f"{action} needs {exc.args[0]}"
        ) from None
    except (ValueError, TypeError) as exc:
        raise TradeRefused(codes.INVALID, codes.lookup(codes.INVALID).name, str(exc)) from None
    raise TradeRefused(
        ORDER_TYPE_NOT_SUPPORTED[0],
        ORDER_TYPE_NOT_SUPPORTED[1],
        f"actionType {action!r} is not supported by the stand-in",
    )


def response(result: BrokerOrderResult | BrokerError | TradeRefused) -> dict[str, Any]:
    """The MetaApi trade response (`{numericCode, stringCode, message, orderId?,
    positionId?}`); the SDK raises TradeException for any code but the success ones."""
    if isinstance(result, TradeRefused):
        return {"numericCode": result.numeric, "stringCode": result.name, "message": result.message}
    if isinstance(result, BrokerError):
        return {
            "numericCode": result.broker_code,
            "stringCode": result.broker_code_name or codes.lookup(result.broker_code).name,
            "message": result.reason,
        }
    out: dict[str, Any] = {
        "numericCode": result.broker_code,
        "stringCode": result.broker_code_name,
        "message": result.reason,
    }
    if result.order_id:
        out["orderId"] = result.order_id
    if result.position_id:
        out["positionId"] = result.position_id
    return out


def run_on_book(book: PaperBook, op: str, args: Any) -> BrokerOrderResult:
    """Run a trade operation on a bare book (the test stubs' path; the stand-in goes
    through the `PaperExchange`, which also feeds the book its quotes)."""
    if op == "place_order":
        return book.place(args)
    if op == "modify_position":
        return book.modify_position(args.position_id, args.sl, args.tp)
    if op == "close_position":
        return book.close_position(args.position_id, args.volume)
    if op == "cancel_order":
        return book.cancel_order(args.order_id)
    if op == "modify_order":
        return book.modify_order(args.order_id, args.price, args.sl, args.tp)
    raise ValueError(f"no trade operation {op!r}")


def paper_trade(book: PaperBook, trade: dict[str, Any], client_id: str) -> dict[str, Any]:
    """Execute a MetaApi trade dict on a bare book; the MetaApi trade response."""
    try:
        op, args = to_operation(trade, client_id, trade.get("comment"))
        return response(run_on_book(book, op, args))
    except (BrokerError, TradeRefused) as err:
        return response(err)
