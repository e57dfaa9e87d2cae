"""The gateway against the real Mosquitto and Kafka, with a client nobody here wrote."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.avro import SchemaCatalog, decode, encode
from contracts.kafka import KafkaClientSettings
from devstack import DevStackSettings
from devstack.clients import kafka_client
from iot_gateway.bridge import Gateway
from iot_gateway.codecs import SubjectCodec
from iot_gateway.config import GatewayConfig
from iot_gateway.downlink import Downlink
from tests.clients import mosquitto_pub, mqtt_login_kwargs
from tests.fakes import InMemorySchemas


def _to_broker(settings: DevStackSettings, topic: str, payload: bytes) -> None:
    """``mosquitto_pub`` to Mosquitto itself (its port is the devices' one in bridge mode)."""
    mosquitto_pub(settings, topic, payload, port=settings.broker_port)


SUBJECT = "iot.telemetry.v1-value"


async def _topics(kafka: KafkaClientSettings, *names: str) -> None:
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1) for name in names])
    finally:
        await admin.close()


async def _consume(kafka: KafkaClientSettings, topic: str, count: int) -> list[object]:
    consumer = AIOKafkaConsumer(
        topic, **kafka.aiokafka_kwargs(), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[object] = []
    try:
        async with asyncio.timeout(20):
            while len(records) < count:
                batch = await consumer.getmany(timeout_ms=500)
                records.extend(r for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    return records


@dataclass(frozen=True, slots=True)
class Harness:
    gateway: Gateway
    schemas: InMemorySchemas
    prefix: str
    topic: str
    dlq: str
    commands: str


@pytest.fixture
async def harness(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> AsyncIterator[Harness]:
    prefix = unique("mqtt").replace(".", "-")
    topic, dlq, commands = unique("telemetry"), unique("dlq"), unique("commands")
    await _topics(kafka_client(settings), topic, dlq, commands)
    config = GatewayConfig(
        mqtt={
            "host": settings.host,
            "port": settings.broker_port,
            "client_id": unique("gw"),
            "share_group": prefix,
            "filters": [f"{prefix}/devices/+/telemetry/#"],
            "session_expiry_s": 60,
            **mqtt_login_kwargs(settings),
        },
        kafka={**kafka_client(settings).model_dump(), "dlq_topic": dlq},
        routes=[
            {
                "name": "telemetry",
                "filter": f"{prefix}/devices/+/telemetry",
                "kafka_topic": topic,
                "subject": SUBJECT,
            }
        ],
        limits={"max_payload_bytes": 1024},
        downlink={
            "kafka_topic": commands,
            "group_id": unique("downlink"),
            "mqtt_topic": f"{prefix}/devices/{{device_id}}/commands",
        },
    )
    schemas = InMemorySchemas()
    codec = SubjectCodec(schemas.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT)))
    gateway = Gateway(config, {SUBJECT: codec})

    async def decode_command(frame: bytes) -> dict[str, Any]:
        return dict(decode(frame, schemas))

    gateway.add_session_task(Downlink(config, decode_command, gateway.metrics))
    task = asyncio.create_task(gateway.run())
    async with asyncio.timeout(20):
        while not gateway.ready:  # noqa: ASYNC110 - readiness is a flag, polled like /readyz
            await asyncio.sleep(0.05)
    try:
        yield Harness(gateway, schemas, prefix, topic, dlq, commands)
    finally:
        gateway.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


async def test_a_reading_from_mosquitto_pub_arrives_as_keyed_avro_with_headers(
    settings: DevStackSettings, harness: Harness
) -> None:
    ts = int(time.time() * 1000) - 5000
    payload = b'{"seq": 41, "ts": %d, "metrics": {"temp_c": 21.5}}' % ts
    await asyncio.to_thread(
        _to_broker, settings, f"{harness.prefix}/devices/dev-7/telemetry", payload
    )
    [record] = await _consume(kafka_client(settings), harness.topic, 1)
    assert record.key == b"dev-7"  # type: ignore[attr-defined]
    headers = dict(record.headers)  # type: ignore[attr-defined]
    assert headers["event_id"] == b"dev-7:41"
    assert headers["device_id"] == b"dev-7"
    assert headers["content_type"] == b"application/vnd.confluent.avro"
    value = decode(record.value, harness.schemas)  # type: ignore[attr-defined]
    assert value["metrics"] == {"temp_c": 21.5}
    assert value["ts"] == ts
    assert harness.gateway.metrics.acked._value.get() == 1


async def test_bad_inputs_land_in_the_dlq_with_reasons_and_the_gateway_keeps_going(
    settings: DevStackSettings, harness: Harness
) -> None:
    base = f"{harness.prefix}/devices"
    cases = [
        (f"{base}/dev-1/telemetry", b'{"metrics": ', "invalid_json"),
        (f"{base}/dev-1/telemetry", b'{"metrics": {"t": 1}, "x": "\xff"}', "invalid_utf8"),
        (f"{base}/dev-1/telemetry", b'{"metrics": {"t": "warm"}}', "schema_mismatch"),
        (f"{base}/dev-1/telemetry", b"[]", "not_an_object"),
        (f"{base}/dev-1/telemetry", b"{" + b" " * 2000 + b"}", "payload_too_large"),
        (f"{base}//telemetry", b'{"metrics": {}}', "invalid_device_id"),
        (f"{base}/dev-1/telemetry/unknown", b"{}", "unknown_route"),
    ]
    for topic, payload, _ in cases:
        await asyncio.to_thread(_to_broker, settings, topic, payload)
    await asyncio.to_thread(
        _to_broker, settings, f"{base}/dev-1/telemetry", b'{"seq": 1, "metrics": {"t": 1}}'
    )
    dlq = await _consume(kafka_client(settings), harness.dlq, len(cases))
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dlq)  # type: ignore[attr-defined]
    assert reasons == sorted(reason for _, _, reason in cases)
    raw = {dict(r.headers)["reason"]: r.value for r in dlq}  # type: ignore[attr-defined]
    assert raw[b"invalid_utf8"] == cases[1][1]  # the raw bytes, untouched
    good = await _consume(kafka_client(settings), harness.topic, 1)
    assert dict(good[0].headers)["event_id"] == b"dev-1:1"  # type: ignore[attr-defined]


