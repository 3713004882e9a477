"""Settings patches (`{"lot.fixed_lot": 0.1}` or `{"lot": 0.1}`) and settings checks.

A patch names dotted paths into `UserSettings`, or a short alias for a common
one. The patched settings are rebuilt with `msgspec.convert`, so a wrong type
or an unknown field is an error naming the dotted field; then values are
checked against their bounds (`contracts.settings_bounds`: a lot of 0, a lot
above the operator maximum, an unknown time zone, …).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import inspect as mi

from contracts import settings_bounds as bounds
from contracts.control import ControlError
from contracts.errors import ErrorCode
from contracts.settings import UserSettings

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
            raise ControlError(
                ErrorCode.UNKNOWN_FIELD,
                f"setting {key!r} is not a field name",
                field=key if isinstance(key, str) else repr(key),
            )
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
    """Values out of their bounds (`contracts.settings_bounds`) raise a ControlError
    naming the dotted field, the value and the bound."""
    try:
        bounds.check_settings(settings, changed, prefix)
    except bounds.SettingError as exc:
        raise ControlError(exc.code, exc.message, field=exc.field) from None
