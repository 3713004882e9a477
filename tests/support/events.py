"""Small event types and a fold used by the event-store contract tests."""

from __future__ import annotations

import msgspec

from contracts.envelope import Envelope, new_id, now_ns


class Deposited(Envelope, frozen=True, kw_only=True, tag="test.deposited"):
    amount: int


class Withdrawn(Envelope, frozen=True, kw_only=True, tag="test.withdrawn"):
    amount: int


class Balance(msgspec.Struct, frozen=True, kw_only=True, tag="test.balance"):
    total: int = 0
    moves: int = 0


def deposited(amount: int) -> Deposited:
    return Deposited(id=new_id(), ts=now_ns(), amount=amount)


def withdrawn(amount: int) -> Withdrawn:
    return Withdrawn(id=new_id(), ts=now_ns(), amount=amount)


def evolve(state: Balance, event: Deposited | Withdrawn) -> Balance:
    delta = event.amount if isinstance(event, Deposited) else -event.amount
    return Balance(total=state.total + delta, moves=state.moves + 1)
