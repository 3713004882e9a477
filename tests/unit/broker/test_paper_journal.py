"""The paper book's journal: every state change is a fact, and folding the facts into a
fresh book gives the same book, whatever the quotes are when it is folded."""

from __future__ import annotations

import random

import pytest

from contracts.broker import BrokerError, OrderRequest, Quote
from services.paper.book import PaperBook
from services.paper.facts import (
    PaperFact,
    PaperOrderPlaced,
    PaperPositionClosed,
    PaperPositionOpened,
)
from services.paper.feed import DEFAULT_SYMBOLS, RandomWalkFeed

SYMBOLS = ("XAUUSD", "EURUSD", "USDJPY", "GER40")


def _book() -> PaperBook:
    return PaperBook(dict(DEFAULT_SYMBOLS), journal=True)


def _snapshot(book: PaperBook) -> tuple[object, ...]:
    return (
        sorted(
            (p.position_id, p.client_id, p.volume, p.open_price, p.sl, p.tp)
            for p in book.positions()
        ),
        sorted((o.order_id, o.client_id, o.volume, o.price, o.sl, o.tp) for o in book.orders()),
        round(book.balance, 6),
        [(t.position_id, t.volume, t.profit, t.reason) for t in book.history],
    )


def _random_session(seed: int, steps: int = 400) -> tuple[PaperBook, list[PaperFact]]:
    rng = random.Random(seed)
    feeds = {s: RandomWalkFeed(DEFAULT_SYMBOLS[s], seed) for s in SYMBOLS}
    book = _book()
    facts: list[PaperFact] = []
    now = 1_700_000_000.0
    for s in SYMBOLS:
        book.apply_quote(feeds[s].first(now))
    for step in range(steps):
        now += 1
        symbol = rng.choice(SYMBOLS)
        spec = DEFAULT_SYMBOLS[symbol].spec
        quote = book.last_quote(symbol)
        roll = rng.random()
        try:
            if roll < 0.3:
                kind = rng.choice(["market", "limit", "stop"])
                buy = rng.random() < 0.5
                away = spec.pip_size * rng.randint(5, 50)
                price = None
                if kind != "market":
                    below = (kind == "limit") == buy
                    ref = quote.ask if buy else quote.bid
                    price = round(ref - away if below else ref + away, spec.digits)
                ref = quote.ask if buy else quote.bid
                book.place(
                    OrderRequest(
                        client_id=f"c{step}",
                        symbol=symbol,
                        side="buy" if buy else "sell",
                        volume=rng.choice([0.01, 0.05, 0.1, 0.3]),
                        order_type=kind,
                        price=price,
                        sl=round(ref - 3 * away if buy else ref + 3 * away, spec.digits),
                        tp=round(ref + 3 * away if buy else ref - 3 * away, spec.digits),
                    )
                )
            elif roll < 0.4 and book.positions():
                pos = rng.choice(book.positions())
                volume = None if rng.random() < 0.5 else 0.01
                book.close_position(pos.position_id, volume)
            elif roll < 0.45 and book.orders():
                book.cancel_order(rng.choice(book.orders()).order_id)
            elif roll < 0.5 and book.positions():
                pos = rng.choice(book.positions())
                book.modify_position(pos.position_id, None, None)
            else:
                book.apply_quote(feeds[symbol].next(now))
        except BrokerError:
            pass
        facts.extend(book.drain_journal())
    return book, facts


@pytest.mark.parametrize("seed", range(8))
def test_journal_when_folded_into_fresh_book_then_same_book(seed: int) -> None:
    original, facts = _random_session(seed)

    rebuilt = _book()
    for fact in facts:
        rebuilt.restore(fact)

    assert len(facts) > 50
    assert _snapshot(rebuilt) == _snapshot(original)
    assert rebuilt.drain_journal() == []


def test_journal_when_restored_then_next_ids_and_duplicates_continue() -> None:
    original, facts = _random_session(3)
    rebuilt = _book()
    for fact in facts:
        rebuilt.restore(fact)
    for book in (original, rebuilt):
        for s in SYMBOLS:
            book.apply_quote(
                Quote(
                    symbol=s,
                    bid=original.last_quote(s).bid,
                    ask=original.last_quote(s).ask,
                    time=2e9,
                )
            )

    a = original.place(OrderRequest(client_id="next", symbol="XAUUSD", side="buy", volume=0.01))
    b = rebuilt.place(OrderRequest(client_id="next", symbol="XAUUSD", side="buy", volume=0.01))
    placed = next(f for f in facts if isinstance(f, PaperPositionOpened | PaperOrderPlaced))
    again = rebuilt.place(
        OrderRequest(client_id=placed.client_id or "", symbol="XAUUSD", side="buy", volume=0.01)
    )

    assert a.position_id == b.position_id
    assert again.duplicate


def test_journal_when_stop_loss_fires_then_close_fact_with_profit() -> None:
    book = _book()
    book.apply_quote(Quote(symbol="XAUUSD", bid=2000.0, ask=2000.2, time=1.0))
    book.place(OrderRequest(client_id="b1", symbol="XAUUSD", side="buy", volume=0.1, sl=1990.0))
    book.drain_journal()

    book.apply_quote(Quote(symbol="XAUUSD", bid=1989.0, ask=1989.2, time=2.0))
    [fact] = book.drain_journal()

    assert isinstance(fact, PaperPositionClosed)
    assert (fact.reason, fact.volume, fact.price) == ("stop_loss", 0.1, 1989.0)
    assert fact.profit == pytest.approx(-112.0)


def test_journal_when_off_then_nothing_recorded() -> None:
    book = PaperBook(dict(DEFAULT_SYMBOLS))
    book.apply_quote(Quote(symbol="XAUUSD", bid=2000.0, ask=2000.2, time=1.0))
    book.place(OrderRequest(client_id="b1", symbol="XAUUSD", side="buy", volume=0.1))

    assert book.journal is None and book.drain_journal() == []
