"""The paper exchange's trigger index: a quote reaches only the books whose nearest
trigger level it crosses, and that is observably the same as every book hearing
every quote."""

from __future__ import annotations

import copy
import random
from typing import Any

import msgspec
import pytest

from contracts import paper_wire as wire
from contracts.broker import (
    BrokerError,
    BrokerOrderResult,
    OrderRequest,
    Quote,
)
from services.paper.book import PaperBook
from services.paper.exchange import PaperExchange, PaperExchangeConfig
from services.paper.facts import (
    PaperFact,
    PaperOrderFilled,
    PaperPositionClosed,
)

T0 = 1_700_000_000.0
# GER40 converts its EUR P&L through EURUSD, EURGBP through GBPUSD, USDJPY through itself
SYMBOLS = ("XAUUSD", "EURUSD", "GBPUSD", "USDJPY", "GER40", "EURGBP")


def _exchange(seed: int = 7, balance: float = 10_000.0) -> PaperExchange:
    config = PaperExchangeConfig(seed=seed, balance=balance, symbols=SYMBOLS)
    return PaperExchange(config, start_time=T0)


def _encode(value: Any) -> bytes:
    return msgspec.json.encode(value)


# ---- the brute-force reference --------------------------------------------------------


class _Reference:
    """A copy of every book, driven by `apply_quote` on every quote the exchange makes."""

    def __init__(self, exchange: PaperExchange) -> None:
        self.exchange = exchange
        self.books: dict[str, PaperBook] = {}

    def open(self, account_id: str) -> list[PaperFact]:
        _, facts = self.exchange.execute(account_id, "account_info", b"{}")
        self.books[account_id] = copy.deepcopy(self.exchange.accounts[account_id].book)
        return facts

    def hear(self, quotes: list[Quote]) -> dict[str, list[PaperFact]]:
        for quote in quotes:
            for book in self.books.values():
                book.apply_quote(quote)
        out = {}
        for account_id, book in self.books.items():
            facts = book.drain_journal()
            if facts:
                out[account_id] = facts
        return out

    def rebuild(self, account_id: str, facts: list[PaperFact]) -> list[PaperFact]:
        cfg = self.exchange.config
        book = PaperBook(
            self.exchange.table,
            balance=cfg.balance,
            currency=cfg.currency,
            leverage=cfg.leverage,
            history_limit=cfg.history_limit,
            journal=True,
        )
        for fact in facts:
            book.restore(fact)
        book.drain_journal()
        self.books[account_id] = book
        return self.hear(list(self.exchange.quotes.values())).get(account_id, [])


def _outcome(call: Any) -> Any:
    try:
        return call()
    except BrokerError as exc:
        return exc


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, BrokerError) or isinstance(b, BrokerError):
        return type(a) is type(b) and str(a) == str(b)
    return bool(a == b)


def _away(rng: random.Random, quote: Quote, digits: int, lo: float, hi: float) -> float:
    """A distance from the market: lo..hi of the price, at least a few points."""
    return max(round(quote.bid * rng.uniform(lo, hi), digits), 5 * 10.0**-digits)


def _random_order(rng: random.Random, exchange: PaperExchange, client_id: str) -> OrderRequest:
    symbol = rng.choice(SYMBOLS)
    digits = exchange.table[symbol].spec.digits
    quote = exchange.quotes[symbol]
    buy = rng.random() < 0.5
    kind = rng.choice(["market", "market", "limit", "stop"])
    volume = rng.choice([0.01, 0.02, 0.05, 0.1, 0.5])
    price = None
    if kind == "market":
        ref = quote.bid if buy else quote.ask
    else:
        below = (kind == "limit") == buy
        market = quote.ask if buy else quote.bid
        gap = _away(rng, quote, digits, 0.0002, 0.004)
        price = ref = round(market - gap if below else market + gap, digits)
    sl = tp = None
    if rng.random() < 0.8:  # some positions carry no stops at all
        gap = _away(rng, quote, digits, 0.0003, 0.005)
        sl = round(ref - gap if buy else ref + gap, digits)
    if rng.random() < 0.8:
        gap = _away(rng, quote, digits, 0.0003, 0.005)
        tp = round(ref + gap if buy else ref - gap, digits)
    return OrderRequest(
        client_id=client_id,
        symbol=symbol,
        side="buy" if buy else "sell",
        volume=volume,
        order_type=kind,  # type: ignore[arg-type]
        price=price,
        sl=sl,
        tp=tp,
    )


