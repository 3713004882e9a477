"""Control verbs: every success and every error code, with the field named."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.control import ControlError
from contracts.errors import ErrorCode
from contracts.settings import ChannelOverrides, LotSizing
from contracts.users import (
    AccountLinked,
    AccountUnlinked,
    CloseAllRequested,
    LinkAccountRequest,
    Paused,
    Resumed,
    SettingsChanged,
    Stopped,
    Subscribed,
    Unsubscribed,
    UserDeleted,
    UserRegistered,
)
from services.actors.core import (
    DEFAULT_SETTINGS,
    UserState,
    decide_command,
    evolve,
    fold,
    initial_state,
)
from tests.unit.actors.factories import (
    USER,
    ctx,
    gold_market,
    open_signal,
    opened,
    sealed,
    user,
)


def run(state: UserState, verb: str, request: Any = None, **kw: Any) -> list[Any]:
    return decide_command(state, verb, request, ctx(**kw))


def refused(state: UserState, verb: str, request: Any = None, **kw: Any) -> ControlError:
    with pytest.raises(ControlError) as info:
        run(state, verb, request, **kw)
    return info.value


def deleted_user() -> UserState:
    state = user()
    return fold(state, run(state, "delete", {"confirm": True}))


# --- register ---------------------------------------------------------------------


def test_register_when_new_then_user_registered_with_name() -> None:
    events = run(initial_state(USER), "register", {"display_name": "  Ann  "})

    assert len(events) == 1
    assert isinstance(events[0], UserRegistered)
    assert events[0].user_id == USER
    assert events[0].display_name == "Ann"


def test_register_event_ids_derive_from_request_id() -> None:
    events = run(initial_state(USER), "register", None, request_id="ctl-42", now_ns=7)

    assert events[0].id == "ctl-42:1"
    assert events[0].ts == 7
    assert events[0].correlation_id == "ctl-42"


def test_register_when_registered_then_user_exists() -> None:
    error = refused(user(), "register")

    assert error.code is ErrorCode.USER_EXISTS


def test_register_when_deleted_then_user_deleted() -> None:
    error = refused(deleted_user(), "register")

    assert error.code is ErrorCode.USER_DELETED


def test_register_when_name_too_long_then_invalid_value_display_name() -> None:
    error = refused(initial_state(USER), "register", {"display_name": "x" * 65})

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "display_name")


def test_register_when_unknown_field_then_unknown_field_named() -> None:
    error = refused(initial_state(USER), "register", {"nickname": "a"})

    assert (error.code, error.field) == (ErrorCode.UNKNOWN_FIELD, "nickname")


def test_command_for_another_user_then_internal_error() -> None:
    error = refused(user(), "status", user_id="u2")

    assert error.code is ErrorCode.INTERNAL


def test_unknown_verb_then_unknown_verb() -> None:
    error = refused(user(), "explode")

    assert error.code is ErrorCode.UNKNOWN_VERB


# --- every verb but register needs a live, registered user ---------------------------

VERB_BODIES: list[tuple[str, Any]] = [
    ("link_account", {"account_id": "paper"}),
    ("unlink_account", {}),
    ("subscribe", {"channel": "gold"}),
    ("unsubscribe", {"channel": "gold"}),
    ("settings", {"lot": 0.1}),
    ("settings", {}),
    ("pause", {}),
    ("resume", {}),
    ("stop", {}),
    ("status", {}),
    ("positions", {}),
    ("close_all", {}),
    ("delete", {"confirm": True}),
]


@pytest.mark.parametrize(("verb", "body"), VERB_BODIES)
def test_verb_when_unregistered_then_unknown_user(verb: str, body: Any) -> None:
    error = refused(initial_state(USER), verb, body)

    assert error.code is ErrorCode.UNKNOWN_USER


@pytest.mark.parametrize(("verb", "body"), VERB_BODIES)
def test_verb_when_deleted_then_user_deleted(verb: str, body: Any) -> None:
    error = refused(deleted_user(), verb, body)

    assert error.code is ErrorCode.USER_DELETED


@pytest.mark.parametrize("verb", ["status", "positions", "settings"])
def test_read_verbs_produce_no_events(verb: str) -> None:
    assert run(user(), verb, None) == []


# --- link / unlink -------------------------------------------------------------------


def test_link_paper_then_account_paper_user_id_without_token() -> None:
    events = run(user(account=False), "link_account", {"account_id": "paper"})

    assert isinstance(events[0], AccountLinked)
    assert (events[0].account_id, events[0].broker, events[0].token) == ("paper-u1", "paper", None)


def test_link_accepts_a_decoded_request_struct() -> None:
    events = run(user(account=False), "link_account", LinkAccountRequest(account_id="paper"))

    assert events[0].account_id == "paper-u1"


def test_link_metaapi_then_sealed_token_recorded_not_plaintext() -> None:
    token = sealed()
    body = {"account_id": "acc-123", "token": "PLAINTEXT-SECRET"}

    events = run(user(account=False), "link_account", body, sealed_token=token)

    assert events[0].broker == "metaapi"
    assert events[0].token == token
    assert b"PLAINTEXT-SECRET" not in repr(events).encode()


def test_link_metaapi_without_token_then_missing_field_token() -> None:
    error = refused(user(account=False), "link_account", {"account_id": "acc-123"})

    assert (error.code, error.field) == (ErrorCode.MISSING_FIELD, "token")


def test_link_metaapi_token_not_sealed_by_shell_then_internal_without_the_token() -> None:
    body = {"account_id": "acc-123", "token": "SECRET-XYZ"}

    error = refused(user(account=False), "link_account", body)

    assert error.code is ErrorCode.INTERNAL
    assert "SECRET-XYZ" not in error.message


@pytest.mark.parametrize("account_id", ["", "   ", "has space", "x" * 129, "semi;colon"])
def test_link_bad_account_id_then_invalid_value(account_id: str) -> None:
    error = refused(user(account=False), "link_account", {"account_id": account_id})

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "account_id")


def test_link_missing_account_id_then_missing_field() -> None:
    error = refused(user(account=False), "link_account", {})

    assert (error.code, error.field) == (ErrorCode.MISSING_FIELD, "account_id")


def test_link_paper_with_token_then_invalid_value_token() -> None:
    error = refused(user(account=False), "link_account", {"account_id": "paper", "token": "x"})

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "token")


def test_link_paper_id_as_metaapi_then_invalid_value_broker() -> None:
    body = {"account_id": "paper", "broker": "metaapi", "token": "x"}

    error = refused(user(account=False), "link_account", body, sealed_token=sealed())

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "broker")


def test_link_when_claimed_by_another_user_then_account_taken() -> None:
    body = {"account_id": "acc-1", "token": "x"}

    error = refused(
        user(account=False), "link_account", body, sealed_token=sealed(), account_taken=True
    )

    assert (error.code, error.field) == (ErrorCode.ACCOUNT_TAKEN, "account_id")


def test_link_when_other_account_linked_then_invalid_state() -> None:
    error = refused(
        user(), "link_account", {"account_id": "acc-2", "token": "x"}, sealed_token=sealed()
    )

    assert (error.code, error.field) == (ErrorCode.INVALID_STATE, "account_id")


def test_link_same_paper_account_again_then_invalid_state() -> None:
    error = refused(user(), "link_account", {"account_id": "paper"})

    assert error.code is ErrorCode.INVALID_STATE


def test_relink_same_metaapi_account_then_token_replaced() -> None:
    state = user(account=False)
    state = fold(
        state,
        run(state, "link_account", {"account_id": "a1", "token": "x"}, sealed_token=sealed(1)),
    )

    events = run(state, "link_account", {"account_id": "a1", "token": "y"}, sealed_token=sealed(2))
    state = fold(state, events)

    assert state.account is not None and state.account.token == sealed(2)


def test_unlink_then_account_unlinked_and_state_has_none() -> None:
    state = user()

    events = run(state, "unlink_account")

    assert isinstance(events[0], AccountUnlinked) and events[0].account_id == "paper-u1"
    assert fold(state, events).account is None


def test_unlink_without_account_then_account_not_linked() -> None:
    error = refused(user(account=False), "unlink_account")

    assert error.code is ErrorCode.ACCOUNT_NOT_LINKED


# --- subscribe / unsubscribe ---------------------------------------------------------


def test_subscribe_then_subscribed_with_overrides() -> None:
    overrides = ChannelOverrides(max_signal_age_s=30.0)

    events = run(
        user(channel=None),
        "subscribe",
        {"channel": "fx_vip", "overrides": {"max_signal_age_s": 30}},
    )

    assert isinstance(events[0], Subscribed)
    assert (events[0].channel, events[0].overrides) == ("fx_vip", overrides)


@pytest.mark.parametrize("channel", ["Gold", "", "gold!", "-gold", "a" * 65, "gold signals"])
def test_subscribe_bad_channel_name_then_invalid_value(channel: str) -> None:
    error = refused(user(channel=None), "subscribe", {"channel": channel})

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "channel")


def test_subscribe_unknown_channel_then_unknown_channel() -> None:
    error = refused(user(channel=None), "subscribe", {"channel": "nowhere"}, known=("gold",))

    assert (error.code, error.field) == (ErrorCode.UNKNOWN_CHANNEL, "channel")


def test_subscribe_known_channel_then_accepted() -> None:
    events = run(user(channel=None), "subscribe", {"channel": "gold"}, known=("gold",))

    assert events[0].channel == "gold"


def test_subscribe_again_same_overrides_then_invalid_state() -> None:
    error = refused(user(), "subscribe", {"channel": "gold"})

    assert (error.code, error.field) == (ErrorCode.INVALID_STATE, "channel")


def test_subscribe_again_new_overrides_then_overrides_replaced() -> None:
    state = user()
    body = {"channel": "gold", "overrides": {"entry_zone": "zone_mid_limit"}}

    state = fold(state, run(state, "subscribe", body))

    sub = state.subscription("gold")
    assert sub is not None and sub.overrides == ChannelOverrides(entry_zone="zone_mid_limit")
    assert len(state.subscriptions) == 1


def test_subscribe_overrides_with_zero_lot_then_invalid_value_names_override() -> None:
    body = {"channel": "fx", "overrides": {"lot": {"fixed_lot": 0}}}

    error = refused(user(channel=None), "subscribe", body)

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "overrides.lot.fixed_lot")


def test_subscribe_overrides_unknown_field_then_unknown_field_named() -> None:
    body = {"channel": "fx", "overrides": {"lot": {"fixd_lot": 1}}}

    error = refused(user(channel=None), "subscribe", body)

    assert (error.code, error.field) == (ErrorCode.UNKNOWN_FIELD, "overrides.lot.fixd_lot")


def test_unsubscribe_then_unsubscribed_and_removed() -> None:
    state = user()

    events = run(state, "unsubscribe", {"channel": "gold"})

    assert isinstance(events[0], Unsubscribed)
    assert fold(state, events).subscriptions == ()


def test_unsubscribe_when_not_subscribed_then_not_subscribed() -> None:
    error = refused(user(), "unsubscribe", {"channel": "fx"})

    assert (error.code, error.field) == (ErrorCode.NOT_SUBSCRIBED, "channel")


# --- pause / resume / stop -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verb", "event_type", "after"),
    [
        ("active", "pause", Paused, "paused"),
        ("active", "stop", Stopped, "stopped"),
        ("paused", "stop", Stopped, "stopped"),
        ("stopped", "pause", Paused, "paused"),
        ("paused", "resume", Resumed, "active"),
        ("stopped", "resume", Resumed, "active"),
    ],
)
def test_status_verbs_change_status(status: str, verb: str, event_type: type, after: str) -> None:
    state = user(status=status)

    events = run(state, verb, {})

    assert isinstance(events[0], event_type)
    assert fold(state, events).status == after


@pytest.mark.parametrize(
    ("status", "verb"), [("paused", "pause"), ("stopped", "stop"), ("active", "resume")]
)
def test_status_verb_when_already_so_then_invalid_state(status: str, verb: str) -> None:
    error = refused(user(status=status), verb, {})

    assert error.code is ErrorCode.INVALID_STATE


def test_pause_reason_recorded() -> None:
    events = run(user(), "pause", {"reason": "holiday"})

    assert events[0].reason == "holiday"


def test_pause_reason_too_long_then_invalid_value_reason() -> None:
    error = refused(user(), "pause", {"reason": "x" * 501})

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "reason")


def test_pause_wrong_type_reason_then_invalid_value_reason() -> None:
    error = refused(user(), "pause", {"reason": 5})

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "reason")


# --- close_all / delete --------------------------------------------------------------


def test_close_all_then_close_intent_for_every_open_leg() -> None:
    state = opened(user(settings={"lot": {"fixed_lot": 0.03}}))

    events = run(state, "close_all", {"reason": "panic"}, request_id="ctl-9")

    assert isinstance(events[0], CloseAllRequested)
    intents = events[0].intents
    assert [i.intent_id for i in intents] == [
        "gold:100|u1|L1|close|ctl-9",
        "gold:100|u1|L2|close|ctl-9",
        "gold:100|u1|L3|close|ctl-9",
    ]
    assert all(i.action == "close" and i.volume == 0.01 for i in intents)
    assert {i.target_intent_id for i in intents} == {leg.intent_id for leg in state.legs}


def test_close_all_pending_orders_then_cancel_intents() -> None:
    signal = open_signal(entry=1996.0, order_type="limit")
    state = opened(user(), signal)

    events = run(state, "close_all", {})

    assert [i.action for i in events[0].intents] == ["cancel"]


def test_close_all_with_nothing_live_then_invalid_state() -> None:
    error = refused(user(), "close_all", {})

    assert error.code is ErrorCode.INVALID_STATE


def test_close_all_when_paused_or_stopped_still_allowed() -> None:
    state = opened()
    state = evolve(state, Stopped(id="s", ts=0))

    assert run(state, "close_all", {})[0].intents


def test_close_all_without_account_then_account_not_linked() -> None:
    state = opened()
    state = evolve(state, AccountUnlinked(id="x", ts=0, account_id="paper-u1"))

    error = refused(state, "close_all", {})

    assert error.code is ErrorCode.ACCOUNT_NOT_LINKED


def test_delete_with_confirm_then_user_deleted_and_secrets_dropped() -> None:
    state = user(account=False)
    state = fold(
        state,
        run(state, "link_account", {"account_id": "a1", "token": "x"}, sealed_token=sealed()),
    )

    events = run(state, "delete", {"confirm": True})
    state = fold(state, events)

    assert isinstance(events[0], UserDeleted)
    assert state.status == "deleted" and state.account is None


@pytest.mark.parametrize("body", [{}, {"confirm": False}, None])
def test_delete_without_confirm_then_invalid_value_confirm(body: Any) -> None:
    error = refused(user(), "delete", body)

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "confirm")


def test_delete_confirm_not_bool_then_invalid_value_confirm() -> None:
    error = refused(user(), "delete", {"confirm": "yes"})

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "confirm")


# --- settings ------------------------------------------------------------------------


def settings_after(patch: dict[str, Any], state: UserState | None = None) -> SettingsChanged:
    events = run(state or user(), "settings", patch)
    assert len(events) == 1 and isinstance(events[0], SettingsChanged)
    return events[0]


@pytest.mark.parametrize(
    ("patch", "path", "expected"),
    [
        ({"lot.fixed_lot": 0.1}, "lot.fixed_lot", 0.1),
        ({"lot": 0.1}, "lot.fixed_lot", 0.1),
        ({"max_lot": 2}, "lot.max_lot", 2.0),
        ({"lot_mode": "risk_percent"}, "lot.mode", "risk_percent"),
        ({"risk_percent": 2.5}, "lot.risk_percent", 2.5),
        ({"suffix": ".m"}, "symbols.suffix", ".m"),
        ({"prefix": "x"}, "symbols.prefix", "x"),
        ({"allowed_symbols": ["XAUUSD"]}, "risk.allowed_symbols", ("XAUUSD",)),
        ({"blocked_symbols": ["BTCUSD"]}, "risk.blocked_symbols", ("BTCUSD",)),
        ({"max_signal_age_s": 30}, "max_signal_age_s", 30.0),
        ({"max_entry_distance_pips": None}, "max_entry_distance_pips", None),
        ({"max_entry_distance_pips": 80}, "max_entry_distance_pips", 80.0),
        ({"take_profits.mode": "single"}, "take_profits.mode", "single"),
        ({"tp_number": 2}, "take_profits.tp_number", 2),
        ({"follow_ups.edits": False}, "follow_ups.edits", False),
        ({"entry_zone": "zone_best_limit"}, "entry_zone", "zone_best_limit"),
        ({"require_sl": False}, "require_sl", False),
        ({"symbols.aliases": {"GOLD": "XAUUSD"}}, "symbols.aliases", {"GOLD": "XAUUSD"}),
        ({"risk.daily_loss_limit": 100}, "risk.daily_loss_limit", 100.0),
        ({"risk.trading_hours.start": "08:00"}, "risk.trading_hours.start", "08:00"),
    ],
)
def test_settings_patch_sets_path_and_names_it_changed(
    patch: dict[str, Any], path: str, expected: Any
) -> None:
    event = settings_after(patch)

    value: Any = event.settings
    for part in path.split("."):
        value = getattr(value, part)
    assert value == expected
    # a group set for the first time (trading_hours was None) is named as the group
    assert any(path == c or path.startswith(f"{c}.") for c in event.changed)


def test_settings_patch_changed_lists_only_leaves_that_changed() -> None:
    event = settings_after({"lot": 0.2, "lot.max_lot": 1.0, "suffix": ".m"})

    assert event.changed == ("lot.fixed_lot", "symbols.suffix")


def test_settings_patch_keeps_other_settings() -> None:
    state = fold(user(), [settings_after({"suffix": ".m"})])

    event = settings_after({"lot": 0.05}, state)

    assert event.settings.symbols.suffix == ".m"
    assert event.settings.lot.fixed_lot == 0.05


def test_settings_patch_with_no_change_then_no_event() -> None:
    assert run(user(), "settings", {"lot": 0.01}) == []


def test_settings_back_to_default_shares_default_object() -> None:
    state = fold(user(), [settings_after({"lot": 0.05})])
    state = fold(state, [settings_after({"lot": 0.01}, state)])

    assert state.settings is DEFAULT_SETTINGS


@pytest.mark.parametrize(
    ("patch", "code", "field"),
    [
        ({"lot.fixd_lot": 1}, ErrorCode.UNKNOWN_FIELD, "lot.fixd_lot"),
        ({"bogus": 1}, ErrorCode.UNKNOWN_FIELD, "bogus"),
        ({"lot.fixed_lot.x": 1}, ErrorCode.UNKNOWN_FIELD, "lot.fixed_lot.x"),
        ({"risk.trading_hours.nope": 1}, ErrorCode.UNKNOWN_FIELD, "risk.trading_hours.nope"),
        ({"lot.fixed_lot": "big"}, ErrorCode.INVALID_VALUE, "lot.fixed_lot"),
        ({"lot": "0.1"}, ErrorCode.INVALID_VALUE, "lot.fixed_lot"),
        ({"lot_mode": "yolo"}, ErrorCode.INVALID_VALUE, "lot.mode"),
        ({"allowed_symbols": [1]}, ErrorCode.INVALID_VALUE, "risk.allowed_symbols"),
        ({"allowed_symbols": "XAUUSD"}, ErrorCode.INVALID_VALUE, "risk.allowed_symbols"),
        ({"allowed_symbols": [" "]}, ErrorCode.INVALID_VALUE, "risk.allowed_symbols"),
        ({"lot": 0}, ErrorCode.INVALID_VALUE, "lot.fixed_lot"),
        ({"lot": -0.1}, ErrorCode.INVALID_VALUE, "lot.fixed_lot"),
        ({"lot": 0.001}, ErrorCode.LOT_BELOW_MINIMUM, "lot.fixed_lot"),
        ({"max_lot": 0.001}, ErrorCode.LOT_BELOW_MINIMUM, "lot.max_lot"),
        ({"max_lot": -1}, ErrorCode.INVALID_VALUE, "lot.max_lot"),
        ({"lot": 5}, ErrorCode.LOT_ABOVE_MAXIMUM, "lot.fixed_lot"),
        ({"risk_percent": 0}, ErrorCode.INVALID_VALUE, "lot.risk_percent"),
        ({"risk_percent": 150}, ErrorCode.INVALID_VALUE, "lot.risk_percent"),
        ({"multiplier": 0}, ErrorCode.INVALID_VALUE, "lot.multiplier"),
        ({"tp_number": 0}, ErrorCode.INVALID_VALUE, "take_profits.tp_number"),
        ({"max_signal_age_s": 0}, ErrorCode.INVALID_VALUE, "max_signal_age_s"),
        ({"max_entry_distance_pips": -5}, ErrorCode.INVALID_VALUE, "max_entry_distance_pips"),
        ({"risk.max_open_positions": -1}, ErrorCode.INVALID_VALUE, "risk.max_open_positions"),
        ({"risk.daily_loss_limit": 0}, ErrorCode.INVALID_VALUE, "risk.daily_loss_limit"),
        ({"risk.daily_loss_limit_pct": 120}, ErrorCode.INVALID_VALUE, "risk.daily_loss_limit_pct"),
        (
            {"risk.trading_hours.start": "25:00"},
            ErrorCode.INVALID_VALUE,
            "risk.trading_hours.start",
        ),
        ({"risk.trading_hours.days": [7]}, ErrorCode.INVALID_VALUE, "risk.trading_hours.days"),
        ({"risk.trading_hours": {"bad": 1}}, ErrorCode.UNKNOWN_FIELD, "risk.trading_hours.bad"),
        ({"lot.fixed_lot": float("nan")}, ErrorCode.INVALID_VALUE, "lot.fixed_lot"),
        ({"require_sl": "no"}, ErrorCode.INVALID_VALUE, "require_sl"),
        ({"": 1}, ErrorCode.UNKNOWN_FIELD, ""),
    ],
)
def test_settings_patch_errors_name_the_field(
    patch: dict[str, Any], code: ErrorCode, field: str | None
) -> None:
    error = refused(user(), "settings", patch)

    assert (error.code, error.field) == (code, field)
    assert error.message


def test_settings_max_lot_below_fixed_lot_names_max_lot() -> None:
    state = fold(user(), [settings_after({"lot": 0.5})])

    error = refused(state, "settings", {"max_lot": 0.1})

    assert (error.code, error.field) == (ErrorCode.LOT_ABOVE_MAXIMUM, "lot.max_lot")


def test_settings_raise_fixed_and_max_together_then_accepted() -> None:
    event = settings_after({"lot": 3, "max_lot": 5})

    assert event.settings.lot == LotSizing(fixed_lot=3.0, max_lot=5.0)


def test_settings_patch_not_an_object_then_invalid_value() -> None:
    error = refused(user(), "settings", ["lot", 1])

    assert error.code is ErrorCode.INVALID_VALUE


def test_settings_error_message_names_value() -> None:
    error = refused(user(), "settings", {"lot": 0.001})

    assert "0.001" in error.message and "0.01" in error.message


def test_status_with_open_legs_touches_nothing() -> None:
    state = opened(user(), market=gold_market())

    assert run(state, "status") == []
    assert run(state, "positions") == []


@pytest.mark.parametrize(
    ("patch", "field", "bound"),
    [
        ({"lot_mode": "fixed", "lot": 1e308, "max_lot": 1e308}, "lot.fixed_lot", "100"),
        ({"max_lot": 1e308}, "lot.max_lot", "100"),
        ({"multiplier": 1e9}, "lot.multiplier", "100"),
        ({"tp_number": 2**63}, "take_profits.tp_number", "10"),
        ({"max_signal_age_s": 1e300}, "max_signal_age_s", "86400"),
        ({"max_entry_distance_pips": float("inf")}, "max_entry_distance_pips", "finite"),
        ({"risk.max_open_positions": 2**62}, "risk.max_open_positions", "10000"),
        ({"risk.max_lot_per_order": 1e6}, "risk.max_lot_per_order", "100"),
        ({"risk.daily_loss_limit": float("-inf")}, "risk.daily_loss_limit", "finite"),
        ({"suffix": "x" * 100}, "symbols.suffix", "16"),
        ({"allowed_symbols": ["S"] * 501}, "risk.allowed_symbols", "500"),
        ({"symbols.aliases": {"GOLD": "X" * 33}}, "symbols.aliases", "32"),
        ({"risk.trading_hours.timezone": "Mars/Olympus"}, "risk.trading_hours.timezone", "IANA"),
        ({"risk.trading_hours.timezone": "../../etc/passwd"}, "risk.trading_hours.timezone", ""),
        ({"risk.trading_hours.days": [0] * 8}, "risk.trading_hours.days", "7"),
    ],
)
def test_settings_out_of_bounds_then_invalid_value_naming_field_value_and_bound(
    patch: dict[str, Any], field: str, bound: str
) -> None:
    error = refused(user(), "settings", patch)

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, field)
    assert field in error.message and bound in error.message


def test_settings_known_time_zone_then_accepted() -> None:
    event = settings_after({"risk.trading_hours.timezone": "Europe/London"})

    assert event.settings.risk.trading_hours is not None
    assert event.settings.risk.trading_hours.timezone == "Europe/London"


def test_subscribe_overrides_out_of_bounds_then_refused_with_the_same_rule() -> None:
    overrides = {"lot": {"mode": "fixed", "fixed_lot": 1e308, "max_lot": 1e308}}

    error = refused(user(channel=None), "subscribe", {"channel": "gold", "overrides": overrides})

    assert (error.code, error.field) == (ErrorCode.INVALID_VALUE, "overrides.lot.fixed_lot")
