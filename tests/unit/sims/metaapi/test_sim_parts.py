"""The stand-in's pieces without the SDK: prices, trades, the endpoint variable, the client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.execution.broker.metaapi_endpoint import endpoint_from_env
from services.sims.metaapi.accounts import Invalid, SimAccounts
from services.sims.metaapi.cli import SimUnavailable, call
from services.sims.metaapi.prices import DEFAULT_BIDS, load_bids


def test_market_when_opened_then_bids_are_the_starting_levels() -> None:
    accounts = SimAccounts()

    quotes = accounts.quotes()

    assert quotes["XAUUSD"] == {"bid": 4350.0, "ask": 4350.2}
    assert quotes["EURUSD"]["bid"] == 1.16
    assert {s: q["bid"] for s, q in quotes.items()} == DEFAULT_BIDS


def test_prices_file_when_given_then_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"XAUUSD": 4100.5}))

    accounts = SimAccounts(load_bids(path))

    assert accounts.quotes()["XAUUSD"]["bid"] == 4100.5
    assert accounts.quotes()["USDJPY"]["bid"] == 155.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"XAUUSX": 1}', "unknown symbol 'XAUUSX'"),
        ('{"XAUUSD": -1}', "bid of XAUUSD must be a positive number, not -1"),
        ('{"XAUUSD": "4350"}', "bid of XAUUSD must be a positive number, not '4350'"),
        ("[1]", "expected an object symbol -> bid"),
        ("{", "not JSON"),
    ],
)
def test_prices_file_when_wrong_then_error_names_it(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)

    with pytest.raises(ValueError, match="--prices") as caught:
        load_bids(path)

    assert message in str(caught.value)


def test_trade_when_client_id_and_comment_too_long_then_validation_names_client_id() -> None:
    accounts = SimAccounts()

    with pytest.raises(Invalid) as caught:
        accounts.trade(
            "a1",
            {
                "actionType": "ORDER_TYPE_BUY",
                "symbol": "XAUUSD",
                "volume": 0.1,
                "clientId": "c" * 20,
                "comment": "x" * 7,
            },
        )

    assert caught.value.details[0]["parameter"] == "clientId"
    assert accounts.book("a1").positions() == []


def test_trade_when_action_unsupported_then_code_minus_4() -> None:
    accounts = SimAccounts()

    answer = accounts.trade("a1", {"actionType": "POSITION_CLOSE_BY", "positionId": "1"})

    assert (answer["numericCode"], answer["stringCode"]) == (
        -4,
        "TRADE_RETCODE_ORDER_TYPE_NOT_SUPPORTED",
    )


def test_price_when_pending_stop_and_sl_cross_then_filled_then_stopped_in_history() -> None:
    accounts = SimAccounts()
    placed = accounts.trade(
        "a1",
        {
            "actionType": "ORDER_TYPE_SELL_STOP",
            "symbol": "XAUUSD",
            "volume": 0.1,
            "openPrice": 4340.0,
            "stopLoss": 4345.0,
            "clientId": "ss1",
        },
    )

    accounts.set_price("XAUUSD", 4339.0)
    filled = accounts.positions("a1")
    accounts.set_price("XAUUSD", 4346.0)

    assert placed["stringCode"] == "TRADE_RETCODE_PLACED"
    assert [(p["id"], p["clientId"], p["openPrice"]) for p in filled] == [
        (placed["orderId"], "ss1", 4339.0)
    ]
    assert accounts.positions("a1") == []
    ledger = accounts.get("a1").ledger
    assert [d.get("reason") for d in ledger.deals] == [
        None,  # the balance deal
        "DEAL_REASON_EXPERT",
        "DEAL_REASON_SL",
    ]
    # a sell stopped out at the ask of the quote that crossed 4345
    assert ledger.deals[-1]["profit"] == pytest.approx((4339.0 - 4346.2) * 0.1 * 100)


def test_endpoint_variable_when_not_a_url_then_error_names_it() -> None:
    with pytest.raises(ValueError, match=r"SIGRELAY_METAAPI_URL='127\.0\.0\.1:8080'"):
        endpoint_from_env({"SIGRELAY_METAAPI_URL": "127.0.0.1:8080"})

    assert endpoint_from_env({}) is None
    assert endpoint_from_env({"SIGRELAY_METAAPI_URL": "http://127.0.0.1:9/"}) == (
        "http://127.0.0.1:9"
    )


def test_client_when_stand_in_unreachable_then_error_names_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIGRELAY_METAAPI_URL", "http://127.0.0.1:1")

    with pytest.raises(
        SimUnavailable, match=r"SIGRELAY_METAAPI_URL=http://127\.0\.0\.1:1 is unreachable"
    ):
        call("/_sim/price", {"symbol": "XAUUSD", "bid": 1.0})


def test_tick_when_stepped_then_every_price_walks() -> None:
    accounts = SimAccounts()
    before = accounts.quotes()

    accounts.tick()

    after = accounts.quotes()
    assert all(after[s]["bid"] != before[s]["bid"] for s in ("XAUUSD", "BTCUSD", "US30"))
