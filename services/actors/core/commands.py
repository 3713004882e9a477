"""`decide_command`: a user's control request turned into events, or a `ControlError`.

The shell decodes the request, seals any broker token (the core never sees
plaintext), looks up global facts (is an account claimed by another user? is
a channel known?) and hands them in a `CommandContext`. Event ids derive from
the request id (`<request_id>:<n>`), so a retried request yields the same
events and the event store's idempotency key drops the repeat.

Rules beyond the obvious:
- `register` on a deleted user is `user_deleted`: a deleted id is never reused.
- `link_account` with `account_id="paper"` links the paper account
  `paper-<user_id>`; a MetaApi account needs a token; relinking the same
  account replaces its token; a different account needs an unlink first.
- `pause` and `stop` are refused only when the user is already so; `stop`
  after `pause` (or `pause` after `stop`) changes the status.
- `close_all` closes every open leg and cancels every pending order; with
  nothing live it is `invalid_state`.
- Read verbs (`status`, `positions`, `settings` without a patch) produce no events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from contracts.channels import CHANNEL_NAME
from contracts.control import ControlError
from contracts.errors import ErrorCode
from contracts.orders import OrderIntent
from contracts.settings import effective
from contracts.users import (
    USER_VERBS,
    VERB_REQUESTS,
    AccountLinked,
    AccountUnlinked,
    Broker,
    CloseAllRequested,
    DeleteRequest,
    EmptyRequest,
    LinkAccountRequest,
    Paused,
    ReasonRequest,
    RegisterRequest,
    Resumed,
    SealedToken,
    SettingsChanged,
    Stopped,
    Subscribed,
    SubscribeRequest,
    Unsubscribed,
    UnsubscribeRequest,
    UserDeleted,
    UserRegistered,
)

from .patch import apply_patch, check_settings, validation_error
from .state import Leg, UserState

MAX_NAME = 64
MAX_REASON = 500
PAPER_PREFIX = "paper-"  # `paper-<user>`: that user's own paper account, nobody else's
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}\Z")


class CommandContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the shell knows for one control request (never encoded: it holds a callable).

    - `request_id`: the control request's id; event ids are `<request_id>:<n>`.
    - `sealed_token`: the `link_account` token, already encrypted by the shell.
    - `account_taken`: the account is linked to another user (global index).
    - `known_channels`: whether a channel exists; None accepts every valid name.
    """

    now_ns: int
    user_id: str
    request_id: str
    sealed_token: SealedToken | None = None
    account_taken: bool = False
    known_channels: Callable[[str], bool] | None = None


def decide_command(state: UserState, verb: str, request: Any, ctx: CommandContext) -> list[Any]:
    """Events for one accepted command; raises `ControlError` for a refused one."""
    if ctx.user_id != state.user_id:
        raise ControlError(
            ErrorCode.INTERNAL,
            f"a command for user {ctx.user_id} reached the actor of user {state.user_id}",
        )
    if verb not in USER_VERBS:
        raise ControlError(
            ErrorCode.UNKNOWN_VERB, f"unknown verb {verb!r}; known: {', '.join(USER_VERBS)}"
        )
    body = _request(verb, request)
    if verb == "register":
        return _register(state, body, ctx)
    _require_user(state)
    handler = _HANDLERS.get(verb)
    return [] if handler is None else handler(state, body, ctx)


def _request(verb: str, request: Any) -> Any:
    if verb == "settings":
        if request is None:
            return {}
        if not isinstance(request, Mapping):
            raise ControlError(
                ErrorCode.INVALID_VALUE, "a settings patch is an object of dotted paths to values"
            )
        return request
    kind = VERB_REQUESTS[verb]
    if isinstance(request, kind):
        return request
    if request is None:
        request = {}
    if isinstance(request, msgspec.Struct):
        request = msgspec.to_builtins(request)
    try:
        return msgspec.convert(request, kind)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


def _require_user(state: UserState) -> None:
    if state.status == "deleted":
        raise ControlError(ErrorCode.USER_DELETED, f"user {state.user_id} was deleted")
    if not state.registered:
        raise ControlError(ErrorCode.UNKNOWN_USER, f"no user {state.user_id}; register first")


class _Events:
    """Envelopes for one request's events: deterministic ids `<request_id>:<n>`."""

    def __init__(self, ctx: CommandContext) -> None:
        self.ctx = ctx
        self.count = 0

    def envelope(self) -> dict[str, Any]:
        self.count += 1
        rid = self.ctx.request_id
        return {
            "id": f"{rid}:{self.count}",
            "ts": self.ctx.now_ns,
            "correlation_id": rid,
            "causation_id": rid,
        }