async def test_an_oversized_publish_is_dead_lettered_as_an_excerpt_and_ingest_goes_on(
    settings: DevStackSettings, harness: Harness
) -> None:
    """2 MB is refused by the broker (its max_packet_size); 200 kB passes the broker but not
    the gateway's limit, and its DLQ record holds an excerpt, the length and the digest: a
    record Kafka accepts, so nothing stalls behind it."""
    topic = f"{harness.prefix}/devices/dev-1/telemetry"
    huge, large = b"{" + b" " * 2_000_000 + b"}", b"{" + b" " * 200_000 + b"}"
    for payload in (huge, large):
        with contextlib.suppress(subprocess.CalledProcessError):
            await asyncio.to_thread(_to_broker, settings, topic, payload)
    await asyncio.to_thread(_to_broker, settings, topic, b'{"seq": 1, "metrics": {"t": 1}}')
    good = await _consume(kafka_client(settings), harness.topic, 1)
    assert dict(good[0].headers)["event_id"] == b"dev-1:1"  # type: ignore[attr-defined]
    dlq = await _consume(kafka_client(settings), harness.dlq, 1)
    assert len(dlq) == 1  # the broker refused the 2 MB publish: it never reached the gateway
    [dead] = dlq
    headers = dict(dead.headers)  # type: ignore[attr-defined]
    assert headers["reason"] == b"payload_too_large"
    assert headers["payload_bytes"] == str(len(large)).encode()
    assert headers["payload_sha256"] == hashlib.sha256(large).hexdigest().encode()
    assert dead.value == large[: len(dead.value)]  # type: ignore[attr-defined]
    assert len(dead.value) <= 1024  # type: ignore[attr-defined]


async def test_a_device_flushing_its_buffer_is_slowed_down_never_dropped(
    settings: DevStackSettings, harness: Harness
) -> None:
    """300 readings in one burst against the default limits (100/s, burst 200): every one
    reaches the telemetry topic (the excess waits for its tokens); none is dead-lettered."""
    assert harness.gateway.config.limits.device_rate_per_s == 100
    topic = f"{harness.prefix}/devices/dev-3/telemetry"
    async with aiomqtt.Client(
        settings.host,
        settings.broker_port,
        protocol=aiomqtt.ProtocolVersion.V5,
        **mqtt_login_kwargs(settings),
    ) as device:
        for seq in range(1, 301):
            payload = json.dumps({"seq": seq, "metrics": {"t": seq}}).encode()
            await device.publish(topic, payload, qos=1)
    landed = await _consume(kafka_client(settings), harness.topic, 300)
    seqs = [int(dict(r.headers)["event_id"].split(b":")[1]) for r in landed]  # type: ignore[attr-defined]
    assert seqs == list(range(1, 301))  # all of them, in order
    assert harness.gateway.metrics.rejected.labels("rate_limited")._value.get() == 0


async def test_downlink_commands_reach_the_device_topic_expired_and_garbage_do_not(
    settings: DevStackSettings, harness: Harness
) -> None:
    command_schema = SchemaCatalog.load().latest("iot.commands.v1-value")
    registered = harness.schemas.register("iot.commands.v1-value", command_schema)
    now = int(time.time() * 1000)

    def command(command_id: str, expires_at: int | None) -> bytes:
        return encode(
            {
                "command_id": command_id,
                "device_id": "dev-9",
                "name": "reboot",
                "params": {"delay_s": "5"},
                "issued_at": now,
                "expires_at": expires_at,
            },
            registered,
        )

    device_topic = f"{harness.prefix}/devices/dev-9/commands"
    async with aiomqtt.Client(
        settings.host,
        settings.broker_port,
        protocol=aiomqtt.ProtocolVersion.V5,
        **mqtt_login_kwargs(settings),
    ) as device:
        await device.subscribe(device_topic, qos=1)
        producer = AIOKafkaProducer(**kafka_client(settings).aiokafka_kwargs(), acks="all")
        await producer.start()
        try:
            for value in (
                command("c-expired", now - 1000),
                b"\x00garbage",
                command("c-1", now + 60_000),
                command("c-2", None),
            ):
                await producer.send_and_wait(harness.commands, value=value, key=b"dev-9")
        finally:
            await producer.stop()
        received = []
        async with asyncio.timeout(20):
            async for message in device.messages:
                assert isinstance(message.payload, bytes)
                received.append(json.loads(message.payload))
                if len(received) == 2:
                    break
    assert [c["command_id"] for c in received] == ["c-1", "c-2"]
    assert received[0]["params"] == {"delay_s": "5"}
    samples = {
        s.labels["outcome"]: s.value
        for family in harness.gateway.metrics.registry.collect()
        for s in family.samples
        if s.name == "iot_gateway_downlink_total"
    }
    assert samples == {"delivered": 2.0, "expired": 1.0, "invalid": 1.0}