def _random_call(
    rng: random.Random, exchange: PaperExchange, book: PaperBook, client_id: str
) -> tuple[str, Any, Any]:
    """One trade operation: (op, wire args, the same call on a reference book)."""
    positions, orders = book.positions(), book.orders()
    roll = rng.random()
    if roll < 0.15 and positions:
        pos = rng.choice(positions)
        quote = exchange.quotes[pos.symbol]
        digits = exchange.table[pos.symbol].spec.digits
        ref = quote.bid if pos.side == "buy" else quote.ask
        gap = _away(rng, quote, digits, 0.0003, 0.005)
        sl = round(ref - gap if pos.side == "buy" else ref + gap, digits)
        args: Any = wire.ModifyPositionArgs(position_id=pos.position_id, sl=sl, tp=None)
        return "modify_position", args, lambda b: b.modify_position(pos.position_id, sl, None)
    if roll < 0.25 and positions:
        pos = rng.choice(positions)
        args = wire.ClosePositionArgs(position_id=pos.position_id, volume=None)
        return "close_position", args, lambda b: b.close_position(pos.position_id, None)
    if roll < 0.32 and orders:
        order = rng.choice(orders)
        args = wire.OrderIdArgs(order_id=order.order_id)
        return "cancel_order", args, lambda b: b.cancel_order(order.order_id)
    req = _random_order(rng, exchange, client_id)
    return "place_order", req, lambda b: b.place(req)


def _random_quote(rng: random.Random, exchange: PaperExchange) -> tuple[str, float, float]:
    symbol = rng.choice(SYMBOLS)
    digits = exchange.table[symbol].spec.digits
    quote = exchange.quotes[symbol]
    spread = quote.ask - quote.bid
    bid = round(quote.bid * (1 + rng.uniform(-0.004, 0.004)), digits)
    return symbol, bid, round(bid + spread, digits)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_index_when_random_quotes_then_same_facts_as_every_book_hearing_every_quote(
    seed: int,
) -> None:
    rng = random.Random(seed)
    exchange = _exchange(seed, balance=1_000.0)  # small: some fills lack the margin
    ref = _Reference(exchange)
    log: dict[str, list[PaperFact]] = {}
    accounts = [f"paper-{n}" for n in range(40)]
    for n, account_id in enumerate(accounts):
        log[account_id] = ref.open(account_id)
        for k in range(rng.choice([0, 1, 2, 3, 4])):  # some accounts stay idle
            req = _random_order(rng, exchange, f"c{n}-{k}")
            result, facts = exchange.execute(account_id, "place_order", _encode(req))
            expected = _outcome(lambda: ref.books[account_id].place(req))  # noqa: B023
            assert _same(result, expected)
            assert facts == ref.books[account_id].drain_journal()
            log[account_id].extend(facts)
    assert exchange.stats()["active_books"] > 40

    now = T0
    fired_total = 0
    for step in range(2_000):
        roll = rng.random()
        if roll < 0.55:
            if rng.random() < 0.9:  # now and then the clock stands still
                now += 0.25
            fired = exchange.tick(now)
            expected_fired = ref.hear(list(exchange.quotes.values()))
        elif roll < 0.85:
            now += 0.25
            symbol, bid, ask = _random_quote(rng, exchange)
            fired = exchange.set_quote(symbol, bid, ask, now)
            expected_fired = ref.hear([exchange.quotes[symbol]])
        elif roll < 0.98:
            account_id = rng.choice(accounts)
            book = ref.books[account_id]
            op, args, call = _random_call(rng, exchange, book, f"s{step}")
            result, facts = exchange.execute(account_id, op, _encode(args))
            assert _same(result, _outcome(lambda: call(book))), (step, op)  # noqa: B023
            assert facts == book.drain_journal(), (step, op)
            log[account_id].extend(facts)
            continue
        else:
            account_id = rng.choice(accounts)
            facts = log[account_id]
            caught_up = exchange.restore(account_id, facts, version=len(facts))
            assert caught_up == ref.rebuild(account_id, facts)
            log[account_id].extend(caught_up)
            continue
        assert fired == expected_fired, step
        for account_id, facts in fired.items():
            log[account_id].extend(facts)
        fired_total += sum(len(f) for f in fired.values())

    assert fired_total > 100  # the walk did cross levels, many times
    for account_id in accounts:
        book = ref.books[account_id]
        for op, read in (("positions", book.positions), ("orders", book.orders)):
            got, _ = exchange.execute(account_id, op, b"{}")
            assert got == read(), (account_id, op)
        info, _ = exchange.execute(account_id, "account_info", b"{}")
        assert info == book.account()


