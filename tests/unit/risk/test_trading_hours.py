"""Trading hours and days in the user's IANA zone, with DST and overnight windows."""

from __future__ import annotations

import pytest

from contracts.refusals import RefusalCode
from services.risk import checks

from .stubs import at, hours, intent, user, view

NY = "America/New_York"
WEEKDAYS = (0, 1, 2, 3, 4)


def _check(now_ns, **h):
    state = user(trading_hours=hours(**h))
    return checks.check_trading_hours(intent(), view(state, now_ns=now_ns))


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        ("2026-01-07 09:29", False),
        ("2026-01-07 09:30", True),  # start is inclusive
        ("2026-01-07 15:59", True),
        ("2026-01-07 16:00", False),  # end is exclusive
    ],
)
def test_window_edges_in_user_zone(local, inside):
    refusal = _check(at(local, NY), timezone=NY, start="09:30", end="16:00", days=WEEKDAYS)
    assert (refusal is None) == inside


def test_same_utc_instant_inside_one_zone_outside_another():
    now = at("2026-01-07 14:00")  # 14:00 UTC = 09:00 New York = 23:00 Tokyo
    assert _check(now, timezone="Europe/London", start="08:00", end="17:00") is None
    assert _check(now, timezone=NY, start="09:30", end="16:00") is not None
    assert _check(now, timezone="Asia/Tokyo", start="09:00", end="15:00") is not None


def test_dst_spring_forward_new_york():
    # 13:45 UTC is 08:45 EST on Friday 6 March and 09:45 EDT on Monday 9 March 2026
    window = {"timezone": NY, "start": "09:30", "end": "16:00", "days": WEEKDAYS}
    assert _check(at("2026-03-06 13:45"), **window) is not None
    assert _check(at("2026-03-09 13:45"), **window) is None


def test_dst_fall_back_london():
    # 07:30 UTC is 08:30 BST on Friday 23 Oct and 07:30 GMT on Monday 26 Oct 2026
    window = {"timezone": "Europe/London", "start": "08:00", "end": "17:00", "days": WEEKDAYS}
    assert _check(at("2026-10-23 07:30"), **window) is None
    assert _check(at("2026-10-26 07:30"), **window) is not None


def test_day_boundary_is_local_not_utc():
    # Friday 23:30 in New York is Saturday 04:30 UTC: still Friday for the user
    now = at("2026-01-09 23:30", NY)
    assert _check(now, timezone=NY, days=WEEKDAYS) is None
    assert _check(now, timezone="UTC", days=WEEKDAYS) is not None


def test_weekend_refused_with_local_day_named():
    refusal = _check(at("2026-01-10 12:00", NY), timezone=NY, days=WEEKDAYS)
    assert refusal is not None and refusal.code == RefusalCode.OUTSIDE_TRADING_HOURS
    assert "Saturday 12:00 America/New_York" in refusal.reason and "Mon, Tue" in refusal.reason


@pytest.mark.parametrize(
    ("local", "inside"),
    [
        ("2026-01-09 22:30", True),  # Friday evening, Friday is a trading day
        ("2026-01-10 05:59", True),  # Saturday early morning belongs to Friday's session
        ("2026-01-10 06:00", False),
        ("2026-01-10 22:30", False),  # Saturday's session: not a trading day
        ("2026-01-05 03:00", False),  # Monday 03:00 belongs to Sunday's session
        ("2026-01-07 12:00", False),  # midday: between sessions
    ],
)
def test_overnight_window_belongs_to_the_day_it_starts(local, inside):
    refusal = _check(at(local), start="22:00", end="06:00", days=WEEKDAYS)
    assert (refusal is None) == inside


def test_start_equal_end_is_a_whole_day():
    assert _check(at("2026-01-07 03:00"), start="00:00", end="00:00") is None


def test_default_hours_allow_any_time():
    assert _check(at("2026-01-11 23:59")) is None


def test_no_days_means_never():
    assert _check(at("2026-01-07 12:00"), days=()) is not None


def test_unknown_zone_fails_closed_naming_it():
    refusal = _check(at("2026-01-07 12:00"), timezone="Mars/Olympus")
    assert refusal is not None and "Mars/Olympus" in refusal.reason


def test_malformed_time_fails_closed():
    assert _check(at("2026-01-07 12:00"), start="9h30") is not None


def test_hours_do_not_block_a_close_or_modify():
    state = user(trading_hours=hours(days=()))
    for action in ("close", "modify", "cancel"):
        assert checks.check_trading_hours(intent(action=action), view(state)) is None
