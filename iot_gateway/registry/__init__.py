"""The schema registry: a port, its adapters, its REST server and the serde's in-memory view.

* :mod:`~iot_gateway.registry.port` - the ``SchemaRegistry`` port (Confluent semantics);
* :mod:`~iot_gateway.registry.embedded` - the default adapter: a replicated log in Kafka;
* :mod:`~iot_gateway.registry.confluent` - any Confluent-compatible REST registry;
* :mod:`~iot_gateway.registry.memory` - one process, no I/O (tests, tools);
* :mod:`~iot_gateway.registry.server` - the Confluent REST API over any adapter;
* :mod:`~iot_gateway.registry.cache` - ``WriterSchemas``/``SchemaIds`` for the serde, no I/O;
* :mod:`~iot_gateway.registry.errors` - one error root, Confluent error codes, ``retriable``.
"""

from iot_gateway.registry.cache import SchemaCache
from iot_gateway.registry.confluent import ConfluentSchemaRegistry
from iot_gateway.registry.embedded import DEFAULT_TOPIC, EmbeddedSchemaRegistry
from iot_gateway.registry.errors import (
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
from iot_gateway.registry.factory import EMBEDDED, create_registry, open_registry
from iot_gateway.registry.memory import MemorySchemaRegistry
from iot_gateway.registry.port import LATEST, SchemaRegistry, SubjectVersion, VersionSpec
from iot_gateway.registry.server import create_app, start_server
from iot_gateway.registry.settings import RegistrySettings

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
