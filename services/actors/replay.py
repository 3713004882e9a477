"""`sigrelay audit replay --user U [--until TIME]`: a user's state as it was.

Folds the user's stream from the event log (the truth), stopping at the last
event recorded at or before `until`, and renders it with the same views the
control plane uses, so it can be compared with a `status` taken back then.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contracts.settings_bounds import SettingError, check_settings
from contracts.users import USER_EVENTS, user_stream
from eventstore import EventRegistry, EventStore
from services.actors.core import evolve, initial_state, positions_view, settings_view, status_view

REGISTRY = EventRegistry(*USER_EVENTS)


def parse_time(text: str) -> int:
    """ISO 8601 (a date, or a date and time; UTC when no offset) or unix seconds -> unix µs."""
    try:
        return int(float(text) * 1_000_000)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"time {text!r} is neither ISO 8601 (2026-11-21T10:00:00Z) nor unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


async def replay_user(
    store: EventStore, user_id: str, until_us: int | None = None
) -> dict[str, Any]:
    state = initial_state(user_id)
    applied = 0
    last_recorded = 0
    for recorded in await store.read_stream(user_stream(user_id)):
        if until_us is not None and recorded.recorded_at_us > until_us:
            break
        state = evolve(state, REGISTRY.decode(recorded))
        applied += 1
        last_recorded = recorded.recorded_at_us
    return {
        "user_id": user_id,
        "events_applied": applied,
        "as_of_us": until_us,
        "last_event_recorded_us": last_recorded,
        "status": status_view(state),  # as the control plane renders it, for comparison
        "settings": settings_view(state),
        "positions": positions_view(state),
        # the bounds the control plane applies today, applied to the settings then: a
        # state from before a bound existed is named, since its signals are refused
        "settings_out_of_bounds": _out_of_bounds(state.settings),
    }


def _out_of_bounds(settings: Any) -> dict[str, str] | None:
    try:
        check_settings(settings)
    except SettingError as exc:
        return {"field": exc.field, "message": exc.message}
    return None
