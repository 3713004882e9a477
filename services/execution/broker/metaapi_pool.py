"""Open MetaApi RPC connections, shared by every `MetaApiBroker` of the process.

One `MetaApi` SDK object per token (it owns websockets and background jobs) and
one synchronized RPC connection per account, kept open between calls. The
connections form an LRU with a cap (`max_connections`) and an idle timeout;
a connection in use is never closed under its caller.

Tokens are secrets: the pool keys everything by a SHA-256 fingerprint and never
logs or repr()s a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import msgspec
from metaapi_cloud_sdk.clients.error_handler import NotFoundException
from metaapi_cloud_sdk.clients.method_access_exception import MethodAccessException
from metaapi_cloud_sdk.clients.timeout_exception import TimeoutException

from contracts.broker import AuthFailed, BrokerError, NotConnected

from .metaapi_endpoint import endpoint_from_env, redirected_api
from .metaapi_errors import map_sdk_error

log = logging.getLogger(__name__)

_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"0", "false", "no", "off"})
# states a deploy() can move on; others are transient (DEPLOYING) or need a human
_DEPLOYABLE = frozenset({"CREATED", "UNDEPLOYED", "DEPLOY_FAILED", "DRAFT"})

ApiFactory = Callable[[str, dict[str, Any]], Any]


class MetaApiConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the MetaApi adapter. Timeouts in seconds.

    `request_timeout_s` bounds every REST call and every websocket RPC, trades
    included: a trade with no answer in that time is reported `OutcomeUnknown`.
    `read_retries` is the SDK's own retry count for reads (trades are never
    retried by the SDK). `reconcile_before_send` looks the client id up at the
    broker before every order (two extra RPCs); without it that happens only
    after an `OutcomeUnknown` for the same client id.

    `deploy` lets Sigrelay deploy a user's account that is not deployed (MetaApi
    bills deployed accounts, so it is the operator's choice, off by default:
    env `SIGRELAY_METAAPI_DEPLOY=1`); it waits `deploy_timeout_s` for the
    deployment, polling every `deploy_poll_s` (each poll is a REST call that
    costs rate-limit credits). Without it an undeployed account is "not
    connected", with a reason that says what to do.
    """

    request_timeout_s: float = 60.0
    connect_timeout_s: float = 60.0
    sync_timeout_s: float = 300.0
    read_retries: int = 5
    max_connections: int = 200
    idle_timeout_s: float = 1800.0
    domain: str | None = None
    region: str | None = None
    application: str = "MetaApi"
    route_sdk_logs: bool = True  # send SDK logs to `logging` instead of print()
    reconcile_before_send: bool = False
    deploy: bool = False
    deploy_timeout_s: float = 300.0
    deploy_poll_s: float = 5.0
    fetch_fill_price: bool = True  # one get_position after a market fill
    spec_cache_s: float = 300.0
    placed_cache_size: int = 100_000
    shutdown_grace_s: float = 0.2

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MetaApiConfig:
        """The operator's settings: `SIGRELAY_METAAPI_DEPLOY` (1/true/yes),
        `SIGRELAY_METAAPI_MAX_CONNECTIONS`, `SIGRELAY_METAAPI_REQUEST_TIMEOUT_S`."""
        fields: dict[str, Any] = {}
        deploy = env.get("SIGRELAY_METAAPI_DEPLOY", "").strip().lower()
        if deploy:
            if deploy not in _YES | _NO:
                raise ValueError(f"SIGRELAY_METAAPI_DEPLOY must be 1 or 0, not {deploy!r}")
            fields["deploy"] = deploy in _YES
        for name, field, kind in (
            ("SIGRELAY_METAAPI_MAX_CONNECTIONS", "max_connections", int),
            ("SIGRELAY_METAAPI_REQUEST_TIMEOUT_S", "request_timeout_s", float),
        ):
            raw = env.get(name, "").strip()
            if not raw:
                continue
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number, not {raw!r}") from None
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {raw!r}")
            fields[field] = value
        return cls(**fields)

    def sdk_opts(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "application": self.application,
            "requestTimeout": self.request_timeout_s,
            "connectTimeout": self.connect_timeout_s,
            "retryOpts": {"retries": self.read_retries},
        }
        if self.domain:
            opts["domain"] = self.domain
        if self.region:
            opts["region"] = self.region
        return opts


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe to log."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _default_api_factory(token: str, opts: dict[str, Any]) -> Any:
    # SIGRELAY_METAAPI_URL points the SDK at a local stand-in instead of the cloud
    url = endpoint_from_env()
    if url is not None:
        return redirected_api(token, opts, url)
    from metaapi_cloud_sdk import MetaApi

    return MetaApi(token, opts)


