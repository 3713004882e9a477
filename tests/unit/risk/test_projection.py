"""The exposure projection: evolve() over user events, decisions, reports, kill switches, quotes."""

from __future__ import annotations

import msgspec

from contracts.users import AccountUnlinked, SignalRefused, UserDeleted
from services.risk.projection import (
    MarketState,
    UserExposure,
    evolve,
    evolve_market,
    open_count,
    symbol_volume,
)

from .stubs import (
    ACCOUNT,
    NOW,
    SECOND,
    applied,
    close,
    decided,
    hours,
    intent,
    kill,
    linked,
    modify,
    paused,
    quote,
    registered,
    report,
    resumed,
    settings_changed,
    stopped,
    user,
)


def fold(state, *events):
    for event in events:
        state = evolve(state, event)
    return state


def test_user_events_set_status_account_and_limits():
    state = fold(
        UserExposure(user_id="u1"),
        registered(),
        linked("acc-7"),
        settings_changed(max_lot_per_order=0.5),
    )
    assert state.status == "active" and state.account_id == "acc-7"
    assert state.limits.max_lot_per_order == 0.5
    assert fold(state, paused("x")).status == "paused"
    assert fold(state, stopped()).status == "stopped"
    assert fold(state, stopped(), resumed()).status == "active"
    assert fold(state, AccountUnlinked(id="e", ts=NOW, account_id="acc-7")).account_id is None
    assert fold(state, AccountUnlinked(id="e", ts=NOW, account_id="other")).account_id == "acc-7"


def test_deleted_is_final():
    state = fold(user(), UserDeleted(id="d", ts=NOW), resumed(), registered(), linked())
    assert state.status == "deleted" and state.account_id is None


def test_events_risk_does_not_use_leave_state_unchanged():
    state = user()
    other = SignalRefused(
        id="s", ts=NOW, signal_id="x", revision=1, message_id=1, code="stale_signal", reason="old"
    )
    assert evolve(state, other) is state


def test_approved_open_adds_pending_exposure_and_rejected_does_not():
    a, b = intent(volume=0.3), intent(volume=0.2)
    state = user(decided(a), decided(b, approved=False))
    assert open_count(state) == 1 and symbol_volume(state, "XAUUSD") == 0.3
    assert state.positions[a.intent_id].stage == "pending"
    assert state.recent_orders_ns == (NOW,)


def test_fill_then_partial_close_then_full_close():
    opened = intent(volume=0.3)
    closing = close(opened, close_fraction=0.5)
    state = user(decided(opened), applied(report(opened, "filled", volume=0.3, position_id="P1")))
    assert state.positions[opened.intent_id].stage == "open"
    state = fold(
        state,
        decided(closing),
        applied(report(closing, "closed", volume=0.1, remaining_volume=0.2, profit=5.0)),
    )
    assert abs(symbol_volume(state, "XAUUSD") - 0.2) < 1e-9 and state.actions == {}
    assert state.realised_today == 5.0
    final = close(opened)
    state = fold(
        state,
        decided(final),
        applied(report(final, "closed", volume=0.2, remaining_volume=0.0, profit=-2.0)),
    )
    assert open_count(state) == 0 and state.realised_today == 3.0


def test_broker_rejection_of_open_frees_the_exposure():
    opened = intent()
    state = user(decided(opened), applied(report(opened, "rejected")))
    assert open_count(state) == 0


def test_cancel_of_pending_order_removes_it():
    opened = intent(order_type="limit")
    cancel = intent(action="cancel", target_intent_id=opened.intent_id, volume=0.0)
    state = user(decided(opened), applied(report(opened, "accepted", position_id="O1")))
    assert state.positions[opened.intent_id].stage == "working"
    state = fold(state, decided(cancel), applied(report(cancel, "cancelled")))
    assert open_count(state) == 0


def test_sl_hit_reported_against_position_id_closes_it():
    opened = intent()
    state = user(decided(opened), applied(report(opened, "filled", volume=0.1, position_id="P9")))
    unknown_close = report(intent(action="close"), "closed", position_id="P9", volume=0.1)
    assert open_count(fold(state, applied(unknown_close))) == 0


def test_modified_report_moves_the_known_sl():
    opened = intent(sl=2640.0)
    change = modify(opened, sl=2650.0)
    state = user(decided(opened), decided(change), applied(report(change, "modified", sl=2650.0)))
    assert state.positions[opened.intent_id].sl == 2650.0


def test_first_balance_sets_day_opening_before_its_own_pnl():
    state = user(
        applied(report(intent(), "closed", profit=-20.0, balance=980.0, equity=975.0, volume=0.1))
    )
    assert state.day == "2026-01-07" and state.day_open_balance == 1000.0
    assert state.balance == 980.0 and state.equity == 975.0 and state.realised_today == -20.0


def test_new_day_opens_at_last_balance_and_resets_realised():
    first = report(intent(), "closed", profit=-20.0, balance=980.0, volume=0.1)
    next_day = report(
        intent(), "closed", profit=-5.0, balance=975.0, volume=0.1, reported_ns=NOW + 86400 * SECOND
    )
    state = user(applied(first), applied(next_day))
    assert (
        state.day == "2026-01-08"
        and state.day_open_balance == 980.0
        and state.realised_today == -5.0
    )


def test_day_is_counted_in_the_users_zone():
    # 2026-01-07 10:00 UTC is already 2026-01-07 19:00 in Tokyo; 16:00 UTC is the 8th there
    late = report(
        intent(), "closed", profit=-1.0, balance=999.0, reported_ns=NOW + 6 * 3600 * SECOND
    )
    state = user(applied(late), trading_hours=hours(timezone="Asia/Tokyo"))
    assert state.day == "2026-01-08"


def test_kill_switch_on_and_off():
    assert user(kill(True, "why")).kill_switch
    assert not user(kill(True), kill(False)).kill_switch


def test_market_keeps_latest_quote_and_global_switch():
    market = evolve_market(MarketState(), quote("XAUUSD", bid=1.0))
    market = evolve_market(market, quote("XAUUSD", bid=2.0))
    assert market.quotes["XAUUSD"].bid == 2.0
    assert evolve_market(market, kill(True, "ops", user_id=None)).kill_switch
    assert not evolve_market(market, kill(True, "one user")).kill_switch


def test_snapshot_round_trip_is_lossless():
    opened = intent()
    state = user(decided(opened), applied(report(opened, "filled", volume=0.1, balance=1000.0)))
    back = msgspec.json.decode(msgspec.json.encode(state), type=UserExposure)
    assert back == state and back.account_id == ACCOUNT
