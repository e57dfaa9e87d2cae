"""One call that opens the registry a process is configured with, wrapped for the serde."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from contracts.kafka import KafkaClientSettings
from contracts.registry.cache import SchemaCache
from contracts.registry.confluent import ConfluentSchemaRegistry
from contracts.registry.embedded import DEFAULT_TOPIC, EmbeddedSchemaRegistry
from contracts.registry.errors import RegistryUnavailableError
from contracts.registry.port import SchemaRegistry

__all__ = ["EMBEDDED", "create_registry", "open_registry"]

EMBEDDED = "embedded"
FIRST_WAIT_S, MAX_WAIT_S = 0.5, 10.0
log = logging.getLogger("contracts.registry")


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
    patient: bool = False,
) -> AsyncIterator[SchemaCache]:
    """Starts the registry for ``url`` (see :func:`create_registry`) and yields its
    :class:`SchemaCache` (``register``, ``lookup``, ``decode``; the port is ``.registry``).
    Closes it on exit, also on error. ``patient``: a registry that cannot be reached yet
    (its Kafka node down, its server restarting) is waited for, with backoff up to
    ``MAX_WAIT_S`` between tries, instead of raising: long-running processes ride through
    an outage at their start as they do later."""
    delay = FIRST_WAIT_S
    async with contextlib.AsyncExitStack() as stack:
        while True:
            registry = create_registry(url, kafka, topic=topic, auth=auth, timeout_s=timeout_s)
            try:
                await stack.enter_async_context(registry)
                break
            except RegistryUnavailableError as exc:
                if not patient:
                    raise
                log.warning("%s; trying again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_WAIT_S)
        yield SchemaCache(registry)
