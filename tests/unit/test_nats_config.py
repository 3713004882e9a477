"""The permission table's own consistency: the README shows it, and it names the
durables the services really create (the integration table runs it on the server)."""

from __future__ import annotations

from pathlib import Path

from infra.nats_config import ANY_DURABLE, PERMISSIONS, permissions_table, user_permissions
from services.audit.service import consumer_specs
from services.execution.executor import CONSUMER as EXECUTION_DURABLE
from services.ingest.service import CONSUMER as INGEST_DURABLE

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_nats_users_section_then_shows_the_generated_table():
    text = README.read_text()
    section = text.split("### NATS users", 1)[1]

    assert permissions_table() in section


def test_audit_consumers_then_each_durable_is_in_the_table():
    created = {(spec.stream, spec.durable) for spec in consumer_specs()}
    allowed = {(s, d) for s, ds in PERMISSIONS["audit"]["consume"].items() for d in ds}

    assert created == allowed


def test_ingest_and_execution_durables_then_in_the_table():
    assert PERMISSIONS["ingest"]["consume"] == {"SIGNALS": (INGEST_DURABLE,)}
    assert PERMISSIONS["execution"]["consume"] == {"ORDERS": (EXECUTION_DURABLE,)}


def test_user_with_any_durable_then_denied_every_durable_of_the_others():
    denied = user_permissions("actors")["publish"]["deny"]  # type: ignore[index]

    for user, role in PERMISSIONS.items():
        for stream, durables in role["consume"].items():
            for durable in durables:
                if user != "actors" and durable != ANY_DURABLE and stream in ("SIGNALS", "ORDERS"):
                    assert f"$JS.API.CONSUMER.*.{stream}.{durable}" in denied


def test_no_user_then_subscribes_to_the_shared_inbox_or_another_users():
    for user in PERMISSIONS:
        subscribe = user_permissions(user)["subscribe"]["allow"]  # type: ignore[index]
        inboxes = [s for s in subscribe if s.startswith("_INBOX")]

        assert inboxes == [f"_INBOX_{user}.>"]
