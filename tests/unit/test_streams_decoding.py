"""Finding 5: a registry outage skipped records for good, and a newer writer schema broke
decoding. Records are read through the reader schema and outages are waited out."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from contracts.avro import CompatibilityMode, SchemaCatalog, encode, parse_schema
from contracts.registry.cache import SchemaCache
from contracts.registry.errors import (
    IncompatibleSchemaError,
    RegistryUnavailableError,
    SchemaNotFoundError,
)
from contracts.registry.memory import MemorySchemaRegistry
from streams.decoding import UNDECODABLE, decode_telemetry

SUBJECT = "iot.telemetry.v1-value"
CATALOG = SchemaCatalog.load()
V1, V2, V3 = (version.schema for version in CATALOG.versions(SUBJECT))
READING = {
    "event_id": "dev-1:1",
    "device_id": "dev-1",
    "ts": 1_767_225_600_000,
    "received_at": 1_767_225_600_005,
    "seq": 1,
    "metrics": {"temp_c": 21.5},
}


class FlakyRegistry(MemorySchemaRegistry):
    """Unavailable for the first ``outages`` schema fetches."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    async def schema_by_id(self, schema_id: int) -> Any:
        if self.outages:
            self.outages -= 1
            raise RegistryUnavailableError("registry down")
        return await super().schema_by_id(schema_id)


async def _registered(registry: MemorySchemaRegistry, schema: Any) -> Any:
    await registry.set_compatibility(CompatibilityMode.NONE, SUBJECT)
    return await registry.register(SUBJECT, schema)


async def test_an_unavailable_registry_is_waited_out_not_taken_for_bad_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("streams.decoding.RETRY_MAX_S", 0.01)
    registry = FlakyRegistry(outages=3)
    frame = encode(READING, await _registered(registry, V1))
    retries: list[BaseException] = []
    event = await decode_telemetry(SchemaCache(registry), frame, retries.append)
    assert (event.event_id, event.seq) == ("dev-1:1", 1)
    assert [type(exc) for exc in retries] == [RegistryUnavailableError] * 3


async def test_an_id_the_registry_does_not_have_is_undecodable() -> None:
    registry = MemorySchemaRegistry()
    frame = encode(READING, await _registered(registry, V1))
    with pytest.raises(SchemaNotFoundError):
        await decode_telemetry(SchemaCache(MemorySchemaRegistry()), frame)
    assert issubclass(SchemaNotFoundError, UNDECODABLE)


@pytest.mark.parametrize("writer", [V1, V2, V3], ids=["v1", "v2", "v3"])
async def test_every_published_version_decodes_with_the_fields_it_lacks_defaulted(
    writer: Any,
) -> None:
    registry = MemorySchemaRegistry()
    frame = encode(READING, await _registered(registry, writer))
    event = await decode_telemetry(SchemaCache(registry), frame)
    assert (event.device_id, event.ts, event.metrics) == ("dev-1", READING["ts"], {"temp_c": 21.5})
    assert (event.boot, event.ts_stamped, dict(event.attributes)) == (None, False, {})


async def test_a_later_compatible_version_decodes_and_a_breaking_one_is_refused() -> None:
    """A v4 adding a field reads as v3; a v4 dropping received_at (BACKWARD alone let it
    through, then every record raised KeyError) is refused by the subject's mode."""
    registry = MemorySchemaRegistry()
    await registry.set_compatibility(CompatibilityMode.FULL_TRANSITIVE, SUBJECT)
    for version in (V1, V2, V3):
        await registry.register(SUBJECT, version)
    added = copy.deepcopy(V3.definition)
    added["fields"].append({"name": "site", "type": "string", "default": ""})
    v4 = await registry.register(SUBJECT, parse_schema(added))
    event = await decode_telemetry(SchemaCache(registry), encode({**READING, "site": "x"}, v4))
    assert event.event_id == "dev-1:1"
    dropped = copy.deepcopy(V3.definition)
    dropped["fields"] = [f for f in dropped["fields"] if f["name"] != "received_at"]
    with pytest.raises(IncompatibleSchemaError):
        await registry.register(SUBJECT, parse_schema(dropped))
