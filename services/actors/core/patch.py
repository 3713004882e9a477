"""Settings patches (`{"lot.fixed_lot": 0.1}` or `{"lot": 0.1}`) and settings checks.

A patch names dotted paths into `UserSettings`, or a short alias for a common
one. The patched settings are rebuilt with `msgspec.convert`, so a wrong type
or an unknown field is an error naming the dotted field; then values are
checked for sense (a lot of 0, a max lot below the minimum, …).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import inspect as mi

from contracts.control import ControlError
from contracts.errors import ErrorCode
from contracts.settings import UserSettings

MIN_LOT = 0.01

ALIASES: dict[str, str] = {
    "lot": "lot.fixed_lot",
    "max_lot": "lot.max_lot",
    "lot_mode": "lot.mode",
    "risk_percent": "lot.risk_percent",
    "multiplier": "lot.multiplier",
    "suffix": "symbols.suffix",
    "prefix": "symbols.prefix",
    "tp_mode": "take_profits.mode",
    "tp_number": "take_profits.tp_number",
    "allowed_symbols": "risk.allowed_symbols",
    "blocked_symbols": "risk.blocked_symbols",
    "max_signal_age_s": "max_signal_age_s",
    "max_entry_distance_pips": "max_entry_distance_pips",
}

_SETTINGS_INFO = mi.type_info(UserSettings)
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$")
_UNKNOWN = re.compile(r"unknown field `(?P<name>[^`]+)`")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def apply_patch(
    settings: UserSettings, patch: Mapping[str, Any]
) -> tuple[UserSettings, tuple[str, ...]]:
    """The settings after a patch, and the dotted paths that changed (empty: no change)."""
    if not isinstance(patch, Mapping):
        raise ControlError(
            ErrorCode.INVALID_VALUE, "a settings patch is an object of dotted paths to values"
        )
    data: dict[str, Any] = msgspec.to_builtins(settings)
    for key, value in patch.items():
        if not isinstance(key, str) or not key:
            raise ControlError(ErrorCode.UNKNOWN_FIELD, f"setting {key!r} is not a field name")
        _set_path(data, ALIASES.get(key, key), value)
    updated = convert_settings(data, UserSettings)
    old = msgspec.to_builtins(settings)
    new = msgspec.to_builtins(updated)
    changed = tuple(_changed(old, new, _SETTINGS_INFO, ""))
    if changed:
        check_settings(updated, changed)
    return updated, changed


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    info: Any = _SETTINGS_INFO
    node = data
    for depth, part in enumerate(parts):
        dotted = ".".join(parts[: depth + 1])
        field = _field(info, part)
        if field is None:
            raise ControlError(
                ErrorCode.UNKNOWN_FIELD, f"settings have no field {dotted!r}", field=dotted
            )
        if depth == len(parts) - 1:
            node[part] = value
            return
        info = _struct_of(field.type)
        if info is None:
            raise ControlError(
                ErrorCode.UNKNOWN_FIELD,
                f"setting {dotted!r} is a value, not a group: {path!r} does not exist",
                field=path,
            )
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}  # an optional group set for the first time: defaults
        node = child


def _field(info: Any, name: str) -> Any:
    for field in info.fields:
        if field.name == name:
            return field
    return None


def _struct_of(type_info: Any) -> Any:
    if isinstance(type_info, mi.StructType):
        return type_info
    if isinstance(type_info, mi.UnionType):
        for member in type_info.types:
            if isinstance(member, mi.StructType):
                return member
    return None


def convert_settings(data: Any, target: type[Any], prefix: str = "") -> Any:
    """`msgspec.convert`, with validation errors as ControlErrors naming the dotted field."""
    try:
        return msgspec.convert(data, target)
    except msgspec.ValidationError as exc:
        raise validation_error(exc, prefix) from None


def validation_error(exc: msgspec.ValidationError, prefix: str = "") -> ControlError:
    match = _AT.match(str(exc))
    message = match.group("msg") if match else str(exc)
    path = (match.group("path") if match else "") or ""
    path = re.sub(r"\[\d+\]", "", path).lstrip(".")
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    unknown = _UNKNOWN.search(message)
    if unknown:
        field = f"{path}.{unknown.group('name')}" if path else unknown.group("name")
        return ControlError(ErrorCode.UNKNOWN_FIELD, f"no field {field!r}", field=field)
    missing = _MISSING.search(message)
    if missing:
        field = f"{path}.{missing.group('name')}" if path else missing.group("name")
        return ControlError(ErrorCode.MISSING_FIELD, f"{field!r} is required", field=field)
    return ControlError(
        ErrorCode.INVALID_VALUE, f"{path or 'value'}: {message}", field=path or None
    )


def _changed(old: Any, new: Any, info: Any, prefix: str) -> list[str]:
    paths: list[str] = []
    for field in info.fields:
        name = field.name
        dotted = f"{prefix}{name}"
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        child = _struct_of(field.type)
        if child is not None and isinstance(before, dict) and isinstance(after, dict):
            paths.extend(_changed(before, after, child, f"{dotted}."))
        else:
            paths.append(dotted)
    return paths


def check_settings(settings: UserSettings, changed: tuple[str, ...] = (), prefix: str = "") -> None:
    """Values that type-check but make no sense raise a ControlError naming the field."""

    def fail(code: ErrorCode, field: str, message: str) -> ControlError:
        return ControlError(code, message, field=f"{prefix}{field}")

    _check_finite(msgspec.to_builtins(settings), "", fail)
    lot = settings.lot
    for name in ("fixed_lot", "max_lot"):
        value = getattr(lot, name)
        if value <= 0:
            raise fail(
                ErrorCode.INVALID_VALUE, f"lot.{name}", f"lot.{name} {value} must be above 0"
            )
        if value < MIN_LOT - 1e-12:
            raise fail(
                ErrorCode.LOT_BELOW_MINIMUM,
                f"lot.{name}",
                f"lot.{name} {value} is below the minimum lot {MIN_LOT}",
            )
    if lot.mode == "fixed" and lot.fixed_lot > lot.max_lot + 1e-12:
        name = "lot.max_lot" if "lot.max_lot" in changed else "lot.fixed_lot"
        raise fail(
            ErrorCode.LOT_ABOVE_MAXIMUM,
            name,
            f"fixed lot {lot.fixed_lot} is above max_lot {lot.max_lot}",
        )
    if not 0 < lot.risk_percent <= 100:
        raise fail(
            ErrorCode.INVALID_VALUE,
            "lot.risk_percent",
            f"lot.risk_percent {lot.risk_percent} must be above 0 and at most 100",
        )
    if lot.multiplier <= 0:
        raise fail(
            ErrorCode.INVALID_VALUE,
            "lot.multiplier",
            f"lot.multiplier {lot.multiplier} must be above 0",
        )
    if settings.take_profits.tp_number < 1:
        raise fail(
            ErrorCode.INVALID_VALUE,
            "take_profits.tp_number",
            f"take_profits.tp_number {settings.take_profits.tp_number} must be 1 or more",
        )
    if settings.max_signal_age_s <= 0:
        raise fail(
            ErrorCode.INVALID_VALUE,
            "max_signal_age_s",
            f"max_signal_age_s {settings.max_signal_age_s} must be above 0",
        )
    distance = settings.max_entry_distance_pips
    if distance is not None and distance < 0:
        raise fail(
            ErrorCode.INVALID_VALUE,
            "max_entry_distance_pips",
            f"max_entry_distance_pips {distance} must be 0 or more (or null for no limit)",
        )
    _check_risk(settings, fail)


def _check_finite(data: Any, path: str, fail: Any) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            _check_finite(value, f"{path}.{key}" if path else str(key), fail)
    elif isinstance(data, list):
        for value in data:
            _check_finite(value, path, fail)
    elif isinstance(data, float) and not math.isfinite(data):
        raise fail(ErrorCode.INVALID_VALUE, path, f"{path} {data} is not a finite number")


def _check_risk(settings: UserSettings, fail: Any) -> None:
    risk = settings.risk
    for name in (
        "max_lot_per_order",
        "max_volume_per_symbol",
        "daily_loss_limit",
        "daily_loss_limit_pct",
        "max_spread_pips",
    ):
        value = getattr(risk, name)
        if value is not None and value <= 0:
            raise fail(
                ErrorCode.INVALID_VALUE, f"risk.{name}", f"risk.{name} {value} must be above 0"
            )
    if risk.daily_loss_limit_pct is not None and risk.daily_loss_limit_pct > 100:
        raise fail(
            ErrorCode.INVALID_VALUE,
            "risk.daily_loss_limit_pct",
            f"risk.daily_loss_limit_pct {risk.daily_loss_limit_pct} must be at most 100",
        )
    for name in ("max_open_positions", "max_positions_per_symbol", "max_orders_per_minute"):
        value = getattr(risk, name)
        if value is not None and value < 0:
            raise fail(
                ErrorCode.INVALID_VALUE, f"risk.{name}", f"risk.{name} {value} must be 0 or more"
            )
    for name in ("allowed_symbols", "blocked_symbols"):
        for symbol in getattr(risk, name):
            if not symbol.strip():
                raise fail(
                    ErrorCode.INVALID_VALUE, f"risk.{name}", f"risk.{name} holds an empty symbol"
                )
    hours = risk.trading_hours
    if hours is None:
        return
    for name in ("start", "end"):
        value = getattr(hours, name)
        if not _HHMM.match(value):
            raise fail(
                ErrorCode.INVALID_VALUE,
                f"risk.trading_hours.{name}",
                f"risk.trading_hours.{name} {value!r} is not a time HH:MM (00:00 to 24:00)",
            )
    bad_days = [d for d in hours.days if not 0 <= d <= 6]
    if bad_days:
        raise fail(
            ErrorCode.INVALID_VALUE,
            "risk.trading_hours.days",
            f"risk.trading_hours.days {bad_days} are not days 0 (Monday) to 6 (Sunday)",
        )
    if not hours.timezone.strip():
        raise fail(ErrorCode.INVALID_VALUE, "risk.trading_hours.timezone", "the time zone is empty")
