"""The Confluent Schema Registry REST API, served over any :class:`SchemaRegistry`.

Standard clients (confluent-kafka's ``SchemaRegistryClient``, Kafka Connect converters,
ksqlDB) talk to it as to Confluent's server. Served (AVRO only; no references, contexts,
metadata or rules; ``?deleted=true`` reads are not supported)::

    GET    /  /schemas/types  /mode
    GET    /schemas/ids/{id}[/schema|/versions|/subjects]
    GET    /subjects   /subjects/{s}/versions   /subjects/{s}/versions/{v|latest}[/schema]
    POST   /subjects/{s}/versions          register      -> {"id", "subject", "version"}
    POST   /subjects/{s}                   lookup        -> {"subject", "id", "version", "schema"}
    POST   /compatibility/subjects/{s}/versions[/{v}]    -> {"is_compatible"[, "messages"]}
    GET    /config   PUT /config   GET|PUT|DELETE /config/{s}   (GET: ?defaultToGlobal=true)
    DELETE /subjects/{s}[/versions/{v}]    (?permanent=true after a soft delete)

Reads are open (schemas are public contracts); whatever changes state (register, delete,
``PUT /config``) needs the HTTP Basic login the server was started with, and a server started
without one is read-only (403). Responses are ``application/vnd.schemaregistry.v1+json``; errors are
``{"error_code": ..., "message": ...}`` with Confluent's codes and statuses (each
:class:`RegistryError` subclass carries its own). An unexpected fault answers 500/50001 and is
logged; nothing a client sends can stop the server.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from contracts.avro import AvroSchema, SchemaParseError, parse_schema
from contracts.registry.errors import (
    InvalidSchemaError,
    RegistryError,
    SchemaNotFoundError,
    SubjectCompatibilityNotConfiguredError,
)
from contracts.registry.port import SchemaRegistry, SubjectVersion, parse_mode, parse_version

__all__ = ["CONTENT_TYPE", "REGISTRY", "create_app", "start_server"]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
REGISTRY = web.AppKey("registry", SchemaRegistry)
_log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, content_type=CONTENT_TYPE)


def _error(status: int, error_code: int, message: str) -> web.Response:
    return _json({"error_code": error_code, "message": message}, status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as exc:
        return _error(exc.status, exc.error_code, str(exc))
    except web.HTTPException as exc:
        return _error(exc.status, exc.status, exc.reason)
    except Exception:
        _log.exception("registry request %s %s failed", request.method, request.path)
        return _error(500, 50001, "internal error of the schema registry")


_READS_BY_POST = ("/compatibility/",)
"""POST paths that change nothing: compatibility checks (and ``POST /subjects/{s}``, a lookup)."""


def _changes_state(request: web.Request) -> bool:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return False
    if request.method == "POST":
        lookup = request.path.startswith("/subjects/") and request.path.count("/") == 2
        return not (lookup or request.path.startswith(_READS_BY_POST))
    return True  # PUT, DELETE


def _writers(login: tuple[str, str] | None) -> Middleware:
    """Writes (register, delete, change compatibility) need HTTP Basic ``login``; without
    one the registry is read-only. Reads are open: schemas are public contracts."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not _changes_state(request):
            return await handler(request)
        if login is None:
            return _error(403, 40301, "this registry is read-only (served without credentials)")
        given = _basic(request.headers.get("Authorization", ""))
        if given is None or not all(
            hmac.compare_digest(a.encode(), b.encode()) for a, b in zip(given, login, strict=True)
        ):
            response = _error(401, 40101, "writes need the registry's credentials (HTTP Basic)")
            response.headers["WWW-Authenticate"] = 'Basic realm="schema-registry"'
            return response
        return await handler(request)

    return middleware


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _registry(request: web.Request) -> SchemaRegistry:
    return request.app[REGISTRY]


def _subject(request: web.Request) -> str:
    return request.match_info["subject"]


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def _version_body(found: SubjectVersion) -> dict[str, Any]:
    return {
        "subject": found.subject,
        "version": found.version,
        "id": found.schema_id,
        "schema": found.schema.text,
    }


