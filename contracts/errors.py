"""Machine-readable error codes of the control plane and of refusals.

Codes are stable strings: clients branch on them, so a code is never reused
for a different meaning. Messages are for people and name the value found.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    # request shape
    MALFORMED_JSON = "malformed_json"
    UNKNOWN_VERB = "unknown_verb"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    INVALID_VALUE = "invalid_value"
    REQUEST_TOO_LARGE = "request_too_large"
    # domain
    UNKNOWN_USER = "unknown_user"
    USER_EXISTS = "user_exists"
    USER_DELETED = "user_deleted"
    UNKNOWN_CHANNEL = "unknown_channel"
    NOT_SUBSCRIBED = "not_subscribed"
    ACCOUNT_NOT_LINKED = "account_not_linked"
    ACCOUNT_TAKEN = "account_taken"
    LOT_BELOW_MINIMUM = "lot_below_minimum"
    LOT_ABOVE_MAXIMUM = "lot_above_maximum"
    INVALID_STATE = "invalid_state"
    # system
    CONFLICT = "conflict"  # a concurrent change won; retry
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
