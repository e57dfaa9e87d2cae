"""Bearer-token auth of the query API: the security policy's HTTP scopes, per route.

Every route of the query API names how its scope is found (:data:`ROUTE_SCOPES`, keyed by
the route's name), never the request alone:

* ``path``: reads of one device (``/devices/{device_id}...``) are scoped to that device and
  its telemetry topic (``devices/{id}/telemetry``), so a token whose rule allows
  ``devices: [dev-a*]`` reads ``dev-a1`` and gets 403 for ``dev-b``;
* ``query``: routes that really filter by ``?device_id=`` (the alerts, their history and
  stream) are scoped to that device when it is given, to every device when not;
* ``all``: reads over every device (the device list and the fleet overview, whatever their
  parameters) are scoped to every device: only a rule with ``devices: ["*"]`` (or none)
  allows them;
* ``command``: sending a command to a device (``POST /devices/{device_id}/commands``) is
  scoped to that device and its commands topic (``devices/{id}/commands``), so only a rule
  whose ``topics`` match that topic allows it: reading a device is not commanding it.

A route missing from the table (or no route: 404) is scoped to every device, so a new route
fails closed until it is given a scope.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Literal

from aiohttp import web

from contracts.identifiers import device_id_problem
from policy import HttpScope, PolicyError
from security import PolicyWatch, SecurityError, TokenStore, bearer_auth
from security.http import Middleware
from streams.errors import ConfigError
from streams.settings import QueryAuthSettings

log = logging.getLogger("streams.query")

__all__ = ["ROUTE_SCOPES", "ScopeKind", "query_auth", "query_scope"]

ALL_TELEMETRY = "devices/+/telemetry"

ScopeKind = Literal["path", "query", "all", "command"]

ROUTE_SCOPES: Mapping[str, ScopeKind] = {
    "health": "all",
    "overview": "all",
    "devices": "all",
    "device": "path",
    "aggregates": "path",
    "loss": "path",
    "readings_stream": "path",
    "command": "command",
    "alerts": "query",
    "alert_history": "query",
    "alerts_stream": "query",
}
"""How each named route of the query API finds the device it reads (see the module doc)."""


def _device_scope(device: str | None, kind: str = "telemetry") -> HttpScope:
    if device is None:
        return HttpScope(None, ALL_TELEMETRY)
    if device_id_problem(device) is not None:
        return HttpScope(device, None)  # not a device id: only unrestricted tokens pass
    return HttpScope(device, f"devices/{device}/{kind}")


def query_scope(request: web.Request) -> HttpScope:
    """The scope a request reads, decided by its route's entry in :data:`ROUTE_SCOPES`."""
    route = request.match_info.route
    kind = ROUTE_SCOPES.get(route.name or "", "all")
    if kind == "path":
        return _device_scope(request.match_info.get("device_id") or None)
    if kind == "query":
        return _device_scope(request.query.get("device_id") or None)
    if kind == "command":
        return _device_scope(request.match_info.get("device_id") or "", "commands")
    return _device_scope(None)


def query_auth(settings: QueryAuthSettings, public: Collection[str]) -> Middleware | None:
    """The middleware, or None when auth is explicitly disabled (logged loudly). Auth is on
    by default: without its files that is a ConfigError, never an open API."""
    if not settings.enabled:
        log.warning(
            "QUERY API AUTHENTICATION IS DISABLED (query.auth.enabled=false): anyone who "
            "reaches the worker's HTTP port reads every device"
        )
        return None
    if settings.policy_file is None or settings.tokens_file is None:
        raise ConfigError(
            "the query API needs query.auth.policy_file and query.auth.tokens_file "
            "(IOT_STREAMS_QUERY__AUTH__POLICY_FILE, ..._TOKENS_FILE); to serve it without "
            "authentication set query.auth.enabled=false explicitly"
        )
    try:
        watch = PolicyWatch(settings.policy_file, None, check_every_s=settings.reload_every_s)
    except (OSError, PolicyError, SecurityError) as exc:
        raise ConfigError(f"query.auth.policy_file: {exc}") from exc
    tokens = TokenStore(settings.tokens_file)
    return bearer_auth(watch, tokens, scope=query_scope, public=public)
