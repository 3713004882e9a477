"""Each risk check alone: pure, no servers, many cases."""

from __future__ import annotations

import math

import pytest

from contracts.refusals import RefusalCode
from services.risk import checks
from services.risk.projection import UserExposure

from .stubs import (
    ACCOUNT,
    NOW,
    SECOND,
    USER,
    applied,
    close,
    decided,
    intent,
    kill,
    market,
    modify,
    paused,
    quote,
    report,
    resumed,
    stopped,
    user,
    view,
)

# --- well-formed, user known, account -----------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"side": None}, RefusalCode.NO_SIDE),
        ({"volume": 0.0}, RefusalCode.LOT_BELOW_MINIMUM),
        ({"volume": -0.1}, RefusalCode.LOT_BELOW_MINIMUM),
        ({"volume": math.nan}, RefusalCode.LOT_BELOW_MINIMUM),
        ({"volume": math.inf}, RefusalCode.LOT_BELOW_MINIMUM),
        ({}, None),
    ],
)
def test_well_formed_open(changes, code):
    refusal = checks.check_well_formed(intent(**changes), view())
    assert (refusal.code if refusal else None) == code


def test_well_formed_when_close_without_volume_then_passes():
    assert checks.check_well_formed(intent(action="close", volume=0.0, side=None), view()) is None


def test_user_known_when_no_exposure_then_no_account():
    refusal = checks.check_user_known(intent(), view(UserExposure(user_id=USER)))
    assert refusal is not None and refusal.code == RefusalCode.NO_ACCOUNT
    assert "u1 is not known" in refusal.reason


def test_user_known_when_view_has_no_user_then_no_account():
    refusal = checks.check_user_known(intent(), checks.RiskView(user=None, now_ns=NOW))
    assert refusal is not None and refusal.code == RefusalCode.NO_ACCOUNT


def test_user_known_when_deleted_then_no_account():
    from contracts.users import UserDeleted

    state = user(UserDeleted(id="d", ts=NOW))
    refusal = checks.check_user_known(intent(), view(state))
    assert refusal is not None and "deleted" in refusal.reason


def test_account_when_other_account_then_no_account_naming_both():
    refusal = checks.check_account(intent(account_id="acc-9"), view())
    assert refusal is not None and refusal.code == RefusalCode.NO_ACCOUNT
    assert "acc-9" in refusal.reason and ACCOUNT in refusal.reason


def test_account_when_none_linked_then_no_account():
    state = UserExposure(user_id=USER, status="active")
    refusal = checks.check_account(intent(), view(state))
    assert refusal is not None and "no linked account" in refusal.reason


# --- paused / stopped ------------------------------------------------------------------


@pytest.mark.parametrize("action", ["open", "modify", "close", "cancel"])
def test_stopped_blocks_every_action(action):
    refusal = checks.check_stopped(intent(action=action), view(user(stopped("margin call"))))
    assert refusal is not None and refusal.code == RefusalCode.STOPPED
    assert "margin call" in refusal.reason


@pytest.mark.parametrize(
    ("action", "blocked"), [("open", True), ("modify", False), ("close", False)]
)
def test_paused_blocks_opens_only(action, blocked):
    refusal = checks.check_paused(intent(action=action), view(user(paused("holiday"))))
    assert (refusal is not None) == blocked
    if refusal:
        assert refusal.code == RefusalCode.PAUSED and "holiday" in refusal.reason


def test_paused_then_resumed_then_open_passes():
    assert checks.check_paused(intent(), view(user(paused(), resumed()))) is None


# --- kill switches -----------------------------------------------------------------------


def test_global_kill_when_on_then_refused_with_reason():
    refusal = checks.check_global_kill(
        intent(), view(market=market(kill_switch=True, reason="CPI"))
    )
    assert (
        refusal is not None and refusal.code == RefusalCode.KILL_SWITCH and "CPI" in refusal.reason
    )


def test_user_kill_when_on_then_refused_and_off_again_passes():
    on = user(kill(True, "too many losses"))
    refusal = checks.check_user_kill(intent(), view(on))
    assert refusal is not None and "too many losses" in refusal.reason
    assert checks.check_user_kill(intent(), view(user(kill(True), kill(False)))) is None


# --- max lot -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("volume", "limit", "refused"),
    [
        (2.5, 1.0, True),
        (1.0, 1.0, False),
        (1.0000000001, 1.0, False),
        (1.01, 1.0, True),
        (0.01, None, False),
    ],
)
def test_max_lot(volume, limit, refused):
    refusal = checks.check_max_lot(intent(volume=volume), view(user(max_lot_per_order=limit)))
    assert (refusal is not None) == refused


def test_max_lot_reason_names_both_values():
    refusal = checks.check_max_lot(intent(volume=2.5), view(user(max_lot_per_order=1.0)))
    assert refusal is not None
    assert refusal.reason == "order of 2.5 lots is above this account's max 1 lot per order"


# --- open positions, per symbol, volume -------------------------------------------------


def _with_opens(*opens, **risk):
    return user(*(decided(o) for o in opens), **risk)