@dataclass(slots=True)
class _Entry:
    conn: Any
    last_used: float
    in_use: int = 0
    doomed: bool = False  # discarded while in use: close on release


_open_pools: weakref.WeakSet[MetaApiConnectionPool] = weakref.WeakSet()


class MetaApiConnectionPool:
    """LRU of synchronized RPC connections, keyed by (token, account id).

    Must be used inside one running event loop (the SDK starts tasks when its
    `MetaApi` object is built). `api_factory(token, opts)` builds that object;
    tests pass one that points the SDK at a local fake server.
    """

    def __init__(
        self,
        config: MetaApiConfig | None = None,
        *,
        api_factory: ApiFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or MetaApiConfig()
        self._factory = api_factory or _default_api_factory
        self._clock = clock
        self._apis: dict[str, Any] = {}
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._closed = False
        self._last_sweep = clock()
        _open_pools.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MetaApiConnectionPool(apis={len(self._apis)}, connections={len(self._entries)})"

    @asynccontextmanager
    async def connection(self, token: str, account_id: str) -> AsyncIterator[Any]:
        """A synchronized RPC connection for the account, held for the `async with` body."""
        if self._closed:
            raise NotConnected("the MetaApi connection pool is closed")
        key = (fingerprint(token), account_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is None:
                conn = await self._open(token, key[0], account_id)
                entry = _Entry(conn=conn, last_used=self._clock())
                self._entries[key] = entry
            entry.in_use += 1
            self._entries.move_to_end(key)
        try:
            await self._evict()
            yield entry.conn
        finally:
            entry.in_use -= 1
            entry.last_used = self._clock()
            if entry.doomed and entry.in_use == 0:
                await self._close_conn(key, entry)

    async def discard(self, token: str, account_id: str, *, drop_api: bool = False) -> None:
        """Forget the account's connection (closed now, or when its last user is done).

        With `drop_api` the token's SDK object goes too (after an auth failure the SDK
        has closed its websocket client itself)."""
        fp = fingerprint(token)
        keys = [k for k in self._entries if k[0] == fp] if drop_api else [(fp, account_id)]
        for key in keys:
            entry = self._entries.pop(key, None)
            if entry is None:
                continue
            if entry.in_use:
                entry.doomed = True
            else:
                await self._close_conn(key, entry)
        if drop_api and fp in self._apis:
            api = self._apis.pop(fp)
            await asyncio.sleep(self.config.shutdown_grace_s)
            with suppress(Exception):
                api.close()

    async def sweep(self) -> int:
        """Close connections idle longer than `idle_timeout_s`; returns how many."""
        limit = self._clock() - self.config.idle_timeout_s
        idle = [k for k, e in self._entries.items() if e.in_use == 0 and e.last_used < limit]
        for key in idle:
            await self._close_conn(key, self._entries.pop(key))
        return len(idle)

    async def close(self) -> None:
        """Close every connection and SDK object, then cancel the tasks the SDK leaves behind
        (it leaks some even after a clean close)."""
        if self._closed:
            return
        self._closed = True
        _open_pools.discard(self)
        entries = list(self._entries.items())
        self._entries.clear()
        for key, entry in entries:
            await self._close_conn(key, entry)
        apis = list(self._apis.values())
        self._apis.clear()
        if not apis:
            return
        # conn.close() finishes in a fire-and-forget task; api.close() before it ends
        # makes that task fail with KeyError
        await asyncio.sleep(self.config.shutdown_grace_s)
        for api in apis:
            with suppress(Exception):
                api.close()
        await asyncio.sleep(self.config.shutdown_grace_s)
        if not _open_pools:
            await cancel_sdk_tasks()

    # ---- internals ------------------------------------------------------------------

    def _api(self, token: str, fp: str) -> Any:
        api = self._apis.get(fp)
        if api is None:
            if self.config.route_sdk_logs:
                from metaapi_cloud_sdk import MetaApi

                MetaApi.enable_logging()
            api = self._factory(token, self.config.sdk_opts())
            self._apis[fp] = api
            log.info("metaapi sdk object created for token %s", fp)
        return api

    async def _open(self, token: str, fp: str, account_id: str) -> Any:
        op = f"connect account {account_id}"
        try:
            api = self._api(token, fp)
            account = await api.metatrader_account_api.get_account(account_id)
        except NotFoundException:
            raise AuthFailed(
                f"MetaApi account {account_id} does not exist for this token"
            ) from None
        except Exception as err:
            raise map_sdk_error(err, op=op, trade=False, secret=token) from None
        if account.state != "DEPLOYED":
            await self._deploy(account, account_id, token)
        conn = account.get_rpc_connection()
        try:
            await conn.connect()
            await conn.wait_synchronized(timeout_in_seconds=self.config.sync_timeout_s)
        except BaseException as err:
            with suppress(Exception):
                await conn.close()
            if isinstance(err, TimeoutException):
                raise NotConnected(
                    f"MetaApi account {account_id} did not synchronize within"
                    f" {self.config.sync_timeout_s:g} s",
                    retry_after_s=30.0,
                ) from None
            if isinstance(err, Exception) and not isinstance(err, BrokerError):
                raise map_sdk_error(err, op=op, trade=False, secret=token) from None
            raise
        log.info("metaapi account %s connected (token %s)", account_id, fp)
        return conn

    async def _deploy(self, account: Any, account_id: str, token: str) -> None:
        """Deploy an undeployed account when the operator allows it; else say what to do."""
        state = account.state
        if not self.config.deploy or state not in _DEPLOYABLE:
            why = (
                "it is being deployed"
                if state == "DEPLOYING"
                else "deploy it in MetaApi, or let Sigrelay deploy accounts"
                " (SIGRELAY_METAAPI_DEPLOY=1)"
                if state in _DEPLOYABLE
                else "it needs attention in MetaApi"
            )
            raise NotConnected(
                f"MetaApi account {account_id} is {state}, not DEPLOYED: {why}",
                retry_after_s=60.0,
            )
        log.info("metaapi account %s is %s: deploying it", account_id, state)
        try:
            await account.deploy()
            await account.wait_deployed(
                timeout_in_seconds=self.config.deploy_timeout_s,
                interval_in_milliseconds=int(self.config.deploy_poll_s * 1000),
            )
        except TimeoutException:
            raise NotConnected(
                f"MetaApi account {account_id} was not deployed within"
                f" {self.config.deploy_timeout_s:g} s",
                retry_after_s=60.0,
            ) from None
        except MethodAccessException:
            raise NotConnected(
                f"MetaApi account {account_id} is {state}, and the token linked to it is an"
                " account token, which cannot deploy: deploy it in MetaApi or link an API token",
                retry_after_s=300.0,
            ) from None
        except Exception as err:
            op = f"deploy account {account_id}"
            raise map_sdk_error(err, op=op, trade=False, secret=token) from None
        log.info("metaapi account %s deployed", account_id)

    async def _evict(self) -> None:
        now = self._clock()
        if now - self._last_sweep >= 1.0:
            self._last_sweep = now
            await self.sweep()
        while len(self._entries) > self.config.max_connections:
            victim = next((k for k, e in self._entries.items() if e.in_use == 0), None)
            if victim is None:  # everything busy: allow the overshoot
                return
            await self._close_conn(victim, self._entries.pop(victim))

    async def _close_conn(self, key: tuple[str, str], entry: _Entry) -> None:
        with suppress(Exception):
            await entry.conn.close()
        log.info("metaapi account %s connection closed", key[1])


async def cancel_sdk_tasks() -> int:
    """Cancel the background tasks metaapi-cloud-sdk leaves after `MetaApi.close()`
    (synchronization throttler intervals, disconnect timers, socket.io client loops)."""
    current = asyncio.current_task()
    leftovers = []
    for task in asyncio.all_tasks():
        if task is current or task.done():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if "metaapi_cloud_sdk" in filename or filename.endswith(
            ("socketio/asyncio_client.py", "engineio/asyncio_client.py")
        ):
            task.cancel()
            leftovers.append(task)
    if leftovers:
        await asyncio.gather(*leftovers, return_exceptions=True)
    return len(leftovers)
