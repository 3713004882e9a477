"""Account claims: which claims a settled command gives back, and which ids a user may claim."""

from __future__ import annotations

import msgspec
import pytest

from contracts.control import ControlError
from contracts.errors import ErrorCode
from contracts.users import Broker, LinkAccountRequest
from services.actors.core import (
    Account,
    Claim,
    UserState,
    claims_to_release,
    link_target,
    release_all,
)
from tests.unit.actors.factories import user


def linked_to(account_id: str | None) -> UserState:
    state = user(account=False)
    account = None if account_id is None else Account(account_id=account_id, broker="paper")
    return msgspec.structs.replace(state, account=account)


# --- a refused or failed command -------------------------------------------------------


def test_failed_link_that_created_the_claim_then_it_is_released() -> None:
    before = linked_to(None)

    assert claims_to_release(before, None, "acc-1", Claim.NEW) == ["acc-1"]


def test_failed_relink_of_the_account_already_held_then_the_claim_survives() -> None:
    before = linked_to("paper-u1")

    assert claims_to_release(before, None, "paper-u1", Claim.MINE) == []


def test_link_refused_because_another_user_holds_it_then_their_claim_untouched() -> None:
    before = linked_to(None)

    assert claims_to_release(before, None, "acc-1", Claim.TAKEN) == []


def test_failed_unlink_then_nothing_released() -> None:
    before = linked_to("acc-1")

    assert claims_to_release(before, None, None, None) == []


# --- a command in the log -----------------------------------------------------------------


def test_link_succeeded_then_its_new_claim_kept() -> None:
    assert claims_to_release(linked_to(None), linked_to("acc-1"), "acc-1", Claim.NEW) == []


def test_token_replaced_on_the_same_account_then_claim_kept() -> None:
    before, after = linked_to("acc-1"), linked_to("acc-1")

    assert claims_to_release(before, after, "acc-1", Claim.MINE) == []


def test_unlink_then_the_unlinked_account_released() -> None:
    assert claims_to_release(linked_to("acc-1"), linked_to(None), None, None) == ["acc-1"]


def test_relink_to_another_account_then_the_old_one_released_and_the_new_kept() -> None:
    before, after = linked_to("acc-1"), linked_to("acc-2")

    assert claims_to_release(before, after, "acc-2", Claim.NEW) == ["acc-1"]


def test_other_verbs_then_nothing_released() -> None:
    assert claims_to_release(linked_to("acc-1"), linked_to("acc-1"), None, None) == []


def test_deleted_then_every_claim_released() -> None:
    deleted = msgspec.structs.replace(user(), status="deleted", account=None)

    assert release_all(deleted)
    assert not release_all(user())
    assert not release_all(None)


# --- the account a link names ---------------------------------------------------------------


@pytest.mark.parametrize("broker", [None, "paper", "metaapi"])
def test_link_another_users_paper_account_then_invalid_value_account_id(
    broker: Broker | None,
) -> None:
    body = LinkAccountRequest(account_id="paper-alice", broker=broker)

    with pytest.raises(ControlError) as info:
        link_target("bob", body)

    assert (info.value.code, info.value.field) == (ErrorCode.INVALID_VALUE, "account_id")
    assert "reserved" in info.value.message and "alice" in info.value.message


def test_link_another_users_paper_account_with_a_token_then_invalid_value_account_id() -> None:
    body = LinkAccountRequest(account_id="paper-alice", broker="metaapi", token="tok")

    with pytest.raises(ControlError) as info:
        link_target("bob", body)

    assert (info.value.code, info.value.field) == (ErrorCode.INVALID_VALUE, "account_id")


@pytest.mark.parametrize("account_id", ["paper", " paper ", "paper-alice", " paper-alice"])
def test_link_own_paper_account_by_either_name_then_the_same_id_claimed(account_id: str) -> None:
    assert link_target("alice", LinkAccountRequest(account_id=account_id)) == (
        "paper-alice",
        "paper",
    )


def test_own_paper_account_as_metaapi_then_invalid_value_broker() -> None:
    body = LinkAccountRequest(account_id="paper-alice", broker="metaapi", token="tok")

    with pytest.raises(ControlError) as info:
        link_target("alice", body)

    assert (info.value.code, info.value.field) == (ErrorCode.INVALID_VALUE, "broker")


def test_metaapi_account_id_with_spaces_then_the_stripped_id_claimed() -> None:
    assert link_target("bob", LinkAccountRequest(account_id=" acc-9 ", token="t")) == (
        "acc-9",
        "metaapi",
    )
