"""The serde's view of a registry: synchronous lookups from memory, filled asynchronously.

:class:`SchemaCache` implements :class:`~contracts.avro.WriterSchemas`, so
:func:`~contracts.avro.decode` uses it on the hot path with no I/O. It only ever holds what
the registry answered: an id maps to the same schema forever (ids are never reused), so
entries never go stale and are never evicted. Fill it off the hot path:

* :meth:`SchemaCache.register` / :meth:`SchemaCache.lookup` before encoding with a schema
  (producers, at start-up);
* :meth:`SchemaCache.ensure_frame` / :meth:`SchemaCache.ensure_id` when a frame carries an id
  not yet known (consumers): one fetch per unknown id, however many callers ask at once;
  :meth:`SchemaCache.decode` does that and decodes (the fetch happens once per new id).
"""

from __future__ import annotations

import asyncio
from typing import Any

from contracts.avro import AvroSchema, DecodeLimits, decode, peek_schema_id
from contracts.registry.port import SchemaRegistry, SubjectVersion

__all__ = ["SchemaCache"]


class SchemaCache:
    """Ids and schemas a registry has answered, for the serde (see the module docstring)."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self._registry = registry
        self._by_id: dict[int, AvroSchema] = {}
        self._fetching: dict[int, asyncio.Future[AvroSchema]] = {}

    @property
    def registry(self) -> SchemaRegistry:
        return self._registry

    # --- WriterSchemas and SchemaIds (synchronous, no I/O) --------------------------------

    def writer_schema(self, schema_id: int) -> AvroSchema | None:
        return self._by_id.get(schema_id)

    # --- filling ---------------------------------------------------------------------------

    def _remember(self, found: SubjectVersion) -> SubjectVersion:
        self._by_id[found.schema_id] = found.schema
        return found

    async def register(self, subject: str, schema: AvroSchema) -> SubjectVersion:
        """Registers ``schema`` under ``subject`` (idempotent) and caches its id."""
        return self._remember(await self._registry.register(subject, schema))

    async def lookup(self, subject: str, schema: AvroSchema) -> SubjectVersion | None:
        """Looks ``schema`` up under ``subject`` without registering; caches it if found."""
        found = await self._registry.lookup(subject, schema)
        return None if found is None else self._remember(found)

    async def ensure_frame(self, frame: bytes) -> AvroSchema:
        """Makes the writer schema of ``frame`` known (``SerdeError`` for a bad header)."""
        return await self.ensure_id(peek_schema_id(frame))

    async def ensure_id(self, schema_id: int) -> AvroSchema:
        """The schema of ``schema_id``, fetched once if unknown.

        Concurrent callers share one fetch; a failed fetch (``SchemaNotFoundError``, an
        unavailable registry) is raised to each of them and retried by the next call.
        """
        known = self._by_id.get(schema_id)
        if known is not None:
            return known
        pending = self._fetching.get(schema_id)
        if pending is None:
            pending = asyncio.ensure_future(self._registry.schema_by_id(schema_id))
            self._fetching[schema_id] = pending
            pending.add_done_callback(lambda done: self._fetched(schema_id, done))
        return await asyncio.shield(pending)

    def _fetched(self, schema_id: int, done: asyncio.Future[AvroSchema]) -> None:
        self._fetching.pop(schema_id, None)
        if not done.cancelled() and done.exception() is None:
            self._by_id[schema_id] = done.result()

    async def decode(
        self, frame: bytes, *, reader: AvroSchema | None = None, limits: DecodeLimits | None = None
    ) -> Any:
        """Decodes a Confluent frame, fetching its writer schema first if it is new.

        Raises what :func:`~contracts.avro.decode` raises for bad frames, and
        ``SchemaNotFoundError``/``RegistryUnavailableError`` when the id cannot be fetched.
        """
        schema_id = peek_schema_id(frame)
        if schema_id not in self._by_id:
            await self.ensure_id(schema_id)
        if limits is None:
            return decode(frame, self, reader=reader)
        return decode(frame, self, reader=reader, limits=limits)
