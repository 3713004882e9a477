"""The stand-in's accounts: any id exists on first use, each with its own paper book.

All books share one market (a `PaperExchange`): `set_price` moves a symbol for
every account, and the exchange fires the stops, targets and pending orders the
quote crosses in every book. Prices stand still unless `set_price` moves them,
or `tick()` steps the exchange's random walk (`--tick`).

MetaApi does not deduplicate client ids, so the book gets a fresh internal client
id per trade (`_intern`); positions, orders and history show the caller's.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.broker import BrokerError, PendingOrder, Position
from contracts.paper_wire import ClosePositionArgs
from services.paper.exchange import PaperExchange, PaperExchangeConfig
from services.paper.facts import PaperAccountOpened, PaperFact

from . import shapes
from .ledger import Ledger
from .prices import DEFAULT_BIDS, market_table, spread
from .trades import TradeRefused, response, to_operation

# MetaApi stores clientId in the MT comment: both together fit 26 characters (sdk-notes A10)
MAX_CLIENT_ID_PLUS_COMMENT = 26


class NotFound(Exception):
    """Answered as MetaApi's NotFoundError."""


class Invalid(Exception):
    """Answered as MetaApi's ValidationError, with `details` naming the parameter."""

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.details = details


@dataclass
class SimAccount:
    id: str
    login: int
    state: str = "DEPLOYED"
    clients: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    ledger: Ledger = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.external)

    def external(self, internal: str | None) -> tuple[str | None, str | None]:
        if internal is None:
            return None, None
        return self.clients.get(internal, (internal, None))

    def json(self) -> dict[str, Any]:
        """The provisioning API's account (what `get_account` reads)."""
        deployed = self.state == "DEPLOYED"
        return {
            "_id": self.id,
            "name": f"sim {self.id}",
            "login": str(self.login),
            "server": shapes.SERVER,
            "type": "cloud-g2",
            "platform": shapes.PLATFORM,
            "magic": 0,
            "state": self.state,
            "connectionStatus": "CONNECTED" if deployed else "DISCONNECTED",
            "region": "vint-hill",
            "reliability": "regular",
            "accountReplicas": [],
            "tags": [],
            "application": "MetaApi",
        }


