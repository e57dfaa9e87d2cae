"""The downlink forwards each command record in isolation: a record it cannot use is
counted and passed over; it never ends the MQTT session that carries the uplink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiokafka.errors import KafkaConnectionError

from contracts.avro import UnknownSchemaIdError
from contracts.registry.errors import RegistryUnavailableError, SchemaNotFoundError
from iot_gateway.config import load_config
from iot_gateway.downlink import Downlink
from iot_gateway.metrics import GatewayMetrics

CONFIG = load_config(Path(__file__).resolve().parents[2] / "config" / "gateway.yaml")
COMMAND = {
    "command_id": "c1",
    "device_id": "dev-1",
    "name": "cool_down",
    "params": {},
    "issued_at": 1,
    "expires_at": None,
}


class _Client:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        self.published.append((topic, payload))


def _downlink(answer: Any) -> tuple[Downlink, GatewayMetrics]:
    async def decode(_: bytes) -> dict[str, Any]:
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    metrics = GatewayMetrics()
    return Downlink(CONFIG, decode, metrics), metrics


def _count(metrics: GatewayMetrics, outcome: str) -> float:
    return metrics.downlink.labels(outcome)._value.get()


@pytest.mark.parametrize(
    "answer",
    [
        UnknownSchemaIdError("schema id 99 is not known", schema_id=99),
        SchemaNotFoundError("no schema 99"),
        {"event_id": "dev-1:1", "device_id": "dev-1", "metrics": {}},  # a Telemetry record
        {**COMMAND, "device_id": "dev 1"},
    ],
    ids=["unknown-schema-id", "registry-not-found", "telemetry", "bad-device"],
)
async def test_a_poison_command_record_is_counted_and_passed_over(answer: Any) -> None:
    downlink, metrics = _downlink(answer)
    client = _Client()
    await downlink._forward(client, b"\x00\x00\x00\x00\x63", b"dev-1")  # type: ignore[arg-type]
    assert client.published == []
    assert _count(metrics, "invalid") == 1


async def test_a_command_reaches_its_device_topic() -> None:
    downlink, metrics = _downlink(COMMAND)
    client = _Client()
    await downlink._forward(client, b"frame", b"dev-1")  # type: ignore[arg-type]
    assert [topic for topic, _ in client.published] == ["devices/dev-1/commands"]
    assert _count(metrics, "delivered") == 1


async def test_a_registry_outage_is_retried_not_skipped() -> None:
    downlink, metrics = _downlink(RegistryUnavailableError("registry down"))
    with pytest.raises(RegistryUnavailableError):
        await downlink._forward(_Client(), b"frame", b"dev-1")  # type: ignore[arg-type]
    assert _count(metrics, "invalid") == 0


async def test_a_downlink_failure_restarts_the_downlink_not_the_session() -> None:
    downlink, metrics = _downlink(COMMAND)
    downlink.retry_delay_s = 0.001
    failures: list[Exception] = [
        RegistryUnavailableError("registry down"),
        KafkaConnectionError("broker gone"),
        aiomqtt.MqttError("session lost"),
    ]

    async def consume(_: object) -> None:
        raise failures.pop(0)

    downlink._consume = consume  # type: ignore[method-assign]
    with pytest.raises(aiomqtt.MqttError):  # only the session's own end ends the downlink
        await downlink(_Client())  # type: ignore[arg-type]
    assert _count(metrics, "retried") == 2


async def test_a_command_published_twice_reaches_the_device_once() -> None:
    downlink, metrics = _downlink(COMMAND)
    client = _Client()
    for _ in range(3):  # the relay published it again (at least once)
        await downlink._forward(client, b"frame", b"dev-1")  # type: ignore[arg-type]
    assert len(client.published) == 1
    assert _count(metrics, "duplicate") == 2
