"""The paper exchange's core: one shared price feed, one `PaperBook` per account.

No I/O here: the service (`paper_service.py`) moves the clock, stores the
facts each call returns and answers the bus. Every book keeps a journal; a
call returns the facts it caused (including stops and pending orders fired
by quotes the book catches up on), and `restore` folds stored facts back
into a book.

Quotes reach only the books that can react to them (`active`: symbols with
stops, targets or pending orders); any other book catches up on the latest
quotes when it is next used, which keeps a tick O(active books), not
O(accounts x symbols).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts.envelope import new_id, now_ns
from contracts.orders import Quote as MarketQuote

from .broker import codes
from .broker import paper_wire as wire
from .broker.paper_book import PaperBook
from .broker.paper_events import PaperAccountOpened, PaperFact
from .broker.paper_feed import DEFAULT_SYMBOLS, PaperSymbol, RandomWalkFeed
from .broker.paper_rules import reject
from .broker.port import BrokerError, OrderRequest, Position, Quote, Rejected


class PaperExchangeConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the paper exchange (env: SIGRELAY_PAPER_SEED, _BALANCE, _TICK_S).

    `seed` seeds the one shared feed: the same seed gives the same walk in every
    process. New accounts open with `balance` in `currency` at `leverage`.
    """

    seed: int = 0
    balance: float = 10_000.0
    currency: str = "USD"
    leverage: float = 100.0
    tick_interval_s: float = 0.25
    symbols: tuple[str, ...] | None = None
    history_limit: int = 1_000  # closed trades kept in memory per account

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PaperExchangeConfig:
        def number(name: str, default: float) -> float:
            text = env.get(name)
            if text is None or text == "":
                return default
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{name}={text!r} is not a number") from None

        return cls(
            seed=int(number("SIGRELAY_PAPER_SEED", 0)),
            balance=number("SIGRELAY_PAPER_BALANCE", 10_000.0),
            tick_interval_s=number("SIGRELAY_PAPER_TICK_S", 0.25),
        )


@dataclass
class PaperAccount:
    """One account's book plus the bookkeeping of its stream."""

    account_id: str
    book: PaperBook
    version: int = 0  # of `paper-<account>` once every queued fact is stored
    dirty: bool = False  # a store failed: the book must be rebuilt from the log
    active: set[str] = field(default_factory=set)


_Op = Callable[[PaperBook, Any], Any]


def _place(book: PaperBook, args: OrderRequest) -> Any:
    return book.place(args)


def _find(book: PaperBook, args: wire.ClientIdArgs) -> wire.Found:
    found = book.find(args.client_id)
    if found is None:
        return wire.Found()
    if isinstance(found, Position):
        return wire.Found(position=found)
    return wire.Found(order=found)


_OPS: dict[str, tuple[type[Any], _Op]] = {
    "place_order": (OrderRequest, _place),
    "modify_position": (
        wire.ModifyPositionArgs,
        lambda b, a: b.modify_position(a.position_id, a.sl, a.tp),
    ),
    "close_position": (
        wire.ClosePositionArgs,
        lambda b, a: b.close_position(a.position_id, a.volume),
    ),
    "cancel_order": (wire.OrderIdArgs, lambda b, a: b.cancel_order(a.order_id)),
    "modify_order": (
        wire.ModifyOrderArgs,
        lambda b, a: b.modify_order(a.order_id, a.price, a.sl, a.tp),
    ),
    "positions": (wire.NoArgs, lambda b, a: b.positions()),
    "orders": (wire.NoArgs, lambda b, a: b.orders()),
    "find_by_client_id": (wire.ClientIdArgs, _find),
    "account_info": (wire.NoArgs, lambda b, a: b.account()),
    "symbol_spec": (wire.SymbolArgs, lambda b, a: b.spec(a.symbol)),
    "quote": (wire.SymbolArgs, lambda b, a: b.last_quote(a.symbol)),
}
_DECODERS = {op: msgspec.json.Decoder(t) for op, (t, _) in _OPS.items()}


