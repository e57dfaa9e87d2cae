"""``SchemaCache``: the serde's synchronous view, filled once per id from any registry."""

from __future__ import annotations

import asyncio

import pytest

from contracts.avro import (
    AvroSchema,
    BadMagicByteError,
    UnknownSchemaIdError,
    decode,
    encode,
    parse_schema,
)
from contracts.registry import (
    MemorySchemaRegistry,
    RegistryUnavailableError,
    SchemaCache,
    SchemaNotFoundError,
)

V1 = parse_schema({"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]})
V2 = parse_schema(
    {
        "type": "record",
        "name": "R",
        "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "long", "default": 5}],
    }
)


class CountingRegistry(MemorySchemaRegistry):
    """Counts fetches by id; can be told to fail them."""

    def __init__(self) -> None:
        super().__init__()
        self.fetches = 0
        self.down = False

    async def schema_by_id(self, schema_id: int) -> AvroSchema:
        self.fetches += 1
        await asyncio.sleep(0.01)
        if self.down:
            raise RegistryUnavailableError("registry down")
        return await super().schema_by_id(schema_id)


async def test_frames_encode_and_decode_on_the_cache_without_io() -> None:
    registry = CountingRegistry()
    cache = SchemaCache(registry)
    registered = await cache.register("r-value", V1)
    frame = encode({"x": 3}, registered)
    assert frame[:5] == registered.header
    assert decode(frame, cache) == {"x": 3}
    assert decode(frame, cache, reader=V2) == {"x": 3, "y": 5}
    assert registry.fetches == 0


async def test_concurrent_decodes_of_a_new_id_fetch_it_once() -> None:
    registry = CountingRegistry()
    frame = encode({"x": 1}, await registry.register("r-value", V1))
    cache = SchemaCache(registry)
    with pytest.raises(UnknownSchemaIdError):
        decode(frame, cache)
    values = await asyncio.gather(*(cache.decode(frame) for _ in range(50)))
    assert values == [{"x": 1}] * 50
    assert registry.fetches == 1
    assert decode(frame, cache) == {"x": 1}


async def test_a_failed_fetch_is_raised_to_every_waiter_and_retried_later() -> None:
    registry = CountingRegistry()
    frame = encode({"x": 1}, await registry.register("r-value", V1))
    cache = SchemaCache(registry)
    registry.down = True
    outcomes = await asyncio.gather(
        *(cache.decode(frame) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, RegistryUnavailableError) for o in outcomes)
    assert registry.fetches == 1
    registry.down = False
    assert await cache.decode(frame) == {"x": 1}
    assert registry.fetches == 2


async def test_bad_frames_and_unknown_ids_raise_typed_errors() -> None:
    cache = SchemaCache(CountingRegistry())
    with pytest.raises(BadMagicByteError):
        await cache.decode(b"\x01\x00\x00\x00\x01\x02")
    with pytest.raises(SchemaNotFoundError):
        await cache.ensure_frame(b"\x00\x00\x00\x00\x09\x02")


async def test_lookup_fills_the_cache_only_when_registered() -> None:
    registry = CountingRegistry()
    cache = SchemaCache(registry)
    assert await cache.lookup("r-value", V1) is None
    await registry.register("r-value", V1)
    found = await cache.lookup("r-value", V1)
    assert found is not None
    assert cache.writer_schema(found.schema_id) == V1
