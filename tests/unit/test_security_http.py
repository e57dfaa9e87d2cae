"""``bearer_auth``: 401 without a valid token, 403 outside the policy's scope, JSON reasons.

A tiny aiohttp app served by aiohttp's own test server on a loopback port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from policy import Authorizer, loads_policy
from security import TokenStore, bearer_auth
from security.http import PRINCIPAL

POLICY = """\
version: 1
principals:
  - {id: dashboard, kind: api_client}
  - {id: auditor, kind: api_client}
rules:
  - id: dashboard-reads-sensors
    effect: allow
    principals: [dashboard]
    http: {devices: ["sensor-*"], topics: ["devices/+/telemetry"]}
  - id: auditor-reads-everything
    effect: allow
    principals: [auditor]
    http: {devices: ["*"], topics: ["#"]}
"""


async def _reading(request: web.Request) -> web.Response:
    return web.json_response(
        {"principal": request[PRINCIPAL], "device": request.match_info["device_id"]}
    )


async def _health(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
def tokens(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "tokens.json")


@pytest.fixture
async def client(tokens: TokenStore) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application(
        middlewares=[
            bearer_auth(Authorizer(loads_policy(POLICY)), tokens, public={"/healthz"}),
        ]
    )
    app.router.add_get("/devices/{device_id}/readings", _reading)
    app.router.add_get("/healthz", _health)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client


async def _call(
    client: TestClient[web.Request, web.Application],
    path: str,
    authorization: str | None,
) -> tuple[int, dict[str, object], str | None]:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with client.get(path, headers=headers) as response:
        return response.status, await response.json(), response.headers.get("WWW-Authenticate")


async def test_no_token_is_401_with_a_json_reason(
    client: TestClient[web.Request, web.Application],
) -> None:
    status, body, challenge = await _call(client, "/devices/sensor-1/readings", None)
    assert status == 401
    assert body["error"] == "unauthorized"
    assert "missing bearer token" in str(body["reason"])
    assert challenge is not None
    assert challenge.startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "bearer"])
async def test_a_malformed_authorization_header_is_401(
    client: TestClient[web.Request, web.Application], header: str
) -> None:
    status, body, _ = await _call(client, "/devices/sensor-1/readings", header)
    assert status == 401
    assert body["error"] == "unauthorized"


async def test_an_unknown_or_revoked_token_is_401_and_never_echoed(
    client: TestClient[web.Request, web.Application], tokens: TokenStore
) -> None:
    status, body, _ = await _call(client, "/devices/sensor-1/readings", "Bearer iot_guess")
    assert (status, body["reason"]) == (401, "unknown or revoked token")
    issued = tokens.add("dashboard")
    tokens.revoke(issued.info.token_id)
    status, body, _ = await _call(client, "/devices/sensor-1/readings", f"Bearer {issued.token}")
    assert status == 401
    assert issued.token not in str(body)


async def test_a_scope_the_policy_denies_is_403_with_the_decision_as_reason(
    client: TestClient[web.Request, web.Application], tokens: TokenStore
) -> None:
    token = tokens.add("dashboard").token
    status, body, _ = await _call(client, "/devices/actuator-1/readings", f"Bearer {token}")
    assert status == 403
    assert body["error"] == "forbidden"
    assert "'dashboard'" in str(body["reason"])
    assert "actuator-1" in str(body["reason"])
    assert token not in str(body)
    # a topic outside the rule's filters is denied too
    status, _, _ = await _call(
        client, "/devices/sensor-1/readings?topic=devices/sensor-1/commands", f"Bearer {token}"
    )
    assert status == 403


async def test_an_allowed_request_reaches_the_handler_as_its_principal(
    client: TestClient[web.Request, web.Application], tokens: TokenStore
) -> None:
    dashboard, auditor = tokens.add("dashboard").token, tokens.add("auditor").token
    path = "/devices/sensor-1/readings?topic=devices/sensor-1/telemetry"
    status, body, _ = await _call(client, path, f"Bearer {dashboard}")
    assert (status, body) == (200, {"principal": "dashboard", "device": "sensor-1"})
    # Without a topic the request reads every topic, more than the dashboard's rule allows.
    status, _, _ = await _call(client, "/devices/sensor-1/readings", f"Bearer {dashboard}")
    assert status == 403
    status, body, _ = await _call(client, "/devices/actuator-1/readings", f"bearer {auditor}")
    assert (status, body["principal"]) == (200, "auditor")


async def test_public_paths_need_no_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    assert (await _call(client, "/healthz", None))[:2] == (200, {"ok": True})
