"""The gateway against the real Mosquitto and Kafka, with a client nobody here wrote."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from iot_gateway.avro import InMemorySchemas, SchemaCatalog, decode
from iot_gateway.devstack import DevStackSettings
from iot_gateway.gateway.bridge import Gateway
from iot_gateway.gateway.codecs import SubjectCodec
from iot_gateway.gateway.config import GatewayConfig

SUBJECT = "iot.telemetry.v1-value"


async def _topics(bootstrap: str, *names: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 3, 1) for name in names])
    finally:
        await admin.close()


async def _consume(bootstrap: str, topic: str, count: int) -> list[object]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
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


class Harness:
    def __init__(
        self, gateway: Gateway, schemas: InMemorySchemas, prefix: str, topic: str, dlq: str
    ) -> None:
        self.gateway, self.schemas, self.prefix, self.topic, self.dlq = (
            gateway,
            schemas,
            prefix,
            topic,
            dlq,
        )


@pytest.fixture
async def harness(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> AsyncIterator[Harness]:
    prefix = unique("mqtt").replace(".", "-")
    topic, dlq = unique("telemetry"), unique("dlq")
    await _topics(settings.kafka_bootstrap, topic, dlq)
    config = GatewayConfig(
        mqtt={
            "host": settings.host,
            "port": settings.mqtt_port,
            "client_id": unique("gw"),
            "share_group": prefix,
            "filters": [f"{prefix}/devices/+/telemetry/#"],
            "session_expiry_s": 60,
        },
        kafka={"bootstrap": settings.kafka_bootstrap, "dlq_topic": dlq},
        routes=[
            {
                "name": "telemetry",
                "filter": f"{prefix}/devices/+/telemetry",
                "kafka_topic": topic,
                "subject": SUBJECT,
            }
        ],
        limits={"max_payload_bytes": 1024},
        downlink={"enabled": False},
    )
    schemas = InMemorySchemas()
    codec = SubjectCodec(schemas.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT)))
    gateway = Gateway(config, {SUBJECT: codec})
    task = asyncio.create_task(gateway.run())
    async with asyncio.timeout(20):
        while not gateway.ready:  # noqa: ASYNC110 - readiness is a flag, polled like /readyz
            await asyncio.sleep(0.05)
    try:
        yield Harness(gateway, schemas, prefix, topic, dlq)
    finally:
        gateway.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


def _mosquitto_pub(settings: DevStackSettings, topic: str, payload: bytes) -> None:
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            settings.host,
            "-p",
            str(settings.mqtt_port),
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            topic,
            "-s",
        ],
        input=payload,
        check=True,
        timeout=10,
    )


async def test_a_reading_from_mosquitto_pub_arrives_as_keyed_avro_with_headers(
    settings: DevStackSettings, harness: Harness
) -> None:
    payload = b'{"seq": 41, "ts": 1767225600000, "metrics": {"temp_c": 21.5}}'
    await asyncio.to_thread(
        _mosquitto_pub, settings, f"{harness.prefix}/devices/dev-7/telemetry", payload
    )
    [record] = await _consume(settings.kafka_bootstrap, harness.topic, 1)
    assert record.key == b"dev-7"  # type: ignore[attr-defined]
    headers = dict(record.headers)  # type: ignore[attr-defined]
    assert headers["event_id"] == b"dev-7:41"
    assert headers["device_id"] == b"dev-7"
    assert headers["content_type"] == b"application/vnd.confluent.avro"
    value = decode(record.value, harness.schemas)  # type: ignore[attr-defined]
    assert value["metrics"] == {"temp_c": 21.5}
    assert value["ts"] == 1767225600000
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
        await asyncio.to_thread(_mosquitto_pub, settings, topic, payload)
    await asyncio.to_thread(
        _mosquitto_pub, settings, f"{base}/dev-1/telemetry", b'{"seq": 1, "metrics": {"t": 1}}'
    )
    dlq = await _consume(settings.kafka_bootstrap, harness.dlq, len(cases))
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dlq)  # type: ignore[attr-defined]
    assert reasons == sorted(reason for _, _, reason in cases)
    raw = {dict(r.headers)["reason"]: r.value for r in dlq}  # type: ignore[attr-defined]
    assert raw[b"invalid_utf8"] == cases[1][1]  # the raw bytes, untouched
    good = await _consume(settings.kafka_bootstrap, harness.topic, 1)
    assert dict(good[0].headers)["event_id"] == b"dev-1:1"  # type: ignore[attr-defined]
