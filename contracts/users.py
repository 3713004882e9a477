"""A user's event stream (`user-<id>`) and the control requests that change it.

Every accepted control command becomes one of these events; every signal a
user's actor sees ends as `SignalHandled` (with its order intents) or
`SignalRefused` (with a reason code). Broker credentials appear only as
ciphertext (`SealedToken`), never in plaintext.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from contracts.envelope import Envelope
from contracts.orders import ExecutionReport, OrderIntent, RiskVerdict
from contracts.settings import ChannelOverrides, UserSettings

Broker = Literal["paper", "metaapi"]

# The grammar of a user id, everywhere: it is a stream name (`user-<id>`) and one
# subject token (`ctl.user.<verb>.<id>`), so an id is checked, never rewritten.
USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")  # \Z: `$` accepts a trailing newline


def check_user_id(user_id: str) -> str:
    """`user_id` if it is a valid id, else ValueError saying the grammar."""
    if not USER_ID.match(user_id):
        raise ValueError(f"user id {user_id[:70]!r} must be 1-64 letters, digits, '_' or '-'")
    return user_id


class SealedToken(msgspec.Struct, frozen=True, kw_only=True):
    """A broker token encrypted under the user's data key (AES-GCM)."""

    key_version: int
    nonce: bytes
    ciphertext: bytes


# --- events ----------------------------------------------------------------------


class UserRegistered(Envelope, frozen=True, kw_only=True, tag="user.registered"):
    user_id: str
    display_name: str = ""


class AccountLinked(Envelope, frozen=True, kw_only=True, tag="user.account_linked"):
    account_id: str
    broker: Broker
    token: SealedToken | None = None  # None for paper accounts


class AccountUnlinked(Envelope, frozen=True, kw_only=True, tag="user.account_unlinked"):
    account_id: str


class Subscribed(Envelope, frozen=True, kw_only=True, tag="user.subscribed"):
    channel: str
    overrides: ChannelOverrides | None = None


class Unsubscribed(Envelope, frozen=True, kw_only=True, tag="user.unsubscribed"):
    channel: str


class SettingsChanged(Envelope, frozen=True, kw_only=True, tag="user.settings_changed"):
    settings: UserSettings
    changed: tuple[str, ...] = ()  # dotted paths of the fields that changed


class Paused(Envelope, frozen=True, kw_only=True, tag="user.paused"):
    """No new positions; follow-ups on open ones still apply."""

    reason: str = ""


class Stopped(Envelope, frozen=True, kw_only=True, tag="user.stopped"):
    """No orders at all, not even follow-ups, until resumed."""

    reason: str = ""


class Resumed(Envelope, frozen=True, kw_only=True, tag="user.resumed"):
    pass


class CloseAllRequested(Envelope, frozen=True, kw_only=True, tag="user.close_all"):
    intents: tuple[OrderIntent, ...] = ()
    reason: str = ""


class UserDeleted(Envelope, frozen=True, kw_only=True, tag="user.deleted"):
    """The user's data key is destroyed: their sealed tokens are unreadable for good."""


class SignalHandled(Envelope, frozen=True, kw_only=True, tag="user.signal_handled"):
    signal_id: str
    revision: int
    message_id: int
    kind: str  # open / modify / close / cancel
    intents: tuple[OrderIntent, ...]
    note: str = ""


class SignalRefused(Envelope, frozen=True, kw_only=True, tag="user.signal_refused"):
    signal_id: str
    revision: int
    message_id: int
    code: str  # a RefusalCode value
    reason: str  # plain words, naming the values involved


class VerdictRecorded(Envelope, frozen=True, kw_only=True, tag="user.verdict"):
    """Risk's answer to one of this user's intents."""

    verdict: RiskVerdict


class ReportRecorded(Envelope, frozen=True, kw_only=True, tag="user.report"):
    """What the broker did with one of this user's intents."""

    report: ExecutionReport


USER_EVENTS = (
    UserRegistered,
    AccountLinked,
    AccountUnlinked,
    Subscribed,
    Unsubscribed,
    SettingsChanged,
    Paused,
    Stopped,
    Resumed,
    CloseAllRequested,
    UserDeleted,
    SignalHandled,
    SignalRefused,
    VerdictRecorded,
    ReportRecorded,
)


def user_stream(user_id: str) -> str:
    return f"user-{user_id}"


# --- control requests (JSON bodies of ctl.user.<verb>.<user>) --------------------
# Lengths are bounded here, on the request types only: the events that store these
# values are read back from the log and must stay readable whatever they hold.

DisplayName = Annotated[str, msgspec.Meta(max_length=100)]
Reason = Annotated[str, msgspec.Meta(max_length=500)]
AccountId = Annotated[str, msgspec.Meta(max_length=128)]
Token = Annotated[str, msgspec.Meta(max_length=4096)]
ChannelName = Annotated[str, msgspec.Meta(max_length=64)]


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class RegisterRequest(_Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    display_name: DisplayName = ""


class LinkAccountRequest(_Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`account_id` of a MetaApi account with its `token`, or `account_id="paper"`."""

    account_id: AccountId
    token: Token | None = None
    broker: Broker | None = None  # inferred: "paper" for account_id "paper", else "metaapi"


class EmptyRequest(_Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class SubscribeRequest(_Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channel: ChannelName
    overrides: ChannelOverrides | None = None


class UnsubscribeRequest(_Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channel: ChannelName


class ReasonRequest(_Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Reason = ""


class DeleteRequest(_Request, frozen=True, kw_only=True, forbid_unknown_fields=True):
    confirm: bool = False  # must be true: deleting shreds the user's secrets for good


VERB_REQUESTS: dict[str, type[_Request]] = {
    "register": RegisterRequest,
    "link_account": LinkAccountRequest,
    "unlink_account": EmptyRequest,
    "subscribe": SubscribeRequest,
    "unsubscribe": UnsubscribeRequest,
    "pause": ReasonRequest,
    "resume": EmptyRequest,
    "stop": ReasonRequest,
    "status": EmptyRequest,
    "positions": EmptyRequest,
    "close_all": ReasonRequest,
    "delete": DeleteRequest,
}
"""Every per-user verb but `settings`, whose body is a patch of dotted paths
(`{"lot.fixed_lot": 0.1}`, or short names such as `{"lot": 0.1}`); an empty
body reads the settings."""

USER_VERBS = (*VERB_REQUESTS, "settings")
SYSTEM_VERBS = ("stats", "health")
