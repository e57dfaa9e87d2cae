"""Errors of the schema registry: one root, one class per Confluent error code.

Every class carries the Confluent Schema Registry ``error_code`` and HTTP ``status`` it maps
to, so :mod:`~contracts.registry.server` answers with exactly the body a Confluent client
expects and :mod:`~contracts.registry.confluent` turns such a body back into the same class.
``retriable`` is True only where the same call may succeed later unchanged (the log or the
remote registry was unreachable or slow); everything else fails the same way every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from contracts.avro import Incompatibility
from contracts.avro import IncompatibleSchemaError as AvroIncompatibleSchemaError
from contracts.errors import ContractsError

__all__ = [
    "IncompatibleSchemaError",
    "InvalidCompatibilityError",
    "InvalidSchemaError",
    "InvalidVersionError",
    "RegistryError",
    "RegistryTimeoutError",
    "RegistryUnavailableError",
    "SchemaNotFoundError",
    "SubjectCompatibilityNotConfiguredError",
    "SubjectNotFoundError",
    "SubjectNotSoftDeletedError",
    "SubjectSoftDeletedError",
    "VersionNotFoundError",
    "VersionNotSoftDeletedError",
    "VersionSoftDeletedError",
    "error_for_code",
]


class RegistryError(ContractsError):
    """Root of every error raised by :mod:`contracts.registry`."""

    error_code: ClassVar[int] = 50001
    status: ClassVar[int] = 500
    retriable: ClassVar[bool] = False


class SubjectNotFoundError(RegistryError):
    """The subject has no (live) version."""

    error_code = 40401
    status = 404


class VersionNotFoundError(RegistryError):
    """The subject exists but has no such (live) version."""

    error_code = 40402
    status = 404


class SchemaNotFoundError(RegistryError):
    """No schema has this id, or the schema is not registered under the subject."""

    error_code = 40403
    status = 404


class SubjectSoftDeletedError(RegistryError):
    """The subject was already soft-deleted."""

    error_code = 40404
    status = 404


class SubjectNotSoftDeletedError(RegistryError):
    """A permanent delete needs the subject to be soft-deleted first."""

    error_code = 40405
    status = 404


class VersionSoftDeletedError(RegistryError):
    """The version was already soft-deleted."""

    error_code = 40406
    status = 404


class VersionNotSoftDeletedError(RegistryError):
    """A permanent delete needs the version to be soft-deleted first."""

    error_code = 40407
    status = 404


class SubjectCompatibilityNotConfiguredError(RegistryError):
    """The subject has no compatibility level of its own (it uses the global one)."""

    error_code = 40408
    status = 404


class IncompatibleSchemaError(RegistryError, AvroIncompatibleSchemaError):
    """The schema breaks the subject's compatibility mode (HTTP 409).

    Also an :class:`contracts.avro.IncompatibleSchemaError`, so either ``except`` catches it;
    the message names the first field and the reason, ``incompatibilities`` lists all.
    """

    error_code = 409
    status = 409

    def __init__(self, message: str, incompatibilities: Sequence[Incompatibility] = ()) -> None:
        AvroIncompatibleSchemaError.__init__(self, message, incompatibilities)


class InvalidSchemaError(RegistryError):
    """The schema is not valid Avro, or uses a feature this registry does not serve."""

    error_code = 42201
    status = 422


class InvalidVersionError(RegistryError):
    """A version is neither ``latest`` nor an integer from 1 to 2**31 - 1."""

    error_code = 42202
    status = 422


class InvalidCompatibilityError(RegistryError):
    """A compatibility level is not one of the seven Confluent levels."""

    error_code = 42203
    status = 422


class RegistryUnavailableError(RegistryError):
    """The backing store (the Kafka log, the remote registry) failed or cannot be reached."""

    error_code = 50001
    status = 500
    retriable = True


class RegistryTimeoutError(RegistryUnavailableError):
    """The operation did not complete in time; it may still take effect later."""

    error_code = 50002


_BY_CODE: dict[int, type[RegistryError]] = {
    cls.error_code: cls
    for cls in (
        SubjectNotFoundError,
        VersionNotFoundError,
        SchemaNotFoundError,
        SubjectSoftDeletedError,
        SubjectNotSoftDeletedError,
        VersionSoftDeletedError,
        VersionNotSoftDeletedError,
        SubjectCompatibilityNotConfiguredError,
        IncompatibleSchemaError,
        InvalidSchemaError,
        InvalidVersionError,
        InvalidCompatibilityError,
        RegistryUnavailableError,
        RegistryTimeoutError,
    )
}


def error_for_code(error_code: int, status: int) -> type[RegistryError]:
    """The error class for a Confluent ``error_code`` (falling back on the HTTP status)."""
    if error_code in _BY_CODE:
        return _BY_CODE[error_code]
    if status == 409:
        return IncompatibleSchemaError
    if status == 422:
        return InvalidSchemaError
    if status >= 500 or status in (408, 429):
        return RegistryUnavailableError
    return RegistryError
