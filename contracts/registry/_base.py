"""The port implemented over a :class:`RegistryState`: reads query it, writes are commands.

Adapters supply two hooks: :meth:`StateBackedRegistry._read` (a state at least as new as
every write that completed before the call) and :meth:`StateBackedRegistry._execute` (apply
one command wherever the state of record lives and return its outcome).
"""

from __future__ import annotations

import abc
from typing import TypeVar

from contracts.avro import AvroSchema, CompatibilityMode, CompatibilityResult
from contracts.avro import IncompatibleSchemaError as AvroIncompatibleSchemaError
from contracts.registry.errors import IncompatibleSchemaError, RegistryError
from contracts.registry.port import LATEST, SchemaRegistry, SubjectVersion, VersionSpec
from contracts.registry.state import (
    Command,
    DeleteSubject,
    DeleteVersion,
    Register,
    RegistryState,
    Result,
    SetCompatibility,
)

_T = TypeVar("_T")


def _expect(result: Result, kind: type[_T]) -> _T:
    if not isinstance(result, kind):  # a fold bug, not bad input
        raise RegistryError(f"registry returned {type(result).__name__}, expected {kind.__name__}")
    return result


class StateBackedRegistry(SchemaRegistry):
    """Every port method, given the two hooks."""

    @abc.abstractmethod
    async def _read(self) -> RegistryState:
        """The state to answer a read from (caught up with every completed write)."""

    @abc.abstractmethod
    async def _execute(self, command: Command) -> Result:
        """Applies ``command`` to the state of record; returns or raises its outcome."""

    async def register(self, subject: str, schema: AvroSchema) -> SubjectVersion:
        state = await self._read()
        existing = state.lookup(subject, schema)
        if existing is not None:  # idempotent fast path: nothing to write
            return existing
        try:  # reject early what the state would reject now; the command re-checks
            state.check_compatibility(subject, schema, None).raise_for_incompatible()
        except AvroIncompatibleSchemaError as exc:
            raise IncompatibleSchemaError(str(exc), exc.incompatibilities) from None
        return _expect(await self._execute(Register(subject, schema.text)), SubjectVersion)

    async def lookup(self, subject: str, schema: AvroSchema) -> SubjectVersion | None:
        return (await self._read()).lookup(subject, schema)

    async def schema_by_id(self, schema_id: int) -> AvroSchema:
        return (await self._read()).schema_by_id(schema_id)

    async def id_usages(self, schema_id: int) -> tuple[tuple[str, int], ...]:
        return (await self._read()).id_usages(schema_id)

    async def version(self, subject: str, version: VersionSpec) -> SubjectVersion:
        return (await self._read()).version(subject, version)

    async def versions(self, subject: str) -> tuple[int, ...]:
        return (await self._read()).versions(subject)

    async def subjects(self) -> tuple[str, ...]:
        return (await self._read()).subjects()

    async def check_compatibility(
        self, subject: str, schema: AvroSchema, version: VersionSpec | None = LATEST
    ) -> CompatibilityResult:
        return (await self._read()).check_compatibility(subject, schema, version)

    async def get_compatibility(self, subject: str | None = None) -> CompatibilityMode:
        return (await self._read()).get_compatibility(subject)

    async def subject_compatibility(self, subject: str) -> CompatibilityMode | None:
        return (await self._read()).subject_compatibility(subject)

    async def set_compatibility(
        self, mode: CompatibilityMode, subject: str | None = None
    ) -> CompatibilityMode:
        result = await self._execute(SetCompatibility(subject, mode))
        return _expect(result, CompatibilityMode)

    async def delete_compatibility(self, subject: str) -> CompatibilityMode:
        return _expect(await self._execute(SetCompatibility(subject, None)), CompatibilityMode)

    async def delete_version(
        self, subject: str, version: VersionSpec, *, permanent: bool = False
    ) -> int:
        return _expect(await self._execute(DeleteVersion(subject, version, permanent)), int)

    async def delete_subject(self, subject: str, *, permanent: bool = False) -> tuple[int, ...]:
        return _expect(await self._execute(DeleteSubject(subject, permanent)), tuple)
