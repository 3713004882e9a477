from __future__ import annotations

import re

import pytest

from contracts.broker import MAX_CLIENT_ID, OrderRequest
from services.execution.ids import client_id_for


def test_client_id_when_derived_then_at_most_20_safe_characters() -> None:
    cid = client_id_for("sig:channel-1:msg:42:rev:3:user:u-with.dots@x:leg:2:open")

    assert len(cid) == 20 <= MAX_CLIENT_ID
    assert re.fullmatch(r"SR[A-Z2-7]{18}", cid)
    OrderRequest(client_id=cid, symbol="XAUUSD", side="buy", volume=0.1)  # the port accepts it


def test_client_id_when_derived_twice_then_identical() -> None:
    assert client_id_for("sig1:u1:1:open") == client_id_for("sig1:u1:1:open")


def test_client_id_when_intents_differ_by_one_character_then_ids_differ() -> None:
    assert client_id_for("sig1:u1:1:open") != client_id_for("sig1:u1:2:open")


def test_client_id_when_many_intents_then_no_collision() -> None:
    ids = {client_id_for(f"signal-{n}:user-{n % 997}:leg-{n % 3}") for n in range(200_000)}

    assert len(ids) == 200_000


def test_client_id_when_intent_id_empty_then_error() -> None:
    with pytest.raises(ValueError, match="intent id"):
        client_id_for("")
