"""`sigrelay sim metaapi …`: run the stand-in, or tell a running one what to do.

Without an action it runs the server. The actions (`price`, `disconnect`,
`throttle`, `state`) find it through SIGRELAY_METAAPI_URL (the line the server
prints first) and call its `/_sim/` endpoints. Imports here stay light: this
module is loaded whenever the CLI builds its parser.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

URL_ENV = "SIGRELAY_METAAPI_URL"


def add_parser(sim_sub: Any) -> None:
    """Add `metaapi` to the `sim` subcommand group."""
    metaapi = sim_sub.add_parser(
        "metaapi",
        help="a local MetaApi stand-in (the real SDK connects to it; trades on paper books)",
    )
    metaapi.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    metaapi.add_argument("--prices", metavar="FILE", help="JSON object symbol -> starting bid")
    metaapi.add_argument(
        "--balance", type=float, default=10_000.0, help="each new account's balance in USD"
    )
    metaapi.add_argument(
        "--tick",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="random-walk every price this often (default 0: prices move only by `price`)",
    )
    metaapi.set_defaults(func=_cmd_serve)
    actions = metaapi.add_subparsers(dest="sim_action")
    price = actions.add_parser("price", help="move a symbol's price for every account")
    price.add_argument("symbol")
    price.add_argument("bid", type=float)
    price.add_argument("ask", type=float, nargs="?", help="default: bid + the symbol's spread")
    price.set_defaults(func=_cmd_price)
    disconnect = actions.add_parser(
        "disconnect", help="drop every websocket; refuse new ones for N seconds"
    )
    disconnect.add_argument("--seconds", type=float, default=0.0)
    disconnect.set_defaults(func=_cmd_disconnect)
    throttle = actions.add_parser(
        "throttle", help="answer every request 429 TooManyRequests for the next N seconds"
    )
    throttle.add_argument("--seconds", type=float, required=True)
    throttle.set_defaults(func=_cmd_throttle)
    actions.add_parser("state", help="quotes, accounts and connections as JSON").set_defaults(
        func=_cmd_state
    )


def _cmd_serve(args: argparse.Namespace, settings: Any) -> int:
    import asyncio

    from .prices import load_bids
    from .server import serve

    try:
        bids = load_bids(args.prices) if args.prices else None
    except ValueError as exc:
        print(f"sigrelay: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args.port, bids, balance=args.balance, tick_s=args.tick))
    except OSError as exc:
        print(f"sigrelay: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


class SimUnavailable(Exception):
    pass


def call(path: str, body: dict[str, Any] | None = None, *, timeout: float = 10.0) -> Any:
    """One control request to the stand-in at SIGRELAY_METAAPI_URL; its JSON answer."""
    base = os.environ.get(URL_ENV, "").rstrip("/")
    if not base:
        raise SimUnavailable(
            f"{URL_ENV} is not set: start `sigrelay sim metaapi` and export the line it prints"
        )
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{base}{path}",
        data=data,
        method="GET" if body is None else "POST",
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise SimUnavailable(f"the MetaApi stand-in refused {path}: {message}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SimUnavailable(
            f"the MetaApi stand-in at {URL_ENV}={base} is unreachable: {reason}"
        ) from None


def _client(path: str, body: dict[str, Any] | None) -> int:
    try:
        answer = call(path, body)
    except SimUnavailable as exc:
        print(f"sigrelay: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


def _cmd_price(args: argparse.Namespace, settings: Any) -> int:
    body: dict[str, Any] = {"symbol": args.symbol, "bid": args.bid}
    if args.ask is not None:
        body["ask"] = args.ask
    return _client("/_sim/price", body)


def _cmd_disconnect(args: argparse.Namespace, settings: Any) -> int:
    return _client("/_sim/disconnect", {"seconds": args.seconds})


def _cmd_throttle(args: argparse.Namespace, settings: Any) -> int:
    return _client("/_sim/throttle", {"seconds": args.seconds})


def _cmd_state(args: argparse.Namespace, settings: Any) -> int:
    return _client("/_sim/state", None)