class PaperExchange:
    """Books of many paper accounts on one seeded feed."""

    def __init__(
        self,
        config: PaperExchangeConfig | None = None,
        *,
        symbols: dict[str, PaperSymbol] | None = None,
        start_time: float | None = None,
    ) -> None:
        self.config = config = config or PaperExchangeConfig()
        table = dict(symbols) if symbols is not None else dict(DEFAULT_SYMBOLS)
        if config.symbols is not None:
            unknown = sorted(set(config.symbols) - set(table))
            if unknown:
                raise ValueError(f"the paper exchange has no symbol {', '.join(unknown)}")
            table = {name: table[name] for name in config.symbols}
        self.table = table
        self.now = time.time() if start_time is None else start_time
        self._feeds = {name: RandomWalkFeed(sym, config.seed) for name, sym in table.items()}
        self.quotes: dict[str, Quote] = {n: f.first(self.now) for n, f in self._feeds.items()}
        self.accounts: dict[str, PaperAccount] = {}
        self._active: dict[str, set[str]] = {name: set() for name in table}

    # ---- accounts -------------------------------------------------------------------

    def _new_book(self) -> PaperBook:
        cfg = self.config
        return PaperBook(
            self.table,
            balance=cfg.balance,
            currency=cfg.currency,
            leverage=cfg.leverage,
            history_limit=cfg.history_limit,
            journal=True,
        )

    def account(self, account_id: str) -> PaperAccount:
        """The account's book, opened (with a `PaperAccountOpened` fact) on first use."""
        found = self.accounts.get(account_id)
        if found is not None:
            return found
        book = self._new_book()
        assert book.journal is not None
        cfg = self.config
        book.journal.append(
            PaperAccountOpened(
                id="",
                ts=int(self.now * 1e9),
                account_id=account_id,
                balance=cfg.balance,
                currency=cfg.currency,
                leverage=cfg.leverage,
            )
        )
        acct = self.accounts[account_id] = PaperAccount(account_id, book)
        return acct

    def restore(self, account_id: str, facts: Sequence[PaperFact], version: int) -> list[PaperFact]:
        """Rebuild an account's book from its stored facts; return the facts its catch-up
        on the current quotes caused (stops hit while the exchange was away)."""
        book = self._new_book()
        for fact in facts:
            book.restore(fact)
        book.drain_journal()
        old = self.accounts.get(account_id)
        if old is not None:
            for symbol in old.active:
                self._active[symbol].discard(account_id)
        acct = self.accounts[account_id] = PaperAccount(account_id, book, version=version)
        self._catch_up(acct)
        self._refresh_active(acct)
        return book.drain_journal()

    def _catch_up(self, acct: PaperAccount) -> None:
        book = acct.book
        for symbol, quote in self.quotes.items():
            if book.quote_time(symbol) != quote.time:
                book.apply_quote(quote)

    def _refresh_active(self, acct: PaperAccount) -> None:
        now_active = set() if acct.dirty else set(acct.book.trigger_symbols())
        for symbol in acct.active - now_active:
            self._active[symbol].discard(acct.account_id)
        for symbol in now_active - acct.active:
            self._active[symbol].add(acct.account_id)
        acct.active = now_active

    def mark_dirty(self, acct: PaperAccount) -> None:
        acct.dirty = True
        self._refresh_active(acct)

    # ---- calls ----------------------------------------------------------------------

    def execute(self, account_id: str, op: str, args: bytes) -> tuple[Any, list[PaperFact]]:
        """Run one broker operation; return (result or BrokerError, facts to store)."""
        acct = self.account(account_id)
        self._catch_up(acct)
        result: Any
        try:
            entry = _OPS.get(op)
            if entry is None:
                raise reject(codes.INVALID, f"the paper exchange has no operation {op!r}")
            try:
                decoded = _DECODERS[op].decode(args)
            except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
                raise reject(codes.INVALID, f"malformed {op} request: {exc}") from None
            result = entry[1](acct.book, decoded)
        except BrokerError as exc:
            result = exc
        except ValueError as exc:  # OrderRequest validation inside msgspec decoding
            result = Rejected(f"invalid {op} request: {exc}", broker_code=codes.INVALID)
        if op in wire.TRADE_OPS:
            self._refresh_active(acct)
        return result, acct.book.drain_journal()

    # ---- the feed -------------------------------------------------------------------

    def tick(self, now: float) -> dict[str, list[PaperFact]]:
        """Every symbol's walk takes one step to `now`; books that can react get the quote.
        Returns the facts caused, by account."""
        self.now = max(self.now, now)
        touched: set[str] = set()
        for name, feed in self._feeds.items():
            quote = self.quotes[name] = feed.next(self.now)
            for account_id in self._active[name]:
                self.accounts[account_id].book.apply_quote(quote)
                touched.add(account_id)
        out: dict[str, list[PaperFact]] = {}
        for account_id in touched:
            acct = self.accounts[account_id]
            self._refresh_active(acct)
            facts = acct.book.drain_journal()
            if facts:
                out[account_id] = facts
        return out

    def set_quote(
        self, symbol: str, bid: float, ask: float, now: float
    ) -> dict[str, list[PaperFact]]:
        """Put the market of `symbol` at bid/ask now (the walk goes on from there), as a
        tick would; returns the facts caused, by account. Test-only control."""
        if symbol not in self._feeds:
            raise ValueError(f"the paper exchange has no symbol {symbol}")
        if not 0 < bid <= ask:
            raise ValueError(f"quote {bid}/{ask} for {symbol} is not a market (0 < bid <= ask)")
        # strictly later than the quote it replaces: books catch up by quote time
        self.now = max(self.now, now, self.quotes[symbol].time + 1e-6)
        self._feeds[symbol].move_to(bid, ask)
        quote = self.quotes[symbol] = Quote(symbol=symbol, bid=bid, ask=ask, time=self.now)
        out: dict[str, list[PaperFact]] = {}
        for account_id in list(self._active[symbol]):
            acct = self.accounts[account_id]
            acct.book.apply_quote(quote)
            self._refresh_active(acct)
            facts = acct.book.drain_journal()
            if facts:
                out[account_id] = facts
        return out

    def market_quotes(self) -> list[MarketQuote]:
        """The latest quote of every symbol as the bus carries it (`prices.<symbol>`)."""
        ts = now_ns()
        out = []
        for name, quote in self.quotes.items():
            spec = self.table[name].spec
            out.append(
                MarketQuote(
                    id=new_id(),
                    ts=ts,
                    symbol=name,
                    bid=quote.bid,
                    ask=quote.ask,
                    pip_size=spec.pip_size,
                    pip_value_per_lot=round(
                        spec.pip_size
                        * spec.contract_size
                        * self._conversion(self.table[name].profit_currency),
                        6,
                    ),
                    min_volume=spec.min_volume,
                    max_volume=spec.max_volume,
                    volume_step=spec.volume_step,
                )
            )
        return out

    def _conversion(self, currency: str) -> float:
        account_ccy = self.config.currency
        if currency == account_ccy:
            return 1.0
        direct = self.quotes.get(currency + account_ccy)
        if direct is not None:
            return (direct.bid + direct.ask) / 2
        inverse = self.quotes.get(account_ccy + currency)
        if inverse is not None:
            return 2 / (inverse.bid + inverse.ask)
        return 1.0

    def stats(self) -> dict[str, Any]:
        return {
            "accounts": len(self.accounts),
            "active_books": sum(len(s) for s in self._active.values()),
        }
