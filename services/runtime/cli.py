"""`sigrelay`: one CLI for operators. Every subcommand reads SIGRELAY_HOME,
NATS_URL and DATABASE_URL the same way (see services/runtime/settings.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from services.runtime import registry
from services.runtime.settings import RuntimeSettings


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported OS
        return asyncio.run(coro)


def _cmd_up(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from services.runtime.supervisor import Supervisor

    services = args.only or sorted(registry.SERVICES)
    _run(Supervisor(settings, services).run())
    return 0


def _cmd_service(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from services.runtime import lifeline

    supervisor = lifeline.supervisor_pid(settings.env)
    if supervisor is not None:
        lifeline.ask_parent_death_signal(settings.env)
        if not lifeline.supervisor_alive(supervisor):  # it died before the kernel was asked
            print(
                f"sigrelay service {args.name}: supervisor pid {supervisor} is gone; not starting",
                file=sys.stderr,
            )
            return 1
    from services.runtime.host import run_service

    _run(run_service(args.name, settings))
    return 0


def _database(settings: RuntimeSettings) -> tuple[str, Callable[[], None]]:
    """DATABASE_URL, or the embedded Postgres (started if needed; the callable stops
    it again only if this process started it)."""
    if settings.database_url is not None:
        return settings.database_url, lambda: None
    from infra.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres()
    return pg.start(settings.home), pg.stop


async def _prepare(url: str, settings: RuntimeSettings) -> Any:
    """Migrations, then the per-service roles (services/runtime/pg_roles.py)."""
    from eventstore.migrate import migrate
    from services.runtime.pg_roles import ensure_roles

    applied = await migrate(url)
    return applied, await ensure_roles(url, settings.home)


def _cmd_migrate(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    url, stop = _database(settings)
    try:
        applied, access = _run(_prepare(url, settings))
        names = [f"{m.version:03d}_{m.name}" for m in applied]
        roles = sorted(access.passwords)  # names only: passwords stay in SIGRELAY_HOME
        print(
            json.dumps(
                {"applied": names, "database": url, "roles": roles, "fallback": access.fallback}
            )
        )
    finally:
        stop()
    return 0


def _cmd_demo(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from services.demo.run import run_demo

    result: int = _run(run_demo(settings, users=args.users))
    return result


def _cmd_bench(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from services.bench.main import run_benchmarks

    if args.users is not None:
        settings = RuntimeSettings.from_env({**settings.env, "BENCH_USERS": str(args.users)})
        os.environ["BENCH_USERS"] = str(args.users)
    return run_benchmarks(args.names, settings, as_json=args.json)


def _cmd_signals_parse(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from services.ingest.parse_cli import run

    return run(sys.stdin, sys.stdout)


def _cmd_signals_inject(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from contracts.channels import check_channel_name
    from services.ingest.inject import ScriptLine, inject, parse_script, read_lines

    try:
        check_channel_name(args.channel.lower())
    except ValueError as exc:
        print(f"sigrelay signals inject: {exc}", file=sys.stderr)
        return 2
    if args.file:
        try:
            lines = parse_script(read_lines(args.file), source=args.file)
        except (OSError, ValueError) as exc:
            print(f"sigrelay: {exc}", file=sys.stderr)
            return 2
    else:
        lines = [
            ScriptLine(text=args.text, id=args.id, reply_to=args.reply_to, edit_of=args.edit_of)
        ]

    async def go() -> list[dict[str, Any]]:
        async with operator_connection(settings) as nc:
            return await inject(nc, lines, default_channel=args.channel, wait_s=args.wait)

    results = _run(go())
    for entry in results:
        print(json.dumps(entry, ensure_ascii=False))
    return 0 if all(e.get("parsed") is not None or e["raw"]["deleted"] for e in results) else 1


@contextlib.asynccontextmanager
async def operator_connection(settings: RuntimeSettings) -> AsyncIterator[Any]:
    """An operator's bus connection: NATS_URL, or the embedded server's admin user."""
    from services.runtime import bus
    from services.runtime.infrastructure import Infrastructure

    infra = Infrastructure(settings).start()
    try:
        nc = await bus.connect(infra.nats_url_for("admin"), "sigrelay-cli")
        try:
            yield nc
        finally:
            await bus.drain(nc)
    finally:
        infra.stop()


def _cmd_ctl(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    from contracts.users import check_user_id
    from services.runtime.ctl import UsageError, parse_assignments, request

    try:
        body = parse_assignments(args.assignments)
        if args.user is not None:
            check_user_id(args.user)  # before connecting: a bad id is the caller's error
    except (UsageError, ValueError) as exc:
        print(f"sigrelay ctl: {exc}", file=sys.stderr)
        return 2

    async def go() -> dict[str, Any]:
        async with operator_connection(settings) as nc:
            return await request(nc, args.verb, args.user, body, timeout_s=args.timeout)

    try:
        reply = _run(go())
    except UsageError as exc:
        print(f"sigrelay ctl: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(reply, ensure_ascii=False, indent=2))
    return 0 if reply.get("ok") else 1


def _cmd_channels(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    import msgspec

    from contracts.channels import (
        CHANNEL_NAME,
        ChannelInfo,
        load_directory,
        save_directory,
    )

    directory = load_directory(settings.home, settings.env)
    if args.channels_command == "add":
        if not CHANNEL_NAME.match(args.name):
            print(
                f"sigrelay channels: {args.name!r} must be lower-case letters, digits, '_' or '-'",
                file=sys.stderr,
            )
            return 2
        channels = dict(directory.channels)
        channels[args.name] = ChannelInfo(
            default_symbol=args.default_symbol.upper() if args.default_symbol else None,
            title=args.title or "",
        )
        path = save_directory(settings.home, msgspec.structs.replace(directory, channels=channels))
        print(f"channel {args.name} saved in {path}")
        return 0
    print(json.dumps(msgspec.to_builtins(directory), indent=2))
    return 0


def _cmd_keys_rotate(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    """Re-wrap every user's data key under the active (first) master key."""
    import msgspec

    from eventstore import EventStore
    from eventstore.migrate import migrate
    from services.runtime.credentials import CredentialVault, MasterKeyRing, PgDataKeyStore

    async def go() -> Any:
        url, stop = _database(settings)
        try:
            await migrate(url)
            store = await EventStore.connect(url, min_size=1, max_size=2)
            try:
                ring = MasterKeyRing.from_env(settings.env, home=settings.home)
                return await CredentialVault(ring, PgDataKeyStore(store)).rotate()
            finally:
                await store.close()
        finally:
            stop()

    report = _run(go())
    print(json.dumps(msgspec.to_builtins(report)))
    return 0 if not report.failed else 1


