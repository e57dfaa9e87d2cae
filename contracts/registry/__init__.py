"""The schema registry: a port, its adapters, its REST server and the serde's in-memory view.

* :mod:`~contracts.registry.port` - the ``SchemaRegistry`` port (Confluent semantics);
* :mod:`~contracts.registry.embedded` - the default adapter: a replicated log in Kafka;
* :mod:`~contracts.registry.confluent` - any Confluent-compatible REST registry;
* :mod:`~contracts.registry.memory` - one process, no I/O (tests, tools);
* :mod:`~contracts.registry.server` - the Confluent REST API over any adapter;
* :mod:`~contracts.registry.cache` - ``WriterSchemas``/``SchemaIds`` for the serde, no I/O;
* :mod:`~contracts.registry.errors` - one error root, Confluent error codes, ``retriable``.
"""

from contracts.registry.cache import SchemaCache
from contracts.registry.confluent import ConfluentSchemaRegistry
from contracts.registry.embedded import DEFAULT_TOPIC, EmbeddedSchemaRegistry
from contracts.registry.errors import (
    IncompatibleSchemaError,
    InvalidCompatibilityError,
    InvalidSchemaError,
    InvalidVersionError,
    RegistryError,
    RegistryTimeoutError,
    RegistryUnavailableError,
    SchemaNotFoundError,
    SubjectCompatibilityNotConfiguredError,
    SubjectNotFoundError,
    SubjectNotSoftDeletedError,
    SubjectSoftDeletedError,
    VersionNotFoundError,
    VersionNotSoftDeletedError,
    VersionSoftDeletedError,
)
from contracts.registry.factory import EMBEDDED, create_registry, open_registry
from contracts.registry.memory import MemorySchemaRegistry
from contracts.registry.port import LATEST, SchemaRegistry, SubjectVersion, VersionSpec
from contracts.registry.server import create_app, start_server
from contracts.registry.settings import RegistrySettings

__all__ = [
    "DEFAULT_TOPIC",
    "EMBEDDED",
    "LATEST",
    "ConfluentSchemaRegistry",
    "EmbeddedSchemaRegistry",
    "IncompatibleSchemaError",
    "InvalidCompatibilityError",
    "InvalidSchemaError",
    "InvalidVersionError",
    "MemorySchemaRegistry",
    "RegistryError",
    "RegistrySettings",
    "RegistryTimeoutError",
    "RegistryUnavailableError",
    "SchemaCache",
    "SchemaNotFoundError",
    "SchemaRegistry",
    "SubjectCompatibilityNotConfiguredError",
    "SubjectNotFoundError",
    "SubjectNotSoftDeletedError",
    "SubjectSoftDeletedError",
    "SubjectVersion",
    "VersionNotFoundError",
    "VersionNotSoftDeletedError",
    "VersionSoftDeletedError",
    "VersionSpec",
    "create_app",
    "create_registry",
    "open_registry",
    "start_server",
]
