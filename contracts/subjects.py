"""NATS subject names and JetStream stream definitions.

Subjects are hierarchical, most general token first, so that one wildcard
selects a flow (`orders.>`) or one user's part of it (`orders.*.u42`).
Control endpoints are `<service>.<verb>`; requests for a user are sent to
`ctl.user.<verb>.<user_id>` and the NATS server maps them (subject mapping
with `partition(n, …)`) onto `ctl.p.<partition>.<verb>.<user_id>`, which the
actor host owning that partition listens on. Clients never need to know the
partition count.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.users import check_user_id

# --- signal flow ---------------------------------------------------------------
RAW = "signals.raw"  # signals.raw.<channel>: a channel message (new, edit, delete)
PARSED = "signals.parsed"  # signals.parsed.<channel>: the parse result of one revision

# --- order flow ----------------------------------------------------------------
INTENT = "orders.intent"  # orders.intent.<user>: an actor's order intent, to risk
VERDICT = "orders.verdict"  # orders.verdict.<user>: risk's approval or rejection
REPORT = "orders.report"  # orders.report.<user>: execution reports from the broker side

# --- market data (core NATS, not stored: only the latest quote matters) --------
PRICES = "prices"  # prices.<symbol>: Quote from the broker side, for distance/spread checks

# --- the paper exchange (a simulated broker, reached by request/reply) ---------
BROKER_PAPER = "broker.paper"  # broker.paper.<account>.<op>
# broker.events.<broker>: a JSON list of accounts with new broker events (a stop
# hit, a limit filled). Core NATS, so it may be lost: it is a cue to pull the
# events (numbered, idempotent), and a slow sweep pulls anyway.
BROKER_EVENTS = "broker.events"

# --- domain events relayed from the event log's outbox ------------------------
EVENTS = "events"  # events.<stream-kind>.<id>, e.g. events.user.u42

# --- control plane (request/reply) --------------------------------------------
CTL_USER = "ctl.user"  # ctl.user.<verb>.<user>, what clients send
CTL_PARTITION = "ctl.p"  # ctl.p.<partition>.<verb>.<user>, what hosts serve
CTL_SYSTEM = "ctl.sys"  # ctl.sys.<verb>: stats, health (every service answers)
CTL_SERVICE = "ctl.svc"  # ctl.svc.<service>.<verb>: one service's own verbs

# --- audit and dead letters ------------------------------------------------------
AUDIT = "audit"  # audit.control.<user>: control requests and replies, redacted
DEAD_LETTER = "dlq"  # dlq.<service>: messages a consumer refused, with the reason


def token(value: str) -> str:
    """Make a value safe as one subject token (no dots, wildcards or spaces)."""
    out = []
    for ch in value:
        out.append("_" if ch in ".*> \t\r\n" else ch)
    return "".join(out) or "_"


# --- replies ---------------------------------------------------------------------
INBOX = "_INBOX"  # the client libraries' default, left to admin


def inbox_prefix(user: str) -> str:
    """`_INBOX_<user>`: where one NATS user's replies and stream deliveries arrive.

    Each user may subscribe to its own prefix only, so no service reads another's
    replies; a client connecting as that user sets it (nats-py `inbox_prefix=`).
    """
    return f"{INBOX}_{token(user)}"


def raw(channel: str) -> str:
    return f"{RAW}.{token(channel)}"


def parsed(channel: str) -> str:
    return f"{PARSED}.{token(channel)}"


def intent(user_id: str) -> str:
    return f"{INTENT}.{token(user_id)}"


def verdict(user_id: str) -> str:
    return f"{VERDICT}.{token(user_id)}"


def report(user_id: str) -> str:
    return f"{REPORT}.{token(user_id)}"


def prices(symbol: str) -> str:
    return f"{PRICES}.{token(symbol)}"


def stream_events(stream: str) -> str:
    """Outbox subject for an event-log stream named `<kind>-<id>`."""
    kind, _, ident = stream.partition("-")
    return f"{EVENTS}.{token(kind)}.{token(ident or kind)}"


def ctl_user(verb: str, user_id: str) -> str:
    """The subject of a user's control request; ValueError for an id that is not one
    (rewriting it would address another user: `a.b` and `a_b` alike)."""
    return f"{CTL_USER}.{token(verb)}.{check_user_id(user_id)}"


def ctl_partition(partition: int, verb: str = "*", user: str = "*") -> str:
    return f"{CTL_PARTITION}.{partition}.{verb}.{user}"


def ctl_system(verb: str) -> str:
    return f"{CTL_SYSTEM}.{token(verb)}"


def dead_letter(service: str) -> str:
    return f"{DEAD_LETTER}.{token(service)}"


@dataclass(frozen=True)
class StreamSpec:
    """A JetStream stream the system needs; created at start by whoever starts first."""

    name: str
    subjects: tuple[str, ...]
    max_age_s: float  # how long JetStream keeps messages: it is transport, not the truth
    duplicate_window_s: float = 120.0


STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec("SIGNALS", (f"{RAW}.>", f"{PARSED}.>"), max_age_s=7 * 86400),
    StreamSpec("ORDERS", (f"{INTENT}.>", f"{VERDICT}.>", f"{REPORT}.>"), max_age_s=7 * 86400),
    StreamSpec("EVENTS", (f"{EVENTS}.>",), max_age_s=7 * 86400),
    StreamSpec("AUDIT", (f"{AUDIT}.>",), max_age_s=7 * 86400),
    StreamSpec("DEADLETTER", (f"{DEAD_LETTER}.>",), max_age_s=30 * 86400),
)


def broker_events_notice(broker: str) -> str:
    return f"{BROKER_EVENTS}.{broker}"
