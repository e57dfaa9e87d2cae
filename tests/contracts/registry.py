"""The SchemaRegistry contract: one abstract test class, run against every adapter.

Here against the in-memory adapter and the Confluent REST client talking to ``server.py``
over it (no services needed); ``tests/integration/test_registry_adapters.py`` runs the same
class against the embedded Kafka registry and the REST client over an embedded registry.
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts.avro import AvroSchema, CompatibilityMode, parse_schema
from contracts.avro import IncompatibleSchemaError as AvroIncompatibleSchemaError
from contracts.registry import (
    IncompatibleSchemaError,
    RegistryError,
    SchemaNotFoundError,
    SchemaRegistry,
    SubjectCompatibilityNotConfiguredError,
    SubjectNotFoundError,
    SubjectNotSoftDeletedError,
    SubjectSoftDeletedError,
    VersionNotFoundError,
    VersionNotSoftDeletedError,
    VersionSoftDeletedError,
)


def record(*fields: dict[str, Any], name: str = "Reading") -> AvroSchema:
    return parse_schema(
        {"type": "record", "name": name, "namespace": "io.test", "fields": list(fields)}
    )


X = {"name": "x", "type": "int"}
Y_REQUIRED = {"name": "y", "type": "string"}
Y_OPTIONAL = {"name": "y", "type": "string", "default": ""}
V1 = record(X)
V2 = record(X, Y_OPTIONAL)
V2_BREAKING = record(X, Y_REQUIRED)


class RegistryContract:
    """Every adapter must pass these; subclasses provide the ``registry`` fixture."""

    @pytest.fixture
    async def registry(self) -> SchemaRegistry:
        raise NotImplementedError("subclasses provide the adapter under test")

    # --- register, ids and versions -------------------------------------------------------

    async def test_register_gives_version_1_and_is_idempotent(
        self, registry: SchemaRegistry
    ) -> None:
        first = await registry.register("a-value", V1)
        again = await registry.register("a-value", V1)
        assert (again.schema_id, again.version, again.subject) == (first.schema_id, 1, "a-value")
        assert first.schema == V1
        assert first.header == b"\x00" + first.schema_id.to_bytes(4, "big")
        assert await registry.versions("a-value") == (1,)

    async def test_ids_are_global_and_versions_per_subject(self, registry: SchemaRegistry) -> None:
        a = await registry.register("a-value", V1)
        b = await registry.register("b-value", V1)
        other = await registry.register("b-value", V2)
        assert b.schema_id == a.schema_id
        assert b.version == 1
        assert other.schema_id != a.schema_id
        assert other.version == 2
        assert await registry.id_usages(a.schema_id) == (("a-value", 1), ("b-value", 1))
        assert await registry.subjects() == ("a-value", "b-value")

    async def test_reads_by_id_version_and_latest(self, registry: SchemaRegistry) -> None:
        v1 = await registry.register("a-value", V1)
        v2 = await registry.register("a-value", V2)
        assert await registry.schema_by_id(v2.schema_id) == V2
        assert await registry.latest("a-value") == v2
        assert await registry.version("a-value", 1) == v1
        assert await registry.version("a-value", "latest") == v2
        assert await registry.versions("a-value") == (1, 2)
        assert await registry.lookup("a-value", V1) == v1
        assert await registry.lookup("a-value", V2_BREAKING) is None
        assert await registry.lookup("nobody-value", V1) is None

    async def test_missing_things_raise_their_own_errors(self, registry: SchemaRegistry) -> None:
        await registry.register("a-value", V1)
        with pytest.raises(SchemaNotFoundError):
            await registry.schema_by_id(999_999)
        with pytest.raises(SubjectNotFoundError):
            await registry.latest("nobody-value")
        with pytest.raises(SubjectNotFoundError):
            await registry.versions("nobody-value")
        with pytest.raises(VersionNotFoundError):
            await registry.version("a-value", 7)

    # --- compatibility --------------------------------------------------------------------

    async def test_incompatible_schema_is_rejected_naming_the_field(
        self, registry: SchemaRegistry
    ) -> None:
        await registry.register("a-value", V1)
        with pytest.raises(IncompatibleSchemaError, match="'y'") as caught:
            await registry.register("a-value", V2_BREAKING)
        assert isinstance(caught.value, AvroIncompatibleSchemaError)
        assert isinstance(caught.value, RegistryError)
        assert not caught.value.retriable
        assert caught.value.incompatibilities
        assert await registry.versions("a-value") == (1,)

    async def test_check_compatibility_changes_nothing(self, registry: SchemaRegistry) -> None:
        await registry.register("a-value", V1)
        bad = await registry.check_compatibility("a-value", V2_BREAKING)
        good = await registry.check_compatibility("a-value", V2, 1)
        fresh = await registry.check_compatibility("nobody-value", V2_BREAKING)
        assert not bad.compatible
        assert bad.mode is CompatibilityMode.BACKWARD
        assert "'y'" in bad.incompatibilities[0].describe()
        assert good.compatible
        assert fresh.compatible
        assert await registry.versions("a-value") == (1,)
        with pytest.raises(VersionNotFoundError):
            await registry.check_compatibility("a-value", V2, 5)

    async def test_levels_fall_back_to_the_global_one(self, registry: SchemaRegistry) -> None:
        assert await registry.get_compatibility() is CompatibilityMode.BACKWARD
        assert await registry.set_compatibility(CompatibilityMode.FULL, "a-value") == "FULL"
        assert await registry.get_compatibility("a-value") is CompatibilityMode.FULL
        assert await registry.subject_compatibility("a-value") is CompatibilityMode.FULL
        assert await registry.subject_compatibility("b-value") is None
        await registry.set_compatibility(CompatibilityMode.NONE)
        assert await registry.get_compatibility("b-value") is CompatibilityMode.NONE
        assert await registry.delete_compatibility("a-value") is CompatibilityMode.FULL
        assert await registry.get_compatibility("a-value") is CompatibilityMode.NONE
        with pytest.raises(SubjectCompatibilityNotConfiguredError):
            await registry.delete_compatibility("a-value")

    async def test_the_subject_level_decides(self, registry: SchemaRegistry) -> None:
        await registry.set_compatibility(CompatibilityMode.FORWARD, "fwd-value")
        await registry.register("fwd-value", record(X, Y_REQUIRED))
        await registry.register("bwd-value", record(X, Y_REQUIRED))
        dropped_y = record(X)  # old readers need y, which has no default: not FORWARD
        with pytest.raises(IncompatibleSchemaError, match="'y'"):
            await registry.register("fwd-value", dropped_y)
        assert (await registry.register("bwd-value", dropped_y)).version == 2
        await registry.set_compatibility(CompatibilityMode.NONE, "fwd-value")
        assert (await registry.register("fwd-value", dropped_y)).version == 2

    async def test_transitive_levels_check_every_version(self, registry: SchemaRegistry) -> None:
        a_int, a_string = {"name": "a", "type": "int"}, {"name": "a", "type": "string"}
        v3 = record(X, {**a_string, "default": "?"})
        for subject, mode in (("plain-value", "BACKWARD"), ("trans-value", "BACKWARD_TRANSITIVE")):
            await registry.set_compatibility(CompatibilityMode(mode), subject)
            await registry.register(subject, record(X, a_int))
            await registry.register(subject, record(X))
        assert (await registry.register("plain-value", v3)).version == 3
        with pytest.raises(IncompatibleSchemaError, match="'a'"):
            await registry.register("trans-value", v3)

    # --- deletes --------------------------------------------------------------------------

    async def test_soft_then_permanent_version_delete(self, registry: SchemaRegistry) -> None:
        v1 = await registry.register("a-value", V1)
        await registry.register("a-value", V2)
        with pytest.raises(VersionNotSoftDeletedError):
            await registry.delete_version("a-value", 1, permanent=True)
        assert await registry.delete_version("a-value", 1) == 1
        with pytest.raises(VersionSoftDeletedError):
            await registry.delete_version("a-value", 1)
        assert await registry.versions("a-value") == (2,)
        assert await registry.lookup("a-value", V1) is None
        assert await registry.schema_by_id(v1.schema_id) == V1  # old data stays readable
        assert await registry.delete_version("a-value", 1, permanent=True) == 1
        again = await registry.register("a-value", V1)  # NONE of the checks: V2 reads V1 data
        assert (again.schema_id, again.version) == (v1.schema_id, 3)

    async def test_soft_then_permanent_subject_delete(self, registry: SchemaRegistry) -> None:
        await registry.register("a-value", V1)
        await registry.register("a-value", V2)
        await registry.set_compatibility(CompatibilityMode.NONE, "a-value")
        with pytest.raises(SubjectNotSoftDeletedError):
            await registry.delete_subject("a-value", permanent=True)
        assert await registry.delete_subject("a-value") == (1, 2)
        with pytest.raises(SubjectSoftDeletedError):
            await registry.delete_subject("a-value")
        assert "a-value" not in await registry.subjects()
        with pytest.raises(SubjectNotFoundError):
            await registry.latest("a-value")
        assert await registry.delete_subject("a-value", permanent=True) == (1, 2)
        with pytest.raises(SubjectNotFoundError):
            await registry.delete_subject("a-value")
        assert await registry.subject_compatibility("a-value") is None
        assert (await registry.register("a-value", V2_BREAKING)).version == 1
