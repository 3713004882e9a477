"""Drift guard: the installed metaapi-cloud-sdk still has the surface the adapter relies on.

If an SDK upgrade renames a parameter, turns a `def` into `async def`, or moves an
exception class, these fail before production does. Annotations are not
compared (TypedDicts and forward-ref strings differ in form; sdk-notes C3).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from metaapi_cloud_sdk.clients.http_client import HttpClient
from metaapi_cloud_sdk.clients.metaapi.metaapi_websocket_client import MetaApiWebsocketClient
from metaapi_cloud_sdk.metaapi.metaapi import MetaApi
from metaapi_cloud_sdk.metaapi.metatrader_account import MetatraderAccount
from metaapi_cloud_sdk.metaapi.metatrader_account_api import MetatraderAccountApi
from metaapi_cloud_sdk.metaapi.rpc_metaapi_connection_instance import (
    RpcMetaApiConnectionInstance,
)

import services.execution.broker.metaapi as adapter_module
import services.execution.broker.metaapi_pool as pool_module

from .stubs import FakeRpcConnection

P = inspect.Parameter
PK, KO = P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY
E = P.empty

# (name, kind, default) after `self`, per method the adapter calls on an RPC connection
EXPECTED: dict[str, list[tuple[str, Any, Any]]] = {
    "connect": [],
    "close": [],
    "wait_synchronized": [("timeout_in_seconds", PK, 300)],
    "create_market_buy_order": [
        ("symbol", PK, E),
        ("volume", PK, E),
        ("stop_loss", PK, None),
        ("take_profit", PK, None),
        ("options", PK, None),
    ],
    "create_limit_buy_order": [
        ("symbol", PK, E),
        ("volume", PK, E),
        ("open_price", PK, E),
        ("stop_loss", PK, None),
        ("take_profit", PK, None),
        ("options", PK, None),
    ],
    "modify_position": [
        ("position_id", PK, E),
        ("stop_loss", PK, None),
        ("take_profit", PK, None),
        ("trailing_stop_loss", PK, None),
        ("stop_price_base", PK, None),
    ],
    "close_position": [("position_id", PK, E), ("options", PK, None)],
    "close_position_partially": [
        ("position_id", PK, E),
        ("volume", PK, E),
        ("options", PK, None),
    ],
    "cancel_order": [("order_id", PK, E)],
    "modify_order": [
        ("order_id", PK, E),
        ("open_price", PK, E),
        ("stop_loss", PK, None),
        ("take_profit", PK, None),
        ("options", PK, None),
    ],
    "get_positions": [("options", PK, None)],
    "get_position": [("position_id", PK, E), ("options", PK, None)],
    "get_orders": [("options", PK, None)],
    "get_order": [("order_id", PK, E), ("options", PK, None)],
    "get_account_information": [("options", PK, None)],
    "get_symbol_specification": [("symbol", PK, E)],
    "get_symbol_price": [("symbol", PK, E), ("keep_subscription", PK, False)],
}
SAME_AS = {
    "create_market_sell_order": "create_market_buy_order",
    "create_limit_sell_order": "create_limit_buy_order",
    "create_stop_buy_order": "create_limit_buy_order",
    "create_stop_sell_order": "create_limit_buy_order",
}
ASYNC_DEF = {"connect", "close", "wait_synchronized"}
ALL_METHODS = sorted([*EXPECTED, *SAME_AS])


def _shape(fn: Any) -> list[tuple[str, Any, Any]]:
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop self
    return [(p.name, p.kind, p.default) for p in params]


@pytest.mark.parametrize("name", ALL_METHODS)
def test_sdk_rpc_method_when_inspected_then_signature_as_expected(name: str) -> None:
    expected = EXPECTED[SAME_AS.get(name, name)]

    actual = _shape(getattr(RpcMetaApiConnectionInstance, name))

    assert actual == expected


@pytest.mark.parametrize("name", ALL_METHODS)
def test_fake_connection_when_inspected_then_matches_the_sdk(name: str) -> None:
    assert _shape(getattr(FakeRpcConnection, name)) == _shape(
        getattr(RpcMetaApiConnectionInstance, name)
    )


@pytest.mark.parametrize("name", ALL_METHODS)
def test_sdk_call_style_when_inspected_then_as_the_notes_say(name: str) -> None:
    # trades and reads are plain defs returning coroutines; the adapter awaits them all
    is_async = inspect.iscoroutinefunction(getattr(RpcMetaApiConnectionInstance, name))

    assert is_async is (name in ASYNC_DEF)


def test_adapter_when_scanned_then_calls_only_checked_connection_methods() -> None:
    source = Path(adapter_module.__file__).read_text() + Path(pool_module.__file__).read_text()

    called = set(re.findall(r"\b(?:c|conn)\.([a-z_]+)\b", source))

    assert called, "the scan found no connection calls: the regex is stale"
    assert called <= set(ALL_METHODS)


def test_account_and_api_surface_when_inspected_then_as_expected() -> None:
    assert inspect.iscoroutinefunction(MetatraderAccountApi.get_account)
    assert _shape(MetatraderAccountApi.get_account) == [("account_id", PK, E)]
    assert not inspect.iscoroutinefunction(MetatraderAccount.get_rpc_connection)
    assert _shape(MetatraderAccount.get_rpc_connection) == []
    assert isinstance(MetatraderAccount.state, property)
    assert _shape(MetaApi.__init__) == [("token", PK, E), ("opts", PK, None)]
    assert not inspect.iscoroutinefunction(MetaApi.close)  # sync, needs the loop
    assert isinstance(inspect.getattr_static(MetaApi, "enable_logging"), staticmethod)
    assert isinstance(inspect.getattr_static(MetaApi, "metatrader_account_api"), property)


def test_endpoint_hooks_when_inspected_then_still_in_the_sdk() -> None:
    """The private hooks metaapi_endpoint.py redirects the SDK with (sdk-notes A13)."""
    import metaapi_cloud_sdk.metaapi.metaapi as metaapi_module

    # REST: MetaApi builds its HttpClients by this module-level name...
    assert metaapi_module.HttpClient is HttpClient
    assert inspect.getsource(MetaApi.__init__).count("HttpClient(") == 3
    # ...and every request goes through _make_request(options), with the timeout in _timeout
    assert inspect.iscoroutinefunction(HttpClient._make_request)
    assert _shape(HttpClient._make_request) == [("options", PK, E)]
    assert "self._make_request(options)" in inspect.getsource(HttpClient.request)
    assert HttpClient(7)._timeout == 7
    # websocket: set_url, and the URL look-up honours it before asking REST
    assert _shape(MetaApiWebsocketClient.set_url) == [("url", PK, E)]
    assert "if self._url:" in inspect.getsource(MetaApiWebsocketClient._get_server_url)
    assert "_metaapi_websocket_client = MetaApiWebsocketClient(" in inspect.getsource(
        MetaApi.__init__
    )


EXCEPTIONS = [
    ("metaapi_cloud_sdk.clients.metaapi.trade_exception", "TradeException", ("m", 1, "X")),
    ("metaapi_cloud_sdk.clients.metaapi.not_connected_exception", "NotConnectedException", ("m",)),
    (
        "metaapi_cloud_sdk.clients.metaapi.not_synchronized_exception",
        "NotSynchronizedException",
        ("m",),
    ),
    ("metaapi_cloud_sdk.clients.timeout_exception", "TimeoutException", ("m",)),
    ("metaapi_cloud_sdk.clients.method_access_exception", "MethodAccessException", ("m",)),
    ("metaapi_cloud_sdk.clients.error_handler", "ApiException", ("m", None)),
    ("metaapi_cloud_sdk.clients.error_handler", "ValidationException", ("m", [])),
    ("metaapi_cloud_sdk.clients.error_handler", "NotFoundException", ("m",)),
    ("metaapi_cloud_sdk.clients.error_handler", "UnauthorizedException", ("m",)),
    ("metaapi_cloud_sdk.clients.error_handler", "ForbiddenException", ("m",)),
    ("metaapi_cloud_sdk.clients.error_handler", "ConflictException", ("m",)),
    ("metaapi_cloud_sdk.clients.error_handler", "InternalException", ("m",)),
    (
        "metaapi_cloud_sdk.clients.error_handler",
        "TooManyRequestsException",
        ("m", {"recommendedRetryTime": "2030-01-01T00:00:00Z"}),
    ),
]


@pytest.mark.parametrize(("module", "name", "args"), EXCEPTIONS, ids=[e[1] for e in EXCEPTIONS])
def test_exception_when_imported_from_adapter_path_then_constructible(
    module: str, name: str, args: tuple[Any, ...]
) -> None:
    cls = getattr(importlib.import_module(module), name)

    exc = cls(*args)

    assert isinstance(exc, Exception)
    adapter_errors = importlib.import_module("services.execution.broker.metaapi_errors")
    assert getattr(adapter_errors, name, cls) is cls  # the adapter uses the same class


def test_exception_attributes_when_constructed_then_as_the_adapter_reads_them() -> None:
    from metaapi_cloud_sdk.clients.error_handler import (
        ApiException,
        TooManyRequestsException,
        ValidationException,
    )
    from metaapi_cloud_sdk.clients.metaapi.trade_exception import TradeException

    trade = TradeException("Invalid volume", 10014, "TRADE_RETCODE_INVALID_VOLUME")
    limited = TooManyRequestsException("slow down", {"recommendedRetryTime": "x"})
    invalid = ValidationException("bad", [{"parameter": "volume", "message": "m"}])
    transport = ApiException("None", None)

    assert (trade.numericCode, trade.stringCode) == (10014, "TRADE_RETCODE_INVALID_VOLUME")
    assert not isinstance(trade, ApiException)
    assert limited.metadata == {"recommendedRetryTime": "x"}
    assert invalid.details == [{"parameter": "volume", "message": "m"}]
    assert transport.status_code is None
