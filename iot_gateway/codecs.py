"""Each route's subject as a codec: our Avro serde bound to the schema id the registry gave."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.avro import DecodeLimits, RegisteredSchema, encode


class SubjectCodec:
    """Encodes records of one registered schema; reads plain Avro payloads of it.

    Both directions raise an ``AvroError`` subclass naming what is wrong; neither does I/O.
    """

    def __init__(self, registered: RegisteredSchema, limits: DecodeLimits | None = None) -> None:
        self.registered = registered
        self._limits = limits or DecodeLimits()
        definition = registered.schema.definition
        fields = definition.get("fields", []) if isinstance(definition, dict) else []
        self._field_names = frozenset(field["name"] for field in fields)

    @property
    def field_names(self) -> frozenset[str]:
        return self._field_names

    def encode(self, record: Mapping[str, Any]) -> bytes:
        return encode(record, self.registered)

    def decode_plain(self, payload: bytes) -> dict[str, Any]:
        value = self.registered.schema.read_binary(payload, 0, self._limits)
        if not isinstance(value, dict):
            raise TypeError("the route's schema is not a record")
        return value
