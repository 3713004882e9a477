"""Reconciliation: what the account stream believes against what the broker holds.

`compare` is pure: our holdings (positions and pending orders our intents
opened, `account.py`) against the broker's `positions()` and `orders()`,
matched by client id first, then by position / order id. Differences:

- `missing_at_broker`: we hold it, the broker does not (a stop or target hit,
  a manual close, or an order that never filled);
- `unknown_at_broker`: the broker holds it, we never recorded it (a manual
  trade, or an order whose report is missing);
- `volume_mismatch`: both hold it with different volumes.

`Reconciler.reconcile` runs one account: recovery first (an order sent
without a report would otherwise show as unknown), then the comparison;
each difference not recorded in the same form before becomes a
`ReconciliationDifference` event in the account stream. The report lists
all current differences, marking those recorded now as `new`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import msgspec

from contracts.broker import BrokerError, PendingOrder, Position
from contracts.envelope import new_id, now_ns

from .account import AccountState, Holding, difference_key
from .events import DifferenceKind, ReconciliationDifference
from .executor import ExecutionCore

log = logging.getLogger("sigrelay.execution")

_EPS = 1e-9


def compare(
    account_id: str,
    holdings: Mapping[str, Holding],
    positions: Sequence[Position],
    orders: Sequence[PendingOrder],
    *,
    ts: int = 0,
) -> list[ReconciliationDifference]:
    """Differences between our holdings and the broker's positions and orders (pure)."""
    pos_by_client = {p.client_id: p for p in positions if p.client_id}
    pos_by_id = {p.position_id: p for p in positions}
    ord_by_client = {o.client_id: o for o in orders if o.client_id}
    ord_by_id = {o.order_id: o for o in orders}
    matched_pos: set[str] = set()
    matched_ord: set[str] = set()
    out: list[ReconciliationDifference] = []

    def diff(kind: DifferenceKind, **kw: Any) -> None:
        out.append(
            ReconciliationDifference(id=new_id(), ts=ts, account_id=account_id, kind=kind, **kw)
        )

    for h in holdings.values():
        # a pending order that filled is a position at the broker now: match both ways
        live: Position | PendingOrder | None = pos_by_client.get(h.client_id) or (
            pos_by_id.get(h.position_id) if h.position_id else None
        )
        if live is None:
            live = ord_by_client.get(h.client_id) or (
                ord_by_id.get(h.order_id) if h.order_id and h.pending else None
            )
        if live is None:
            diff(
                "missing_at_broker",
                intent_id=h.intent_id,
                client_id=h.client_id,
                position_id=h.position_id,
                order_id=h.order_id,
                symbol=h.symbol,
                believed_volume=h.volume,
                detail=f"{'order' if h.pending else 'position'} of intent {h.intent_id}"
                " is not at the broker",
            )
            continue
        if isinstance(live, Position):
            matched_pos.add(live.position_id)
        else:
            matched_ord.add(live.order_id)
        if abs(live.volume - h.volume) > _EPS:
            diff(
                "volume_mismatch",
                intent_id=h.intent_id,
                client_id=h.client_id,
                position_id=live.position_id if isinstance(live, Position) else None,
                order_id=live.order_id if isinstance(live, PendingOrder) else h.order_id,
                symbol=h.symbol,
                believed_volume=h.volume,
                broker_volume=live.volume,
                detail=f"we hold {h.volume} lots, the broker {live.volume}",
            )
    for p in positions:
        if p.position_id not in matched_pos:
            diff(
                "unknown_at_broker",
                client_id=p.client_id,
                position_id=p.position_id,
                symbol=p.symbol,
                broker_volume=p.volume,
                detail=f"position {p.position_id} ({p.side} {p.volume} {p.symbol}) is not ours",
            )
    for o in orders:
        if o.order_id not in matched_ord:
            diff(
                "unknown_at_broker",
                client_id=o.client_id,
                order_id=o.order_id,
                symbol=o.symbol,
                broker_volume=o.volume,
                detail=f"order {o.order_id} ({o.side} {o.order_type} {o.volume} {o.symbol})"
                " is not ours",
            )
    return out


def _same(a: ReconciliationDifference, b: ReconciliationDifference) -> bool:
    return (a.kind, a.believed_volume, a.broker_volume, a.position_id, a.order_id) == (
        b.kind,
        b.believed_volume,
        b.broker_volume,
        b.position_id,
        b.order_id,
    )


class Reconciler:
    """Runs reconciliation for accounts through an `ExecutionCore` (callers serialise per
    account, as for intents)."""

    def __init__(
        self,
        core: ExecutionCore,
        *,
        catch_up: Callable[[str], Awaitable[int]] | None = None,
    ) -> None:
        self.core = core
        # applies what the broker did on its own first, so that it is not a difference
        self._catch_up = catch_up
        self.runs = 0
        self.recorded = 0

    async def reconcile(self, account_id: str) -> dict[str, Any]:
        core = self.core
        recovered = await core.recover(account_id)
        if self._catch_up is not None:
            try:
                await self._catch_up(account_id)
            except Exception as exc:  # reconciliation then reports what the events would explain
                log.warning(
                    "execution: broker events of %s before reconciling: %r", account_id, exc
                )
        state = await core.account(account_id)
        try:
            broker = await core.directory.broker_for(account_id, state.user_id)
            positions = await broker.positions()
            orders = await broker.orders()
        except BrokerError as exc:
            return {"account_id": account_id, "ok": False, "error": exc.reason}
        found = compare(account_id, state.holdings, positions, orders, ts=now_ns())
        fresh = [d for d in found if not _known(state, d)]
        for diff in fresh:
            await core.append(state, [diff], idempotency_key=f"reconcile:{diff.id}")
        self.runs += 1
        self.recorded += len(fresh)
        fresh_ids = {d.id for d in fresh}
        return {
            "account_id": account_id,
            "ok": True,
            "recovered": len(recovered),
            "believed": len(state.holdings),
            "positions_at_broker": len(positions),
            "orders_at_broker": len(orders),
            "differences": [{**msgspec.to_builtins(d), "new": d.id in fresh_ids} for d in found],
        }


def _known(state: AccountState, diff: ReconciliationDifference) -> bool:
    last = state.differences.get(difference_key(diff))
    return last is not None and _same(last, diff)
