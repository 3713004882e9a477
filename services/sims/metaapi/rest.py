"""The provisioning REST the SDK calls, as the cloud answers it.

The SDK sends the token in an `auth-token` header. A missing token, or one that
starts with `bad`, is answered 401 UnauthorizedError (the SDK raises
UnauthorizedException); while throttled every call is answered 429
TooManyRequestsError with `metadata.recommendedRetryTime` (TooManyRequestsException).
Deploy, undeploy and redeploy answer 204 as the cloud does, and switch the state
at once (the cloud takes a while; `wait_deployed` polls until it sees DEPLOYED).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .accounts import SimAccounts
from .faults import Faults

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# what the SDK asks before opening a websocket without a fixed URL
CLIENT_API = {"hostname": "mt-client-api-v1", "domain": "agiliumtrade.ai"}


def _error(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"id": 1, "error": name, "message": message}, status=status)


def middleware(faults: Faults) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Authentication and throttling for the REST routes (not `/ws`, not `/_sim`)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith(("/ws", "/_sim")):
            return await handler(request)
        token = request.headers.get("auth-token", "")
        if not token or token.startswith("bad"):
            return _error(401, "UnauthorizedError", "Invalid auth-token header: not authorized")
        throttled = faults.too_many_requests()
        if throttled is not None:
            return web.json_response(throttled, status=429)
        return await handler(request)

    return guard


def routes(accounts: SimAccounts) -> list[web.RouteDef]:
    async def servers(request: web.Request) -> web.Response:
        return web.json_response(CLIENT_API)

    async def list_accounts(request: web.Request) -> web.Response:
        return web.json_response([a.json() for a in accounts.accounts.values()])

    async def get_account(request: web.Request) -> web.Response:
        return web.json_response(accounts.get(request.match_info["id"]).json())

    def state_change(state: str) -> Handler:
        async def change(request: web.Request) -> web.Response:
            accounts.get(request.match_info["id"]).state = state
            return web.Response(status=204)

        return change

    async def unknown(request: web.Request) -> web.Response:
        return _error(
            404,
            "NotFoundError",
            f"{request.method} {request.path} is not served by the MetaApi stand-in",
        )

    return [
        web.get("/users/current/servers/mt-client-api", servers),
        web.get("/users/current/accounts", list_accounts),
        web.get("/users/current/accounts/{id}", get_account),
        web.post("/users/current/accounts/{id}/deploy", state_change("DEPLOYED")),
        web.post("/users/current/accounts/{id}/redeploy", state_change("DEPLOYED")),
        web.post("/users/current/accounts/{id}/undeploy", state_change("UNDEPLOYED")),
        web.route("*", "/users/{tail:.*}", unknown),
    ]
