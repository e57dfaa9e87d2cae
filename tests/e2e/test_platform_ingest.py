"""The running platform (`make up`): a reading from mosquitto_pub, decoded with the registry.

On the secured stack (the default) the device is registered first and publishes as itself,
and the platform's gateway checks every message against the policy.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer

from contracts.registry.factory import open_registry
from contracts.topics import TELEMETRY, TELEMETRY_DLQ
from devstack import DevStackSettings, SecuredStack
from devstack.clients import MqttLogin, kafka_client
from tests.clients import mosquitto_pub

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


@pytest.fixture
def device(settings: DevStackSettings) -> Iterator[tuple[str, MqttLogin | None]]:
    """A device of the test's own: registered (and revoked after) on the secured stack."""
    device_id = f"e2e-{uuid.uuid4().hex[:12]}"
    if not settings.secure:
        yield device_id, None
        return
    stack = SecuredStack(settings)
    issued, _ = stack.add_device(device_id)
    try:
        yield device_id, MqttLogin(device_id, issued.password)
    finally:
        stack.revoke_device(device_id)


async def _find(settings: DevStackSettings, topic: str, device_id: str) -> list[object]:
    """Records keyed by ``device_id`` in ``topic`` (its partition only), from the start."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_client(settings).aiokafka_kwargs(),
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: list[object] = []
    try:
        async with asyncio.timeout(30):
            while not found:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                found.extend(r for rs in batch.values() for r in rs if r.key == device_id.encode())
    finally:
        await consumer.stop()
    return found


async def test_mosquitto_pub_reading_reaches_kafka_and_decodes_with_the_registry(
    settings: DevStackSettings, device: tuple[str, MqttLogin | None]
) -> None:
    device_id, login = device
    reading = {
        "seq": 5,
        "ts": int(time.time() * 1000) - 5000,
        "metrics": {"temp_c": 19.25, "rpm": 900},
    }
    await asyncio.to_thread(
        mosquitto_pub,
        settings,
        f"devices/{device_id}/telemetry",
        json.dumps(reading).encode(),
        login,
    )
    [record] = await _find(settings, TELEMETRY.name, device_id)
    headers = dict(record.headers)  # type: ignore[attr-defined]
    assert headers["event_id"] == f"{device_id}:5".encode()
    assert headers["mqtt_topic"] == f"devices/{device_id}/telemetry".encode()
    async with open_registry("embedded", kafka_client(settings)) as registry:
        value = await registry.decode(record.value)  # type: ignore[attr-defined]
    assert value["device_id"] == device_id
    assert value["metrics"] == {"temp_c": 19.25, "rpm": 900.0}
    assert value["ts"] == reading["ts"]
    assert value["seq"] == 5


async def test_a_bad_reading_lands_in_the_dlq_with_its_reason(
    settings: DevStackSettings, device: tuple[str, MqttLogin | None]
) -> None:
    device_id, login = device
    payload = b'{"metrics": {"temp_c": "warm"}}'
    topic = f"devices/{device_id}/telemetry"
    await asyncio.to_thread(mosquitto_pub, settings, topic, payload, login)
    [record] = await _find(settings, TELEMETRY_DLQ.name, device_id)
    headers = dict(record.headers)  # type: ignore[attr-defined]
    assert headers["reason"] == b"schema_mismatch"
    assert b"temp_c" in headers["detail"]
    assert record.value == payload  # type: ignore[attr-defined]


async def test_a_reading_for_an_unregistered_device_is_refused_by_the_gateways_policy(
    settings: DevStackSettings,
) -> None:
    """Published by a principal that may write any topic (the admin): the gateway still
    refuses to feed the key of a device the policy does not know."""
    if not settings.secure:
        pytest.fail("the dev stack runs unsecured (IOT_SECURE=false): nothing to refuse")
    device_id = f"e2e-unknown-{uuid.uuid4().hex[:12]}"
    payload = b'{"seq": 1, "metrics": {"temp_c": 20.5}}'
    await asyncio.to_thread(mosquitto_pub, settings, f"devices/{device_id}/telemetry", payload)
    [record] = await _find(settings, TELEMETRY_DLQ.name, device_id)
    headers = dict(record.headers)  # type: ignore[attr-defined]
    assert headers["reason"] == b"unauthorized"
    assert device_id.encode() in headers["detail"]
