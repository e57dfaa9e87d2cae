"""The Confluent REST API served by ``server.py``: paths, bodies, content type, error codes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from contracts.avro import parse_schema
from contracts.registry import MemorySchemaRegistry, start_server

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
V1 = parse_schema({"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]})
V2 = parse_schema(
    {
        "type": "record",
        "name": "R",
        "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "long", "default": 0}],
    }
)
BREAKING = parse_schema(
    {
        "type": "record",
        "name": "R",
        "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "long"}],
    }
)

Call = Callable[..., Awaitable[tuple[int, Any]]]
LOGIN = ("registry-admin", "s3cret-for-tests")
BASIC = {"Authorization": aiohttp.encode_basic_auth(*LOGIN)}


@pytest.fixture
async def call() -> AsyncIterator[Call]:
    """``await call(method, path, body=None)`` -> (status, decoded JSON) against a fresh server."""
    async with MemorySchemaRegistry() as registry:
        runner, url = await start_server(registry, port=0, login=LOGIN)
        try:
            async with aiohttp.ClientSession(headers=BASIC) as session:

                async def request(method: str, path: str, body: Any = None) -> tuple[int, Any]:
                    data = None if body is None else json.dumps(body)
                    headers = {"Content-Type": CONTENT_TYPE}
                    async with session.request(
                        method, url + path, data=data, headers=headers
                    ) as response:
                        assert response.content_type == CONTENT_TYPE
                        text = await response.text()
                        return response.status, json.loads(text) if text else None

                yield request
        finally:
            await runner.cleanup()


def body(schema: Any, **extra: Any) -> dict[str, Any]:
    return {"schema": schema.text if hasattr(schema, "text") else schema, **extra}


async def test_register_and_read_back_every_way(call: Call) -> None:
    assert await call("POST", "/subjects/t-value/versions", body(V1, schemaType="AVRO")) == (
        200,
        {"id": 1, "subject": "t-value", "version": 1},
    )
    assert (await call("POST", "/subjects/t-value/versions", body(V2)))[1]["id"] == 2
    assert await call("GET", "/schemas/ids/1") == (200, {"schema": V1.text})
    assert await call("GET", "/schemas/ids/2/schema") == (200, V2.definition)
    assert await call("GET", "/schemas/ids/1/versions") == (
        200,
        [{"subject": "t-value", "version": 1}],
    )
    assert await call("GET", "/schemas/ids/1/subjects") == (200, ["t-value"])
    assert await call("GET", "/subjects") == (200, ["t-value"])
    assert await call("GET", "/subjects/t-value/versions") == (200, [1, 2])
    latest = {"subject": "t-value", "version": 2, "id": 2, "schema": V2.text}
    assert await call("GET", "/subjects/t-value/versions/latest") == (200, latest)
    assert await call("GET", "/subjects/t-value/versions/-1") == (200, latest)
    assert await call("GET", "/subjects/t-value/versions/1/schema") == (200, V1.definition)
    assert await call("POST", "/subjects/t-value", body(V2)) == (200, latest)
    assert await call("GET", "/schemas/types") == (200, ["AVRO"])


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code"),
    [
        ("GET", "/schemas/ids/42", None, 404, 40403),
        ("GET", "/schemas/ids/abc", None, 404, 40403),
        ("GET", "/subjects/nobody/versions", None, 404, 40401),
        ("GET", "/subjects/t-value/versions/9", None, 404, 40402),
        ("GET", "/subjects/t-value/versions/0", None, 422, 42202),
        ("GET", "/subjects/t-value/versions/first", None, 422, 42202),
        ("POST", "/subjects/t-value", body(V2), 404, 40403),
        ("POST", "/subjects/nobody", body(V1), 404, 40401),
        ("POST", "/subjects/t-value/versions", body('{"type": "nope"}'), 422, 42201),
        ("POST", "/subjects/t-value/versions", body("{not json"), 422, 42201),
        ("POST", "/subjects/t-value/versions", {"no": "schema"}, 422, 42201),
        ("POST", "/subjects/t-value/versions", body(V1, schemaType="PROTOBUF"), 422, 42201),
        ("POST", "/subjects/t-value/versions", body(V1, references=[{"name": "x"}]), 422, 42201),
        ("POST", "/subjects/t-value/versions", body(BREAKING), 409, 409),
        ("PUT", "/config", {"compatibility": "SIDEWAYS"}, 422, 42203),
        ("GET", "/config/t-value", None, 404, 40408),
        ("DELETE", "/config/t-value", None, 404, 40408),
        ("DELETE", "/subjects/t-value/versions/1?permanent=true", None, 404, 40407),
        ("DELETE", "/subjects/t-value?permanent=true", None, 404, 40405),
        ("GET", "/no/such/path", None, 404, 404),
    ],
)
async def test_errors_carry_confluent_codes(
    call: Call, method: str, path: str, payload: Any, status: int, code: int
) -> None:
    await call("POST", "/subjects/t-value/versions", body(V1))
    got_status, error = await call(method, path, payload)
    assert (got_status, error["error_code"]) == (status, code)
    assert isinstance(error["message"], str)
    assert error["message"]


async def test_an_incompatible_schema_is_409_naming_the_field(call: Call) -> None:
    await call("POST", "/subjects/t-value/versions", body(V1))
    status, error = await call("POST", "/subjects/t-value/versions", body(BREAKING))
    assert status == 409
    assert "'y'" in error["message"]
    assert "reader_field_missing_default_value" in error["message"]


async def test_compatibility_checks_terse_and_verbose(call: Call) -> None:
    await call("POST", "/subjects/t-value/versions", body(V1))
    path = "/compatibility/subjects/t-value/versions"
    assert await call("POST", path + "/latest", body(V2)) == (200, {"is_compatible": True})
    assert await call("POST", path + "/1", body(BREAKING)) == (200, {"is_compatible": False})
    status, verbose = await call("POST", path + "/latest?verbose=true", body(BREAKING))
    assert status == 200
    assert verbose["is_compatible"] is False
    assert "'y'" in verbose["messages"][0]
    assert await call("POST", path, body(V2)) == (200, {"is_compatible": True})
    assert await call("POST", "/compatibility/subjects/new/versions/latest", body(BREAKING)) == (
        200,
        {"is_compatible": True},
    )


async def test_config_falls_back_to_the_global_level(call: Call) -> None:
    assert await call("GET", "/config") == (200, {"compatibilityLevel": "BACKWARD"})
    assert await call("PUT", "/config", {"compatibility": "full"}) == (
        200,
        {"compatibility": "FULL"},
    )
    assert await call("PUT", "/config/t-value", {"compatibility": "NONE"}) == (
        200,
        {"compatibility": "NONE"},
    )
    assert await call("GET", "/config/t-value") == (200, {"compatibilityLevel": "NONE"})
    assert await call("GET", "/config/other?defaultToGlobal=true") == (
        200,
        {"compatibilityLevel": "FULL"},
    )
    assert await call("DELETE", "/config/t-value") == (200, {"compatibilityLevel": "NONE"})
    assert (await call("GET", "/config/t-value"))[0] == 404


async def test_deletes_soft_then_permanent(call: Call) -> None:
    await call("POST", "/subjects/t-value/versions", body(V1))
    await call("POST", "/subjects/t-value/versions", body(V2))
    assert await call("DELETE", "/subjects/t-value/versions/latest") == (200, 2)
    assert await call("GET", "/subjects/t-value/versions") == (200, [1])
    assert await call("DELETE", "/subjects/t-value/versions/2?permanent=true") == (200, 2)
    assert await call("DELETE", "/subjects/t-value") == (200, [1])
    assert await call("GET", "/subjects") == (200, [])
    assert (await call("DELETE", "/subjects/t-value"))[1]["error_code"] == 40404
    assert await call("DELETE", "/subjects/t-value?permanent=true") == (200, [1])
    assert await call("GET", "/schemas/ids/1") == (200, {"schema": V1.text})


@pytest.mark.parametrize("login", [None, LOGIN], ids=["read-only", "with-login"])
async def test_writes_need_the_registry_login_reads_do_not(login: tuple[str, str] | None) -> None:
    schema = {"schema": json.dumps({"type": "record", "name": "A", "fields": []})}
    async with MemorySchemaRegistry() as registry:
        runner, url = await start_server(registry, port=0, login=login)
        try:
            async with aiohttp.ClientSession() as session:
                writes = [
                    ("POST", "/subjects/a-value/versions", schema, None),
                    ("PUT", "/config", {"compatibility": "NONE"}, None),
                    ("DELETE", "/subjects/a-value", None, aiohttp.encode_basic_auth("x", "wrong")),
                ]
                for method, path, payload, auth in writes:
                    headers = {} if auth is None else {"Authorization": auth}
                    async with session.request(
                        method, url + path, json=payload, headers=headers
                    ) as r:
                        assert r.status == (403 if login is None else 401), (method, path)
                        assert (await r.json())["error_code"] in (40101, 40301)
                for method, path, payload in [
                    ("GET", "/subjects", None),
                    ("GET", "/config", None),
                    ("POST", "/subjects/a-value", schema),  # a lookup
                    ("POST", "/compatibility/subjects/a-value/versions/latest", schema),
                ]:
                    async with session.request(method, url + path, json=payload) as r:
                        assert r.status in (200, 404), (method, path, await r.text())
                assert list(await registry.subjects()) == []  # nothing was written
        finally:
            await runner.cleanup()