class SimAccounts:
    """Every account of the stand-in, on one market."""

    def __init__(
        self,
        bids: dict[str, float] | None = None,
        *,
        balance: float = 10_000.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.exchange = PaperExchange(
            PaperExchangeConfig(balance=balance),
            symbols=market_table(bids or DEFAULT_BIDS),
            start_time=clock(),
        )
        self.accounts: dict[str, SimAccount] = {}
        self._logins = itertools.count(50_000_001)
        self._internal_ids = itertools.count(1)

    # ---- accounts -------------------------------------------------------------------

    def get(self, account_id: str) -> SimAccount:
        found = self.accounts.get(account_id)
        if found is None:
            found = self._open(account_id)
        return found

    def _open(self, account_id: str) -> SimAccount:
        acct = SimAccount(id=account_id, login=next(self._logins))
        self.accounts[account_id] = acct
        # the exchange opens the book with a PaperAccountOpened fact: the balance deal
        self._record(acct, self.exchange.account(account_id).book.drain_journal())
        return acct

    def reset(self, account_id: str) -> SimAccount:
        """A fresh book and history under the same id (tests reuse one connection)."""
        self.accounts.pop(account_id, None)
        cfg = self.exchange.config
        opened = PaperAccountOpened(
            id="",
            ts=0,
            account_id=account_id,
            balance=cfg.balance,
            currency=cfg.currency,
            leverage=cfg.leverage,
        )
        self.exchange.restore(account_id, [opened], 0)
        acct = SimAccount(id=account_id, login=next(self._logins))
        self.accounts[account_id] = acct
        acct.ledger.record([opened], self._clock())
        return acct

    def book(self, account_id: str) -> Any:
        """The account's paper book (for tests and the state endpoint)."""
        self.get(account_id)
        return self.exchange.accounts[account_id].book

    # ---- the market -----------------------------------------------------------------

    def set_price(self, symbol: str, bid: float, ask: float | None = None) -> int:
        """Put `symbol` at bid/ask for every account; how many accounts it acted in."""
        if symbol not in self.exchange.table:
            known = ", ".join(sorted(self.exchange.table))
            raise ValueError(f"symbol {symbol!r} is not on the stand-in's market (known: {known})")
        ask = round(bid + spread(symbol), 10) if ask is None else ask
        by_account = self.exchange.set_quote(symbol, bid, ask, self._clock())
        self._record_all(by_account)
        return len(by_account)

    def tick(self) -> int:
        """One step of every symbol's random walk."""
        by_account = self.exchange.tick(self._clock())
        self._record_all(by_account)
        return len(by_account)

    def quotes(self) -> dict[str, dict[str, float]]:
        return {s: {"bid": q.bid, "ask": q.ask} for s, q in self.exchange.quotes.items()}

    # ---- RPC ------------------------------------------------------------------------

    def trade(self, account_id: str, trade: dict[str, Any]) -> dict[str, Any]:
        """Run a MetaApi trade; the trade response (the SDK raises on failure codes)."""
        acct = self.get(account_id)
        client_id, comment = trade.get("clientId"), trade.get("comment")
        if len(client_id or "") + len(comment or "") > MAX_CLIENT_ID_PLUS_COMMENT:
            raise Invalid(
                "Validation failed",
                [
                    {
                        "parameter": "clientId",
                        "value": client_id,
                        "message": f"clientId {client_id!r} and comment {comment!r} together"
                        f" exceed {MAX_CLIENT_ID_PLUS_COMMENT} characters",
                    }
                ],
            )
        if trade.get("actionType") == "POSITIONS_CLOSE_SYMBOL":
            return self._close_symbol(acct, str(trade.get("symbol")))
        internal = f"m{next(self._internal_ids)}"
        try:
            op, args = to_operation(trade, internal)
        except TradeRefused as err:
            return response(err)
        if op == "place_order":
            acct.clients[internal] = (client_id, comment)
            self._refresh_quote(args.symbol)  # type: ignore[attr-defined]
        result = self._execute(acct, op, args)
        return response(result)

    def _close_symbol(self, acct: SimAccount, symbol: str) -> dict[str, Any]:
        last: Any = None
        for p in self._execute(acct, "positions", None):
            if p.symbol == symbol:
                last = self._execute(
                    acct, "close_position", ClosePositionArgs(position_id=p.position_id)
                )
        if last is None:
            return {
                "numericCode": 10025,
                "stringCode": "TRADE_RETCODE_NO_CHANGES",
                "message": f"no {symbol} positions",
            }
        return response(last)

    def positions(self, account_id: str) -> list[dict[str, Any]]:
        acct = self.get(account_id)
        return [shapes.position_dict(self._outward(acct, p)) for p in self._read(acct, "positions")]

    def position(self, account_id: str, position_id: str) -> dict[str, Any]:
        for p in self.positions(account_id):
            if p["id"] == position_id:
                return p
        raise NotFound(f"Position {position_id} not found")

    def orders(self, account_id: str) -> list[dict[str, Any]]:
        acct = self.get(account_id)
        return [shapes.order_dict(self._outward(acct, o)) for o in self._read(acct, "orders")]

    def order(self, account_id: str, order_id: str) -> dict[str, Any]:
        for o in self.orders(account_id):
            if o["id"] == order_id:
                return o
        raise NotFound(f"Order {order_id} not found")

    def account_information(self, account_id: str) -> dict[str, Any]:
        acct = self.get(account_id)
        info = self._read(acct, "account_info")
        return shapes.account_information(info, login=acct.login, name=f"sim {acct.id}")

    def specification(self, account_id: str, symbol: str) -> dict[str, Any]:
        acct = self.get(account_id)
        if symbol not in self.exchange.table:
            raise NotFound(f"Specification for {symbol} symbol not found")
        return shapes.specification(self._read(acct, "symbol_spec", symbol=symbol))

    def price(self, account_id: str, symbol: str) -> dict[str, Any]:
        acct = self.get(account_id)
        if symbol not in self.exchange.table:
            raise NotFound(f"Symbol {symbol} not found")
        quote = self._read(acct, "quote", symbol=symbol)
        spec = self._read(acct, "symbol_spec", symbol=symbol)
        return shapes.price(quote, spec.tick_value)

    # ---- internals ------------------------------------------------------------------

    def _refresh_quote(self, symbol: str) -> None:
        # prices stand still between moves: re-stamp the quote so an opening fill
        # carries the time it happened, not the time the price last moved
        quote = self.exchange.quotes.get(symbol)
        if quote is not None:
            self._record_all(self.exchange.set_quote(symbol, quote.bid, quote.ask, self._clock()))

    def _execute(self, acct: SimAccount, op: str, args: msgspec.Struct | None) -> Any:
        encoded = msgspec.json.encode(args) if args is not None else b"{}"
        result, facts = self.exchange.execute(acct.id, op, encoded)
        self._record(acct, facts)
        return result

    def _read(self, acct: SimAccount, op: str, **args: Any) -> Any:
        result, facts = self.exchange.execute(acct.id, op, msgspec.json.encode(args))
        self._record(acct, facts)
        if isinstance(result, BrokerError):
            raise NotFound(result.reason)
        return result

    def _outward(self, acct: SimAccount, item: Position | PendingOrder) -> Any:
        client_id, comment = acct.external(item.client_id)
        return msgspec.structs.replace(item, client_id=client_id, comment=comment)

    def _record(self, acct: SimAccount, facts: list[PaperFact]) -> None:
        if facts:
            acct.ledger.record(facts, self._clock())

    def _record_all(self, by_account: dict[str, list[PaperFact]]) -> None:
        for account_id, facts in by_account.items():
            acct = self.accounts.get(account_id)
            if acct is not None:
                self._record(acct, facts)
