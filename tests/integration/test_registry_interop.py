"""Interop with clients nobody here wrote: confluent-kafka's schema registry client and serdes.

Our REST server runs in this test's event loop, so every confluent-kafka call (synchronous
HTTP and Kafka I/O) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from contracts.avro import SchemaCatalog, encode, parse_schema
from contracts.kafka import KafkaClientSettings
from contracts.registry import EmbeddedSchemaRegistry, SchemaCache, start_server
from devstack import DevStackSettings
from devstack.clients import kafka_client

TELEMETRY = "iot.telemetry.v1-value"
LOGIN = ("registry-admin", "s3cret-for-tests")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Served:
    registry: EmbeddedSchemaRegistry
    url: str
    topic: str
    kafka: KafkaClientSettings


@pytest.fixture
async def served(settings: DevStackSettings, unique: Callable[[str], str]) -> AsyncIterator[Served]:
    """A fresh data topic, and an embedded registry on its own log served over REST."""
    topic = unique("telemetry")
    admin = AIOKafkaAdminClient(**kafka_client(settings).aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    async with EmbeddedSchemaRegistry(kafka_client(settings), topic=unique("schemas")) as registry:
        runner, url = await start_server(registry, port=0, login=LOGIN)
        try:
            yield Served(registry, url, topic, kafka_client(settings))
        finally:
            await runner.cleanup()


def telemetry(n: int) -> dict[str, Any]:
    return {
        "event_id": f"dev-{n % 3}:{n}",
        "device_id": f"dev-{n % 3}",
        "ts": 1_700_000_000_000 + n,
        "received_at": 1_700_000_000_500 + n,
        "seq": n if n % 2 else None,
        "metrics": {"temperature": 20.5 + n, "humidity": 0.25},
        "attributes": {"fw": "1.2.3"} if n % 3 else {},
        "boot": n // 4 if n % 4 else None,
        "ts_stamped": n % 5 == 0,
    }


def _confluent_consume(served: Served, count: int) -> list[Any]:
    with SchemaRegistryClient(
        {"url": served.url, "basic.auth.user.info": ":".join(LOGIN)}
    ) as client:
        return _confluent_consume_with(client, served, count)


def _confluent_consume_with(client: SchemaRegistryClient, served: Served, count: int) -> list[Any]:
    deserializer = AvroDeserializer(client)
    consumer = Consumer(
        {**served.kafka.confluent_config(), "group.id": served.topic + ".g",
         "enable.auto.commit": False}
    )  # fmt: skip
    consumer.assign([ConfluentTopicPartition(served.topic, 0, 0)])
    values: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            context = SerializationContext(served.topic, MessageField.VALUE)
            values.append(deserializer(message.value(), context))
    finally:
        consumer.close()
    return values


async def test_confluent_deserializer_reads_what_our_serde_produced(served: Served) -> None:
    cache = SchemaCache(served.registry)
    writer = await cache.register(f"{served.topic}-value", SchemaCatalog.load().latest(TELEMETRY))
    records = [telemetry(n) for n in range(12)]
    producer = AIOKafkaProducer(
        **served.kafka.aiokafka_kwargs(), enable_idempotence=True, acks="all"
    )
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(served.topic, encode(record, writer), key=b"k")
    finally:
        await producer.stop()

    values = await asyncio.to_thread(_confluent_consume, served, len(records))

    def as_confluent_sees_it(record: dict[str, Any]) -> dict[str, Any]:
        # Confluent's deserializer converts timestamp-millis to aware datetimes.
        return {
            **record,
            "ts": EPOCH + timedelta(milliseconds=record["ts"]),
            "received_at": EPOCH + timedelta(milliseconds=record["received_at"]),
        }

    assert values == [as_confluent_sees_it(record) for record in records]


def _confluent_produce(served: Served, schema_text: str, records: list[dict[str, Any]]) -> None:
    with SchemaRegistryClient(
        {"url": served.url, "basic.auth.user.info": ":".join(LOGIN)}
    ) as client:
        serializer = AvroSerializer(client, schema_text)
        producer = Producer({**served.kafka.confluent_config(), "enable.idempotence": True})
        context = SerializationContext(served.topic, MessageField.VALUE)
        for record in records:
            producer.produce(served.topic, value=serializer(record, context), key=b"k")
        assert producer.flush(30) == 0


async def test_our_serde_reads_what_the_confluent_serializer_wrote(
    served: Served, settings: DevStackSettings
) -> None:
    path = SchemaCatalog.load().versions(TELEMETRY)[-1].path
    schema_text = path.read_text(encoding="utf-8")  # pretty-printed, as a user would send it
    records = [telemetry(n) for n in range(12)]
    await asyncio.to_thread(_confluent_produce, served, schema_text, records)

    frames = await _consume(kafka_client(settings), served.topic, len(records))
    # A second process of the deployment, knowing none of the ids yet.
    async with EmbeddedSchemaRegistry(kafka_client(settings), topic=served.registry.topic) as other:
        cache = SchemaCache(other)
        values = [await cache.decode(frame) for frame in frames]
        registered = await other.lookup(f"{served.topic}-value", parse_schema(schema_text))
    assert values == records
    assert registered is not None
    assert {frame[1:5] for frame in frames} == {registered.schema_id.to_bytes(4, "big")}


async def _consume(kafka: KafkaClientSettings, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(**kafka.aiokafka_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        frames: list[bytes] = []
        async with asyncio.timeout(30):
            while len(frames) < count:
                batch = await consumer.getmany(tp, timeout_ms=500)
                frames.extend(message.value for message in batch.get(tp, ()))
        return frames
    finally:
        await consumer.stop()


def _confluent_compatibility(served: Served, subject: str, schema_text: str) -> dict[str, Any]:
    with SchemaRegistryClient(
        {"url": served.url, "basic.auth.user.info": ":".join(LOGIN)}
    ) as client:
        return _confluent_compatibility_with(client, subject, schema_text)


def _confluent_compatibility_with(
    client: SchemaRegistryClient, subject: str, schema_text: str
) -> dict[str, Any]:
    new = Schema(schema_text, "AVRO")
    outcome: dict[str, Any] = {"compatible": client.test_compatibility(subject, new)}
    try:
        client.register_schema(subject, new)
    except SchemaRegistryError as exc:
        outcome.update(status=exc.http_status_code, code=exc.error_code, message=exc.error_message)
    client.set_compatibility(subject_name=subject, level="NONE")
    outcome["level"] = client.get_compatibility(subject)
    outcome["id_after_none"] = client.register_schema(subject, new)
    outcome["latest_version"] = client.get_latest_version(subject).version
    return outcome


async def test_an_incompatible_registration_over_rest_is_a_409_naming_the_field(
    served: Served,
) -> None:
    subject = f"{served.topic}-value"
    catalog = SchemaCatalog.load()
    await served.registry.register(subject, catalog.latest(TELEMETRY))
    breaking = dict(catalog.latest(TELEMETRY).definition)
    breaking["fields"] = [*breaking["fields"], {"name": "firmware", "type": "string"}]
    body = {"schema": parse_schema(breaking).text, "schemaType": "AVRO"}
    async with aiohttp.ClientSession(
        headers={"Authorization": aiohttp.encode_basic_auth(*LOGIN)}
    ) as session:
        async with session.post(f"{served.url}/subjects/{subject}/versions", json=body) as resp:
            status, content_type = resp.status, resp.content_type
            error = await resp.json(content_type=None)
        check_url = f"{served.url}/compatibility/subjects/{subject}/versions/latest?verbose=true"
        async with session.post(check_url, json=body) as resp:
            verdict = await resp.json(content_type=None)
    assert status == 409
    assert content_type == "application/vnd.schemaregistry.v1+json"
    assert error["error_code"] == 409
    assert "'firmware'" in error["message"]
    assert verdict["is_compatible"] is False
    assert any("'firmware'" in message for message in verdict["messages"])

    seen = await asyncio.to_thread(_confluent_compatibility, served, subject, body["schema"])
    assert seen["compatible"] is False
    assert (seen["status"], seen["code"]) == (409, 409)
    assert "'firmware'" in seen["message"]
    assert seen["level"] == "NONE"
    assert seen["latest_version"] == 2
    assert seen["id_after_none"] == (await served.registry.latest(subject)).schema_id
