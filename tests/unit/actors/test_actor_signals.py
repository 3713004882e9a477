"""decide_signal: opens, follow-ups, refusals and idempotency for one user."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from contracts.orders import OrderIntent
from contracts.refusals import RefusalCode
from contracts.settings import ChannelOverrides, LotSizing
from contracts.signals import ModifySignal, OpenSignal
from contracts.users import (
    AccountUnlinked,
    Paused,
    SignalHandled,
    SignalRefused,
    Stopped,
    Unsubscribed,
    UserDeleted,
)
from services.actors.core import (
    UserState,
    decide_signal,
    evolve,
    fold,
    initial_state,
    internal_refusal,
    signal_event_id,
)
from tests.unit.actors.factories import (
    NO_MARKET,
    SECOND,
    T0,
    Market,
    breakeven,
    cancel,
    close,
    follow_up,
    gold_market,
    noise,
    open_signal,
    opened,
    parsed,
    quote,
    rejected,
    report_event,
    report_for,
    user,
)

NOW = T0 + SECOND


def decide(
    state: UserState, message: Any, market: Market | None = None, now: int = NOW
) -> list[Any]:
    return decide_signal(state, message, market if market is not None else gold_market(), now)


def one_handled(events: list[Any]) -> SignalHandled:
    assert len(events) == 1 and isinstance(events[0], SignalHandled), events
    return events[0]


def one_refused(events: list[Any], code: RefusalCode) -> SignalRefused:
    assert len(events) == 1 and isinstance(events[0], SignalRefused), events
    assert events[0].code == code.value, events[0].reason
    return events[0]


def intents_of(events: list[Any]) -> tuple[OrderIntent, ...]:
    return one_handled(events).intents


def lots(value: float, **lot: Any) -> dict[str, Any]:
    return {"lot": {"fixed_lot": value, **lot}}


# --- opens: the happy path -----------------------------------------------------------


def test_open_market_buy_then_one_intent_per_tp_with_ids() -> None:
    state = user(settings=lots(0.03))

    intents = intents_of(decide(state, parsed(open_signal())))

    assert [i.intent_id for i in intents] == ["gold:100|u1|L1", "gold:100|u1|L2", "gold:100|u1|L3"]
    assert [i.tp for i in intents] == [2005.0, 2010.0, 2015.0]
    assert [i.volume for i in intents] == [0.01, 0.01, 0.01]
    first = intents[0]
    assert (first.action, first.side, first.order_type, first.symbol) == (
        "open",
        "buy",
        "market",
        "XAUUSD",
    )
    assert (first.price, first.sl, first.account_id, first.broker) == (
        2000.2,
        1990.0,
        "paper-u1",
        "paper",
    )
    assert (first.ts, first.decided_ns, first.signal_posted_ns) == (NOW, NOW, T0)
    assert first.id == first.intent_id


def test_open_event_ids_derive_from_signal_message_revision_user() -> None:
    event = one_handled(decide(user(), parsed(open_signal(), message_id=7, revision=2)))

    assert event.id == "gold:7|u1|m7r2"
    assert (event.ts, event.correlation_id, event.causation_id) == (
        NOW,
        "gold:7",
        "parsed:gold:7:2",
    )
    assert (event.signal_id, event.revision, event.message_id, event.kind) == (
        "gold:7",
        2,
        7,
        "open",
    )


def test_open_is_deterministic() -> None:
    state = user(settings=lots(0.05))

    assert decide(state, parsed(open_signal())) == decide(state, parsed(open_signal()))


def test_open_sell_uses_bid_as_reference() -> None:
    signal = open_signal("sell", sl=2010.0, tps=(1995.0,))

    intents = intents_of(decide(user(), parsed(signal)))

    assert (intents[0].side, intents[0].price) == ("sell", 2000.0)


# --- split TPs and volumes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("lot", "n_tps", "volumes"),
    [
        (0.03, 3, [0.01, 0.01, 0.01]),
        (0.05, 3, [0.02, 0.02, 0.01]),  # whole steps, remainder to the nearest TPs
        (0.1, 3, [0.04, 0.03, 0.03]),
        (0.1, 4, [0.03, 0.03, 0.02, 0.02]),
        (0.07, 2, [0.04, 0.03]),
        (0.02, 3, [0.01, 0.01]),  # TP3 dropped: below the minimum
        (0.01, 3, [0.01]),
        (0.035, 3, [0.01, 0.01, 0.01]),  # total rounded down to the step first
        (1.0, 1, [1.0]),
    ],
)
def test_split_volumes(lot: float, n_tps: int, volumes: list[float]) -> None:
    tps = tuple(2005.0 + 5 * i for i in range(n_tps))
    state = user(settings=lots(lot))

    intents = intents_of(decide(state, parsed(open_signal(tps=tps))))

    assert [i.volume for i in intents] == volumes
    assert [i.leg for i in intents] == list(range(1, len(volumes) + 1))


def test_split_dropped_legs_are_named_in_the_note() -> None:
    event = one_handled(decide(user(settings=lots(0.02)), parsed(open_signal())))

    assert "TP3 dropped" in event.note


def test_split_with_larger_minimum_keeps_fewer_bigger_legs() -> None:
    market = Market(quote(min_volume=0.1, volume_step=0.01))

    intents = intents_of(decide(user(settings=lots(0.25)), parsed(open_signal()), market))

    assert [i.volume for i in intents] == [0.13, 0.12]


def test_lot_below_minimum_when_every_leg_drops() -> None:
    market = Market(quote(min_volume=0.1))

    event = one_refused(
        decide(user(settings=lots(0.05)), parsed(open_signal()), market),
        RefusalCode.LOT_BELOW_MINIMUM,
    )

    assert "0.05" in event.reason and "0.1" in event.reason


def test_signal_without_tp_opens_one_leg_without_tp() -> None:
    intents = intents_of(decide(user(settings=lots(0.05)), parsed(open_signal(tps=()))))

    assert [(i.leg, i.tp, i.volume) for i in intents] == [(1, None, 0.05)]


@pytest.mark.parametrize(("tp_number", "tp"), [(1, 2005.0), (2, 2010.0), (3, 2015.0), (9, 2015.0)])
def test_single_mode_opens_one_leg_at_tp_number(tp_number: int, tp: float) -> None:
    state = user(
        settings={**lots(0.05), "take_profits": {"mode": "single", "tp_number": tp_number}}
    )

    intents = intents_of(decide(state, parsed(open_signal())))

    assert [(i.leg, i.tp, i.volume) for i in intents] == [(1, tp, 0.05)]


def test_tp_already_passed_opens_no_leg_for_it() -> None:
    market = gold_market(bid=2006.0, ask=2006.2)

    event = one_handled(decide(user(settings=lots(0.03)), parsed(open_signal()), market))

    assert [i.leg for i in event.intents] == [2, 3]
    assert "TP1 2005 already passed" in event.note


def test_every_tp_passed_then_too_far() -> None:
    market = gold_market(bid=2016.0, ask=2016.2)
    state = user(settings={"max_entry_distance_pips": None})

    one_refused(decide(state, parsed(open_signal()), market), RefusalCode.TOO_FAR_FROM_PRICE)


def test_price_past_sl_then_refused() -> None:
    market = gold_market(bid=1989.0, ask=1989.2)

    event = one_refused(
        decide(user(), parsed(open_signal()), market), RefusalCode.TOO_FAR_FROM_PRICE
    )

    assert "1990" in event.reason


# --- lot sizing ----------------------------------------------------------------------


def test_risk_percent_sizing_arithmetic() -> None:
    # 1% of 10,000 = 100 at risk; |2000.2 - 1990.2| = 10.0 = 100 pips of 0.1;
    # 100 pips × 10/pip/lot = 1000 per lot -> 0.1 lot, split 0.04/0.03/0.03
    state = user(settings=lots(0.01, mode="risk_percent", risk_percent=1.0), balance=10_000.0)
    signal = open_signal(sl=1990.2)

    event = one_handled(decide(state, parsed(signal)))

    assert [i.volume for i in event.intents] == [0.04, 0.03, 0.03]
    assert "risk 1% of 10000" in event.note


def test_risk_percent_rounds_down() -> None:
    # 2% of 5,000 = 100; SL 75 pips × 10 = 750/lot -> 0.1333 -> 0.13 in one leg
    state = user(settings=lots(0.01, mode="risk_percent", risk_percent=2.0), balance=5_000.0)
    signal = open_signal(sl=1992.7, tps=(2010.0,))

    assert [i.volume for i in intents_of(decide(state, parsed(signal)))] == [0.13]


def test_risk_percent_capped_at_max_lot() -> None:
    state = user(
        settings=lots(0.01, mode="risk_percent", risk_percent=10.0, max_lot=0.5), balance=100_000.0
    )

    event = one_handled(decide(state, parsed(open_signal(tps=(2010.0,)))))

    assert [i.volume for i in event.intents] == [0.5]
    assert "capped at max_lot 0.5" in event.note


def test_risk_percent_without_balance_then_refused_with_reason() -> None:
    state = user(settings=lots(0.01, mode="risk_percent"))

    event = one_refused(decide(state, parsed(open_signal())), RefusalCode.NO_ACCOUNT)

    assert "balance" in event.reason


def test_risk_percent_without_sl_then_missing_sl() -> None:
    state = user(settings={**lots(0.01, mode="risk_percent"), "require_sl": False}, balance=1000.0)

    event = one_refused(decide(state, parsed(open_signal(sl=None))), RefusalCode.MISSING_SL)

    assert "risk_percent" in event.reason


def test_multiplier_sizing_uses_fixed_lot() -> None:
    state = user(settings=lots(0.02, mode="multiplier", multiplier=2.5))

    assert [i.volume for i in intents_of(decide(state, parsed(open_signal(tps=(2010.0,)))))] == [
        0.05
    ]


def test_fixed_lot_capped_at_max_lot_of_overrides() -> None:
    overrides = ChannelOverrides(
        lot=LotSizing(fixed_lot=0.01, mode="multiplier", multiplier=100, max_lot=0.3)
    )

    intents = intents_of(decide(user(overrides=overrides), parsed(open_signal(tps=(2010.0,)))))

    assert [i.volume for i in intents] == [0.3]


def test_per_leg_volume_capped_at_broker_max() -> None:
    market = Market(quote(max_volume=0.5))
    state = user(settings=lots(2.0, max_lot=2.0))

    assert [
        i.volume for i in intents_of(decide(state, parsed(open_signal(tps=(2010.0,))), market))
    ] == [0.5]


# --- symbols -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbols", "signal_symbol", "canonical", "broker"),
    [
        ({"suffix": ".m"}, "XAUUSD", "XAUUSD", "XAUUSD.m"),
        ({"prefix": "#", "suffix": "_i"}, "XAUUSD", "XAUUSD", "#XAUUSD_i"),
        ({"aliases": {"GOLD": "XAUUSD"}, "suffix": ".m"}, "GOLD", "XAUUSD", "XAUUSD.m"),
        ({"aliases": {"gold": "xauusd"}}, "Gold", "XAUUSD", "XAUUSD"),
        ({"explicit": {"XAUUSD": "GOLD.cash"}, "suffix": ".m"}, "XAUUSD", "XAUUSD", "GOLD.cash"),
        ({"aliases": {"GOLD": "XAUUSD"}, "explicit": {"XAUUSD": "XAU"}}, "GOLD", "XAUUSD", "XAU"),
    ],
)
def test_symbol_mapping(
    symbols: dict[str, Any], signal_symbol: str, canonical: str, broker: str
) -> None:
    market = gold_market()

    intents = intents_of(
        decide(
            user(settings={"symbols": symbols}), parsed(open_signal(symbol=signal_symbol)), market
        )
    )

    assert (intents[0].signal_symbol, intents[0].symbol) == (canonical, broker)
    assert market.asked == [canonical]


def test_no_symbol_then_symbol_not_mapped() -> None:
    one_refused(decide(user(), parsed(open_signal(symbol=None))), RefusalCode.SYMBOL_NOT_MAPPED)


def test_no_quote_for_symbol_then_no_price() -> None:
    event = one_refused(decide(user(), parsed(open_signal(symbol="EURUSD"))), RefusalCode.NO_PRICE)

    assert "EURUSD" in event.reason


def test_no_side_then_no_side() -> None:
    one_refused(decide(user(), parsed(open_signal(side=None))), RefusalCode.NO_SIDE)


@pytest.mark.parametrize("withheld", [False, True])
def test_no_sl_with_require_sl_then_missing_sl(withheld: bool) -> None:
    event = one_refused(
        decide(user(), parsed(open_signal(sl=None, sl_withheld=withheld))), RefusalCode.MISSING_SL
    )

    assert ("withholds" in event.reason) is withheld


def test_no_sl_without_require_sl_then_opened_without_sl() -> None:
    intents = intents_of(decide(user(settings={"require_sl": False}), parsed(open_signal(sl=None))))

    assert intents[0].sl is None


# --- staleness and distance ----------------------------------------------------------


def test_stale_signal_refused_with_ages_in_words() -> None:
    event = one_refused(
        decide(user(), parsed(open_signal()), now=T0 + 312 * SECOND), RefusalCode.STALE_SIGNAL
    )

    assert event.reason == "signal is 312 s old; this account refuses signals older than 120 s"


def test_signal_just_within_age_accepted() -> None:
    one_handled(decide(user(), parsed(open_signal()), now=T0 + 120 * SECOND))


def test_channel_override_of_age_applies() -> None:
    state = user(overrides=ChannelOverrides(max_signal_age_s=10.0))

    one_refused(
        decide(state, parsed(open_signal()), now=T0 + 11 * SECOND), RefusalCode.STALE_SIGNAL
    )


def test_entry_too_far_from_price() -> None:
    # entry 2006.0 vs ask 2000.2: 58 pips of 0.1 > 50
    event = one_refused(
        decide(user(), parsed(open_signal(entry=2006.0))), RefusalCode.TOO_FAR_FROM_PRICE
    )

    assert "58 pips" in event.reason and "at most 50 pips" in event.reason


def test_entry_within_distance_accepted_at_market() -> None:
    intents = intents_of(decide(user(), parsed(open_signal(entry=2004.0))))

    assert (intents[0].order_type, intents[0].price) == ("market", 2000.2)


def test_distance_check_off_when_setting_null() -> None:
    state = user(settings={"max_entry_distance_pips": None})

    one_handled(decide(state, parsed(open_signal(entry=2100.0, tps=(2110.0,), sl=1900.0))))


def test_zone_distance_zero_inside_zone() -> None:
    signal = open_signal(entry_range=(1995.0, 2003.0))

    one_handled(decide(user(), parsed(signal)))


def test_zone_too_far_names_the_zone() -> None:
    signal = open_signal(entry_range=(2010.0, 2012.0), tps=(2020.0,))

    event = one_refused(decide(user(), parsed(signal)), RefusalCode.TOO_FAR_FROM_PRICE)

    assert "zone 2010-2012" in event.reason


def test_fx_pips_use_quote_pip_size() -> None:
    market = Market(quote("EURUSD", 1.1000, 1.1001, pip_size=0.0001))
    signal = open_signal(symbol="EURUSD", entry=1.1060, sl=1.09, tps=(1.12,))

    event = one_refused(decide(user(), parsed(signal), market), RefusalCode.TOO_FAR_FROM_PRICE)

    assert "59 pips" in event.reason


# --- order types and zones -----------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "order_type", "price"),
    [
        ("market", "market", 2000.2),
        ("zone_mid_limit", "limit", 1998.0),
        ("zone_best_limit", "limit", 1996.0),
    ],
)
def test_entry_zone_policy_for_buy(policy: str, order_type: str, price: float) -> None:
    signal = open_signal(entry_range=(1996.0, 2000.0))

    intents = intents_of(decide(user(settings={"entry_zone": policy}), parsed(signal)))

    assert (intents[0].order_type, intents[0].price) == (order_type, price)


def test_zone_best_limit_for_sell_is_the_high_edge() -> None:
    signal = open_signal("sell", entry_range=(2001.0, 2004.0), sl=2010.0, tps=(1990.0,))

    intents = intents_of(decide(user(settings={"entry_zone": "zone_best_limit"}), parsed(signal)))

    assert (intents[0].order_type, intents[0].price) == ("limit", 2004.0)


def test_zone_limit_already_marketable_then_market() -> None:
    market = gold_market(bid=1994.8, ask=1995.0)
    signal = open_signal(entry_range=(1996.0, 2000.0))

    intents = intents_of(
        decide(user(settings={"entry_zone": "zone_mid_limit"}), parsed(signal), market)
    )

    assert (intents[0].order_type, intents[0].price) == ("market", 1995.0)


@pytest.mark.parametrize("order_type", ["limit", "stop"])
def test_pending_order_type_from_signal(order_type: str) -> None:
    signal = open_signal(entry=1997.0 if order_type == "limit" else 2003.0, order_type=order_type)

    intents = intents_of(decide(user(), parsed(signal)))

    assert intents[0].order_type == order_type
    assert intents[0].price == signal.entry


def test_limit_without_entry_then_unsafe() -> None:
    one_refused(decide(user(), parsed(open_signal(order_type="limit"))), RefusalCode.UNSAFE_SIGNAL)


def test_sl_and_tp_pips_converted_from_entry() -> None:
    signal = open_signal(sl=None, sl_pips=50.0, tps=(), tp_pips=(30.0, 60.0))

    intents = intents_of(decide(user(settings=lots(0.02)), parsed(signal)))

    assert intents[0].sl == 1995.2
    assert [i.tp for i in intents] == [2003.2, 2006.2]


def test_sell_sl_pips_above_entry() -> None:
    signal = open_signal("sell", entry=None, sl=None, sl_pips=20.0, tps=(1990.0,))

    assert intents_of(decide(user(), parsed(signal)))[0].sl == 2002.0


# --- refusals from the user's state --------------------------------------------------


def test_unregistered_or_deleted_user_then_nothing() -> None:
    deleted = evolve(user(), UserDeleted(id="d", ts=T0))

    assert decide(initial_state("u1"), parsed(open_signal())) == []
    assert decide(deleted, parsed(open_signal())) == []


def test_noise_then_nothing() -> None:
    assert decide(user(), parsed(noise())) == []


def test_not_subscribed_then_refused() -> None:
    event = one_refused(
        decide(user(channel="fx"), parsed(open_signal())), RefusalCode.NOT_SUBSCRIBED
    )

    assert "gold" in event.reason


def test_no_account_then_refused() -> None:
    one_refused(decide(user(account=False), parsed(open_signal())), RefusalCode.NO_ACCOUNT)


def test_parser_rejected_then_unsafe_with_parser_reason() -> None:
    event = one_refused(
        decide(user(), parsed(rejected("SL above entry"))), RefusalCode.UNSAFE_SIGNAL
    )

    assert "SL above entry" in event.reason


def test_paused_open_refused() -> None:
    one_refused(decide(user(status="paused"), parsed(open_signal())), RefusalCode.PAUSED)


@pytest.mark.parametrize(
    "message",
    [
        parsed(open_signal(), message_id=200),
        follow_up(breakeven()),
        follow_up(close()),
        follow_up(cancel()),
        parsed(rejected(), message_id=201),
    ],
)
def test_stopped_refuses_every_kind(message: Any) -> None:
    state = evolve(opened(), Stopped(id="s", ts=T0))

    one_refused(decide(state, message), RefusalCode.STOPPED)


def test_stopped_noise_still_nothing() -> None:
    assert decide(user(status="stopped"), parsed(noise())) == []


def test_paused_open_refused_but_breakeven_applied() -> None:
    state = opened()
    state = evolve(state, Paused(id="p", ts=T0))

    refused = decide(state, parsed(open_signal(), message_id=200))
    applied = intents_of(decide(state, follow_up(breakeven())))

    one_refused(refused, RefusalCode.PAUSED)
    assert [(i.action, i.sl, i.target_intent_id) for i in applied] == [
        ("modify", 2000.2, "gold:100|u1|L1")
    ]


# --- idempotency ---------------------------------------------------------------------


def test_duplicate_revision_then_no_events() -> None:
    state = user()
    message = parsed(open_signal())
    state = fold(state, decide(state, message))

    assert decide(state, message) == []


def test_older_revision_after_newer_then_no_events() -> None:
    state = user()
    state = fold(state, decide(state, parsed(open_signal(), revision=3)))

    assert decide(state, parsed(open_signal(), revision=2)) == []


def test_refused_message_is_also_decided_once() -> None:
    state = user(status="paused")
    message = parsed(open_signal())
    state = fold(state, decide(state, message))

    assert decide(state, message) == []


def test_reply_with_same_revision_number_is_a_different_message() -> None:
    state = opened()

    assert decide(state, follow_up(breakeven(), message_id=101, revision=1)) != []


def test_open_repeated_under_new_message_never_opens_twice() -> None:
    state = opened()
    completes = parsed(open_signal(), signal_id="gold:100", message_id=105, link="completes")

    event = one_handled(decide(state, completes))

    assert all(i.action != "open" for i in event.intents)


# --- edits of an open ----------------------------------------------------------------


def edit(signal: OpenSignal, revision: int = 2, changes: tuple[str, ...] = ("sl",)) -> Any:
    return parsed(
        signal, revision=revision, link="edit", changes=changes, posted_ns=T0 + 30 * SECOND
    )


def test_edit_changing_sl_then_modify_intent_per_live_leg() -> None:
    state = opened(user(settings=lots(0.02)))

    intents = intents_of(decide(state, edit(open_signal(sl=1992.0))))

    assert [(i.action, i.sl, i.tp) for i in intents] == [
        ("modify", 1992.0, 2005.0),
        ("modify", 1992.0, 2010.0),
    ]
    assert [i.intent_id for i in intents] == [
        "gold:100|u1|L1|modify|m100r2",
        "gold:100|u1|L2|modify|m100r2",
    ]
    assert [i.target_intent_id for i in intents] == ["gold:100|u1|L1", "gold:100|u1|L2"]


def test_edit_changing_one_tp_then_modify_only_that_leg() -> None:
    state = opened(user(settings=lots(0.03)))

    intents = intents_of(
        decide(state, edit(open_signal(tps=(2005.0, 2012.0, 2015.0)), changes=("tps",)))
    )

    assert [(i.leg, i.tp) for i in intents] == [(2, 2012.0)]


def test_edit_without_level_change_then_handled_with_no_intents() -> None:
    event = one_handled(decide(opened(), edit(open_signal(), changes=("rule",))))

    assert event.intents == () and event.note


def test_edit_when_edits_disabled_then_follow_up_disabled() -> None:
    state = opened(user(settings={"follow_ups": {"edits": False}}))

    one_refused(decide(state, edit(open_signal(sl=1992.0))), RefusalCode.FOLLOW_UP_DISABLED)


def test_edit_flipping_side_then_unsafe_and_positions_left() -> None:
    signal = open_signal("sell", sl=2010.0, tps=(1990.0,))

    one_refused(decide(opened(), edit(signal)), RefusalCode.UNSAFE_SIGNAL)


def test_edit_of_a_refused_open_is_decided_as_a_new_open() -> None:
    state = user()
    state = fold(state, decide(state, parsed(open_signal(sl=None))))

    intents = intents_of(decide(state, edit(open_signal(sl=1990.0))))

    assert [i.action for i in intents] == ["open"]


def test_edit_applies_while_paused() -> None:
    state = evolve(opened(), Paused(id="p", ts=T0))

    assert intents_of(decide(state, edit(open_signal(sl=1993.0))))[0].sl == 1993.0


def test_edit_after_legs_closed_then_nothing_to_manage() -> None:
    state = opened()
    intent = state.legs[0]
    closed = report_for(_intent_from(intent), "closed", volume=intent.remaining)
    state = evolve(state, report_event(closed))

    one_refused(decide(state, edit(open_signal(sl=1993.0))), RefusalCode.NOTHING_TO_MANAGE)


def _intent_from(leg: Any) -> OrderIntent:
    return OrderIntent(
        id=leg.intent_id,
        ts=T0,
        intent_id=leg.intent_id,
        user_id="u1",
        account_id=leg.account_id,
        broker=leg.broker,
        action="open",
        signal_id=leg.signal_id,
        leg=leg.leg,
        symbol=leg.symbol,
        side=leg.side,
        volume=leg.volume,
        price=leg.entry,
        sl=leg.sl,
        tp=leg.tp,
    )


# --- modify follow-ups ---------------------------------------------------------------


def test_breakeven_moves_sl_to_each_fill_price() -> None:
    state = opened(user(settings=lots(0.02)))

    intents = intents_of(decide(state, follow_up(breakeven())))

    assert [(i.sl, i.tp) for i in intents] == [(2000.2, 2005.0), (2000.2, 2010.0)]
    assert intents[0].intent_id == "gold:100|u1|L1|modify|m101r1"


def test_breakeven_twice_second_changes_nothing() -> None:
    state = opened()
    state = fold(state, decide(state, follow_up(breakeven())))

    event = one_handled(decide(state, follow_up(breakeven(), message_id=102)))

    assert event.intents == ()


def test_breakeven_disabled_then_follow_up_disabled() -> None:
    state = opened(user(settings={"follow_ups": {"breakeven": False}}))

    event = one_refused(decide(state, follow_up(breakeven())), RefusalCode.FOLLOW_UP_DISABLED)

    assert "follow_ups.breakeven" in event.reason


def test_follow_up_without_legs_then_nothing_to_manage() -> None:
    one_refused(decide(user(), follow_up(breakeven())), RefusalCode.NOTHING_TO_MANAGE)


@pytest.mark.parametrize("action", ["move_sl", "set_sl"])
def test_move_sl_to_a_price(action: str) -> None:
    intents = intents_of(decide(opened(), follow_up(ModifySignal(action=action, value=1995.0))))  # type: ignore[arg-type]

    assert [(i.action, i.sl) for i in intents] == [("modify", 1995.0)]


def test_move_sl_without_value_then_unsafe() -> None:
    one_refused(
        decide(opened(), follow_up(ModifySignal(action="move_sl"))), RefusalCode.UNSAFE_SIGNAL
    )


def test_move_sl_disabled() -> None:
    state = opened(user(settings={"follow_ups": {"move_sl": False}}))

    one_refused(
        decide(state, follow_up(ModifySignal(action="move_sl", value=1995.0))),
        RefusalCode.FOLLOW_UP_DISABLED,
    )


def test_set_tp_list_maps_to_legs_single_value_to_all() -> None:
    state = opened(user(settings=lots(0.02)))

    per_leg = intents_of(
        decide(state, follow_up(ModifySignal(action="set_tp", value=(2007.0, 2012.0))))
    )
    all_legs = intents_of(
        decide(state, follow_up(ModifySignal(action="set_tp", value=2020.0), message_id=102))
    )

    assert [i.tp for i in per_leg] == [2007.0, 2012.0]
    assert [i.tp for i in all_legs] == [2020.0, 2020.0]


def test_set_levels_without_legs_then_nothing_to_manage_naming_the_gap() -> None:
    event = one_refused(
        decide(user(), follow_up(ModifySignal(action="set_levels", sl=1990.0))),
        RefusalCode.NOTHING_TO_MANAGE,
    )

    assert "alert" in event.reason


def test_set_levels_with_legs_amends() -> None:
    state = opened(user(settings={"require_sl": False}), open_signal(sl=None, tps=()))

    intents = intents_of(
        decide(
            state,
            follow_up(
                ModifySignal(action="set_levels", sl=1990.0, tps=(2010.0,)), link="completes"
            ),
        )
    )

    assert [(i.sl, i.tp) for i in intents] == [(1990.0, 2010.0)]


def test_move_entry_of_pending_order() -> None:
    state = opened(user(), open_signal(entry=1997.0, order_type="limit"))

    intents = intents_of(decide(state, follow_up(ModifySignal(action="move_entry", value=1996.0))))

    assert [(i.action, i.price) for i in intents] == [("modify", 1996.0)]


def test_add_entry_is_not_copied() -> None:
    one_refused(
        decide(opened(), follow_up(ModifySignal(action="add_entry", value=1995.0))),
        RefusalCode.FOLLOW_UP_DISABLED,
    )


# --- close and cancel ----------------------------------------------------------------


def test_close_all_closes_every_open_leg_whole() -> None:
    state = opened(user(settings=lots(0.03)))

    intents = intents_of(decide(state, follow_up(close())))

    assert [(i.action, i.volume, i.close_fraction) for i in intents] == [("close", 0.01, 1.0)] * 3
    assert [i.intent_id for i in intents] == [f"gold:100|u1|L{n}|close|m101r1" for n in (1, 2, 3)]


def test_close_half_on_three_legs_closes_half_of_each_leg() -> None:
    # legs 0.04 / 0.03 / 0.03: half of each, rounded down to the step; 0.01 of 0.03 would
    # leave 0.02, fine; so 0.02 / 0.01 / 0.01
    state = opened(user(settings=lots(0.1)))

    intents = intents_of(decide(state, follow_up(close(0.5, "partial"))))

    assert [(i.leg, i.volume, i.close_fraction) for i in intents] == [
        (1, 0.02, 0.5),
        (2, 0.01, 0.5),
        (3, 0.01, 0.5),
    ]


def test_close_half_of_minimum_legs_closes_them_whole_and_says_so() -> None:
    state = opened(user(settings=lots(0.03)))

    event = one_handled(decide(state, follow_up(close(0.5))))

    assert [(i.volume, i.close_fraction) for i in event.intents] == [(0.01, 1.0)] * 3
    assert "closed whole" in event.note


def test_close_partial_without_fraction_means_half() -> None:
    state = opened(user(settings=lots(0.04)), open_signal(tps=(2010.0,)))

    assert [i.volume for i in intents_of(decide(state, follow_up(close(None, "partial"))))] == [
        0.02
    ]


def test_close_partial_disabled() -> None:
    state = opened(user(settings={"follow_ups": {"partial_close": False}}))

    one_refused(decide(state, follow_up(close(0.5))), RefusalCode.FOLLOW_UP_DISABLED)


def test_close_disabled() -> None:
    state = opened(user(settings={"follow_ups": {"close": False}}))

    one_refused(decide(state, follow_up(close())), RefusalCode.FOLLOW_UP_DISABLED)


def test_close_by_side_only_that_side() -> None:
    state = opened(user(settings=lots(0.02)))

    assert (
        decide(state, follow_up(close(which="sell")))[0].code == RefusalCode.NOTHING_TO_MANAGE.value
    )
    assert len(intents_of(decide(state, follow_up(close(which="buy"), message_id=102)))) == 2


def test_close_layered_selector_then_nothing_to_manage() -> None:
    one_refused(
        decide(opened(), follow_up(close(which="worst_entry"))), RefusalCode.NOTHING_TO_MANAGE
    )


def test_full_close_cancels_pending_orders_partial_leaves_them() -> None:
    state = opened(user(), open_signal(entry=1997.0, order_type="limit"))

    full = intents_of(decide(state, follow_up(close())))
    partial = one_handled(decide(state, follow_up(close(0.5), message_id=102)))

    assert [i.action for i in full] == ["cancel"]
    assert partial.intents == () and "pending" in partial.note


def test_close_applies_while_paused() -> None:
    state = evolve(opened(), Paused(id="p", ts=T0))

    assert intents_of(decide(state, follow_up(close())))


def test_close_is_not_stale_checked() -> None:
    assert intents_of(decide(opened(), follow_up(close()), now=T0 + 3600 * SECOND))


def test_edit_of_close_that_changes_nothing_closes_nothing_more() -> None:
    state = opened(user(settings=lots(0.04)), open_signal(tps=(2010.0,)))
    state = fold(state, decide(state, follow_up(close(0.5))))

    event = one_handled(
        decide(state, follow_up(close(0.5), revision=2, link="edit", changes=("rule",)))
    )

    assert event.intents == ()


def test_cancel_pending_legs() -> None:
    state = opened(user(settings=lots(0.02)), open_signal(entry=1997.0, order_type="limit"))

    intents = intents_of(decide(state, follow_up(cancel())))

    assert [(i.action, i.target_intent_id) for i in intents] == [
        ("cancel", "gold:100|u1|L1"),
        ("cancel", "gold:100|u1|L2"),
    ]


def test_cancel_unfilled_pending_before_broker_acceptance() -> None:
    state = opened(user(), open_signal(entry=1997.0, order_type="limit"), fill=False)

    assert [i.action for i in intents_of(decide(state, follow_up(cancel())))] == ["cancel"]


def test_cancel_with_only_market_positions_then_nothing_to_manage() -> None:
    one_refused(decide(opened(), follow_up(cancel())), RefusalCode.NOTHING_TO_MANAGE)


def test_cancel_other_side_then_nothing_to_manage() -> None:
    state = opened(user(), open_signal(entry=1997.0, order_type="limit"))

    one_refused(decide(state, follow_up(cancel("sell"))), RefusalCode.NOTHING_TO_MANAGE)


def test_cancel_disabled() -> None:
    state = opened(
        user(settings={"follow_ups": {"cancel": False}}),
        open_signal(entry=1997.0, order_type="limit"),
    )

    one_refused(decide(state, follow_up(cancel())), RefusalCode.FOLLOW_UP_DISABLED)


def test_follow_up_for_unsubscribed_channel_with_live_legs_still_applies() -> None:
    state = evolve(opened(), Unsubscribed(id="x", ts=T0, channel="gold"))

    assert intents_of(decide(state, follow_up(close())))


def test_follow_up_without_account_then_no_account() -> None:
    state = evolve(opened(), AccountUnlinked(id="x", ts=T0, account_id="paper-u1"))

    one_refused(decide(state, follow_up(close())), RefusalCode.NO_ACCOUNT)


def test_close_needs_no_quote() -> None:
    assert intents_of(decide(opened(), follow_up(close()), NO_MARKET))


# --- several instructions in one message ---------------------------------------------


def test_also_instructions_decided_in_order_with_distinct_ids() -> None:
    state = opened(user(settings=lots(0.04)), open_signal(tps=(2010.0,)))
    message = follow_up(msgspec.structs.replace(close(0.5), also=(breakeven(),)))

    events = decide(state, message)

    assert [e.kind for e in events] == ["close", "modify"]
    assert [e.id for e in events] == ["gold:100|u1|m101r1", "gold:100|u1|m101r1|i1"]
    assert events[1].intents[0].intent_id == "gold:100|u1|L1|modify|m101r1i1"


def test_also_open_after_open_is_not_copied_and_noted() -> None:
    message = parsed(msgspec.structs.replace(open_signal(), also=(open_signal(symbol="EURUSD"),)))

    events = decide(user(), message)

    assert len(events) == 1 and "not copied" in events[0].note


def test_noise_with_close_also_decides_the_close() -> None:
    message = follow_up(msgspec.structs.replace(noise(), also=(close(),)))

    assert [e.kind for e in decide(opened(), message)] == ["close"]


def test_decided_events_fold_into_legs_pending_risk() -> None:
    state = user(settings=lots(0.03))

    state = fold(state, decide(state, parsed(open_signal())))

    assert [(leg.leg, leg.status, leg.volume) for leg in state.legs] == [
        (1, "pending_risk", 0.01),
        (2, "pending_risk", 0.01),
        (3, "pending_risk", 0.01),
    ]
    assert state.today.orders == 3


def test_internal_refusal_takes_the_decisions_id_so_a_redelivery_decides_nothing_again() -> None:
    state = user()
    signal = parsed(open_signal())

    refusal = internal_refusal(state, signal, T0, OverflowError("int too large"))
    after = decide_signal(evolve(state, refusal), signal, gold_market(), T0)

    assert refusal.code == "internal" and "OverflowError" in refusal.reason
    assert refusal.id == signal_event_id(signal, state.user_id)
    assert after == []
