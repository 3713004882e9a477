"""evaluate(): the fixed order of the checks, reduce-only intents, the verdict's shape."""

from __future__ import annotations

from contracts.refusals import RefusalCode
from services.risk.checks import LIMIT_CHECKS, STATE_CHECKS, evaluate
from services.risk.projection import UserExposure

from .stubs import (
    NOW,
    applied,
    close,
    decided,
    hours,
    intent,
    kill,
    market,
    modify,
    paused,
    quote,
    report,
    stopped,
    user,
    view,
)


def test_within_limits_then_approved_with_intent_whole():
    opened = intent(correlation_id="sig-1")
    verdict = evaluate(opened, view())
    assert verdict.approved and verdict.code == "" and verdict.intent == opened
    assert verdict.decided_ns == NOW and verdict.causation_id == opened.id
    assert verdict.correlation_id == "sig-1"


def test_first_refusal_wins_in_documented_order():
    # paused AND kill switch AND too big: paused comes first
    state = user(paused(), kill(True), max_lot_per_order=0.01)
    assert evaluate(intent(volume=5.0), view(state)).code == RefusalCode.PAUSED
    # kill switch before max lot
    state = user(kill(True), max_lot_per_order=0.01)
    assert evaluate(intent(volume=5.0), view(state)).code == RefusalCode.KILL_SWITCH


def test_check_order_is_the_documented_one():
    names = [c.__name__ for c in (*STATE_CHECKS, *LIMIT_CHECKS)]
    assert names == [
        "check_well_formed",
        "check_user_known",
        "check_account",
        "check_stopped",
        "check_paused",
        "check_global_kill",
        "check_user_kill",
        "check_symbol_blocked",
        "check_symbol_allowed",
        "check_trading_hours",
        "check_rate",
        "check_max_lot",
        "check_open_positions",
        "check_symbol_positions",
        "check_symbol_volume",
        "check_daily_loss",
        "check_spread",
    ]


def test_unknown_user_fails_closed():
    verdict = evaluate(intent(), view(UserExposure(user_id="u1")))
    assert not verdict.approved and verdict.code == RefusalCode.NO_ACCOUNT


def test_close_under_global_kill_switch_then_approved():
    opened = intent()
    state = user(decided(opened))
    verdict = evaluate(close(opened), view(state, market=market(kill_switch=True, reason="NFP")))
    assert verdict.approved and "reduces risk" in verdict.reason


def test_open_under_global_kill_switch_then_refused():
    verdict = evaluate(intent(), view(market=market(kill_switch=True, reason="NFP")))
    assert (
        not verdict.approved and verdict.code == RefusalCode.KILL_SWITCH and "NFP" in verdict.reason
    )


def test_tighter_sl_under_user_kill_switch_then_approved_but_wider_refused():
    opened = intent(side="buy", sl=2640.0)
    state = user(decided(opened), kill(True, "drawdown"))
    assert evaluate(modify(opened, sl=2650.0), view(state)).approved
    wider = evaluate(modify(opened, sl=2600.0), view(state))
    assert not wider.approved and wider.code == RefusalCode.KILL_SWITCH


def test_close_past_daily_loss_and_outside_hours_then_approved():
    opened = intent()
    loss = report(intent(), "closed", profit=-500.0, balance=500.0, volume=0.1)
    state = user(
        decided(opened), applied(loss), daily_loss_limit=100.0, trading_hours=hours(days=())
    )
    assert not evaluate(intent(), view(state)).approved
    assert evaluate(close(opened), view(state)).approved


def test_close_when_stopped_then_refused():
    opened = intent()
    verdict = evaluate(close(opened), view(user(decided(opened), stopped())))
    assert not verdict.approved and verdict.code == RefusalCode.STOPPED


def test_close_when_paused_then_approved():
    opened = intent()
    assert evaluate(close(opened), view(user(decided(opened), paused()))).approved


def test_close_for_another_account_then_refused_even_though_it_reduces_risk():
    verdict = evaluate(intent(action="close", account_id="acc-other"), view())
    assert not verdict.approved and verdict.code == RefusalCode.NO_ACCOUNT


def test_modify_that_widens_sl_is_rate_limited_but_not_lot_checked():
    opened = intent(sl=2640.0, volume=0.5)
    state = user(decided(opened), max_lot_per_order=0.1, max_orders_per_minute=1)
    verdict = evaluate(modify(opened, sl=2600.0), view(state))
    assert verdict.code == RefusalCode.RATE_LIMITED


def test_every_limit_reached_alone_gives_its_code():
    cases = [
        (user(blocked_symbols=("XAUUSD",)), RefusalCode.SYMBOL_BLOCKED),
        (user(allowed_symbols=("EURUSD",)), RefusalCode.SYMBOL_NOT_ALLOWED),
        (user(max_lot_per_order=0.01), RefusalCode.MAX_LOT),
        (user(decided(intent()), max_open_positions=1), RefusalCode.MAX_OPEN_POSITIONS),
        (user(decided(intent()), max_positions_per_symbol=1), RefusalCode.MAX_SYMBOL_POSITIONS),
        (user(max_volume_per_symbol=0.05), RefusalCode.MAX_SYMBOL_VOLUME),
        (user(max_spread_pips=1.0), RefusalCode.NO_PRICE),
    ]
    for state, code in cases:
        assert evaluate(intent(), view(state)).code == code


def test_spread_too_wide_through_evaluate():
    verdict = evaluate(
        intent(), view(user(max_spread_pips=2.0), market=market(quote(spread_pips=4.5)))
    )
    assert verdict.code == RefusalCode.SPREAD_TOO_WIDE
