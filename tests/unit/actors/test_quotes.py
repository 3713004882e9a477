"""The actors' market view: a book that has just started knows when the feed is in view."""

from __future__ import annotations

import msgspec

from contracts.orders import Quote
from services.actors.quotes import QuoteBook
from tests.unit.actors.factories import quote


def tick(symbol: str, ts: int) -> Quote:  # one quote of one round of the feed
    return msgspec.structs.replace(quote(symbol), ts=ts)


def test_empty_book_then_not_complete_and_no_price():
    book = QuoteBook()
    assert not book.complete
    assert book.quote("XAUUSD") is None


async def test_wait_without_a_feed_then_false_after_the_wait():
    assert await QuoteBook().wait_complete(0.01) is False


def test_first_round_then_not_complete_until_its_first_symbol_comes_again():
    book = QuoteBook()
    book.update(tick("EURUSD", 1))  # joined the feed in the middle of a round
    book.update(tick("XAUUSD", 1))
    assert not book.complete
    book.update(tick("EURUSD", 1))  # the same quote again is not a new round
    assert not book.complete
    book.update(tick("GBPUSD", 2))
    book.update(tick("EURUSD", 2))
    assert book.complete
    assert {book.quote(s) is not None for s in ("EURUSD", "XAUUSD", "GBPUSD")} == {True}


async def test_full_round_then_the_wait_returns_at_once():
    book = QuoteBook()
    book.update(tick("XAUUSD", 1))
    book.update(tick("XAUUSD", 2))
    assert await book.wait_complete(0.01) is True
