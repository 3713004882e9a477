"""The paper exchange's core: one shared price feed, one `PaperBook` per account.

No I/O here: the service (`paper_service.py`) moves the clock, stores the
facts each call returns and answers the bus. Every book keeps a journal; a
call returns the facts it caused (including stops and pending orders fired
by quotes the book catches up on), and `restore` folds stored facts back
into a book.

A quote reaches only the books it fires something in: per symbol the exchange
keeps every book's nearest trigger levels (stops, targets, pending orders) in
heaps like the book's own, so a tick costs O(symbols + books it crosses x log
books), not O(books with a stop). Every other book keeps an older quote and
catches up on the latest quotes when it is next used or crossed; see
`_catch_up` for why no caller reads a stale quote.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from contracts import broker_codes as codes
from contracts import paper_wire as wire
from contracts.broker import BrokerError, OrderRequest, Position, Quote, Rejected
from contracts.broker_codes import reject
from contracts.envelope import new_id, now_ns
from contracts.orders import Quote as MarketQuote

from .book import PaperBook
from .facts import PaperAccountOpened, PaperFact
from .feed import DEFAULT_SYMBOLS, PaperSymbol, RandomWalkFeed


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

# index entry: (key, account id, index generation); "below" keys are negated levels
_IndexEntry = tuple[float, str, int]


class _SymbolIndex:
    """The nearest trigger levels of every book with something waiting on one symbol,
    in heaps shaped like `PaperBook`'s (below: fires when price <= level, stored
    negated as a max-heap; above: fires when price >= level). Entries are
    invalidated lazily: an entry is live while its generation is its account's."""

    __slots__ = ("above_ask", "above_bid", "below_ask", "below_bid")

    def __init__(self) -> None:
        self.below_bid: list[_IndexEntry] = []
        self.above_bid: list[_IndexEntry] = []
        self.below_ask: list[_IndexEntry] = []
        self.above_ask: list[_IndexEntry] = []

    def heaps(self) -> tuple[list[_IndexEntry], ...]:
        return (self.below_bid, self.above_bid, self.below_ask, self.above_ask)


# a heap is compacted when it holds more than 2 x (books indexed on its symbol) + this
_COMPACT_SLACK = 256


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
        # accounts with a trigger on each symbol (the `active_books` stat; compaction)
        self._active: dict[str, set[str]] = {name: set() for name in table}
        self._index = {name: _SymbolIndex() for name in table}
        self._gen: dict[str, int] = {}  # account id -> generation of its live index entries

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
        self._reindex(acct)  # also drops the replaced book's entries (new generation)
        return book.drain_journal()

    def _catch_up(self, acct: PaperAccount, last: str | None = None) -> None:
        """Apply to the book every latest quote it has not seen (`last`'s at the end).

        Books hear a quote only when it crosses one of their trigger levels, so a
        book's own quotes may be old. They are never read old where it matters:
        - `execute` catches the book up before every operation, so prices, fills,
          P&L, equity, margin and conversions (`spec`'s tick value) are current;
        - a tick or `set_quote` catches a crossed book up on every other symbol
          before applying the quote that fires (`last`), so margin checks of fills
          and P&L conversions see what they would if every book heard every quote;
        - `restore` catches the rebuilt book up before indexing it;
        - `market_quotes`, `_conversion` and `stats` read the exchange's quotes,
          never a book's.
        The quotes a book skipped crossed none of its levels (its index entries
        bound them; levels change only in the calls that re-index it), so applying
        only the latest one fires exactly what applying each would have.

        Compared by identity, not time: two quotes can share a time (a clock that
        does not advance), and the book must still take the newer one."""
        book = acct.book
        for symbol, quote in self.quotes.items():
            if symbol != last and book.current_quote(symbol) is not quote:
                book.apply_quote(quote)
        if last is not None:
            book.apply_quote(self.quotes[last])

    def _reindex(self, acct: PaperAccount) -> None:
        """Index the book's current nearest trigger levels under a new generation
        (its earlier entries go stale); a dirty book is not indexed (not fed)."""
        account_id = acct.account_id
        gen = self._gen[account_id] = self._gen.get(account_id, 0) + 1
        now_active = set() if acct.dirty else set(acct.book.trigger_symbols())
        for symbol in acct.active - now_active:
            self._active[symbol].discard(account_id)
        for symbol in now_active - acct.active:
            self._active[symbol].add(account_id)
        acct.active = now_active
        for symbol in now_active:
            limit = 2 * len(self._active[symbol]) + _COMPACT_SLACK
            levels = acct.book.trigger_levels(symbol)
            for heap, level, below in zip(
                self._index[symbol].heaps(), levels, (True, False, True, False), strict=True
            ):
                if level is None:
                    continue
                heapq.heappush(heap, (-level if below else level, account_id, gen))
                if len(heap) > limit:
                    self._compact(heap)

    def _compact(self, heap: list[_IndexEntry]) -> None:
        """Drop stale entries. Live ones are at most one per book indexed on the
        symbol, so the heap then holds at most half its limit: amortised O(1) a push."""
        gens = self._gen
        heap[:] = [entry for entry in heap if gens.get(entry[1]) == entry[2]]
        heapq.heapify(heap)

    def _crossed(self, symbol: str, quote: Quote) -> list[str]:
        """Pop the index entries of `symbol` that `quote` crosses; the accounts of the
        live ones, each once, in the order popped."""
        gens = self._gen
        found: dict[str, None] = {}
        index = self._index[symbol]
        bid, ask = quote.bid, quote.ask
        for heap, price, below in (
            (index.below_bid, bid, True),
            (index.above_bid, bid, False),
            (index.below_ask, ask, True),
            (index.above_ask, ask, False),
        ):
            while heap and ((-heap[0][0] >= price) if below else (heap[0][0] <= price)):
                _, account_id, gen = heapq.heappop(heap)
                if gens.get(account_id) == gen:
                    found[account_id] = None
        return list(found)

    def _deliver(self, symbol: str, out: dict[str, list[PaperFact]]) -> None:
        """Give the latest quote of `symbol` to the books it crosses; collect their facts."""
        for account_id in self._crossed(symbol, self.quotes[symbol]):
            acct = self.accounts.get(account_id)
            if acct is None or acct.dirty:  # dropped or no longer fed: nothing to do
                continue
            self._catch_up(acct, last=symbol)
            self._reindex(acct)
            facts = acct.book.drain_journal()
            if facts:
                out.setdefault(account_id, []).extend(facts)

    def mark_dirty(self, acct: PaperAccount) -> None:
        acct.dirty = True
        self._reindex(acct)

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
            self._reindex(acct)
        return result, acct.book.drain_journal()

    # ---- the feed -------------------------------------------------------------------

    def tick(self, now: float) -> dict[str, list[PaperFact]]:
        """Every symbol's walk takes one step to `now`; books whose trigger levels a
        quote crosses get it. Returns the facts caused, by account."""
        self.now = max(self.now, now)
        out: dict[str, list[PaperFact]] = {}
        for name, feed in self._feeds.items():
            self.quotes[name] = feed.next(self.now)
            self._deliver(name, out)
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
        # strictly later than the quote it replaces: a symbol's quote times only grow
        self.now = max(self.now, now, self.quotes[symbol].time + 1e-6)
        self._feeds[symbol].move_to(bid, ask)
        self.quotes[symbol] = Quote(symbol=symbol, bid=bid, ask=ask, time=self.now)
        out: dict[str, list[PaperFact]] = {}
        self._deliver(symbol, out)
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
