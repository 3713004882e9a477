"""`PaperBrokerClient`: the `Broker` port for one paper account, over NATS request/reply
to the paper exchange (`services/paper/service.py`, protocol in `contracts/paper_wire.py`).

The exchange is as external as a real broker: it keeps the book, and it may
be slow, down or restarting. Failure mapping:

- a trade request with no reply in `timeout_s` -> `OutcomeUnknown` (the
  exchange may have executed it: look it up by client id before any resend);
- a read with no reply -> `NotConnected` (a read changes nothing);
- no exchange listening at all (no responders) -> `NotConnected`: nobody
  received the request, so nothing was executed;
- errors the exchange answers with -> the same port error it raised.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS

from contracts import paper_wire as wire
from contracts.broker import (
    AccountInfo,
    BrokerEventPage,
    BrokerOrderResult,
    NotConnected,
    OrderRequest,
    OutcomeUnknown,
    PendingOrder,
    Position,
    Quote,
    SymbolSpec,
)

T = TypeVar("T")

_result = msgspec.json.Decoder(BrokerOrderResult)
_positions = msgspec.json.Decoder(list[Position])
_orders = msgspec.json.Decoder(list[PendingOrder])
_found = msgspec.json.Decoder(wire.Found)
_account = msgspec.json.Decoder(AccountInfo)
_spec = msgspec.json.Decoder(SymbolSpec)
_quote = msgspec.json.Decoder(Quote)
_events = msgspec.json.Decoder(BrokerEventPage)


class PaperBrokerClient:
    """One paper account at the paper exchange. Shares the caller's NATS connection."""

    def __init__(self, nc: NATS, account_id: str, *, timeout_s: float = 5.0) -> None:
        self._nc = nc
        self.account_id = account_id
        self.timeout_s = timeout_s
        self._closed = False

    def __repr__(self) -> str:
        return f"PaperBrokerClient(account_id={self.account_id!r})"

    async def _call(
        self, op: str, args: msgspec.Struct | None, decoder: msgspec.json.Decoder[Any]
    ) -> Any:
        if self._closed:
            raise NotConnected(f"paper broker client for {self.account_id} is closed")
        subject = wire.subject(self.account_id, op)
        try:
            msg = await self._nc.request(
                subject, wire.encode_call(self.account_id, args), timeout=self.timeout_s
            )
        except nats.errors.NoRespondersError:
            raise NotConnected(
                f"no paper exchange answers on {subject}; nothing was executed"
            ) from None
        except nats.errors.TimeoutError:
            if op in wire.TRADE_OPS:
                raise OutcomeUnknown(
                    f"the paper exchange did not answer {op} for {self.account_id}"
                    f" within {self.timeout_s}s; it may have executed"
                ) from None
            raise NotConnected(
                f"the paper exchange did not answer {op} for {self.account_id}"
                f" within {self.timeout_s}s"
            ) from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
            raise NotConnected(f"our NATS connection is closed ({exc})") from None
        reply = wire.reply_decoder.decode(msg.data)
        if not reply.ok:
            if reply.error is None:
                raise OutcomeUnknown(f"the paper exchange answered {op} with an empty error")
            raise wire.error_from_wire(reply.error)
        return decoder.decode(reply.result)

    async def place_order(self, req: OrderRequest) -> BrokerOrderResult:
        result: BrokerOrderResult = await self._call("place_order", req, _result)
        return result

    async def modify_position(
        self, position_id: str, sl: float | None, tp: float | None
    ) -> BrokerOrderResult:
        args = wire.ModifyPositionArgs(position_id=position_id, sl=sl, tp=tp)
        result: BrokerOrderResult = await self._call("modify_position", args, _result)
        return result

    async def close_position(
        self, position_id: str, volume: float | None = None
    ) -> BrokerOrderResult:
        args = wire.ClosePositionArgs(position_id=position_id, volume=volume)
        result: BrokerOrderResult = await self._call("close_position", args, _result)
        return result

    async def cancel_order(self, order_id: str) -> BrokerOrderResult:
        args = wire.OrderIdArgs(order_id=order_id)
        result: BrokerOrderResult = await self._call("cancel_order", args, _result)
        return result

    async def modify_order(
        self, order_id: str, price: float, sl: float | None = None, tp: float | None = None
    ) -> BrokerOrderResult:
        args = wire.ModifyOrderArgs(order_id=order_id, price=price, sl=sl, tp=tp)
        result: BrokerOrderResult = await self._call("modify_order", args, _result)
        return result

    async def positions(self) -> list[Position]:
        found: list[Position] = await self._call("positions", None, _positions)
        return found

    async def orders(self) -> list[PendingOrder]:
        found: list[PendingOrder] = await self._call("orders", None, _orders)
        return found

    async def find_by_client_id(self, client_id: str) -> Position | PendingOrder | None:
        found: wire.Found = await self._call(
            "find_by_client_id", wire.ClientIdArgs(client_id=client_id), _found
        )
        return found.position or found.order

    async def account_info(self) -> AccountInfo:
        info: AccountInfo = await self._call("account_info", None, _account)
        return info

    async def symbol_spec(self, symbol: str) -> SymbolSpec:
        spec: SymbolSpec = await self._call("symbol_spec", wire.SymbolArgs(symbol=symbol), _spec)
        return spec

    async def quote(self, symbol: str) -> Quote:
        quote: Quote = await self._call("quote", wire.SymbolArgs(symbol=symbol), _quote)
        return quote

    async def events_since(self, after: int, limit: int = 500) -> BrokerEventPage:
        """What the exchange did on its own after event `after` (`BrokerEventSource`)."""
        args = wire.EventsSinceArgs(after=after, limit=limit)
        page: BrokerEventPage = await self._call(wire.EVENTS_SINCE, args, _events)
        return page

    async def close(self) -> None:
        self._closed = True
