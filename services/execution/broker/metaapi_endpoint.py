"""Where the MetaApi SDK connects: the cloud, or the stand-in named by SIGRELAY_METAAPI_URL.

metaapi-cloud-sdk has no option for a base URL: it builds
`https://mt-provisioning-api-v1.<domain>/...` for REST and resolves the websocket
host through REST. To run against `sigrelay sim metaapi` (a local server that
speaks the same protocol) without DNS entries and TLS certificates, two SDK hooks
are used, both pinned by tests/unit/broker/test_metaapi_drift.py:

- REST: `MetaApi.__init__` builds its `HttpClient`s by the module-level name
  `metaapi_cloud_sdk.metaapi.metaapi.HttpClient`; while the (synchronous)
  constructor runs, that name is a subclass whose `_make_request` sends the same
  request to the stand-in's origin (path and query kept) with a plain httpx
  client. Every REST call of that SDK object is then a real HTTP request to the
  stand-in, and the SDK's own error handling (401, 404, 429, ...) applies.
- Websocket: `MetaApiWebsocketClient.set_url(url)` (the SDK's own hook, "for use
  in unit tests"), which also skips the REST look-up of the websocket host.

The domain is also set to `metaapi-sim.invalid`, so a request that escaped both
would fail to resolve rather than reach the real cloud.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

URL_ENV = "SIGRELAY_METAAPI_URL"
SIM_DOMAIN = "metaapi-sim.invalid"


def endpoint_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The stand-in's URL from SIGRELAY_METAAPI_URL (None when unset or empty)."""
    value = (os.environ if env is None else env).get(URL_ENV, "").strip()
    if not value:
        return None
    url = httpx.URL(value)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"{URL_ENV}={value!r} is not an http(s)://host[:port] URL")
    return value.rstrip("/")


def redirected_api(token: str, opts: dict[str, Any], url: str) -> Any:
    """A real `MetaApi` object whose REST and websocket both go to `url` only."""
    from metaapi_cloud_sdk.clients.http_client import HttpClient
    from metaapi_cloud_sdk.metaapi import metaapi as metaapi_module

    target = httpx.URL(url)

    class _RedirectedHttpClient(HttpClient):
        async def _make_request(self, options: dict[str, Any]) -> httpx.Response:
            original = httpx.URL(options["url"])
            redirected = original.copy_with(
                scheme=target.scheme, host=target.host, port=target.port
            )
            # trust_env off: a proxy from the environment must not see the local stand-in
            async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as client:
                request = client.build_request(
                    options.get("method", "GET"),
                    redirected,
                    params=options.get("params"),
                    files=options.get("files"),
                    headers=options.get("headers"),
                    json=options.get("body"),
                )
                return await client.send(request)

    original_class = metaapi_module.HttpClient
    metaapi_module.HttpClient = _RedirectedHttpClient
    try:  # the constructor is synchronous: no other task can see the swapped name
        api = metaapi_module.MetaApi(token, {**opts, "domain": SIM_DOMAIN})
    finally:
        metaapi_module.HttpClient = original_class
    api._metaapi_websocket_client.set_url(url)
    return api


def api_factory_for(url: str) -> Any:
    """An `api_factory` for `MetaApiConnectionPool` pointed at `url`."""

    def factory(token: str, opts: dict[str, Any]) -> Any:
        return redirected_api(token, opts, url)

    return factory
