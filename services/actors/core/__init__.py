"""The pure core of a user's actor: state, evolve, and decisions on commands and signals.

No I/O, no clock, no randomness: time and ids come in with the input, so the
same state and input always give the same events.
"""

from .claims import Claim, claims_to_release, release_all
from .commands import CommandContext, decide_command, link_target
from .patch import ALIASES, apply_patch, check_settings
from .planning import MarketView, Refusal, map_symbol, plan_open
from .signals import SignalEvent, decide_signal, internal_refusal, signal_event_id
from .state import (
    DEFAULT_SETTINGS,
    LIVE_STATUSES,
    Account,
    Leg,
    Subscription,
    Today,
    UserEvent,
    UserState,
    day_of,
    decode_state,
    encode_state,
    evolve,
    fold,
    initial_state,
)
from .views import positions_view, settings_view, status_view

__all__ = [
    "ALIASES",
    "DEFAULT_SETTINGS",
    "LIVE_STATUSES",
    "Account",
    "Claim",
    "CommandContext",
    "Leg",
    "MarketView",
    "Refusal",
    "SignalEvent",
    "Subscription",
    "Today",
    "UserEvent",
    "UserState",
    "apply_patch",
    "check_settings",
    "claims_to_release",
    "day_of",
    "decide_command",
    "decide_signal",
    "decode_state",
    "encode_state",
    "evolve",
    "fold",
    "initial_state",
    "internal_refusal",
    "link_target",
    "map_symbol",
    "plan_open",
    "positions_view",
    "release_all",
    "settings_view",
    "signal_event_id",
    "status_view",
]
