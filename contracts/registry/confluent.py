"""The port against a Confluent-compatible REST registry (Confluent, Karapace, Apicurio, Redpanda).

Uses only the long-standing v1 REST API those servers share; AVRO schemas only. Semantics are
the server's: ids, versions and compatibility verdicts come from it, and a Confluent error body
becomes the :class:`RegistryError` subclass of its ``error_code``. Connection failures,
timeouts and 5xx answers raise ``RegistryUnavailableError`` (``retriable``); no call is retried
here - registering is idempotent, so the caller may simply call again.

Differences between servers this adapter absorbs: ``schemaType`` is omitted for AVRO (older
servers reject it), a register answer without a version is completed with a lookup, and a
server without ``defaultToGlobal`` on ``GET /config/{s}`` falls back to ``GET /config``.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import aiohttp

from contracts.avro import (
    AvroSchema,
    CompatibilityMode,
    CompatibilityResult,
    Incompatibility,
    SchemaParseError,
    parse_schema,
)
from contracts.registry.errors import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    RegistryError,
    RegistryTimeoutError,
    RegistryUnavailableError,
    SchemaNotFoundError,
    SubjectCompatibilityNotConfiguredError,
    SubjectNotFoundError,
    error_for_code,
)
from contracts.registry.port import (
    LATEST,
    SchemaRegistry,
    SubjectVersion,
    VersionSpec,
    parse_mode,
)

__all__ = ["ConfluentSchemaRegistry"]

_ACCEPT = (
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, "
    "application/json; qs=0.5"
)


def _path(*segments: str | int) -> str:
    return "/" + "/".join(quote(str(segment), safe="") for segment in segments)


class ConfluentSchemaRegistry(SchemaRegistry):
    """A REST client; ``auth`` is (user, password) for HTTP basic auth."""

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        timeout_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._headers = {
            "Content-Type": "application/vnd.schemaregistry.v1+json",
            "Accept": _ACCEPT,
        }
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:  # never shows credentials
        return f"ConfluentSchemaRegistry({self._url!r})"

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def _call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        if self._session is None:
            raise RegistryError("the registry client is not started (call start() first)")
        data = None if body is None else json.dumps(body)
        try:
            async with self._session.request(
                method, self._url + path, data=data, params=params, headers=self._headers,
                timeout=self._timeout,
            ) as response:  # fmt: skip
                text = await response.text()
                status = response.status
        except TimeoutError as exc:
            raise RegistryTimeoutError(f"{method} {self._url}{path} timed out") from exc
        except aiohttp.ClientError as exc:
            raise RegistryUnavailableError(f"{method} {self._url}{path} failed: {exc}") from exc
        try:
            payload = json.loads(text) if text else None
        except json.JSONDecodeError:
            payload = text
        if status < 300:
            return payload
        code = payload.get("error_code", status) if isinstance(payload, dict) else status
        message = payload.get("message", text) if isinstance(payload, dict) else text
        error = error_for_code(int(code), status)
        text = f"{message} (HTTP {status}, error {code})"
        if issubclass(error, IncompatibleSchemaError):
            raise error(text, [Incompatibility("", "incompatible", str(message))])
        raise error(text)

    @staticmethod
    def _schema_body(schema: AvroSchema) -> dict[str, str]:
        return {"schema": schema.text}

    def _version(self, body: Any, subject: str) -> SubjectVersion:
        try:
            schema = parse_schema(body["schema"])
            return SubjectVersion(int(body["id"]), schema, subject, int(body["version"]))
        except (KeyError, TypeError, ValueError, SchemaParseError) as exc:
            raise RegistryUnavailableError(f"{self._url} answered an unexpected {body!r}") from exc

    # --- the port ---------------------------------------------------------------------------

    async def register(self, subject: str, schema: AvroSchema) -> SubjectVersion:
        body = await self._call(
            "POST", _path("subjects", subject, "versions"), self._schema_body(schema)
        )
        if isinstance(body, dict) and "version" in body and "id" in body:
            return SubjectVersion(int(body["id"]), schema, subject, int(body["version"]))
        found = await self.lookup(subject, schema)
        if found is None:  # deleted between the two calls
            raise SchemaNotFoundError(f"schema vanished from {subject!r} right after registering")
        return found

    async def lookup(self, subject: str, schema: AvroSchema) -> SubjectVersion | None:
        try:
            body = await self._call("POST", _path("subjects", subject), self._schema_body(schema))
        except (SubjectNotFoundError, SchemaNotFoundError):
            return None
        found = self._version(body, subject)
        return SubjectVersion(found.schema_id, schema, subject, found.version)

    async def schema_by_id(self, schema_id: int) -> AvroSchema:
        body = await self._call("GET", _path("schemas", "ids", schema_id))
        if isinstance(body, dict) and body.get("schemaType", "AVRO") != "AVRO":
            raise InvalidSchemaError(f"schema {schema_id} is {body['schemaType']}, not AVRO")
        try:
            return parse_schema(body["schema"])
        except SchemaParseError as exc:
            raise InvalidSchemaError(f"schema {schema_id} is not valid Avro: {exc}") from exc
        except (KeyError, TypeError) as exc:
            raise RegistryUnavailableError(f"{self._url} answered an unexpected {body!r}") from exc

    async def id_usages(self, schema_id: int) -> tuple[tuple[str, int], ...]:
        body = await self._call("GET", _path("schemas", "ids", schema_id, "versions"))
        return tuple(sorted((str(item["subject"]), int(item["version"])) for item in body))

    async def version(self, subject: str, version: VersionSpec) -> SubjectVersion:
        body = await self._call("GET", _path("subjects", subject, "versions", version))
        return self._version(body, subject)

    async def versions(self, subject: str) -> tuple[int, ...]:
        body = await self._call("GET", _path("subjects", subject, "versions"))
        return tuple(sorted(int(number) for number in body))

    async def subjects(self) -> tuple[str, ...]:
        return tuple(sorted(str(name) for name in await self._call("GET", "/subjects")))

    async def check_compatibility(
        self, subject: str, schema: AvroSchema, version: VersionSpec | None = LATEST
    ) -> CompatibilityResult:
        segments: tuple[str | int, ...] = ("compatibility", "subjects", subject, "versions")
        if version is not None:
            segments = (*segments, version)
        body = await self._call(
            "POST", _path(*segments), self._schema_body(schema), {"verbose": "true"}
        )
        mode = await self.get_compatibility(subject)
        if body.get("is_compatible") is True:
            return CompatibilityResult(mode, ())
        messages = body.get("messages") or ["the registry gave no reason"]
        return CompatibilityResult(
            mode, tuple(Incompatibility("", "incompatible", str(m)) for m in messages)
        )

    async def get_compatibility(self, subject: str | None = None) -> CompatibilityMode:
        if subject is not None:
            try:
                body = await self._call(
                    "GET", _path("config", subject), params={"defaultToGlobal": "true"}
                )
                return parse_mode(body.get("compatibilityLevel") or body.get("compatibility"))
            except (SubjectCompatibilityNotConfiguredError, SubjectNotFoundError):
                pass
        body = await self._call("GET", "/config")
        return parse_mode(body.get("compatibilityLevel") or body.get("compatibility"))

    async def subject_compatibility(self, subject: str) -> CompatibilityMode | None:
        try:
            body = await self._call("GET", _path("config", subject))
        except (SubjectCompatibilityNotConfiguredError, SubjectNotFoundError):
            return None
        return parse_mode(body.get("compatibilityLevel") or body.get("compatibility"))

    async def set_compatibility(
        self, mode: CompatibilityMode, subject: str | None = None
    ) -> CompatibilityMode:
        path = "/config" if subject is None else _path("config", subject)
        body = await self._call("PUT", path, {"compatibility": mode.value})
        return parse_mode(body.get("compatibility") or body.get("compatibilityLevel"))

    async def delete_compatibility(self, subject: str) -> CompatibilityMode:
        previous = await self.subject_compatibility(subject)
        if previous is None:
            raise SubjectCompatibilityNotConfiguredError(
                f"subject {subject!r} has no compatibility level of its own"
            )
        await self._call("DELETE", _path("config", subject))
        return previous

    async def delete_version(
        self, subject: str, version: VersionSpec, *, permanent: bool = False
    ) -> int:
        params = {"permanent": "true"} if permanent else None
        path = _path("subjects", subject, "versions", version)
        return int(await self._call("DELETE", path, params=params))

    async def delete_subject(self, subject: str, *, permanent: bool = False) -> tuple[int, ...]:
        params = {"permanent": "true"} if permanent else None
        body = await self._call("DELETE", _path("subjects", subject), params=params)
        return tuple(sorted(int(number) for number in body))
