"""Mapping of metaapi-cloud-sdk exceptions to the broker port's outcomes.

The SDK's exception classes do not share one base (only the REST ones derive
from `ApiException`), so the mapping checks each class explicitly. What a
failure means depends on whether it happened during a trade: a timeout on a
read simply failed, a timeout on a trade may have executed.
"""

from __future__ import annotations

import time
from datetime import datetime

import httpx
from metaapi_cloud_sdk.clients.error_handler import (
    ApiException,
    ConflictException,
    ForbiddenException,
    InternalException,
    NotFoundException,
    TooManyRequestsException,
    UnauthorizedException,
    ValidationException,
)
from metaapi_cloud_sdk.clients.metaapi.not_connected_exception import NotConnectedException
from metaapi_cloud_sdk.clients.metaapi.not_synchronized_exception import (
    NotSynchronizedException,
)
from metaapi_cloud_sdk.clients.metaapi.trade_exception import TradeException
from metaapi_cloud_sdk.clients.method_access_exception import MethodAccessException
from metaapi_cloud_sdk.clients.timeout_exception import TimeoutException

from contracts import broker_codes as codes
from contracts.broker import (
    AuthFailed,
    BrokerError,
    NotConnected,
    OutcomeUnknown,
    Rejected,
    RetryLater,
)

DEFAULT_RETRY_S = 5.0
_RETRY_BY_CODE = {10024: 5.0, 10004: 0.5, 10020: 0.5, 10021: 1.0, 10023: 0.5, 10028: 1.0, -6: 1.0}

# Plain `Exception` texts the SDK raises before anything is sent (see its connection
# instance): the request certainly did not reach the broker.
_NOT_SENT_MARKERS = ("has not been initialized", "has been closed, please create")


def redact(text: str, secret: str | None) -> str:
    """`text` with the secret (the MetaApi token) replaced by '***'."""
    if secret and secret in text:
        return text.replace(secret, "***")
    return text


def retry_after_from_metadata(metadata: object, now: float | None = None) -> float:
    """Seconds until `metadata['recommendedRetryTime']` (an ISO string or a datetime)."""
    now = time.time() if now is None else now
    value = metadata.get("recommendedRetryTime") if isinstance(metadata, dict) else None
    when: float | None = None
    if isinstance(value, datetime):
        when = value.timestamp()
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            when = None
    if when is None:
        return DEFAULT_RETRY_S
    return max(0.0, when - now)


def _validation_reason(err: ValidationException) -> str:
    details = getattr(err, "details", None)
    message = str(err).replace(", check error.details for more information", "")
    if isinstance(details, list) and details:
        parts = []
        for d in details:
            if isinstance(d, dict):
                name = d.get("parameter", "?")
                value = f" (value {d['value']!r})" if "value" in d else ""
                parts.append(f"{name}: {d.get('message', 'invalid')}{value}")
            else:
                parts.append(str(d))
        return f"MetaApi refused the request as invalid: {'; '.join(parts)}"
    if isinstance(details, str) and details:
        return f"MetaApi refused the request as invalid: {message} ({details})"
    return f"MetaApi refused the request as invalid: {message}"


def _from_trade_exception(err: TradeException, op: str) -> BrokerError:
    numeric = getattr(err, "numericCode", None)
    name = getattr(err, "stringCode", None)
    entry = codes.lookup(numeric if isinstance(numeric, int) else None, name)
    known = entry.numeric in codes.CODES
    reason = entry.reason if known else f"{entry.reason}: {err}"
    kw = {"broker_code": entry.numeric, "broker_code_name": name or entry.name}
    outcome = entry.outcome
    if outcome is codes.CodeOutcome.RETRY:
        return RetryLater(reason, retry_after_s=_RETRY_BY_CODE.get(entry.numeric, 1.0), **kw)  # type: ignore[arg-type]
    if outcome is codes.CodeOutcome.UNKNOWN:
        return OutcomeUnknown(f"{op}: {reason}", **kw)  # type: ignore[arg-type]
    if outcome is codes.CodeOutcome.NOT_CONNECTED:
        return NotConnected(reason, retry_after_s=DEFAULT_RETRY_S, **kw)  # type: ignore[arg-type]
    return Rejected(reason, **kw)  # type: ignore[arg-type]