def test_open_positions_counts_pending_approvals():
    state = _with_opens(intent(), intent(), max_open_positions=2)
    refusal = checks.check_open_positions(intent(), view(state))
    assert refusal is not None and refusal.code == RefusalCode.MAX_OPEN_POSITIONS
    assert "has 2" in refusal.reason


def test_open_positions_when_one_closed_then_room_again():
    first = intent()
    state = _with_opens(first, intent(), max_open_positions=2)
    state = user_fold(state, applied(report(first, "filled", volume=0.1)))
    state = user_fold(
        state, applied(report(first, "closed", action="open", volume=0.1, remaining_volume=0.0))
    )
    assert checks.check_open_positions(intent(), view(state)) is None


def user_fold(state, *events):
    from services.risk.projection import evolve

    for event in events:
        state = evolve(state, event)
    return state


def test_symbol_positions_counts_only_that_symbol():
    state = _with_opens(
        intent(symbol="EURUSD"), intent(symbol="XAUUSD"), max_positions_per_symbol=1
    )
    refusal = checks.check_symbol_positions(intent(symbol="XAUUSD"), view(state))
    assert refusal is not None and refusal.code == RefusalCode.MAX_SYMBOL_POSITIONS
    assert checks.check_symbol_positions(intent(symbol="GBPUSD"), view(state)) is None


@pytest.mark.parametrize(
    ("held", "new", "refused"), [(0.5, 0.5, False), (0.5, 0.51, True), (0.0, 1.5, True)]
)
def test_symbol_volume(held, new, refused):
    opens = [intent(volume=held)] if held else []
    state = _with_opens(*opens, max_volume_per_symbol=1.0)
    refusal = checks.check_symbol_volume(intent(volume=new), view(state))
    assert (refusal is not None) == refused
    if refusal:
        assert (
            refusal.code == RefusalCode.MAX_SYMBOL_VOLUME
            and "max per symbol is 1 lot" in refusal.reason
        )


# --- symbols --------------------------------------------------------------------------


def test_symbol_blocked_matches_broker_or_signal_name_any_case():
    state = user(blocked_symbols=("xauusd",))
    refusal = checks.check_symbol_blocked(
        intent(symbol="XAUUSD.m", signal_symbol="XAUUSD"), view(state)
    )
    assert refusal is not None and refusal.code == RefusalCode.SYMBOL_BLOCKED
    assert (
        checks.check_symbol_blocked(intent(symbol="EURUSD", signal_symbol="EURUSD"), view(state))
        is None
    )


def test_symbol_blocked_does_not_stop_a_close():
    state = user(blocked_symbols=("XAUUSD",))
    assert checks.check_symbol_blocked(intent(action="close"), view(state)) is None


def test_symbol_allowed_when_list_empty_then_all_allowed():
    assert checks.check_symbol_allowed(intent(symbol="BTCUSD"), view(user())) is None


def test_symbol_allowed_when_not_listed_then_refused_naming_list():
    state = user(allowed_symbols=("EURUSD", "GBPUSD"))
    refusal = checks.check_symbol_allowed(intent(symbol="XAUUSD"), view(state))
    assert refusal is not None and refusal.code == RefusalCode.SYMBOL_NOT_ALLOWED
    assert "EURUSD, GBPUSD" in refusal.reason


# --- rate limit --------------------------------------------------------------------------


def _approved_at(*times, limit=3):
    return user(*(decided(intent(), decided_ns=t) for t in times), max_orders_per_minute=limit)


def test_rate_when_limit_reached_within_window_then_refused():
    state = _approved_at(NOW - 50 * SECOND, NOW - 30 * SECOND, NOW - 1 * SECOND)
    refusal = checks.check_rate(intent(), view(state))
    assert refusal is not None and refusal.code == RefusalCode.RATE_LIMITED
    assert "3 orders in the last 60 s" in refusal.reason


def test_rate_when_oldest_exactly_60s_ago_then_out_of_window():
    state = _approved_at(NOW - 60 * SECOND, NOW - 30 * SECOND, NOW - 1 * SECOND)
    assert checks.check_rate(intent(), view(state)) is None


def test_rate_when_oldest_one_ns_inside_window_then_counted():
    state = _approved_at(NOW - 60 * SECOND + 1, NOW - 30 * SECOND, NOW - 1 * SECOND)
    assert checks.check_rate(intent(), view(state)) is not None


def test_rate_rejections_do_not_count():
    state = user(*(decided(intent(), approved=False) for _ in range(5)), max_orders_per_minute=1)
    assert checks.check_rate(intent(), view(state)) is None


def test_rate_none_means_no_limit():
    state = _approved_at(*(NOW - i for i in range(100)), limit=None)
    assert checks.check_rate(intent(), view(state)) is None


def test_rate_window_prunes_old_times_in_state():
    state = _approved_at(NOW - 120 * SECOND, NOW - 90 * SECOND, NOW, limit=10)
    assert state.recent_orders_ns == (NOW,)


# --- daily loss -------------------------------------------------------------------------


def _day(*reports, **risk):
    return user(*(applied(r) for r in reports), **risk)