def _cmd_audit(args: argparse.Namespace, settings: RuntimeSettings) -> int:
    import msgspec

    from services.audit import tools
    from services.audit.keys import keys_for_verifying
    from services.runtime.pg_roles import READONLY

    async def go() -> int:
        admin_url, stop = _database(settings)
        try:
            _applied, access = await _prepare(admin_url, settings)
            url = access.url_for(READONLY)  # operator tools only ever read
            command = args.audit_command
            if command == "verify":
                keys = keys_for_verifying(settings.env, settings.home)
                report = await tools.verify(url, keys)
                print(json.dumps(msgspec.to_builtins(report), indent=None if args.json else 2))
                if not report.ok:
                    return 1
                if not report.authentic:
                    print(f"sigrelay audit verify: {report.note}", file=sys.stderr)
                    return 3
                return 0
            if command == "export":
                since = _parse_since(args.since)
                count = await tools.export(url, since, sys.stdout)
                print(f"{count} records", file=sys.stderr)
                return 0
            if command == "explain":
                story = await tools.explain(url, args.signal, args.user)
                print(json.dumps(story, indent=2, ensure_ascii=False, default=str))
                return 0 if story.get("found") else 1
            return await _audit_replay(url, args)
        finally:
            stop()

    try:
        result: int = _run(go())
    except ValueError as exc:
        print(f"sigrelay audit: {exc}", file=sys.stderr)
        return 2
    return result


def _parse_since(text: str | None) -> Any:
    from datetime import UTC, datetime

    from services.actors.replay import parse_time

    if text is None:
        return None
    return datetime.fromtimestamp(parse_time(text) / 1_000_000, tz=UTC)


