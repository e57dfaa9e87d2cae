"""HTTP enforcement: an aiohttp middleware mapping bearer tokens to principals.

``bearer_auth(authorizer, tokens)`` guards every route of the app it is given to:

* no ``Authorization: Bearer <token>`` header, or a token nobody issued (or that was
  revoked): **401** with ``WWW-Authenticate: Bearer`` (RFC 6750);
* a known token whose principal the policy does not allow to ``read`` the request's scope
  (device and topic, see :func:`default_scope`): **403**;
* otherwise the handler runs with ``request[PRINCIPAL]`` (the principal id) and
  ``request[DECISION]`` (the policy's decision) set.

Error bodies are JSON ``{"error": "unauthorized"|"forbidden", "reason": "..."}``; a reason
never repeats the presented token. The check is synchronous and cheap (a digest, a dict
lookup, a memoised policy decision), so it runs inline on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

from aiohttp import web

from policy import Decision, HttpAction, HttpScope, Resource

__all__ = ["DECISION", "PRINCIPAL", "bearer_auth", "default_scope"]

PRINCIPAL = web.RequestKey("principal", str)
"""The request key holding the authenticated principal id."""
DECISION = web.RequestKey("decision", Decision)
"""The request key holding the decision that let the request through."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
ScopeOf = Callable[[web.Request], HttpScope]


class Authorizes(Protocol):
    """What the middleware needs of :class:`~policy.Authorizer`."""

    def authorize(
        self,
        principal: str,
        action: HttpAction,
        resource: Resource,
        *,
        client_id: str | None = None,
        host: str | None = None,
    ) -> Decision: ...


class KnowsTokens(Protocol):
    """What the middleware needs of :class:`~security.TokenStore`."""

    def principal_for(self, token: str) -> str | None: ...


def default_scope(request: web.Request) -> HttpScope:
    """The device and topic a request reads: path parameters ``device_id``/``topic``, else
    query parameters of the same names; missing means "all of them"."""
    device = request.match_info.get("device_id") or request.query.get("device_id")
    topic = request.match_info.get("topic") or request.query.get("topic")
    return HttpScope(device or None, topic or None)


def _refuse(status: int, error: str, reason: str) -> web.Response:
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="iot", error="invalid_token"'
    return web.json_response({"error": error, "reason": reason}, status=status, headers=headers)


def bearer_auth(
    authorizer: Authorizes,
    tokens: KnowsTokens,
    *,
    scope: ScopeOf = default_scope,
    public: Collection[str] = (),
) -> Middleware:
    """The middleware (see the module docstring); paths in ``public`` are not checked."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public:
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _refuse(401, "unauthorized", "missing bearer token (Authorization: Bearer …)")
        principal = tokens.principal_for(token)
        if principal is None:
            return _refuse(401, "unauthorized", "unknown or revoked token")
        decision = authorizer.authorize(principal, HttpAction.READ, scope(request))
        if not decision.allowed:
            return _refuse(403, "forbidden", decision.reason)
        request[PRINCIPAL] = principal
        request[DECISION] = decision
        return await handler(request)

    return middleware
