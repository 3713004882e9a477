"""The bounds of every user setting, and the one check that applies them.

Every entry that writes settings (the control plane's `settings` and
`subscribe` verbs, any tool that builds a `UserSettings`) calls
`check_settings`, so they all refuse the same values with the same words:
the dotted field, the value found and the bound it breaks.

The bounds are not msgspec `Meta` constraints on the Structs on purpose:
msgspec applies those on every decode, and the same Structs are read back
from the event log. A settings event written before a bound existed must
stay readable (the log is the truth, and the user must be able to load and
correct it); a value out of bounds in an old event is met by the actor
host, which refuses that user's signal alone.
"""

from __future__ import annotations

import math
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from contracts.errors import ErrorCode
from contracts.settings import UserSettings

MIN_LOT = 0.01  # the smallest lot any broker takes
MAX_LOT = 100.0  # the operator's maximum per signal, whatever the broker allows
MAX_MULTIPLIER = 100.0
MAX_TPS = 10  # take profits a ticket can carry
MAX_SIGNAL_AGE_S = 86_400.0
MAX_PIPS = 100_000.0
MAX_MONEY = 1e12  # account-currency amounts (daily loss limit)
MAX_COUNT = 10_000  # positions, orders per minute
MAX_SYMBOLS = 500  # entries of a symbol list or map
MAX_SYMBOL_LENGTH = 32
MAX_AFFIX_LENGTH = 16  # symbol prefix / suffix
MAX_TIMEZONE_LENGTH = 64

_HHMM = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d\Z|^24:00\Z")

# dotted field -> (low, low inclusive, high): the numeric bounds; None values pass
_RANGES: dict[str, tuple[float, bool, float]] = {
    "lot.fixed_lot": (0.0, False, MAX_LOT),
    "lot.max_lot": (0.0, False, MAX_LOT),
    "lot.risk_percent": (0.0, False, 100.0),
    "lot.multiplier": (0.0, False, MAX_MULTIPLIER),
    "take_profits.tp_number": (1, True, MAX_TPS),
    "max_signal_age_s": (0.0, False, MAX_SIGNAL_AGE_S),
    "max_entry_distance_pips": (0.0, True, MAX_PIPS),
    "risk.max_lot_per_order": (0.0, False, MAX_LOT),
    "risk.max_volume_per_symbol": (0.0, False, MAX_LOT * MAX_TPS),
    "risk.daily_loss_limit": (0.0, False, MAX_MONEY),
    "risk.daily_loss_limit_pct": (0.0, False, 100.0),
    "risk.max_spread_pips": (0.0, False, MAX_PIPS),
    "risk.max_open_positions": (0, True, MAX_COUNT),
    "risk.max_positions_per_symbol": (0, True, MAX_COUNT),
    "risk.max_orders_per_minute": (0, True, MAX_COUNT),
}


class SettingError(ValueError):
    """A setting out of its bounds: `field` is the dotted path, `code` the reply's code."""

    def __init__(self, field: str, message: str, code: ErrorCode = ErrorCode.INVALID_VALUE):
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


def check_settings(settings: UserSettings, changed: tuple[str, ...] = (), prefix: str = "") -> None:
    """Raise `SettingError` for the first value out of bounds (fields named with `prefix`).

    `changed` (dotted paths) picks which of two fields in conflict is named.
    """

    def fail(field: str, message: str, code: ErrorCode = ErrorCode.INVALID_VALUE) -> SettingError:
        return SettingError(f"{prefix}{field}", f"{prefix}{message}", code)

    data = msgspec.to_builtins(settings)
    _check_finite(data, "", fail)
    for field, (low, low_ok, high) in _RANGES.items():
        value = _get(data, field)
        if value is None:
            continue
        if value < low or (value == low and not low_ok):
            above = "at least" if low_ok else "above"
            raise fail(field, f"{field} {_num(value)} must be {above} {_num(low)}")
        if value > high:
            raise fail(field, f"{field} {_num(value)} is above the maximum {_num(high)}")
    _check_lots(settings, changed, fail)
    _check_symbols(settings, fail)
    if settings.risk.trading_hours is not None:
        _check_hours(settings, fail)