async def _audit_replay(url: str, args: argparse.Namespace) -> int:
    from eventstore import EventStore
    from services.actors.replay import parse_time, replay_user

    until = parse_time(args.until) if args.until else None
    store = await EventStore.connect(url, min_size=1, max_size=2)
    try:
        state = await replay_user(store, args.user, until)
    finally:
        await store.close()
    if args.json:
        print(json.dumps(state, ensure_ascii=False))
    else:
        status = state["status"]
        print(f"user {args.user} as of {args.until or 'now'}: {state['events_applied']} events")
        for key in ("status", "account", "subscriptions", "open_positions", "pending", "today"):
            print(f"  {key:15} {json.dumps(status.get(key), ensure_ascii=False)}")
    return 0 if state["events_applied"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sigrelay", description="Telegram-to-MetaTrader signal copier"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the servers and every service; Ctrl-C stops them")
    up.add_argument("--only", nargs="+", metavar="SERVICE", help="run only these services")
    up.set_defaults(func=_cmd_up)

    demo = sub.add_parser(
        "demo", help="everything up, 1,000 users, a script of channel traffic, a summary"
    )
    demo.add_argument("--users", type=int, default=1000, help="how many demo users (default 1000)")
    demo.set_defaults(func=_cmd_demo)

    service = sub.add_parser("service", help="run one service in the foreground")
    service.add_argument("name", choices=sorted(registry.SERVICES))
    service.set_defaults(func=_cmd_service)

    migrate = sub.add_parser("migrate", help="apply the event-store schema migrations")
    migrate.set_defaults(func=_cmd_migrate)

    channels = sub.add_parser(
        "channels", help="the channel directory (SIGRELAY_HOME/channels.json)"
    )
    channels_sub = channels.add_subparsers(dest="channels_command", required=True)
    add = channels_sub.add_parser("add", help="add or update a channel")
    add.add_argument("name")
    add.add_argument("--default-symbol", help="the instrument of a single-instrument channel")
    add.add_argument("--title", help="a human name")
    add.set_defaults(func=_cmd_channels)
    channels_sub.add_parser("list", help="print the directory").set_defaults(func=_cmd_channels)

    audit = sub.add_parser("audit", help="the audit trail: replay, explain, verify, export")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    replay = audit_sub.add_parser("replay", help="a user's state rebuilt from the log")
    replay.add_argument("--user", required=True)
    replay.add_argument("--until", help="ISO time (UTC if no offset) or unix seconds")
    replay.add_argument("--json", action="store_true")
    explain = audit_sub.add_parser("explain", help="the whole story of one signal")
    explain.add_argument("--signal", required=True, help="signal id, e.g. gold:1234")
    explain.add_argument("--user", help="only this user")
    verify = audit_sub.add_parser(
        "verify",
        help="walk the keyed hash chains: exit 1 on tampering, 3 if not provably authentic",
    )
    verify.add_argument("--json", action="store_true")
    export = audit_sub.add_parser("export", help="audit records as JSON lines on stdout")
    export.add_argument("--since", help="ISO time or unix seconds")
    for parser_ in (replay, explain, verify, export):
        parser_.set_defaults(func=_cmd_audit)

    keys = sub.add_parser("keys", help="master keys of the credential vault")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser(
        "rotate",
        help="re-wrap every data key under the first key of SIGRELAY_MASTER_KEYS",
    ).set_defaults(func=_cmd_keys_rotate)

    ctl = sub.add_parser("ctl", help="one control request (JSON reply; non-zero exit on error)")
    ctl.add_argument("verb", help="register, link_account, subscribe, settings, status, … stats")
    ctl.add_argument("--user", help="the user the verb applies to")
    ctl.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the reply")
    ctl.add_argument(
        "assignments", nargs="*", metavar="key=value", help="request fields (values read as JSON)"
    )
    ctl.set_defaults(func=_cmd_ctl)

    bench = sub.add_parser("bench", help="run benchmarks; prints a table (or JSON)")
    bench.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    bench.add_argument("--json", action="store_true", help="print JSON only")
    bench.add_argument("--users", type=int, help="users for the e2e benchmark (default 1000)")
    bench.set_defaults(func=_cmd_bench)

    signals = sub.add_parser("signals", help="signal tools")
    signals_sub = signals.add_subparsers(dest="signals_command", required=True)
    parse = signals_sub.add_parser(
        "parse", help="JSON lines {id, text} on stdin -> parsed signals on stdout"
    )
    parse.set_defaults(func=_cmd_signals_parse)
    inject = signals_sub.add_parser(
        "inject", help="post a channel message (or a script of them) as a signal source would"
    )
    inject.add_argument("--channel", required=True, help="channel name (the subject token)")
    what = inject.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="the message text")
    what.add_argument("--file", help="a JSON-lines script of messages ('-' for stdin)")
    inject.add_argument("--id", type=int, help="message id (default: a fresh one)")
    inject.add_argument("--reply-to", type=int, help="the message id this one replies to")
    inject.add_argument("--edit-of", type=int, help="make this a new revision of that message")
    inject.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the parse")
    inject.set_defaults(func=_cmd_signals_inject)

    sim = sub.add_parser("sim", help="stand-ins for outside services (a local MetaApi)")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    from services.sims.metaapi.cli import add_parser as add_metaapi_sim

    add_metaapi_sim(sim_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # `ctl VERB --user U key=value …`: argparse stops collecting positionals at the
    # first option, so key=value pairs after --user come back as extras
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "ctl" or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.assignments = [*args.assignments, *extra]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = RuntimeSettings.from_env()
    except ValueError as exc:
        print(f"sigrelay: {exc}", file=sys.stderr)
        return 2
    result: int = args.func(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
