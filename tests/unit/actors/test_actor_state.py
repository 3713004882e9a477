"""evolve for every user event, and snapshots: snapshot + tail = the full fold."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.envelope import Codec, encode
from contracts.orders import ExecutionReport, OrderIntent
from contracts.settings import ChannelOverrides, UserSettings
from contracts.users import (
    USER_EVENTS,
    AccountLinked,
    AccountUnlinked,
    CloseAllRequested,
    Paused,
    ReportRecorded,
    Resumed,
    SettingsChanged,
    SignalHandled,
    SignalRefused,
    Stopped,
    Subscribed,
    Unsubscribed,
    UserDeleted,
    UserRegistered,
)
from services.actors.core import (
    DEFAULT_SETTINGS,
    UserState,
    decode_state,
    encode_state,
    evolve,
    fold,
    initial_state,
    status_view,
)
from services.actors.core.state import _HANDLERS, KEEP_DECIDED, KEEP_FINISHED_LEGS, NO_DAY
from tests.unit.actors.factories import (
    SECOND,
    T0,
    USER,
    opened,
    report_event,
    report_for,
    sealed,
    user,
    verdict_event,
)

DAY = 86_400 * SECOND


def intent(signal_id: str = "gold:1", leg: int = 1, volume: float = 0.02) -> OrderIntent:
    intent_id = f"{signal_id}|{USER}|L{leg}"
    return OrderIntent(
        id=intent_id,
        ts=T0,
        intent_id=intent_id,
        user_id=USER,
        account_id="paper-u1",
        broker="paper",
        action="open",
        signal_id=signal_id,
        leg=leg,
        symbol="XAUUSD",
        signal_symbol="XAUUSD",
        side="buy",
        volume=volume,
        price=2000.0,
        sl=1990.0,
        tp=2010.0,
        decided_ns=T0,
    )


def handled(
    *intents: OrderIntent,
    signal_id: str = "gold:1",
    ts: int = T0,
    message_id: int = 1,
    revision: int = 1,
) -> SignalHandled:
    return SignalHandled(
        id=f"h-{signal_id}-{message_id}-{revision}",
        ts=ts,
        signal_id=signal_id,
        revision=revision,
        message_id=message_id,
        kind="open",
        intents=intents,
    )


def refused(code: str = "stale_signal", ts: int = T0, message_id: int = 9) -> SignalRefused:
    return SignalRefused(
        id=f"r-{message_id}",
        ts=ts,
        signal_id=f"gold:{message_id}",
        revision=1,
        message_id=message_id,
        code=code,
        reason="because",
    )


# --- one test per event type ---------------------------------------------------------


def test_every_user_event_has_an_evolve_rule() -> None:
    assert set(_HANDLERS) == set(USER_EVENTS)
    with pytest.raises(TypeError):
        evolve(user(), object())


def test_registered_sets_flag_and_name_and_bumps_version() -> None:
    state = evolve(
        initial_state(USER), UserRegistered(id="e", ts=T0, user_id=USER, display_name="Ann")
    )

    assert (state.registered, state.display_name, state.status, state.version) == (
        True,
        "Ann",
        "active",
        1,
    )


def test_account_linked_and_unlinked() -> None:
    state = evolve(
        user(account=False),
        AccountLinked(id="e", ts=T0, account_id="a1", broker="metaapi", token=sealed()),
    )
    assert state.account is not None and state.account.token == sealed()

    state = evolve(state, AccountUnlinked(id="e2", ts=T0, account_id="a1"))

    assert state.account is None


def test_account_unlinked_of_other_account_keeps_current() -> None:
    state = evolve(user(), AccountUnlinked(id="e", ts=T0, account_id="other"))

    assert state.account is not None and state.account.account_id == "paper-u1"


def test_subscribed_and_unsubscribed() -> None:
    state = evolve(
        user(channel=None),
        Subscribed(id="e", ts=T0, channel="fx", overrides=ChannelOverrides(max_signal_age_s=5.0)),
    )
    sub = state.subscription("fx")
    assert sub is not None and sub.overrides == ChannelOverrides(max_signal_age_s=5.0)

    state = evolve(state, Unsubscribed(id="e2", ts=T0, channel="fx"))

    assert state.subscription("fx") is None


def test_settings_changed_replaces_settings() -> None:
    new = UserSettings(require_sl=False)

    state = evolve(user(), SettingsChanged(id="e", ts=T0, settings=new, changed=("require_sl",)))

    assert state.settings == new


@pytest.mark.parametrize(
    ("event", "status"), [(Paused(id="e", ts=T0), "paused"), (Stopped(id="e", ts=T0), "stopped")]
)
def test_paused_stopped_resumed(event: Any, status: str) -> None:
    state = evolve(user(), event)
    assert state.status == status

    assert evolve(state, Resumed(id="e2", ts=T0)).status == "active"


def test_close_all_requested_changes_no_leg_until_reports() -> None:
    state = opened()

    after = evolve(state, CloseAllRequested(id="e", ts=T0))

    assert after.legs == state.legs and after.version == state.version + 1


def test_user_deleted_drops_secrets_and_data() -> None:
    state = evolve(
        user(), AccountLinked(id="e", ts=T0, account_id="a1", broker="metaapi", token=sealed())
    )

    state = evolve(state, UserDeleted(id="d", ts=T0))

    assert state.status == "deleted"
    assert state.account is None and state.subscriptions == () and state.legs == ()
    assert state.registered


def test_signal_handled_adds_pending_risk_legs_and_counts_orders() -> None:
    state = evolve(user(), handled(intent(leg=1), intent(leg=2)))

    assert [leg.status for leg in state.legs] == ["pending_risk", "pending_risk"]
    assert state.today.orders == 2 and state.today.day == "2026-03-02"
    assert state.last_revision("gold:1", 1) == 1


def test_signal_handled_twice_adds_no_duplicate_leg() -> None:
    state = evolve(user(), handled(intent()))

    state = evolve(state, handled(intent(), revision=2))

    assert len(state.legs) == 1


def test_signal_refused_counts_refusals_by_code() -> None:
    state = fold(
        user(),
        [
            refused("stale_signal", message_id=1),
            refused("stale_signal", message_id=2),
            refused("paused", message_id=3),
        ],
    )

    assert state.today.refusal_counts() == {"stale_signal": 2, "paused": 1}
    assert state.last_revision("gold:2", 2) == 1


def test_today_resets_on_a_new_utc_day() -> None:
    state = fold(user(), [refused(message_id=1), handled(intent())])

    state = evolve(state, refused("paused", ts=T0 + DAY, message_id=2))

    assert state.today.day == "2026-03-03"
    assert state.today.refusal_counts() == {"paused": 1} and state.today.orders == 0


def test_decided_is_bounded_to_recent_messages() -> None:
    state = fold(user(), [refused(message_id=i) for i in range(KEEP_DECIDED + 10)])

    assert len(state.decided) == KEEP_DECIDED
    assert state.last_revision("gold:0", 0) == 0
    assert state.last_revision(f"gold:{KEEP_DECIDED + 9}", KEEP_DECIDED + 9) == 1


def test_verdict_approved_then_submitted_rejected_then_rejected() -> None:
    state = evolve(user(), handled(intent(leg=1), intent(leg=2)))

    state = fold(
        state,
        [
            verdict_event(intent(leg=1), approved=True),
            verdict_event(intent(leg=2), approved=False, code="max_lot"),
        ],
    )

    assert [leg.status for leg in state.legs] == ["submitted", "rejected"]
    assert state.today.refusal_counts() == {"max_lot": 1}


def test_verdict_for_management_intent_leaves_legs() -> None:
    state = evolve(user(), handled(intent()))
    close = msgspec.structs.replace(intent(), action="close", intent_id="x|close")

    after = evolve(state, verdict_event(close, approved=False))

    assert after.legs == state.legs


@pytest.mark.parametrize(
    ("status", "leg_status"),
    [
        ("filled", "open"),
        ("accepted", "pending_order"),
        ("rejected", "rejected"),
        ("failed", "rejected"),
        ("cancelled", "cancelled"),
        ("closed", "closed"),
    ],
)
def test_report_on_open_intent_updates_leg_status(status: str, leg_status: str) -> None:
    state = evolve(user(), handled(intent()))

    state = evolve(state, report_event(report_for(intent(), status)))

    assert state.legs[0].status == leg_status


def test_report_filled_records_fill_price_position_and_volume() -> None:
    state = evolve(user(), handled(intent()))

    state = evolve(
        state,
        report_event(report_for(intent(), "filled", price=2000.5, volume=0.02, position_id="P9")),
    )

    leg = state.legs[0]
    assert (leg.entry, leg.position_id, leg.volume, leg.remaining) == (2000.5, "P9", 0.02, 0.02)


def test_report_partial_close_keeps_leg_open_with_remaining_and_adds_profit() -> None:
    state = evolve(user(), handled(intent(volume=0.04)))
    state = evolve(state, report_event(report_for(intent(volume=0.04), "filled")))
    close = msgspec.structs.replace(intent(), action="close", intent_id="gold:1|u1|L1|close|m2r1")

    state = evolve(
        state,
        report_event(
            report_for(
                close,
                "closed",
                volume=0.02,
                remaining_volume=0.02,
                profit=12.5,
                balance=1012.5,
                equity=1010.0,
            )
        ),
    )

    leg = state.legs[0]
    assert (leg.status, leg.remaining) == ("open", 0.02)
    assert state.today.realised_pnl == 12.5
    assert (state.balance, state.equity) == (1012.5, 1010.0)


def test_report_close_without_remaining_subtracts_volume_then_closes() -> None:
    state = evolve(user(), handled(intent(volume=0.02)))
    state = evolve(state, report_event(report_for(intent(volume=0.02), "filled")))
    close = msgspec.structs.replace(intent(), action="close", intent_id="gold:1|u1|L1|close|m2r1")

    state = evolve(state, report_event(report_for(close, "closed", volume=0.01, profit=1.0)))
    assert state.legs[0].remaining == 0.01
    state = evolve(state, report_event(report_for(close, "closed", volume=0.01, profit=2.0)))

    assert state.legs[0].status == "closed"
    assert state.today.realised_pnl == 3.0


def test_report_failed_close_leaves_leg_open() -> None:
    state = evolve(user(), handled(intent()))
    state = evolve(state, report_event(report_for(intent(), "filled")))
    close = msgspec.structs.replace(intent(), action="close", intent_id="gold:1|u1|L1|close|m2r1")

    state = evolve(state, report_event(report_for(close, "failed")))

    assert state.legs[0].status == "open"


def test_report_modified_updates_levels() -> None:
    state = evolve(user(), handled(intent()))
    modify = msgspec.structs.replace(
        intent(), action="modify", intent_id="gold:1|u1|L1|modify|m2r1"
    )

    state = evolve(state, report_event(report_for(modify, "modified", sl=2000.0, tp=2020.0)))

    assert (state.legs[0].sl, state.legs[0].tp) == (2000.0, 2020.0)


def test_report_found_by_position_id_when_intent_unknown() -> None:
    state = evolve(user(), handled(intent()))
    state = evolve(state, report_event(report_for(intent(), "filled", position_id="P1")))
    stray = ExecutionReport(
        id="x",
        ts=T0,
        intent_id="broker-side",
        user_id=USER,
        account_id="paper-u1",
        signal_id="?",
        action="close",
        leg=7,
        status="closed",
        position_id="P1",
        profit=-5.0,
    )

    state = evolve(state, report_event(stray))

    assert state.legs[0].status == "closed" and state.today.realised_pnl == -5.0


def test_realised_pnl_resets_on_new_day() -> None:
    state = evolve(user(), handled(intent()))
    close = msgspec.structs.replace(intent(), action="close")
    state = evolve(state, report_event(report_for(close, "closed", profit=5.0), ts=T0))

    state = evolve(state, report_event(report_for(close, "closed", profit=2.0), ts=T0 + DAY))

    assert (state.today.day, state.today.realised_pnl) == ("2026-03-03", 2.0)


def test_finished_legs_are_pruned_live_ones_kept() -> None:
    live = intent("gold:live")
    state = evolve(user(), handled(live, signal_id="gold:live", message_id=999))
    for n in range(KEEP_FINISHED_LEGS + 5):
        it = intent(f"gold:{n}")
        state = fold(
            state,
            [handled(it, signal_id=f"gold:{n}", message_id=n), verdict_event(it, approved=False)],
        )

    assert sum(1 for leg in state.legs if not leg.live) == KEEP_FINISHED_LEGS
    assert state.leg(live.intent_id) is not None


def test_version_counts_every_event() -> None:
    assert user().version == 3
    assert evolve(user(), CloseAllRequested(id="c", ts=T0)).version == 4


# --- memory: idle users share their defaults -----------------------------------------


def test_idle_user_shares_default_settings_and_today() -> None:
    state = user()

    assert state.settings is DEFAULT_SETTINGS
    assert state.today is NO_DAY
    assert state.legs == () and state.decided == ()


def test_decoded_snapshot_shares_defaults_again() -> None:
    state = decode_state(encode_state(user()))

    assert state.settings is DEFAULT_SETTINGS and state.today is NO_DAY


def test_snapshot_is_tagged_json_without_token_plaintext() -> None:
    state = evolve(
        user(account=False),
        AccountLinked(id="e", ts=T0, account_id="a1", broker="metaapi", token=sealed()),
    )

    data = json.loads(encode_state(state))

    assert data["type"] == "actor.user_state"
    assert decode_state(encode_state(state)) == state


def test_status_view_has_no_token_material() -> None:
    state = evolve(
        user(account=False),
        AccountLinked(id="e", ts=T0, account_id="a1", broker="metaapi", token=sealed(3)),
    )

    view = status_view(state)

    assert view["account"] == {
        "account_id": "a1",
        "broker": "metaapi",
        "has_token": True,
        "key_version": 3,
    }
    assert "cipher" not in json.dumps(view)


def test_status_view_on_a_later_day_reads_zero() -> None:
    state = evolve(user(), refused())

    view = status_view(state, now_ns=T0 + DAY)

    assert view["today"] == {"day": "2026-03-03", "orders": 0, "refusals": {}, "realised_pnl": 0.0}
    assert status_view(state, now_ns=T0)["today"]["refusals"] == {"stale_signal": 1}


# --- snapshot + tail = full fold -----------------------------------------------------

SIGNALS = ["gold:1", "gold:2", "fx:3"]
LEGS = [1, 2, 3]


@st.composite
def user_event(draw: st.DrawFn) -> Any:
    ts = T0 + draw(st.integers(min_value=0, max_value=3)) * DAY + draw(st.integers(0, 10**6))
    eid = f"e{draw(st.integers(0, 10**9))}"
    sid = draw(st.sampled_from(SIGNALS))
    leg = draw(st.sampled_from(LEGS))
    it = intent(sid, leg, draw(st.sampled_from([0.01, 0.02, 0.05])))
    kind = draw(st.integers(0, 15))
    if kind == 0:
        return UserRegistered(id=eid, ts=ts, user_id=USER, display_name=draw(st.text(max_size=5)))
    if kind == 1:
        token = draw(st.none() | st.just(sealed()))
        return AccountLinked(
            id=eid, ts=ts, account_id="a1", broker="metaapi" if token else "paper", token=token
        )
    if kind == 2:
        return AccountUnlinked(id=eid, ts=ts, account_id="a1")
    if kind == 3:
        overrides = draw(st.none() | st.just(ChannelOverrides(max_signal_age_s=9.0)))
        return Subscribed(
            id=eid, ts=ts, channel=draw(st.sampled_from(["gold", "fx"])), overrides=overrides
        )
    if kind == 4:
        return Unsubscribed(id=eid, ts=ts, channel=draw(st.sampled_from(["gold", "fx"])))
    if kind == 5:
        new = draw(
            st.sampled_from(
                [UserSettings(), UserSettings(require_sl=False), UserSettings(max_signal_age_s=9.5)]
            )
        )
        return SettingsChanged(id=eid, ts=ts, settings=new)
    if kind == 6:
        return draw(
            st.sampled_from([Paused(id=eid, ts=ts), Stopped(id=eid, ts=ts), Resumed(id=eid, ts=ts)])
        )
    if kind == 7:
        return CloseAllRequested(
            id=eid, ts=ts, intents=(msgspec.structs.replace(it, action="close"),)
        )
    if kind == 8:
        return draw(st.sampled_from([UserDeleted(id=eid, ts=ts), Resumed(id=eid, ts=ts)]))
    if kind == 9:
        return handled(
            it,
            signal_id=sid,
            ts=ts,
            message_id=draw(st.integers(1, 5)),
            revision=draw(st.integers(1, 3)),
        )
    if kind == 10:
        return refused(
            draw(st.sampled_from(["stale_signal", "paused", "no_price"])),
            ts=ts,
            message_id=draw(st.integers(1, 5)),
        )
    if kind == 11:
        return verdict_event(it, approved=draw(st.booleans()))
    action = draw(st.sampled_from(["open", "close", "modify"]))
    status = draw(
        st.sampled_from(
            ["accepted", "filled", "modified", "closed", "cancelled", "rejected", "failed"]
        )
    )
    rep = report_for(
        msgspec.structs.replace(
            it,
            action=action,
            intent_id=it.intent_id if action == "open" else f"{it.intent_id}|{action}|m9r1",
        ),
        status,
        profit=draw(st.none() | st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 2))),
        balance=draw(st.none() | st.just(1000.0)),
        remaining_volume=draw(st.none() | st.just(0.01)),
        position_id=draw(st.none() | st.sampled_from(["P1", "P2"])),
    )
    return ReportRecorded(id=eid, ts=ts, report=rep)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(user_event(), max_size=40), data=st.data())
def test_snapshot_plus_tail_equals_full_fold(events: list[Any], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(events)))

    full = fold(initial_state(USER), events)
    snapshot = encode_state(fold(initial_state(USER), events[:cut]))
    resumed = fold(decode_state(snapshot), events[cut:])

    assert resumed == full
    assert encode_state(resumed) == encode_state(full)
    assert full.version == len(events)


@settings(max_examples=100, deadline=None)
@given(events=st.lists(user_event(), max_size=30))
def test_events_round_trip_through_json_then_fold_equal(events: list[Any]) -> None:
    codec = Codec(*USER_EVENTS)

    decoded = [codec.decode(encode(event)) for event in events]

    assert fold(initial_state(USER), decoded) == fold(initial_state(USER), events)


def test_state_is_frozen() -> None:
    state = user()
    with pytest.raises(AttributeError):
        state.status = "stopped"  # type: ignore[misc]


def test_initial_state_is_unregistered_active() -> None:
    state: UserState = initial_state("u9")

    assert (state.user_id, state.registered, state.status, state.version) == (
        "u9",
        False,
        "active",
        0,
    )
