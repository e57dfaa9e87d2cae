"""Bearer-token auth of the query API: the security policy's HTTP scopes, per request.

Reads of one device are scoped to that device and its telemetry topic
(``devices/{id}/telemetry``), so a token whose rule allows ``devices: [dev-a*]`` reads
``dev-a1`` and gets 403 for ``dev-b``. Reads over every device (the device list, alerts
without ``device_id``, health of all partitions) are scoped to every device: only a rule
with ``devices: ["*"]`` (or none) allows them.
"""

from __future__ import annotations

from collections.abc import Collection

from aiohttp import web

from iot_gateway.policy import Authorizer, HttpScope, PolicyError, load_policy
from iot_gateway.security import TokenStore, bearer_auth
from iot_gateway.security.http import Middleware
from streams.errors import ConfigError
from streams.worker.settings import QueryAuthSettings

__all__ = ["query_auth", "query_scope"]

ALL_TELEMETRY = "devices/+/telemetry"


def query_scope(request: web.Request) -> HttpScope:
    device = request.match_info.get("device_id") or request.query.get("device_id") or None
    if device is None:
        return HttpScope(None, ALL_TELEMETRY)
    if any(c in device for c in "/+#\x00"):
        return HttpScope(device, None)  # not a topic level: only unrestricted tokens pass
    return HttpScope(device, f"devices/{device}/telemetry")


def query_auth(settings: QueryAuthSettings, public: Collection[str]) -> Middleware | None:
    """The middleware when auth is enabled (ConfigError if its files are not given)."""
    if not settings.enabled:
        return None
    if settings.policy_file is None or settings.tokens_file is None:
        raise ConfigError("query.auth.enabled needs query.auth.policy_file and tokens_file")
    try:
        authorizer = Authorizer(load_policy(settings.policy_file))
    except (OSError, PolicyError) as exc:
        raise ConfigError(f"query.auth.policy_file: {exc}") from exc
    tokens = TokenStore(settings.tokens_file)
    return bearer_auth(authorizer, tokens, scope=query_scope, public=public)
