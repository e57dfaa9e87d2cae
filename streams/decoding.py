"""A telemetry record's value as a domain event: the one decoding rule that the worker, the
query API and replay share, so a record that one of them passes over as undecodable is
undecodable for all of them."""

from __future__ import annotations

from typing import Any

from contracts.avro import AvroError
from contracts.registry.cache import SchemaCache
from contracts.registry.errors import RegistryError
from streams.domain import TelemetryEvent

__all__ = ["UNDECODABLE", "decode_telemetry", "telemetry_event"]

UNDECODABLE = (AvroError, RegistryError, ValueError, KeyError, TypeError)
"""What decoding a record as telemetry raises for a record that is not telemetry."""


async def decode_telemetry(registry: SchemaCache, value: bytes | None) -> TelemetryEvent:
    """A record's value as a telemetry event; raises one of ``UNDECODABLE`` if it is not one."""
    return telemetry_event(await registry.decode(value or b""))


def telemetry_event(record: dict[str, Any]) -> TelemetryEvent:
    """The domain event for a decoded ``Telemetry`` record."""
    return TelemetryEvent(
        event_id=record["event_id"],
        device_id=record["device_id"],
        ts=record["ts"],
        received_at=record["received_at"],
        seq=record.get("seq"),
        metrics=record["metrics"],
        attributes=record.get("attributes") or {},
    )
