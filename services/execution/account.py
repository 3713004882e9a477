"""What execution believes about one broker account: a fold over `account-<id>`.

`holdings` are the positions and pending orders our intents left open (by
the intent that opened them); `submitting` are orders sent whose outcome is
not recorded yet; `reported` are intents whose outcome is recorded;
`broker_seq` is the last broker event applied (`BrokerEventRecorded`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.orders import ExecutionReport, Side

from .events import BrokerEventRecorded, OrderReported, OrderSubmitting, ReconciliationDifference

_EPS = 1e-9


@dataclass
class Holding:
    """A position (or a pending order, `position_id` None) one open intent left at the broker."""

    intent_id: str
    client_id: str
    symbol: str
    side: Side | None
    volume: float
    position_id: str | None = None
    order_id: str | None = None
    price: float | None = None
    sl: float | None = None
    tp: float | None = None
    opened: ExecutionReport | None = None  # the report that opened it

    @property
    def pending(self) -> bool:
        return self.position_id is None


@dataclass
class AccountState:
    account_id: str
    user_id: str = ""
    version: int = 0
    submitting: dict[str, OrderSubmitting] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    holdings: dict[str, Holding] = field(default_factory=dict)
    differences: dict[str, ReconciliationDifference] = field(default_factory=dict)
    broker_seq: int = 0

    def apply(self, event: Any, version: int) -> None:
        """Fold one event of the account stream (unknown kinds only move the version)."""
        self.version = version
        if isinstance(event, OrderSubmitting):
            self.submitting[event.intent.intent_id] = event
            self.user_id = event.intent.user_id or self.user_id
        elif isinstance(event, OrderReported):
            self._reported(event)
        elif isinstance(event, ReconciliationDifference):
            self.differences[difference_key(event)] = event
        elif isinstance(event, BrokerEventRecorded):
            self._broker_event(event)

    def holding_for(
        self, client_id: str | None, order_id: str | None, position_id: str | None
    ) -> Holding | None:
        """The holding a broker names by client id, else by its order or position id."""
        if client_id:
            for holding in self.holdings.values():
                if holding.client_id == client_id:
                    return holding
        for holding in self.holdings.values():
            if (order_id and holding.order_id == order_id) or (
                position_id and holding.position_id == position_id
            ):
                return holding
        return None

    def _broker_event(self, recorded: BrokerEventRecorded) -> None:
        self.broker_seq = max(self.broker_seq, recorded.event.seq)
        report = recorded.report
        target = self.holdings.get(report.intent_id)
        if target is None:
            return
        if report.status == "filled":
            target.position_id = report.position_id or target.order_id
            target.price = report.price if report.price is not None else target.price
            target.volume = report.volume if report.volume is not None else target.volume
        elif report.status == "closed":
            if report.remaining_volume is not None:
                target.volume = report.remaining_volume
            else:
                target.volume = round(target.volume - (report.volume or target.volume), 8)
            if target.volume <= _EPS:
                del self.holdings[target.intent_id]
        elif report.status == "cancelled":
            del self.holdings[target.intent_id]

    def _reported(self, event: OrderReported) -> None:
        report = event.report
        self.submitting.pop(report.intent_id, None)
        self.reported.add(report.intent_id)
        self.user_id = report.user_id or self.user_id
        if report.action == "open":
            if report.status in ("filled", "accepted"):
                self.holdings[report.intent_id] = Holding(
                    intent_id=report.intent_id,
                    client_id=event.client_id,
                    symbol=report.symbol,
                    side=report.side,
                    volume=report.volume or 0.0,
                    position_id=report.position_id if report.status == "filled" else None,
                    order_id=report.order_id,
                    price=report.price,
                    sl=report.sl,
                    tp=report.tp,
                    opened=report,
                )
            return
        target = self.holdings.get(event.target_intent_id or "")
        if target is None:
            return
        if report.status == "modified":
            target.sl = report.sl if report.sl is not None else target.sl
            target.tp = report.tp if report.tp is not None else target.tp
        elif report.status == "closed":
            if report.remaining_volume is not None:
                target.volume = report.remaining_volume
            else:
                target.volume = round(target.volume - (report.volume or target.volume), 8)
            if target.volume <= _EPS:
                del self.holdings[target.intent_id]
        elif report.status == "cancelled":
            del self.holdings[target.intent_id]


def difference_key(diff: ReconciliationDifference) -> str:
    ref = diff.intent_id or diff.position_id or diff.order_id or diff.client_id or ""
    return f"{diff.kind}:{ref}"
