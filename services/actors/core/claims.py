"""Which account claims a control command leaves behind (pure).

A broker account belongs to one user at a time (the `account_claims` index,
outside the log). The shell claims an account before the actor decides a
`link_account` and learns whether the claim is new, was the user's already,
or is someone else's. Afterwards it releases claims by the rules below, so
that a claim is only ever given up by the request that made it, or once the
user's state no longer holds the account:

- a refused or failed command releases only a claim this request created; a
  claim the user held before (the account they have linked) survives;
- a command that changed the linked account (unlink, or a relink to another)
  releases the previous account, after the change is in the log;
- a deleted user's claims all go (`release_all`).
"""

from __future__ import annotations

from enum import StrEnum

from .state import UserState


class Claim(StrEnum):
    """What claiming an account for a user found."""

    NEW = "new"  # this call created the claim
    MINE = "mine"  # the user held it already
    TAKEN = "taken"  # another user holds it


def claims_to_release(
    before: UserState, after: UserState | None, claimed: str | None, claim: Claim | None
) -> list[str]:
    """Accounts to release once a command is settled.

    `after` is the state after the command, None when it was refused or failed;
    `claimed` the account this request claimed (if any) and `claim` what that found.
    """
    if after is None:
        return [claimed] if claimed is not None and claim is Claim.NEW else []
    old = before.account.account_id if before.account else None
    new = after.account.account_id if after.account else None
    released = [old] if old is not None and old != new else []
    if claimed is not None and claim is Claim.NEW and claimed != new:
        released.append(claimed)  # claimed, yet the command linked something else
    return released


def release_all(after: UserState | None) -> bool:
    """Whether every claim of the user goes: they were deleted."""
    return after is not None and after.status == "deleted"
