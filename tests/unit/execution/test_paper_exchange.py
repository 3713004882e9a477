"""The paper exchange's core: one feed for every book, quotes only where they matter,
calls that return their facts, books rebuilt from facts."""

from __future__ import annotations

import msgspec

from contracts import paper_wire as wire
from contracts.broker import BrokerOrderResult, OrderRequest, Rejected
from services.paper.exchange import PaperExchange, PaperExchangeConfig
from services.paper.facts import (
    PaperAccountOpened,
    PaperPositionClosed,
    PaperPositionOpened,
)

T0 = 1_700_000_000.0


def _exchange() -> PaperExchange:
    return PaperExchange(PaperExchangeConfig(seed=7), start_time=T0)


def _buy(client_id: str, **kw: object) -> bytes:
    fields: dict[str, object] = {"symbol": "XAUUSD", "side": "buy", "volume": 0.1}
    fields.update(kw)
    return msgspec.json.encode(OrderRequest(client_id=client_id, **fields))  # type: ignore[arg-type]


def test_exchange_when_first_order_then_account_opened_and_position_facts() -> None:
    exchange = _exchange()

    result, facts = exchange.execute("paper-u1", "place_order", _buy("c1"))

    assert isinstance(result, BrokerOrderResult) and result.status == "filled"
    assert [type(f) for f in facts] == [PaperAccountOpened, PaperPositionOpened]
    assert result.fill_price == exchange.quotes["XAUUSD"].ask


def test_exchange_when_two_exchanges_share_seed_then_same_quotes() -> None:
    a, b = _exchange(), _exchange()

    a.tick(T0 + 1)
    b.tick(T0 + 1)

    assert a.quotes == b.quotes


def test_exchange_when_tick_then_only_books_with_stops_get_quotes() -> None:
    exchange = _exchange()
    exchange.execute("paper-idle", "account_info", b"{}")
    bid = exchange.quotes["XAUUSD"].bid
    exchange.execute("paper-stops", "place_order", _buy("c1", sl=round(bid - 0.01, 2)))

    assert exchange.stats()["active_books"] == 1
    fired: dict[str, list[object]] = {}
    for step in range(1, 200):
        fired.update(exchange.tick(T0 + step))
        if fired:
            break

    assert list(fired) == ["paper-stops"]
    [closed] = fired["paper-stops"]
    assert isinstance(closed, PaperPositionClosed) and closed.reason == "stop_loss"
    idle = exchange.accounts["paper-idle"].book
    assert idle.quote_time("XAUUSD") == T0  # untouched: it catches up when next used
    exchange.execute("paper-idle", "account_info", b"{}")
    assert idle.quote_time("XAUUSD") == exchange.quotes["XAUUSD"].time


def test_exchange_when_broker_refuses_then_error_returned_not_raised() -> None:
    exchange = _exchange()

    result, _ = exchange.execute("paper-u1", "place_order", _buy("c1", volume=1000.0))
    unknown, _ = exchange.execute("paper-u1", "explode", b"{}")
    garbled, _ = exchange.execute("paper-u1", "place_order", b'{"client_id": ""}')

    assert isinstance(result, Rejected) and result.broker_code == 10014
    assert isinstance(unknown, Rejected) and "explode" in unknown.reason
    assert isinstance(garbled, Rejected) and "malformed place_order" in garbled.reason


def test_exchange_when_restored_from_facts_then_same_positions() -> None:
    exchange = _exchange()
    facts = []
    for n in range(5):
        _, new = exchange.execute("paper-u1", "place_order", _buy(f"c{n}"))
        facts.extend(new)
    before, _ = exchange.execute("paper-u1", "positions", b"{}")

    other = _exchange()
    other.restore("paper-u1", facts, version=len(facts))
    after, _ = other.execute("paper-u1", "positions", b"{}")
    again, new_facts = other.execute("paper-u1", "place_order", _buy("c0"))

    assert [(p.position_id, p.open_price) for p in after] == [
        (p.position_id, p.open_price) for p in before
    ]
    assert again.duplicate and new_facts == []


def test_exchange_quotes_then_pip_value_in_account_currency() -> None:
    exchange = _exchange()

    quotes = {q.symbol: q for q in exchange.market_quotes()}

    assert (quotes["XAUUSD"].pip_size, quotes["XAUUSD"].pip_value_per_lot) == (0.1, 10.0)
    assert quotes["EURUSD"].pip_value_per_lot == 10.0
    jpy = quotes["USDJPY"]
    mid = (exchange.quotes["USDJPY"].bid + exchange.quotes["USDJPY"].ask) / 2
    assert abs(jpy.pip_value_per_lot - 1000 / mid) < 1e-6


def test_wire_when_error_round_trips_then_same_port_error() -> None:
    sent = Rejected("no money", broker_code=10019, broker_code_name="TRADE_RETCODE_NO_MONEY")

    reply = wire.reply_decoder.decode(wire.encode_error(sent))
    assert reply.error is not None
    back = wire.error_from_wire(reply.error)

    assert type(back) is Rejected
    assert (back.reason, back.broker_code, back.broker_code_name) == (
        "no money",
        10019,
        "TRADE_RETCODE_NO_MONEY",
    )
