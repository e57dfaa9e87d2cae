"""One call that opens the registry a process is configured with, wrapped for the serde."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from contracts.kafka import KafkaClientSettings
from contracts.registry.cache import SchemaCache
from contracts.registry.confluent import ConfluentSchemaRegistry
from contracts.registry.embedded import DEFAULT_TOPIC, EmbeddedSchemaRegistry
from contracts.registry.port import SchemaRegistry

__all__ = ["EMBEDDED", "create_registry", "open_registry"]

EMBEDDED = "embedded"


def create_registry(
    url: str,
    kafka: KafkaClientSettings | str,
    *,
    topic: str = DEFAULT_TOPIC,
    auth: tuple[str, str] | None = None,
    timeout_s: float = 30.0,
) -> SchemaRegistry:
    """The adapter for ``url``: ``"embedded"`` (the log in ``topic`` of the ``kafka`` cluster)
    or a Confluent-compatible base URL. Not started yet."""
    if url == EMBEDDED:
        return EmbeddedSchemaRegistry(kafka, topic=topic, request_timeout_s=timeout_s)
    return ConfluentSchemaRegistry(url, auth=auth, timeout_s=timeout_s)


@contextlib.asynccontextmanager
async def open_registry(
    url: str,
    kafka: KafkaClientSettings | str,
    *,
    topic: str = DEFAULT_TOPIC,
    auth: tuple[str, str] | None = None,
    timeout_s: float = 30.0,
) -> AsyncIterator[SchemaCache]:
    """Starts the registry for ``url`` (see :func:`create_registry`) and yields its
    :class:`SchemaCache` (``register``, ``lookup``, ``decode``; the port is ``.registry``).
    Closes it on exit, also on error."""
    async with create_registry(url, kafka, topic=topic, auth=auth, timeout_s=timeout_s) as registry:
        yield SchemaCache(registry)
