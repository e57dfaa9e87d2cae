"""The outbox relay's Kafka side: derived events as Avro, by an idempotent producer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from contracts.avro import SchemaCatalog, encode
from contracts.registry.cache import SchemaCache
from streams.store.port import OutboxRecord


class KafkaOutboxPublisher:
    """Publishes outbox rows to their topics (subject ``<topic>-value``), key = row key.

    Rows are sent in the order given; with ``enable_idempotence`` and one producer, records
    of one key (one partition) land in that order. ``publish`` returns once Kafka
    acknowledged every record (acks=all) and raises if any failed: the relay then releases
    the rows and publishes them again later, with the same ``event_id`` header.
    """

    def __init__(
        self, producer: AIOKafkaProducer, registry: SchemaCache, catalog: SchemaCatalog
    ) -> None:
        self._producer = producer
        self._registry = registry
        self._catalog = catalog
        self._writers: dict[str, object] = {}

    async def _writer(self, topic: str) -> object:
        writer = self._writers.get(topic)
        if writer is None:
            subject = f"{topic}-value"
            writer = await self._registry.register(subject, self._catalog.latest(subject))
            self._writers[topic] = writer
        return writer

    async def publish(self, records: Sequence[OutboxRecord]) -> None:
        futures = []
        for record in records:
            event = record.event
            writer = await self._writer(event.topic)
            futures.append(
                await self._producer.send(
                    event.topic,
                    key=event.key.encode(),
                    value=encode(event.payload, writer),  # type: ignore[arg-type]
                    headers=[("event_id", event.event_id.encode()), ("kind", event.kind.encode())],
                )
            )
        await asyncio.gather(*futures)