def _register(state: UserState, body: RegisterRequest, ctx: CommandContext) -> list[Any]:
    if state.status == "deleted":
        raise ControlError(
            ErrorCode.USER_DELETED, f"user {state.user_id} was deleted; the id cannot be reused"
        )
    if state.registered:
        raise ControlError(ErrorCode.USER_EXISTS, f"user {state.user_id} is already registered")
    name = body.display_name.strip()
    if len(name) > MAX_NAME:
        raise ControlError(
            ErrorCode.INVALID_VALUE,
            f"display_name is {len(name)} characters; at most {MAX_NAME}",
            field="display_name",
        )
    return [UserRegistered(**_Events(ctx).envelope(), user_id=state.user_id, display_name=name)]


def link_target(user_id: str, body: LinkAccountRequest) -> tuple[str, Broker]:
    """The account a `link_account` request names, and its broker, or a `ControlError`.

    Everything about the request that needs no state. The shell claims exactly
    this account id before the actor decides, so the claim and the linked
    account can never differ (a stray space, "paper" for `paper-<user>`).
    `paper-<user>` names are reserved for their user: anyone else's would put
    their orders into that user's paper account.
    """
    account_id = body.account_id.strip()
    if not account_id:
        raise ControlError(ErrorCode.INVALID_VALUE, "account_id is empty", field="account_id")
    if not _ACCOUNT_ID.match(account_id):
        raise ControlError(
            ErrorCode.INVALID_VALUE,
            f"account_id {account_id[:40]!r} must be 1-128 letters, digits or . _ : @ -",
            field="account_id",
        )
    own_paper = f"{PAPER_PREFIX}{user_id}"
    broker: Broker = body.broker or ("paper" if account_id in ("paper", own_paper) else "metaapi")
    if account_id.startswith(PAPER_PREFIX) and account_id != own_paper:
        owner = account_id[len(PAPER_PREFIX) :]
        raise ControlError(
            ErrorCode.INVALID_VALUE,
            f"account_id {account_id!r} is reserved for the paper account of user {owner};"
            f" account_id 'paper' links yours ({own_paper})",
            field="account_id",
        )
    if broker == "paper":
        if body.token:
            raise ControlError(
                ErrorCode.INVALID_VALUE, "a paper account takes no token", field="token"
            )
        return (own_paper if account_id == "paper" else account_id), broker
    if account_id in ("paper", own_paper):
        raise ControlError(
            ErrorCode.INVALID_VALUE,
            f"account_id {account_id!r} names the paper broker, not a MetaApi account",
            field="broker",
        )
    if not body.token:
        raise ControlError(
            ErrorCode.MISSING_FIELD,
            f"linking MetaApi account {account_id} needs its token",
            field="token",
        )
    return account_id, broker


def _link_account(state: UserState, body: LinkAccountRequest, ctx: CommandContext) -> list[Any]:
    account_id, broker = link_target(state.user_id, body)
    token: SealedToken | None = None
    if broker == "metaapi":
        if ctx.sealed_token is None:
            raise ControlError(ErrorCode.INTERNAL, "the token was not sealed before the actor")
        token = ctx.sealed_token
    if ctx.account_taken:
        raise ControlError(
            ErrorCode.ACCOUNT_TAKEN,
            f"account {account_id} is linked to another user",
            field="account_id",
        )
    current = state.account
    if current is not None and current.account_id != account_id:
        raise ControlError(
            ErrorCode.INVALID_STATE,
            f"user {state.user_id} has account {current.account_id} linked; unlink it first",
            field="account_id",
        )
    if current is not None and token is None and current.broker == broker:
        raise ControlError(
            ErrorCode.INVALID_STATE, f"account {account_id} is already linked", field="account_id"
        )
    event = AccountLinked(
        **_Events(ctx).envelope(), account_id=account_id, broker=broker, token=token
    )
    return [event]


def _unlink_account(state: UserState, body: EmptyRequest, ctx: CommandContext) -> list[Any]:
    if state.account is None:
        raise ControlError(
            ErrorCode.ACCOUNT_NOT_LINKED, f"user {state.user_id} has no account linked"
        )
    return [AccountUnlinked(**_Events(ctx).envelope(), account_id=state.account.account_id)]


def _subscribe(state: UserState, body: SubscribeRequest, ctx: CommandContext) -> list[Any]:
    channel = body.channel
    if not CHANNEL_NAME.match(channel):
        raise ControlError(
            ErrorCode.INVALID_VALUE,
            f"channel {channel[:70]!r} must be 1-64 lower-case letters, digits, '_' or '-'",
            field="channel",
        )
    if ctx.known_channels is not None and not ctx.known_channels(channel):
        raise ControlError(
            ErrorCode.UNKNOWN_CHANNEL, f"no channel {channel!r} is known", field="channel"
        )
    if body.overrides is not None:
        check_settings(effective(state.settings, body.overrides), prefix="overrides.")
    current = state.subscription(channel)
    if current is not None and current.overrides == body.overrides:
        raise ControlError(
            ErrorCode.INVALID_STATE,
            f"user {state.user_id} is already subscribed to {channel}",
            field="channel",
        )
    return [Subscribed(**_Events(ctx).envelope(), channel=channel, overrides=body.overrides)]


