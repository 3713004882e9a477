"""PaperBroker: determinism, feed-triggered fills, P&L arithmetic and MT5-style rejections."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.broker import PendingOrder, Position, Quote, Rejected
from services.paper.broker import PaperBroker, PaperBrokerConfig

from .stubs import order, paper


def q(symbol: str, bid: float, ask: float, t: float = 1_700_000_100.0) -> Quote:
    return Quote(symbol=symbol, bid=bid, ask=ask, time=t)


def _walk(seed: int, steps: int = 50) -> list[Quote]:
    broker = paper(seed=seed)
    for _ in range(steps):
        broker.tick()
    return [broker.book.last_quote(s) for s in ("XAUUSD", "EURUSD", "USDJPY", "US30")]


def test_feed_when_same_seed_then_same_quotes() -> None:
    assert _walk(7) == _walk(7)


def test_feed_when_other_seed_then_other_quotes() -> None:
    assert _walk(7) != _walk(8)


def test_feed_when_run_in_processes_with_other_hash_seeds_then_identical() -> None:
    code = (
        "from tests.unit.broker.test_paper_broker import _walk;"
        "print([(x.bid, x.ask) for x in _walk(3, 20)])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }

    assert len(outputs) == 1


def test_feed_when_symbol_added_then_other_symbols_unchanged() -> None:
    few = PaperBroker(PaperBrokerConfig(seed=5, symbols=("EURUSD",)))
    many = PaperBroker(PaperBrokerConfig(seed=5))
    for _ in range(10):
        few.tick()
        many.tick()

    assert few.book.last_quote("EURUSD") == many.book.last_quote("EURUSD")


def test_replay_when_ticked_then_quotes_released_in_time_order() -> None:
    broker = PaperBroker(
        PaperBrokerConfig(symbols=("EURUSD",)),
        replay=[q("EURUSD", 1.1002, 1.1003, 20.0), q("EURUSD", 1.1000, 1.1001, 10.0)],
    )

    broker.tick(15.0)
    first = broker.book.last_quote("EURUSD")
    broker.tick(25.0)

    assert first.bid == 1.1000
    assert broker.book.last_quote("EURUSD").bid == 1.1002


async def test_buy_limit_when_ask_falls_to_price_then_filled_at_the_ask() -> None:
    broker = paper()
    broker.advance(q("XAUUSD", 2000.00, 2000.20))
    placed = await broker.place_order(order("l1", order_type="limit", price=1990.0))

    untouched = broker.advance(q("XAUUSD", 1995.00, 1995.20))
    events = broker.advance(q("XAUUSD", 1989.50, 1989.70))

    assert untouched == []
    assert [(e.kind, e.order_id, e.price) for e in events] == [
        ("order_filled", placed.order_id, 1989.70)
    ]
    assert await broker.orders() == []
    found = await broker.find_by_client_id("l1")
    assert isinstance(found, Position)
    assert found.open_price == 1989.70


async def test_sell_stop_when_bid_falls_through_then_filled() -> None:
    broker = paper()
    broker.advance(q("EURUSD", 1.10000, 1.10010))
    await broker.place_order(
        order("s1", symbol="EURUSD", side="sell", order_type="stop", price=1.0990, volume=1.0)
    )

    events = broker.advance(q("EURUSD", 1.09880, 1.09890))

    assert [e.kind for e in events] == ["order_filled"]
    [position] = await broker.positions()
    assert (position.side, position.open_price) == ("sell", 1.09880)


async def test_buy_stop_when_ask_stays_below_then_still_pending() -> None:
    broker = paper()
    broker.advance(q("XAUUSD", 2000.00, 2000.20))
    await broker.place_order(order("bs1", order_type="stop", price=2010.0))

    events = broker.advance(q("XAUUSD", 2009.70, 2009.90))

    assert events == []
    [pending] = await broker.orders()
    assert isinstance(pending, PendingOrder)


async def test_stop_loss_when_bid_reaches_it_then_closed_with_loss() -> None:
    broker = paper()
    broker.advance(q("XAUUSD", 2000.00, 2000.10))
    await broker.place_order(order("sl1", volume=0.1, sl=1995.0))

    [event] = broker.advance(q("XAUUSD", 1994.50, 1994.70))

    # (1994.50 - 2000.10) * 0.1 lot * 100 oz = -56.00 USD
    assert (event.kind, event.price, event.profit) == ("stop_loss", 1994.50, -56.0)
    assert await broker.positions() == []
    info = await broker.account_info()
    assert (info.balance, info.equity) == (9944.0, 9944.0)


async def test_take_profit_when_ask_reaches_it_on_a_sell_then_closed_with_gain() -> None:
    broker = paper()
    broker.advance(q("EURUSD", 1.10000, 1.10010))
    await broker.place_order(order("tp1", symbol="EURUSD", side="sell", volume=1.0, tp=1.0950))

    [event] = broker.advance(q("EURUSD", 1.09490, 1.09500))

    # (1.10000 - 1.09500) * 1 lot * 100000 = +500.00 USD
    assert (event.kind, event.profit) == ("take_profit", 500.0)
    assert (await broker.account_info()).balance == 10_500.0


async def test_stops_when_modified_then_old_levels_no_longer_fire() -> None:
    broker = paper()
    broker.advance(q("XAUUSD", 2000.00, 2000.10))
    placed = await broker.place_order(order("m1", sl=1995.0))
    assert placed.position_id is not None
    await broker.modify_position(placed.position_id, sl=1990.0, tp=None)

    events = broker.advance(q("XAUUSD", 1994.00, 1994.20))

    assert events == []
    assert len(await broker.positions()) == 1


async def test_profit_when_quoted_in_jpy_then_converted_to_account_currency() -> None:
    broker = paper()
    broker.advance(q("USDJPY", 150.000, 150.010))
    placed = await broker.place_order(order("j1", symbol="USDJPY", volume=1.0))
    assert placed.position_id is not None
    broker.advance(q("USDJPY", 150.510, 150.520))

    await broker.close_position(placed.position_id)

    # 0.5 JPY * 100000 = 50000 JPY, at ~150.515 JPY per USD
    assert broker.history[-1].profit == pytest.approx(50_000 / 150.515, abs=0.01)


async def test_equity_when_positions_float_then_balance_plus_floating_pnl() -> None:
    broker = paper()
    broker.advance(q("XAUUSD", 2000.00, 2000.10))
    broker.advance(q("EURUSD", 1.10000, 1.10010))
    await broker.place_order(order("e1", volume=0.2))
    await broker.place_order(order("e2", symbol="EURUSD", side="sell", volume=0.5))
    broker.advance(q("XAUUSD", 2003.00, 2003.10))
    broker.advance(q("EURUSD", 1.10100, 1.10110))

    info = await broker.account_info()
    positions = await broker.positions()

    # XAU: (2003.00 - 2000.10) * 0.2 * 100 = 58; EUR: (1.10000 - 1.10110) * 0.5 * 100000 = -55
    assert sorted(p.profit for p in positions) == [-55.0, 58.0]
    assert info.balance == 10_000.0
    assert info.equity == pytest.approx(10_003.0)
    assert info.margin_free == pytest.approx(info.equity - info.margin)


async def test_partial_close_when_done_then_pnl_proportional_and_rest_open() -> None:
    broker = paper()
    broker.advance(q("XAUUSD", 2000.00, 2000.10))
    placed = await broker.place_order(order("p1", volume=0.3))
    assert placed.position_id is not None
    broker.advance(q("XAUUSD", 2001.10, 2001.20))

    await broker.close_position(placed.position_id, 0.1)

    assert broker.history[-1].profit == pytest.approx(10.0)  # 1.00 * 0.1 * 100
    assert broker.history[-1].reason == "partial"
    [rest] = await broker.positions()
    assert rest.volume == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("volume", "why"),
    [(0.001, "below the minimum"), (100.01, "above the maximum"), (0.015, "not a multiple")],
)
async def test_volume_when_outside_rules_then_rejected_10014(volume: float, why: str) -> None:
    broker = paper()

    with pytest.raises(Rejected) as caught:
        await broker.place_order(order("v1", volume=volume))

    assert caught.value.broker_code == 10014
    assert why in caught.value.reason


@given(steps=st.integers(min_value=1, max_value=10_000))
def test_volume_when_whole_steps_within_limits_then_accepted(steps: int) -> None:
    broker = paper(balance=1e9)

    result = broker.book.place(order("h1", symbol="EURUSD", volume=steps * 0.01))

    assert result.volume == pytest.approx(steps * 0.01)


async def test_place_when_margin_insufficient_then_rejected_10019() -> None:
    broker = paper(balance=100.0)

    with pytest.raises(Rejected) as caught:
        await broker.place_order(order("nm1", symbol="BTCUSD", volume=10.0))

    assert caught.value.broker_code == 10019
    assert "free margin is 100.00" in caught.value.reason


async def test_place_when_market_closed_then_rejected_10018() -> None:
    broker = paper()
    broker.set_market_open("GER40", False)

    with pytest.raises(Rejected) as caught:
        await broker.place_order(order("mc1", symbol="GER40", volume=1.0))

    assert caught.value.broker_code == 10018


async def test_pending_when_price_on_wrong_side_then_rejected_10015() -> None:
    broker = paper()
    broker.advance(q("XAUUSD", 2000.00, 2000.10))

    with pytest.raises(Rejected) as caught:
        await broker.place_order(order("wp1", order_type="limit", price=2005.0))

    assert caught.value.broker_code == 10015
    assert "must be below the current ask 2000.1" in caught.value.reason


async def test_place_when_client_id_reused_after_close_then_no_second_position() -> None:
    broker = paper()
    first = await broker.place_order(order("once"))
    assert first.position_id is not None
    await broker.close_position(first.position_id)

    again = await broker.place_order(order("once"))

    assert again.duplicate is True
    assert again.position_id == first.position_id
    assert await broker.positions() == []


def test_specs_when_built_in_then_as_documented() -> None:
    book = paper().book

    gold, fx, jpy = book.spec("XAUUSD"), book.spec("EURUSD"), book.spec("USDJPY")

    assert (gold.digits, gold.pip_size, gold.contract_size) == (2, 0.1, 100)
    assert (fx.digits, fx.pip_size, fx.contract_size) == (5, 0.0001, 100_000)
    assert (jpy.digits, jpy.pip_size) == (3, 0.01)
    assert [book.spec(s).pip_size for s in ("US30", "NAS100", "GER40", "BTCUSD")] == [1.0] * 4
    assert (fx.min_volume, fx.max_volume, fx.volume_step) == (0.01, 100.0, 0.01)


async def test_broker_style_suffixed_symbol_then_traded_as_the_instrument():
    from contracts.broker import OrderRequest
    from services.paper.broker import PaperBroker

    broker = PaperBroker()
    for n, name in enumerate(("XAUUSD.m", "XAUUSDm")):
        result = await broker.place_order(
            OrderRequest(client_id=f"suffix{n}", symbol=name, side="buy", volume=0.01)
        )
        assert result.status == "filled"
    positions = await broker.positions()
    assert [p.symbol for p in positions] == ["XAUUSD", "XAUUSD"]