async def _schema_from_body(request: web.Request) -> AvroSchema:
    try:
        body = json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidSchemaError("the request body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise InvalidSchemaError('the request body must be {"schema": "<schema JSON text>"}')
    schema_type = body.get("schemaType") or "AVRO"
    if schema_type != "AVRO":
        raise InvalidSchemaError(f"schema type {schema_type!r} is not supported (only AVRO)")
    if body.get("references"):
        raise InvalidSchemaError("schema references are not supported")
    try:
        return parse_schema(body["schema"])
    except SchemaParseError as exc:
        raise InvalidSchemaError(f"Invalid schema: {exc}") from exc


def _schema_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise SchemaNotFoundError(f"schema {raw!r} not found")
    return int(raw)


# --- schemas ---------------------------------------------------------------------------------


async def _root(_: web.Request) -> web.Response:
    return _json({})


async def _types(_: web.Request) -> web.Response:
    return _json(["AVRO"])


async def _mode(_: web.Request) -> web.Response:
    return _json({"mode": "READWRITE"})


async def _get_schema(request: web.Request) -> web.Response:
    schema = await _registry(request).schema_by_id(_schema_id(request))
    return _json({"schema": schema.text})


async def _get_raw_schema(request: web.Request) -> web.Response:
    schema = await _registry(request).schema_by_id(_schema_id(request))
    return web.Response(text=schema.text, content_type=CONTENT_TYPE)


async def _get_id_versions(request: web.Request) -> web.Response:
    usages = await _registry(request).id_usages(_schema_id(request))
    return _json([{"subject": subject, "version": version} for subject, version in usages])


async def _get_id_subjects(request: web.Request) -> web.Response:
    usages = await _registry(request).id_usages(_schema_id(request))
    return _json(sorted({subject for subject, _ in usages}))


# --- subjects --------------------------------------------------------------------------------


async def _list_subjects(request: web.Request) -> web.Response:
    return _json(list(await _registry(request).subjects()))


async def _list_versions(request: web.Request) -> web.Response:
    return _json(list(await _registry(request).versions(_subject(request))))


async def _get_version(request: web.Request) -> web.Response:
    version = parse_version(request.match_info["version"])
    return _json(_version_body(await _registry(request).version(_subject(request), version)))


async def _get_version_schema(request: web.Request) -> web.Response:
    version = parse_version(request.match_info["version"])
    found = await _registry(request).version(_subject(request), version)
    return web.Response(text=found.schema.text, content_type=CONTENT_TYPE)


async def _referenced_by(request: web.Request) -> web.Response:
    version = parse_version(request.match_info["version"])
    await _registry(request).version(_subject(request), version)
    return _json([])


async def _register(request: web.Request) -> web.Response:
    schema = await _schema_from_body(request)
    found = await _registry(request).register(_subject(request), schema)
    return _json({"id": found.schema_id, "subject": found.subject, "version": found.version})


async def _lookup(request: web.Request) -> web.Response:
    subject, registry = _subject(request), _registry(request)
    schema = await _schema_from_body(request)
    found = await registry.lookup(subject, schema)
    if found is None:
        await registry.versions(subject)  # SubjectNotFoundError (40401) if it has none
        raise SchemaNotFoundError(f"schema not found under subject {subject!r}")
    return _json(_version_body(found))


async def _delete_subject(request: web.Request) -> web.Response:
    subject, permanent = _subject(request), _flag(request, "permanent")
    return _json(list(await _registry(request).delete_subject(subject, permanent=permanent)))


async def _delete_version(request: web.Request) -> web.Response:
    version = parse_version(request.match_info["version"])
    permanent = _flag(request, "permanent")
    deleted = await _registry(request).delete_version(
        _subject(request), version, permanent=permanent
    )
    return _json(deleted)


# --- compatibility ---------------------------------------------------------------------------


async def _check(request: web.Request) -> web.Response:
    raw = request.match_info.get("version")
    version = None if raw is None else parse_version(raw)
    schema = await _schema_from_body(request)
    result = await _registry(request).check_compatibility(_subject(request), schema, version)
    body: dict[str, Any] = {"is_compatible": result.compatible}
    if _flag(request, "verbose"):
        body["messages"] = [issue.describe() for issue in result.incompatibilities]
    return _json(body)


async def _get_config(request: web.Request) -> web.Response:
    subject = request.match_info.get("subject")
    registry = _registry(request)
    if subject is None or _flag(request, "defaultToGlobal"):
        return _json({"compatibilityLevel": await registry.get_compatibility(subject)})
    mode = await registry.subject_compatibility(subject)
    if mode is None:
        raise SubjectCompatibilityNotConfiguredError(
            f"subject {subject!r} has no compatibility level of its own; add "
            "defaultToGlobal=true to read the global one"
        )
    return _json({"compatibilityLevel": mode})


async def _put_config(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    level = body.get("compatibility") if isinstance(body, dict) else None
    mode = parse_mode(level)
    subject = request.match_info.get("subject")
    return _json({"compatibility": await _registry(request).set_compatibility(mode, subject)})


async def _delete_config(request: web.Request) -> web.Response:
    previous = await _registry(request).delete_compatibility(_subject(request))
    return _json({"compatibilityLevel": previous})


def create_app(
    registry: SchemaRegistry, *, login: tuple[str, str] | None = None
) -> web.Application:
    """The REST application over ``registry`` (which the caller starts and closes); writes
    need HTTP Basic ``login``, and without one it is read-only."""
    app = web.Application(middlewares=[_errors, _writers(login)])
    app[REGISTRY] = registry
    subject = "/subjects/{subject}"
    version = subject + "/versions/{version}"
    app.router.add_routes(
        [
            web.get("/", _root),
            web.get("/schemas/types", _types),
            web.get("/mode", _mode),
            web.get("/schemas/ids/{id}", _get_schema),
            web.get("/schemas/ids/{id}/schema", _get_raw_schema),
            web.get("/schemas/ids/{id}/versions", _get_id_versions),
            web.get("/schemas/ids/{id}/subjects", _get_id_subjects),
            web.get("/subjects", _list_subjects),
            web.post(subject, _lookup),
            web.delete(subject, _delete_subject),
            web.get(subject + "/versions", _list_versions),
            web.post(subject + "/versions", _register),
            web.get(version, _get_version),
            web.delete(version, _delete_version),
            web.get(version + "/schema", _get_version_schema),
            web.get(version + "/referencedby", _referenced_by),
            web.post("/compatibility" + subject + "/versions", _check),
            web.post("/compatibility" + version, _check),
            web.get("/config", _get_config),
            web.put("/config", _put_config),
            web.get("/config/{subject}", _get_config),
            web.put("/config/{subject}", _put_config),
            web.delete("/config/{subject}", _delete_config),
        ]
    )
    return app


async def start_server(
    registry: SchemaRegistry,
    host: str = "127.0.0.1",
    port: int = 8081,
    *,
    login: tuple[str, str] | None = None,
) -> tuple[web.AppRunner, str]:
    """Serves ``registry`` on ``host:port`` (0: any free port); returns the runner and URL.
    Writes need HTTP Basic ``login`` (read-only without one).

    Stop it with ``await runner.cleanup()``; the registry itself stays open.
    """
    runner = web.AppRunner(create_app(registry, login=login), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, f"http://{bound_host}:{bound_port}"