def _unsubscribe(state: UserState, body: UnsubscribeRequest, ctx: CommandContext) -> list[Any]:
    if state.subscription(body.channel) is None:
        raise ControlError(
            ErrorCode.NOT_SUBSCRIBED,
            f"user {state.user_id} is not subscribed to {body.channel[:70]!r}",
            field="channel",
        )
    return [Unsubscribed(**_Events(ctx).envelope(), channel=body.channel)]


def _settings(state: UserState, body: Mapping[str, Any], ctx: CommandContext) -> list[Any]:
    if not body:
        return []
    updated, changed = apply_patch(state.settings, body)
    if not changed:
        return []
    return [SettingsChanged(**_Events(ctx).envelope(), settings=updated, changed=changed)]


def _reason(body: ReasonRequest) -> str:
    reason = body.reason.strip()
    if len(reason) > MAX_REASON:
        raise ControlError(
            ErrorCode.INVALID_VALUE,
            f"reason is {len(reason)} characters; at most {MAX_REASON}",
            field="reason",
        )
    return reason


def _pause(state: UserState, body: ReasonRequest, ctx: CommandContext) -> list[Any]:
    if state.status == "paused":
        raise ControlError(ErrorCode.INVALID_STATE, f"user {state.user_id} is already paused")
    return [Paused(**_Events(ctx).envelope(), reason=_reason(body))]


def _stop(state: UserState, body: ReasonRequest, ctx: CommandContext) -> list[Any]:
    if state.status == "stopped":
        raise ControlError(ErrorCode.INVALID_STATE, f"user {state.user_id} is already stopped")
    return [Stopped(**_Events(ctx).envelope(), reason=_reason(body))]


def _resume(state: UserState, body: EmptyRequest, ctx: CommandContext) -> list[Any]:
    if state.status == "active":
        raise ControlError(
            ErrorCode.INVALID_STATE, f"user {state.user_id} is active: nothing to resume"
        )
    return [Resumed(**_Events(ctx).envelope())]


def _close_all(state: UserState, body: ReasonRequest, ctx: CommandContext) -> list[Any]:
    live = state.live_legs()
    if not live:
        raise ControlError(
            ErrorCode.INVALID_STATE,
            f"user {state.user_id} has no open position or pending order to close",
        )
    if state.account is None:
        raise ControlError(
            ErrorCode.ACCOUNT_NOT_LINKED,
            f"user {state.user_id} has no account linked to close positions on",
        )
    intents = tuple(_close_intent(state, leg, ctx) for leg in live)
    return [CloseAllRequested(**_Events(ctx).envelope(), intents=intents, reason=_reason(body))]


def _close_intent(state: UserState, leg: Leg, ctx: CommandContext) -> OrderIntent:
    action: Literal["cancel", "close"] = "cancel" if leg.pending else "close"
    intent_id = f"{leg.intent_id}|{action}|{ctx.request_id}"
    return OrderIntent(
        id=intent_id,
        ts=ctx.now_ns,
        correlation_id=ctx.request_id,
        causation_id=ctx.request_id,
        intent_id=intent_id,
        user_id=state.user_id,
        account_id=leg.account_id,
        broker=leg.broker,
        action=action,
        signal_id=leg.signal_id,
        leg=leg.leg,
        symbol=leg.symbol,
        signal_symbol=leg.signal_symbol,
        side=leg.side,
        order_type=leg.order_type,
        volume=leg.remaining,
        price=leg.entry,
        sl=leg.sl,
        tp=leg.tp,
        target_intent_id=leg.intent_id,
        close_fraction=1.0 if action == "close" else None,
        decided_ns=ctx.now_ns,
    )


def _delete(state: UserState, body: DeleteRequest, ctx: CommandContext) -> list[Any]:
    if not body.confirm:
        raise ControlError(
            ErrorCode.INVALID_VALUE,
            "delete needs confirm=true: it destroys the user's broker credentials for good",
            field="confirm",
        )
    return [UserDeleted(**_Events(ctx).envelope())]


_HANDLERS: dict[str, Callable[[UserState, Any, CommandContext], list[Any]]] = {
    "link_account": _link_account,
    "unlink_account": _unlink_account,
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "settings": _settings,
    "pause": _pause,
    "resume": _resume,
    "stop": _stop,
    "close_all": _close_all,
    "delete": _delete,
}