# ---- only crossed books are visited ----------------------------------------------------


def _open_with_stops(exchange: PaperExchange, account_id: str, away: float) -> None:
    quote = exchange.quotes["XAUUSD"]
    req = OrderRequest(
        client_id="c1",
        symbol="XAUUSD",
        side="buy",
        volume=0.01,
        sl=round(quote.bid - away, 2),
        tp=round(quote.bid + away, 2),
    )
    result, _ = exchange.execute(account_id, "place_order", _encode(req))
    assert isinstance(result, BrokerOrderResult) and result.status == "filled"


def _count_visits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record which books `apply_quote` is called on (by `id`)."""
    visited: list[int] = []
    original = PaperBook.apply_quote

    def counting(self: PaperBook, quote: Quote) -> Any:
        visited.append(id(self))
        return original(self, quote)

    monkeypatch.setattr(PaperBook, "apply_quote", counting)
    return visited


def test_index_when_tick_crosses_nothing_then_no_book_visited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exchange = _exchange()
    for n in range(500):
        _open_with_stops(exchange, f"paper-{n}", away=100.0 + n)  # far: 5 % and more
    assert exchange.stats()["active_books"] == 500
    visited = _count_visits(monkeypatch)

    for step in range(1, 50):
        assert exchange.tick(T0 + step) == {}

    assert visited == []


def test_index_when_quote_crosses_one_level_then_only_that_book_visited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exchange = _exchange()
    for n in range(100):
        _open_with_stops(exchange, f"paper-{n}", away=10.0 + n)
    near = exchange.accounts["paper-0"].book
    visited = _count_visits(monkeypatch)
    quote = exchange.quotes["XAUUSD"]

    fired = exchange.set_quote("XAUUSD", quote.bid - 10.5, quote.ask - 10.5, T0 + 1)

    assert list(fired) == ["paper-0"]
    assert [type(f) for f in fired["paper-0"]] == [PaperPositionClosed]
    assert set(visited) == {id(near)}
    assert exchange.stats()["active_books"] == 100  # the crossed book keeps its stale TP


# ---- the index stays small -------------------------------------------------------------


def _index_sizes(exchange: PaperExchange) -> dict[str, int]:
    return {name: max(len(h) for h in index.heaps()) for name, index in exchange._index.items()}


def test_index_when_reindexed_many_times_then_heaps_stay_bounded() -> None:
    exchange = _exchange()
    accounts = [f"paper-{n}" for n in range(10)]
    for account_id in accounts:
        _open_with_stops(exchange, account_id, away=50.0)
    bound = 2 * len(accounts) + 256
    rng = random.Random(0)

    for step in range(5_000):  # every modification re-indexes the book
        account_id = rng.choice(accounts)
        [pos], _ = exchange.execute(account_id, "positions", b"{}")
        bid = exchange.quotes["XAUUSD"].bid
        args = wire.ModifyPositionArgs(
            position_id=pos.position_id, sl=round(bid - rng.uniform(20, 60), 2), tp=None
        )
        result, _ = exchange.execute(account_id, "modify_position", _encode(args))
        assert isinstance(result, BrokerOrderResult), result
        if step % 10 == 0:
            exchange.tick(T0 + step)
        assert max(_index_sizes(exchange).values()) <= bound

    # still correct after all the compactions: a deep drop stops every book out
    quote = exchange.quotes["XAUUSD"]
    fired = exchange.set_quote("XAUUSD", quote.bid - 100, quote.ask - 100, T0 + 10_000)
    assert sorted(fired) == sorted(accounts)
    assert all(isinstance(f[0], PaperPositionClosed) for f in fired.values())


def test_index_when_books_leave_a_symbol_then_their_entries_are_compacted() -> None:
    exchange = _exchange()
    for n in range(300):
        _open_with_stops(exchange, f"paper-{n}", away=50.0)
    for n in range(300):  # each close re-indexes: the old entries go stale
        [pos], _ = exchange.execute(f"paper-{n}", "positions", b"{}")
        args = wire.ClosePositionArgs(position_id=pos.position_id, volume=None)
        exchange.execute(f"paper-{n}", "close_position", _encode(args))
        _open_with_stops(exchange, f"paper-{n}", away=60.0)

    active = exchange.stats()["active_books"]
    assert _index_sizes(exchange)["XAUUSD"] <= 2 * active + 256


# ---- books not visited catch up before they are read -----------------------------------


@pytest.mark.parametrize("clock_moves", [True, False])
def test_index_when_book_not_visited_for_many_ticks_then_market_order_fills_at_current_quote(
    clock_moves: bool,
) -> None:
    exchange = _exchange()
    _open_with_stops(exchange, "paper-far", away=500.0)
    exchange.execute("paper-idle", "account_info", b"{}")
    far = exchange.accounts["paper-far"].book
    first = far.current_quote("XAUUSD")

    for step in range(1, 300):
        exchange.tick(T0 + step if clock_moves else T0)  # a still clock: same quote times

    current = exchange.quotes["XAUUSD"]
    assert first is not None and far.current_quote("XAUUSD") is first  # never visited
    assert (current.bid, current.ask) != (first.bid, first.ask)
    for account_id in ("paper-far", "paper-idle"):
        req = OrderRequest(client_id="c2", symbol="XAUUSD", side="buy", volume=0.01)
        result, _ = exchange.execute(account_id, "place_order", _encode(req))
        assert isinstance(result, BrokerOrderResult)
        assert result.fill_price == current.ask
        positions, _ = exchange.execute(account_id, "positions", b"{}")
        assert {p.current_price for p in positions} == {current.bid}
        quote, _ = exchange.execute(account_id, "quote", _encode(wire.SymbolArgs(symbol="XAUUSD")))
        assert quote is current


def test_index_when_fill_fires_then_margin_uses_current_conversion_quote() -> None:
    """A GER40 order filled by a tick books its margin in USD through EURUSD: the quote
    of EURUSD the book uses is the exchange's latest, although the book has no
    trigger on EURUSD and never heard its quotes."""
    exchange = _exchange()
    quote = exchange.quotes["GER40"]
    req = OrderRequest(
        client_id="c1",
        symbol="GER40",
        side="buy",
        volume=0.1,
        order_type="limit",
        price=round(quote.ask - 150, 1),
    )
    exchange.execute("paper-u1", "place_order", _encode(req))
    for step in range(1, 100):
        exchange.tick(T0 + step)
    assert exchange.quotes["EURUSD"].time != T0

    assert exchange.stats()["active_books"] == 1
    now = exchange.quotes["GER40"]

    fired = exchange.set_quote("GER40", now.bid - 300, now.ask - 300, T0 + 100)

    [filled] = fired["paper-u1"]
    assert isinstance(filled, PaperOrderFilled)
    eur = exchange.quotes["EURUSD"]
    expected = 0.1 * filled.price * (eur.bid + eur.ask) / 2 / exchange.config.leverage
    assert filled.margin == pytest.approx(expected, rel=1e-12)
