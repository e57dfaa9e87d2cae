"""The registry as a deterministic state machine: commands in, state and outcomes out.

:meth:`RegistryState.apply` is the single function that changes registry state. It is pure
(no I/O, no clock, no randomness, no dependence on hash order): applying the same commands in
the same order to a fresh state gives the same ids, versions, levels and the same outcome for
each command, in every process. That is what lets :mod:`~contracts.registry.embedded`
replicate the registry by appending commands to one Kafka partition and folding it everywhere,
and what :mod:`~contracts.registry.memory` runs in one process.

Outcomes: a command either succeeds (returning its result) or is rejected by raising a
:class:`~contracts.registry.errors.RegistryError`; a rejected command changes nothing.
Ids are assigned in fold order from 1 and never reused; schemas stay resolvable by id after
every delete. :func:`encode_command`/:func:`decode_command` are the commands' log format
(versioned JSON); a record that does not decode is rejected by every process alike.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts.avro import (
    AvroSchema,
    CompatibilityMode,
    CompatibilityResult,
    SchemaParseError,
    check_compatibility,
    parse_schema,
)
from contracts.avro import IncompatibleSchemaError as AvroIncompatibleSchemaError
from contracts.registry.errors import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    RegistryError,
    SchemaNotFoundError,
    SubjectCompatibilityNotConfiguredError,
    SubjectNotFoundError,
    SubjectNotSoftDeletedError,
    SubjectSoftDeletedError,
    VersionNotFoundError,
    VersionNotSoftDeletedError,
    VersionSoftDeletedError,
)
from contracts.registry.port import LATEST, SubjectVersion, VersionSpec, parse_mode, parse_version

__all__ = [
    "Command",
    "DeleteSubject",
    "DeleteVersion",
    "Register",
    "RegistryState",
    "SetCompatibility",
    "decode_command",
    "encode_command",
]

_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Register:
    """Register ``schema`` (JSON text) under ``subject``."""

    subject: str
    schema: str


@dataclass(frozen=True, slots=True)
class SetCompatibility:
    """Set the level of ``subject`` (None: the global one); ``mode`` None removes it."""

    subject: str | None
    mode: CompatibilityMode | None


@dataclass(frozen=True, slots=True)
class DeleteVersion:
    subject: str
    version: VersionSpec
    permanent: bool


@dataclass(frozen=True, slots=True)
class DeleteSubject:
    subject: str
    permanent: bool


Command = Register | SetCompatibility | DeleteVersion | DeleteSubject
Result = SubjectVersion | CompatibilityMode | int | tuple[int, ...]


def encode_command(command: Command) -> bytes:
    """The log record of ``command``: compact JSON with a format number."""
    body: dict[str, Any] = {"format": _FORMAT, "op": type(command).__name__}
    body.update(dataclasses.asdict(command))
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def decode_command(data: bytes | None) -> Command:
    """Parses a log record; raises ``InvalidSchemaError`` for anything malformed."""
    try:
        return _decode(json.loads(data or b""))
    except (ValueError, KeyError, TypeError, RegistryError) as exc:
        raise InvalidSchemaError(f"malformed registry log record: {exc}") from exc


def _decode(body: Any) -> Command:
    if body["format"] != _FORMAT:
        raise ValueError(f"unknown record format {body['format']!r}")
    op = body["op"]
    if op == "Register":
        return Register(_text(body["subject"]), _text(body["schema"]))
    if op == "SetCompatibility":
        subject = None if body["subject"] is None else _text(body["subject"])
        mode = None if body["mode"] is None else parse_mode(body["mode"])
        return SetCompatibility(subject, mode)
    if op == "DeleteVersion":
        version = parse_version(body["version"])
        return DeleteVersion(_text(body["subject"]), version, body["permanent"] is True)
    if op == "DeleteSubject":
        return DeleteSubject(_text(body["subject"]), body["permanent"] is True)
    raise ValueError(f"unknown operation {op!r}")


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


@dataclass(slots=True)
class _Version:
    schema_id: int
    deleted: bool = False


class RegistryState:
    """Subjects, versions, ids and levels; changed only by :meth:`apply`."""

    def __init__(self) -> None:
        self._schemas: dict[int, AvroSchema] = {}
        self._ids: dict[str, int] = {}
        self._subjects: dict[str, dict[int, _Version]] = {}
        self._global = CompatibilityMode.BACKWARD
        self._modes: dict[str, CompatibilityMode] = {}
        self._last_id = 0

    # --- the transition function ----------------------------------------------------------

    def apply(self, command: Command) -> Result:
        """Applies one command; returns its result or raises the rejection (state unchanged)."""
        if isinstance(command, Register):
            return self._register(command.subject, command.schema)
        if isinstance(command, SetCompatibility):
            return self._set_compatibility(command.subject, command.mode)
        if isinstance(command, DeleteVersion):
            return self._delete_version(command.subject, command.version, command.permanent)
        return self._delete_subject(command.subject, command.permanent)

    def _register(self, subject: str, text: str) -> SubjectVersion:
        try:
            schema = parse_schema(text)
        except SchemaParseError as exc:
            raise InvalidSchemaError(f"invalid schema: {exc}") from exc
        existing = self.lookup(subject, schema)
        if existing is not None:
            return existing
        result = self.check_compatibility(subject, schema, None)
        try:
            result.raise_for_incompatible()
        except AvroIncompatibleSchemaError as exc:
            raise IncompatibleSchemaError(str(exc), exc.incompatibilities) from None
        schema_id = self._ids.get(schema.text)
        if schema_id is None:
            self._last_id += 1
            schema_id = self._last_id
            self._ids[schema.text] = schema_id
            self._schemas[schema_id] = schema
        versions = self._subjects.setdefault(subject, {})
        number = max(versions, default=0) + 1
        versions[number] = _Version(schema_id)
        return SubjectVersion(schema_id, self._schemas[schema_id], subject, number)

    def _set_compatibility(
        self, subject: str | None, mode: CompatibilityMode | None
    ) -> CompatibilityMode:
        if subject is None:
            self._global = mode or CompatibilityMode.BACKWARD
            return self._global
        if mode is not None:
            self._modes[subject] = mode
            return mode
        previous = self._modes.pop(subject, None)
        if previous is None:
            raise SubjectCompatibilityNotConfiguredError(
                f"subject {subject!r} has no compatibility level of its own"
            )
        return previous

    def _delete_version(self, subject: str, spec: VersionSpec, permanent: bool) -> int:
        versions = self._subjects.get(subject)
        if not versions:
            raise SubjectNotFoundError(f"subject {subject!r} not found")
        if spec == LATEST:
            candidates = [n for n, v in versions.items() if permanent or not v.deleted]
            if not candidates:
                raise SubjectNotFoundError(f"subject {subject!r} not found")
            number = max(candidates)
        else:
            number = spec
        entry = versions.get(number)
        if entry is None:
            raise VersionNotFoundError(f"version {number} of subject {subject!r} not found")
        if not permanent:
            if entry.deleted:
                raise VersionSoftDeletedError(
                    f"version {number} of subject {subject!r} was soft deleted; add "
                    "permanent=true to delete it permanently"
                )
            entry.deleted = True
            return number
        if not entry.deleted:
            raise VersionNotSoftDeletedError(
                f"version {number} of subject {subject!r} must be soft deleted first"
            )
        del versions[number]
        if not versions:
            del self._subjects[subject]
        return number

    def _delete_subject(self, subject: str, permanent: bool) -> tuple[int, ...]:
        versions = self._subjects.get(subject)
        if not versions:
            raise SubjectNotFoundError(f"subject {subject!r} not found")
        live = tuple(n for n, v in sorted(versions.items()) if not v.deleted)
        if not permanent:
            if not live:
                raise SubjectSoftDeletedError(
                    f"subject {subject!r} was soft deleted; add permanent=true to delete it "
                    "permanently"
                )
            for number in live:
                versions[number].deleted = True
            return live
        if live:
            raise SubjectNotSoftDeletedError(f"subject {subject!r} must be soft deleted first")
        del self._subjects[subject]
        self._modes.pop(subject, None)
        return tuple(sorted(versions))

    # --- queries (never change state) -----------------------------------------------------

    def _live(self, subject: str) -> list[tuple[int, int]]:
        """(version, schema id) of the live versions of ``subject``, ascending."""
        versions = self._subjects.get(subject, {})
        return sorted((n, v.schema_id) for n, v in versions.items() if not v.deleted)

    def _entry(self, subject: str, version: int, schema_id: int) -> SubjectVersion:
        return SubjectVersion(schema_id, self._schemas[schema_id], subject, version)

    def writer_schema(self, schema_id: int) -> AvroSchema | None:
        """The schema with id ``schema_id``, or None (the serde's ``WriterSchemas``)."""
        return self._schemas.get(schema_id)

    def lookup(self, subject: str, schema: AvroSchema) -> SubjectVersion | None:
        schema_id = self._ids.get(schema.text)
        for number, live_id in self._live(subject):
            if live_id == schema_id:
                return self._entry(subject, number, live_id)
        return None

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        schema = self._schemas.get(schema_id)
        if schema is None:
            raise SchemaNotFoundError(f"schema {schema_id} not found")
        return schema

    def id_usages(self, schema_id: int) -> tuple[tuple[str, int], ...]:
        self.schema_by_id(schema_id)
        return tuple(
            (subject, number)
            for subject in sorted(self._subjects)
            for number, live_id in self._live(subject)
            if live_id == schema_id
        )

    def version(self, subject: str, spec: VersionSpec) -> SubjectVersion:
        live = self._live(subject)
        if not live:
            raise SubjectNotFoundError(f"subject {subject!r} not found")
        if spec == LATEST:
            return self._entry(subject, *live[-1])
        for number, schema_id in live:
            if number == spec:
                return self._entry(subject, number, schema_id)
        raise VersionNotFoundError(f"version {spec} of subject {subject!r} not found")

    def versions(self, subject: str) -> tuple[int, ...]:
        live = self._live(subject)
        if not live:
            raise SubjectNotFoundError(f"subject {subject!r} not found")
        return tuple(number for number, _ in live)

    def subjects(self) -> tuple[str, ...]:
        return tuple(sorted(s for s in self._subjects if self._live(s)))

    def get_compatibility(self, subject: str | None = None) -> CompatibilityMode:
        return self._modes.get(subject, self._global) if subject is not None else self._global

    def subject_compatibility(self, subject: str) -> CompatibilityMode | None:
        return self._modes.get(subject)

    def check_compatibility(
        self, subject: str, schema: AvroSchema, spec: VersionSpec | None
    ) -> CompatibilityResult:
        """Checks like the port's method; versions in the result are real version numbers."""
        live = self._live(subject)
        if spec is None:
            chosen = live
        elif spec == LATEST:
            chosen = live[-1:]
        else:
            if not live:
                raise SubjectNotFoundError(f"subject {subject!r} not found")
            chosen = [(n, i) for n, i in live if n == spec]
            if not chosen:
                raise VersionNotFoundError(f"version {spec} of subject {subject!r} not found")
        mode = self.get_compatibility(subject)
        try:
            result = check_compatibility(schema, [self._schemas[i] for _, i in chosen], mode)
        except SchemaParseError as exc:
            raise InvalidSchemaError(f"cannot check compatibility: {exc}") from exc
        return _renumber(result, [number for number, _ in chosen])


def _renumber(result: CompatibilityResult, numbers: Sequence[int]) -> CompatibilityResult:
    """Maps the checker's 1-based history positions to the subject's version numbers."""
    issues = tuple(
        dataclasses.replace(i, version=numbers[i.version - 1]) if i.version is not None else i
        for i in result.incompatibilities
    )
    return CompatibilityResult(result.mode, issues)
