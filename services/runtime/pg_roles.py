"""Least-privilege Postgres roles: one login role per service, one read-only
role for operator tools, created and re-granted by `sigrelay migrate` (and by
every process that migrates with a URL allowed to manage roles).

Role names are `<database>_<service>` (`sigrelay_audit` for the database
`sigrelay`), so two databases on one server never share a role or its
password. Each role gets exactly the privileges of `GRANTS` below, found by
reading the SQL each service runs: the audit role may INSERT and SELECT
`audit_records` but never UPDATE or DELETE it, only the actors may touch the
wrapped data keys, and so on. Every run revokes everything first and grants
the table again, so a grant removed here is removed from the server too.

Passwords are generated once per role and kept in
`SIGRELAY_HOME/postgres/passwords.json` (mode 0600), as the NATS passwords
are; the server only ever receives their SCRAM verifier, never the plaintext,
so no server log can show one.

When the URL given may not create roles (an operator's DATABASE_URL that is
not a superuser and lacks CREATEROLE), every service falls back to that URL
and a warning says so at start.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from infra.embedded import load_passwords

log = logging.getLogger("sigrelay.pg_roles")

READONLY = "readonly"
_LOCK_KEY = 0x5E0E_0F0E  # serialises role set-up in one database (several services start at once)

# What every service that keeps an event log needs: the store, snapshots, the
# outbox it appends to and its relay drains (SELECT … FOR UPDATE needs UPDATE),
# consumer de-duplication, cursors, and reading which migrations are applied.
_EVENT_LOG: dict[str, str] = {
    "events": "SELECT, INSERT",
    "event_position": "USAGE, SELECT, UPDATE",  # a sequence: nextval, setval
    "snapshots": "SELECT, INSERT, UPDATE",
    "outbox": "SELECT, INSERT, UPDATE, DELETE",
    "processed_messages": "SELECT, INSERT",
    "cursors": "SELECT, INSERT, UPDATE",
    "schema_migrations": "SELECT",
}

# role suffix -> {table or sequence: privileges}. Anything not listed is refused.
GRANTS: dict[str, dict[str, str]] = {
    "ingest": dict(_EVENT_LOG),
    "risk": dict(_EVENT_LOG),
    "paper": dict(_EVENT_LOG),
    "execution": {**_EVENT_LOG, "user_keys": "SELECT"},  # opens sealed tokens, never writes keys
    "actors": {
        **_EVENT_LOG,
        "user_keys": "SELECT, INSERT, UPDATE, DELETE",  # the credential vault
        "account_claims": "SELECT, INSERT, DELETE",
        "partition_leases": "SELECT, INSERT, UPDATE, DELETE",
    },
    "audit": {
        # append-only by privilege, not just by trigger; the outbox only for its standby relay
        "audit_records": "SELECT, INSERT",
        "outbox": "SELECT, UPDATE, DELETE",
        "schema_migrations": "SELECT",
    },
    READONLY: {
        name: "SELECT"
        for name in (
            "events",
            "snapshots",
            "outbox",
            "processed_messages",
            "cursors",
            "account_claims",
            "partition_leases",
            "audit_records",
            "schema_migrations",
        )
    },  # never user_keys
}

_SEQUENCES = {"event_position"}
MAX_IDENTIFIER = 63


def role_name(database: str, service: str) -> str:
    """`<database>_<service>`, the database part shortened to fit 63 bytes."""
    suffix = f"_{service}"
    return database[: MAX_IDENTIFIER - len(suffix)] + suffix


def with_credentials(url: str, user: str, password: str) -> str:
    """`url` (a postgresql:// URL or a conninfo string) logging in as `user`."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))
    return psycopg.conninfo.make_conninfo(url, user=user, password=password)


@dataclass
class DatabaseAccess:
    """Which URL each service connects with. `fallback` says why there are no
    per-service roles (then every service gets the URL given), else empty."""

    url: str
    database: str
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False)
    fallback: str = ""

    def url_for(self, service: str) -> str:
        if self.fallback:
            return self.url
        role = role_name(self.database, service)
        if role not in self.passwords:
            raise KeyError(
                f"no Postgres role for service {service!r}; roles: {', '.join(sorted(GRANTS))}"
            )
        return with_credentials(self.url, role, self.passwords[role])


async def ensure_roles(url: str, home: Path) -> DatabaseAccess:
    """Create or update every role of `GRANTS` in the database of `url` and
    return how services connect. Never raises for missing privileges: it
    falls back to `url` with a warning instead."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT current_database(), current_user, r.rolsuper OR r.rolcreaterole"
            " FROM pg_roles r WHERE r.rolname = current_user"
        )
        row = await cur.fetchone()
        assert row is not None
        database, user, may_manage = str(row[0]), str(row[1]), bool(row[2])
        names = {role_name(database, service): service for service in GRANTS}
        if user in names:
            # a service started with its own role (by the supervisor): nothing to set up
            return DatabaseAccess(url, database, fallback=f"connected as role {user}")
        if not may_manage:
            return _fallback(url, database, f"role {user!r} may not create roles")
        passwords = load_passwords(home / "postgres" / "passwords.json", tuple(names))
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                for role, service in names.items():
                    await _ensure_role(conn, database, role, passwords[role], GRANTS[service])
        except psycopg.errors.InsufficientPrivilege as exc:
            return _fallback(url, database, f"role {user!r} may not grant ({exc.sqlstate})")
    log.info("postgres: per-service roles ready in %s: %s", database, ", ".join(sorted(names)))
    return DatabaseAccess(url, database, passwords={r: passwords[r] for r in names})


def _fallback(url: str, database: str, why: str) -> DatabaseAccess:
    log.warning(
        "postgres: %s, so every service connects with DATABASE_URL itself, without per-service "
        "least privilege; run `sigrelay migrate` once with a superuser (or CREATEROLE) URL",
        why,
    )
    return DatabaseAccess(url, database, fallback=why)


async def _ensure_role(
    conn: psycopg.AsyncConnection[Any],
    database: str,
    role: str,
    password: str,
    grants: Mapping[str, str],
) -> None:
    ident = sql.Identifier(role)
    cur = await conn.execute(
        "SELECT rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls"
        " FROM pg_roles WHERE rolname = %s",
        (role,),
    )
    found = await cur.fetchone()
    if found is None:
        # CREATE ROLE's defaults are the least: no superuser, createdb, createrole, …
        await conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
    elif found[0]:
        # someone widened it: take it back (only a superuser can, else this falls back)
        await conn.execute(
            sql.SQL(
                "ALTER ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            ).format(ident)
        )
    # the SCRAM verifier, computed here: the plaintext never reaches the server or its log
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    await conn.execute(
        sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(verifier.decode()))
    )
    await conn.execute(
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(database), ident
        )
    )
    await conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
    await conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC, {}").format(ident))
    await conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(ident))
    await conn.execute(
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(ident)
    )
    for name, privileges in grants.items():
        kind = "SEQUENCE" if name in _SEQUENCES else "TABLE"
        await conn.execute(
            sql.SQL("GRANT {} ON {} {} TO {}").format(
                sql.SQL(privileges), sql.SQL(kind), sql.Identifier(name), ident
            )
        )
