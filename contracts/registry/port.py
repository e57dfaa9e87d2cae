"""The ``SchemaRegistry`` port: Confluent Schema Registry semantics, asynchronous.

Adapters: :mod:`~contracts.registry.embedded` (the default: a replicated log in Kafka),
:mod:`~contracts.registry.confluent` (any Confluent-compatible REST registry) and
:mod:`~contracts.registry.memory` (one process, for tests and tools).

Semantics every adapter keeps (``tests/*/test_registry_contract.py`` proves them):

* **Ids are global**: one schema text has one id whatever the subject; an id, once given, names
  the same schema forever and is never reused. Versions count per subject from 1.
* **register is idempotent**: a schema already live under the subject returns its existing
  id and version without a compatibility check. Otherwise it is checked against the subject's
  live versions under the subject's effective mode, and an incompatible one fails with
  :class:`~contracts.registry.errors.IncompatibleSchemaError` naming the field and reason.
* **Compatibility config** falls back like Confluent's: a subject without its own level uses
  the global one (BACKWARD unless set).
* **Deletes** are soft first (the version stops being visible but its id still resolves), then
  optionally permanent (only after a soft delete).
* Errors are :class:`~contracts.registry.errors.RegistryError` subclasses; only
  ``retriable`` ones are worth retrying unchanged.

Every method may be called concurrently from one event loop after :meth:`start`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from contracts.avro import (
    AvroSchema,
    CompatibilityMode,
    CompatibilityResult,
    RegisteredSchema,
)
from contracts.registry.errors import InvalidCompatibilityError, InvalidVersionError

__all__ = [
    "LATEST",
    "SchemaRegistry",
    "SubjectVersion",
    "VersionSpec",
    "parse_mode",
    "parse_version",
]

LATEST: Literal["latest"] = "latest"
VersionSpec = int | Literal["latest"]
_MAX_VERSION = 2**31 - 1


@dataclass(frozen=True, slots=True)
class SubjectVersion(RegisteredSchema):
    """A schema with its global id and its version under one subject.

    Being a :class:`~contracts.avro.RegisteredSchema`, it can be passed to
    :func:`~contracts.avro.encode` directly.
    """

    subject: str
    version: int


def parse_version(value: object) -> VersionSpec:
    """``"latest"``/``-1`` -> ``"latest"``, else a version 1..2**31-1 (``InvalidVersionError``)."""
    if value in (LATEST, -1, "-1"):
        return LATEST
    if isinstance(value, bool):
        raise InvalidVersionError(f"the version {value!r} is not 'latest' nor a number")
    try:
        number = int(value) if isinstance(value, int | str) else 0
    except ValueError:
        number = 0
    if not 1 <= number <= _MAX_VERSION:
        raise InvalidVersionError(
            f"the version {value!r} must be 'latest' or an integer from 1 to {_MAX_VERSION}"
        )
    return number


def parse_mode(value: object) -> CompatibilityMode:
    """A compatibility level from its name, any case (``InvalidCompatibilityError``)."""
    try:
        return CompatibilityMode(str(value).upper())
    except ValueError:
        choices = ", ".join(CompatibilityMode)
        raise InvalidCompatibilityError(
            f"invalid compatibility level {value!r}: use one of {choices}"
        ) from None


class SchemaRegistry(abc.ABC):
    """A schema registry. Use as ``async with registry:`` or call :meth:`start`/:meth:`close`."""

    async def start(self) -> None:  # noqa: B027 - optional hook: adapters without I/O need none
        """Connects and catches up; must complete before any other call."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Releases connections; idempotent. Nothing may be called afterwards."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- schemas and subjects -------------------------------------------------------------

    @abc.abstractmethod
    async def register(self, subject: str, schema: AvroSchema) -> SubjectVersion:
        """Registers ``schema`` under ``subject`` (idempotent; see the module docstring).

        Raises ``IncompatibleSchemaError`` when the subject's mode rejects it.
        """

    @abc.abstractmethod
    async def lookup(self, subject: str, schema: AvroSchema) -> SubjectVersion | None:
        """The live version of ``subject`` holding ``schema``, or None."""

    @abc.abstractmethod
    async def schema_by_id(self, schema_id: int) -> AvroSchema:
        """The schema with id ``schema_id`` (``SchemaNotFoundError`` if there is none)."""

    @abc.abstractmethod
    async def id_usages(self, schema_id: int) -> tuple[tuple[str, int], ...]:
        """Every live (subject, version) holding the schema ``schema_id``, sorted."""

    async def latest(self, subject: str) -> SubjectVersion:
        """The newest live version of ``subject`` (``SubjectNotFoundError`` if none)."""
        return await self.version(subject, LATEST)

    @abc.abstractmethod
    async def version(self, subject: str, version: VersionSpec) -> SubjectVersion:
        """One version of ``subject`` (``SubjectNotFoundError``, ``VersionNotFoundError``)."""

    @abc.abstractmethod
    async def versions(self, subject: str) -> tuple[int, ...]:
        """The live version numbers of ``subject``, ascending (``SubjectNotFoundError`` if none)."""

    @abc.abstractmethod
    async def subjects(self) -> tuple[str, ...]:
        """Every subject with at least one live version, sorted."""

    # --- compatibility --------------------------------------------------------------------

    @abc.abstractmethod
    async def check_compatibility(
        self, subject: str, schema: AvroSchema, version: VersionSpec | None = LATEST
    ) -> CompatibilityResult:
        """Checks ``schema`` under the subject's effective mode, changing nothing.

        ``version`` picks the one version to compare with (``"latest"``: the newest; an
        empty or unknown subject is then compatible), or None for every version
        :meth:`register` would compare with.
        """

    @abc.abstractmethod
    async def get_compatibility(self, subject: str | None = None) -> CompatibilityMode:
        """The effective level: the subject's own if set, else the global one."""

    @abc.abstractmethod
    async def subject_compatibility(self, subject: str) -> CompatibilityMode | None:
        """The subject's own level, None if it has none (it then uses the global one)."""

    @abc.abstractmethod
    async def set_compatibility(
        self, mode: CompatibilityMode, subject: str | None = None
    ) -> CompatibilityMode:
        """Sets the global level (``subject`` None) or the subject's own; returns ``mode``.

        Applies to later registrations only; existing versions are not re-checked.
        """

    @abc.abstractmethod
    async def delete_compatibility(self, subject: str) -> CompatibilityMode:
        """Removes the subject's own level and returns it (``SubjectCompatibility...Error``)."""

    # --- deletes --------------------------------------------------------------------------

    @abc.abstractmethod
    async def delete_version(
        self, subject: str, version: VersionSpec, *, permanent: bool = False
    ) -> int:
        """Soft-deletes (or, after that, permanently deletes) one version; returns its number.

        The schema's id keeps resolving either way: data written with it stays readable.
        """

    @abc.abstractmethod
    async def delete_subject(self, subject: str, *, permanent: bool = False) -> tuple[int, ...]:
        """Soft-deletes (or, after that, permanently deletes) every version of ``subject``.

        Returns the deleted version numbers. A permanent delete also drops the subject's
        compatibility level; version numbers then start again from 1.
        """
