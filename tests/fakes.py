"""Fakes for fast tests of pure logic (and benchmarks of the codec): no services."""

from __future__ import annotations

from contracts.avro import AvroSchema, RegisteredSchema

__all__ = ["InMemorySchemas"]


class InMemorySchemas:
    """A process-local id table implementing both lookups (tests, tools, embedding).

    Like a Confluent registry, one schema text gets one global id whatever the subject; ids
    start at 1 and are never reused. Not a registry: nothing is shared or persisted, and
    ``register`` must not race with itself (lookups may run concurrently with anything).
    """

    def __init__(self) -> None:
        self._by_id: dict[int, AvroSchema] = {}
        self._ids: dict[AvroSchema, int] = {}
        self._subjects: dict[str, set[int]] = {}

    def register(self, subject: str, schema: AvroSchema) -> RegisteredSchema:
        """Registers ``schema`` under ``subject`` (idempotent) and returns it with its id."""
        schema_id = self._ids.get(schema)
        if schema_id is None:
            schema_id = len(self._by_id) + 1
            self._ids[schema] = schema_id
            self._by_id[schema_id] = schema
        self._subjects.setdefault(subject, set()).add(schema_id)
        return RegisteredSchema(schema_id, schema)

    def writer_schema(self, schema_id: int) -> AvroSchema | None:
        return self._by_id.get(schema_id)

    def schema_id(self, subject: str, schema: AvroSchema) -> int | None:
        schema_id = self._ids.get(schema)
        if schema_id is None or schema_id not in self._subjects.get(subject, ()):
            return None
        return schema_id