def map_sdk_error(
    err: BaseException,
    *,
    op: str,
    trade: bool,
    secret: str | None = None,
    now: float | None = None,
) -> BrokerError:
    """The port outcome for an SDK exception raised by `op` ('place order c1', 'positions').

    `trade` says whether the call could have changed the account: then a timeout or a
    dropped connection is `OutcomeUnknown`; for reads it is `RetryLater`.
    """
    mapped = _map(err, op=op, trade=trade, now=now)
    if secret:
        mapped.reason = redact(mapped.reason, secret)
        mapped.args = (mapped.reason,)
    return mapped


def _map(err: BaseException, *, op: str, trade: bool, now: float | None) -> BrokerError:
    text = str(err)
    if isinstance(err, BrokerError):
        return err
    if isinstance(err, TradeException):
        return _from_trade_exception(err, op)
    if isinstance(err, TooManyRequestsException):
        wait = retry_after_from_metadata(getattr(err, "metadata", None), now)
        return RetryLater(
            f"MetaApi rate limit reached during {op}; retry in {wait:.0f} s",
            broker_code=429,
            broker_code_name="TOO_MANY_REQUESTS",
            retry_after_s=wait,
        )
    if isinstance(err, TimeoutException):
        if trade:
            return OutcomeUnknown(f"{op} timed out; it may still have executed")
        return RetryLater(f"{op} timed out", retry_after_s=1.0)
    if isinstance(err, NotConnectedException):
        return NotConnected(
            f"the MT terminal is not connected to the broker ({op})",
            retry_after_s=DEFAULT_RETRY_S,
        )
    if isinstance(err, NotSynchronizedException):
        return NotConnected(
            f"the MT terminal is not synchronized yet ({op})", retry_after_s=DEFAULT_RETRY_S
        )
    if isinstance(err, UnauthorizedException | ForbiddenException | MethodAccessException):
        kind = "rejected" if isinstance(err, UnauthorizedException) else "not allowed"
        return AuthFailed(f"the MetaApi token was {kind} during {op}")
    if isinstance(err, ValidationException):
        return Rejected(_validation_reason(err), broker_code=400, broker_code_name="VALIDATION")
    if isinstance(err, NotFoundException):
        return Rejected(f"{op}: not found ({text})", broker_code=404, broker_code_name="NOT_FOUND")
    if isinstance(err, ConflictException):
        return RetryLater(f"{op}: conflict at MetaApi ({text})", retry_after_s=DEFAULT_RETRY_S)
    if isinstance(err, InternalException):
        # an unknown error name on a trade: we cannot tell whether it executed
        if trade:
            return OutcomeUnknown(f"{op}: MetaApi internal error ({text})")
        return RetryLater(f"{op}: MetaApi internal error ({text})", retry_after_s=DEFAULT_RETRY_S)
    if isinstance(err, ApiException):
        status = getattr(err, "status_code", None)
        if status is None:  # the SDK's wrapping of httpx transport errors
            return RetryLater(f"MetaApi is unreachable ({op})", retry_after_s=DEFAULT_RETRY_S)
        return RetryLater(
            f"{op}: MetaApi answered HTTP {status} ({text})", retry_after_s=DEFAULT_RETRY_S
        )
    if isinstance(err, httpx.HTTPError):
        return NotConnected(
            f"MetaApi is unreachable ({op}: {type(err).__name__})", retry_after_s=DEFAULT_RETRY_S
        )
    if type(err) is Exception and any(m in text for m in _NOT_SENT_MARKERS):
        return NotConnected(f"the MetaApi connection is closed ({op})", retry_after_s=1.0)
    if trade:
        # "MetaApi connection closed" while the request was pending, or anything unforeseen
        return OutcomeUnknown(f"{op} failed with {type(err).__name__}: {text}")
    return RetryLater(
        f"{op} failed with {type(err).__name__}: {text}", retry_after_s=DEFAULT_RETRY_S
    )