def _loss_report(profit, balance, equity=None, **kw):
    opened = intent()
    return report(opened, "closed", profit=profit, balance=balance, equity=equity, volume=0.1, **kw)


def test_daily_loss_amount_reached_by_realised_loss():
    state = _day(_loss_report(-150.0, 850.0), daily_loss_limit=100.0)
    refusal = checks.check_daily_loss(intent(), view(state))
    assert refusal is not None and refusal.code == RefusalCode.DAILY_LOSS_LIMIT
    assert "150.00" in refusal.reason and "100.00" in refusal.reason


def test_daily_loss_below_amount_passes():
    state = _day(_loss_report(-50.0, 950.0), daily_loss_limit=100.0)
    assert checks.check_daily_loss(intent(), view(state)) is None


def test_daily_loss_pct_of_opening_balance_on_equity():
    # opened the day at 1000 (first report: balance 990 after a -10 close); equity now 940
    state = _day(_loss_report(-10.0, 990.0, equity=940.0), daily_loss_limit_pct=5.0)
    refusal = checks.check_daily_loss(intent(), view(state))
    assert refusal is not None and "5% of the day's opening balance 1,000.00" in refusal.reason


def test_daily_loss_pct_not_reached_passes():
    state = _day(_loss_report(-10.0, 990.0, equity=980.0), daily_loss_limit_pct=5.0)
    assert checks.check_daily_loss(intent(), view(state)) is None


def test_daily_loss_resets_next_day_in_user_zone():
    state = _day(_loss_report(-150.0, 850.0), daily_loss_limit=100.0)
    next_day = NOW + 24 * 3600 * SECOND
    assert checks.check_daily_loss(intent(), view(state, now_ns=next_day)) is None


def test_daily_loss_without_any_balance_known_then_pct_cannot_bite():
    state = user(daily_loss_limit_pct=1.0)
    assert checks.check_daily_loss(intent(), view(state)) is None


def test_daily_loss_does_not_block_a_close():
    state = _day(_loss_report(-150.0, 850.0), daily_loss_limit=100.0)
    assert checks.check_daily_loss(intent(action="close"), view(state)) is None


# --- spread ------------------------------------------------------------------------------


def test_spread_too_wide_names_spread_and_max():
    state = user(max_spread_pips=3.0)
    refusal = checks.check_spread(intent(), view(state, market=market(quote(spread_pips=5.0))))
    assert refusal is not None and refusal.code == RefusalCode.SPREAD_TOO_WIDE
    assert "5.0 pips" in refusal.reason and "max is 3 pips" in refusal.reason


def test_spread_within_max_passes():
    state = user(max_spread_pips=3.0)
    assert checks.check_spread(intent(), view(state, market=market(quote(spread_pips=3.0)))) is None


def test_spread_when_no_quote_then_fail_closed_no_price():
    refusal = checks.check_spread(intent(), view(user(max_spread_pips=3.0)))
    assert refusal is not None and refusal.code == RefusalCode.NO_PRICE


def test_spread_when_quote_stale_then_no_price():
    old = quote(ts=NOW - 120 * SECOND)
    refusal = checks.check_spread(intent(), view(user(max_spread_pips=3.0), market=market(old)))
    assert (
        refusal is not None
        and refusal.code == RefusalCode.NO_PRICE
        and "120 s old" in refusal.reason
    )


def test_spread_uses_signal_symbol_quote_for_broker_symbol():
    state = user(max_spread_pips=3.0)
    refusal = checks.check_spread(
        intent(symbol="XAUUSD.m", signal_symbol="XAUUSD"),
        view(state, market=market(quote(spread_pips=9))),
    )
    assert refusal is not None and refusal.code == RefusalCode.SPREAD_TOO_WIDE


def test_spread_without_limit_needs_no_quote():
    assert checks.check_spread(intent(), view(user())) is None


# --- reduces risk ----------------------------------------------------------------------


def test_reduces_risk_close_and_cancel():
    assert checks.reduces_risk(intent(action="close"), None)
    assert checks.reduces_risk(intent(action="cancel"), None)
    assert not checks.reduces_risk(intent(), None)


@pytest.mark.parametrize(
    ("side", "old_sl", "new_sl", "reduces"),
    [
        ("buy", 2640.0, 2650.0, True),  # breakeven on a buy
        ("buy", 2640.0, 2630.0, False),  # wider on a buy
        ("sell", 2660.0, 2650.0, True),
        ("sell", 2660.0, 2670.0, False),
        ("buy", None, 2640.0, True),  # a stop where there was none
        ("buy", 2640.0, None, False),  # a TP-only change
    ],
)
def test_reduces_risk_sl_moves(side, old_sl, new_sl, reduces):
    opened = intent(side=side, sl=old_sl)
    state = user(decided(opened))
    assert checks.reduces_risk(modify(opened, sl=new_sl), state) == reduces


def test_reduces_risk_modify_of_unknown_position_is_not_trusted():
    assert not checks.reduces_risk(modify(intent(), sl=1.0), user())


def test_close_helper_targets_the_open_leg():
    opened = intent()
    assert close(opened).target_intent_id == opened.intent_id