def _check_lots(settings: UserSettings, changed: tuple[str, ...], fail: Any) -> None:
    lot = settings.lot
    for name in ("fixed_lot", "max_lot"):
        value = getattr(lot, name)
        if value < MIN_LOT - 1e-12:
            raise fail(
                f"lot.{name}",
                f"lot.{name} {_num(value)} is below the minimum lot {_num(MIN_LOT)}",
                ErrorCode.LOT_BELOW_MINIMUM,
            )
    if lot.mode == "fixed" and lot.fixed_lot > lot.max_lot + 1e-12:
        name = "lot.max_lot" if "lot.max_lot" in changed else "lot.fixed_lot"
        raise fail(
            name,
            f"fixed lot {_num(lot.fixed_lot)} is above max_lot {_num(lot.max_lot)}",
            ErrorCode.LOT_ABOVE_MAXIMUM,
        )


def _check_symbols(settings: UserSettings, fail: Any) -> None:
    symbols = settings.symbols
    for name in ("prefix", "suffix"):
        value = getattr(symbols, name)
        if len(value) > MAX_AFFIX_LENGTH:
            raise fail(
                f"symbols.{name}",
                f"symbols.{name} {value[:40]!r} is {len(value)} characters; "
                f"at most {MAX_AFFIX_LENGTH}",
            )
    for name in ("aliases", "explicit"):
        mapping: dict[str, str] = getattr(symbols, name)
        _check_list(f"symbols.{name}", [*mapping, *mapping.values()], len(mapping), fail)
    for name in ("allowed_symbols", "blocked_symbols"):
        values = getattr(settings.risk, name)
        _check_list(f"risk.{name}", list(values), len(values), fail)


def _check_list(field: str, symbols: list[str], entries: int, fail: Any) -> None:
    if entries > MAX_SYMBOLS:
        raise fail(field, f"{field} holds {entries} entries; at most {MAX_SYMBOLS}")
    for symbol in symbols:
        if not symbol.strip():
            raise fail(field, f"{field} holds an empty symbol")
        if len(symbol) > MAX_SYMBOL_LENGTH:
            raise fail(
                field,
                f"{field} holds the symbol {symbol[:40]!r} of {len(symbol)} characters; "
                f"at most {MAX_SYMBOL_LENGTH}",
            )


def _check_hours(settings: UserSettings, fail: Any) -> None:
    hours = settings.risk.trading_hours
    assert hours is not None
    for name in ("start", "end"):
        value = getattr(hours, name)
        if not _HHMM.match(value):
            raise fail(
                f"risk.trading_hours.{name}",
                f"risk.trading_hours.{name} {value[:40]!r} is not a time HH:MM (00:00 to 24:00)",
            )
    bad_days = [d for d in hours.days if not 0 <= d <= 6]
    if bad_days or len(hours.days) > 7:
        raise fail(
            "risk.trading_hours.days",
            f"risk.trading_hours.days {list(hours.days)[:10]} must be at most 7 days "
            "from 0 (Monday) to 6 (Sunday)",
        )
    if not time_zone_exists(hours.timezone):
        raise fail(
            "risk.trading_hours.timezone",
            f"risk.trading_hours.timezone {hours.timezone[:70]!r} is not a known IANA time zone"
            " (such as 'UTC' or 'Europe/London')",
        )


def time_zone_exists(name: str) -> bool:
    """Whether `name` resolves to a time zone (`zoneinfo`), as risk will resolve it."""
    if not name.strip() or len(name) > MAX_TIMEZONE_LENGTH:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # ValueError: a path, not a key
        return False
    return True


def _check_finite(data: Any, path: str, fail: Any) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            _check_finite(value, f"{path}.{key}" if path else str(key), fail)
    elif isinstance(data, list):
        for value in data:
            _check_finite(value, path, fail)
    elif isinstance(data, float) and not math.isfinite(data):
        raise fail(path, f"{path} {data} is not a finite number")


def _get(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _num(value: float) -> str:
    return format(value, ".12g") if isinstance(value, float) else str(value)
