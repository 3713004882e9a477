"""The broker port's contract, run against every implementation.

`BrokerContract` is abstract (no `Test` prefix): each subclass provides the
`broker` fixture. MetaApiBroker runs the real metaapi-cloud-sdk end to end
against the shipped MetaApi stand-in (services/sims/metaapi), which executes on a paper
account, so both implementations must report the same outcomes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.broker import (
    Broker,
    PendingOrder,
    Position,
    Rejected,
)

from .conftest import MetaApiEnv
from .stubs import order, paper


class BrokerContract:
    @pytest.fixture
    async def broker(self) -> AsyncIterator[Broker]:
        raise NotImplementedError
        yield

    async def test_market_buy_when_placed_then_filled_and_listed(self, broker: Broker) -> None:
        quote = await broker.quote("XAUUSD")

        result = await broker.place_order(order("buy1", volume=0.1))

        assert result.status == "filled"
        assert result.position_id is not None
        assert result.fill_price == quote.ask
        positions = await broker.positions()
        assert [(p.position_id, p.side, p.volume, p.client_id) for p in positions] == [
            (result.position_id, "buy", 0.1, "buy1")
        ]
        assert positions[0].open_price == result.fill_price

    async def test_market_sell_when_placed_then_filled_at_bid(self, broker: Broker) -> None:
        quote = await broker.quote("EURUSD")

        result = await broker.place_order(order("sell1", symbol="EURUSD", side="sell", volume=1.0))

        assert result.status == "filled"
        assert result.fill_price == quote.bid
        [position] = await broker.positions()
        assert (position.side, position.symbol, position.volume) == ("sell", "EURUSD", 1.0)

    async def test_limit_order_when_placed_then_pending_not_filled(self, broker: Broker) -> None:
        quote = await broker.quote("XAUUSD")
        price = round(quote.ask - 10, 2)

        result = await broker.place_order(
            order("lim1", order_type="limit", price=price, sl=price - 10, tp=price + 20)
        )

        assert result.status == "accepted"
        assert result.order_id is not None
        assert await broker.positions() == []
        [pending] = await broker.orders()
        assert (pending.order_id, pending.order_type, pending.side, pending.price) == (
            result.order_id,
            "limit",
            "buy",
            price,
        )
        assert (pending.sl, pending.tp, pending.client_id) == (price - 10, price + 20, "lim1")

    async def test_modify_position_when_sl_tp_set_then_listed(self, broker: Broker) -> None:
        placed = await broker.place_order(order("mod1"))
        assert placed.position_id is not None
        ask = placed.fill_price or 0.0

        await broker.modify_position(placed.position_id, sl=ask - 15, tp=ask + 30)
        [after_both] = await broker.positions()
        await broker.modify_position(placed.position_id, sl=None, tp=ask + 40)
        [after_tp_only] = await broker.positions()

        assert (after_both.sl, after_both.tp) == (ask - 15, ask + 30)
        assert (after_tp_only.sl, after_tp_only.tp) == (ask - 15, ask + 40)

    async def test_close_when_partial_volume_then_rest_stays_open(self, broker: Broker) -> None:
        placed = await broker.place_order(order("part1", volume=0.1))
        assert placed.position_id is not None

        result = await broker.close_position(placed.position_id, 0.04)

        assert result.status == "filled"
        [position] = await broker.positions()
        assert position.position_id == placed.position_id
        assert position.volume == pytest.approx(0.06)

    async def test_close_when_whole_position_then_gone(self, broker: Broker) -> None:
        placed = await broker.place_order(order("close1"))
        assert placed.position_id is not None
        balance_before = (await broker.account_info()).balance

        result = await broker.close_position(placed.position_id)

        assert result.status == "filled"
        assert await broker.positions() == []
        info = await broker.account_info()
        # closing at the bid right after buying at the ask loses exactly the spread
        assert info.balance < balance_before
        assert info.equity == info.balance

    async def test_cancel_when_pending_then_gone(self, broker: Broker) -> None:
        quote = await broker.quote("XAUUSD")
        placed = await broker.place_order(
            order("cancel1", order_type="stop", price=round(quote.ask + 10, 2))
        )
        assert placed.order_id is not None

        result = await broker.cancel_order(placed.order_id)

        assert result.status == "accepted"
        assert await broker.orders() == []

    async def test_place_when_same_client_id_twice_then_one_position(self, broker: Broker) -> None:
        first = await broker.place_order(order("dup1"))

        second = await broker.place_order(order("dup1"))

        assert second.duplicate is True
        assert second.position_id == first.position_id
        assert len(await broker.positions()) == 1

    async def test_find_by_client_id_when_placed_then_found(self, broker: Broker) -> None:
        quote = await broker.quote("XAUUSD")
        filled = await broker.place_order(order("find1"))
        pending = await broker.place_order(
            order("find2", order_type="limit", price=round(quote.bid - 5, 2))
        )

        found_position = await broker.find_by_client_id("find1")
        found_order = await broker.find_by_client_id("find2")
        missing = await broker.find_by_client_id("never-placed")

        assert isinstance(found_position, Position)
        assert found_position.position_id == filled.position_id
        assert isinstance(found_order, PendingOrder)
        assert found_order.order_id == pending.order_id
        assert missing is None

    async def test_place_when_volume_below_minimum_then_rejected_in_words(
        self, broker: Broker
    ) -> None:
        with pytest.raises(Rejected) as caught:
            await broker.place_order(order("vol1", volume=0.001))

        assert caught.value.broker_code == 10014
        assert caught.value.broker_code_name == "TRADE_RETCODE_INVALID_VOLUME"
        assert "volume" in caught.value.reason
        assert await broker.positions() == []

    async def test_place_when_stop_loss_above_price_of_buy_then_rejected(
        self, broker: Broker
    ) -> None:
        quote = await broker.quote("XAUUSD")

        with pytest.raises(Rejected) as caught:
            await broker.place_order(order("sl1", sl=quote.ask + 5))

        assert caught.value.broker_code == 10016

    async def test_close_when_position_unknown_then_rejected(self, broker: Broker) -> None:
        with pytest.raises(Rejected) as caught:
            await broker.close_position("424242")

        assert caught.value.broker_code == 4753

    async def test_account_spec_quote_when_read_then_consistent(self, broker: Broker) -> None:
        info = await broker.account_info()
        spec = await broker.symbol_spec("XAUUSD")
        quote = await broker.quote("XAUUSD")

        assert (info.balance, info.equity, info.currency) == (10_000.0, 10_000.0, "USD")
        assert (spec.digits, spec.pip_size, spec.contract_size) == (2, 0.1, 100.0)
        assert (spec.min_volume, spec.max_volume, spec.volume_step) == (0.01, 100.0, 0.01)
        assert spec.tick_value == pytest.approx(1.0)
        assert 0 < quote.bid < quote.ask


class TestPaperBrokerContract(BrokerContract):
    @pytest.fixture
    async def broker(self) -> AsyncIterator[Broker]:
        broker = paper()
        yield broker
        await broker.close()


class TestMetaApiBrokerContract(BrokerContract):
    @pytest.fixture
    async def broker(self, fresh_metaapi: MetaApiEnv) -> AsyncIterator[Broker]:
        broker = fresh_metaapi.broker()
        yield broker
        await broker.close()
