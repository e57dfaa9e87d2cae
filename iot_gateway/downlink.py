"""Downlink: commands from Kafka ``iot.commands.v1`` to MQTT ``devices/{id}/commands``.

At least once: a record's offset is committed only after the broker acknowledged (PUBACK)
the QoS 1 publish of every record before it. A command whose ``expires_at`` has passed is
not sent (counted as ``expired``); a record that does not decode is counted as ``invalid``
and skipped, never retried forever. The device sees JSON with the command's fields.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
from aiokafka import AIOKafkaConsumer

from contracts.avro import AvroError
from contracts.identifiers import device_id_problem
from iot_gateway.config import GatewayConfig
from iot_gateway.metrics import GatewayMetrics

log = logging.getLogger("iot_gateway.downlink")

DecodeCommand = Callable[[bytes], Awaitable[dict[str, Any]]]


def command_payload(command: dict[str, Any]) -> bytes:
    """The JSON a device receives for one command."""
    return json.dumps(
        {
            "command_id": command["command_id"],
            "name": command["name"],
            "params": command.get("params") or {},
            "issued_at": command["issued_at"],
            "expires_at": command.get("expires_at"),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


class Downlink:
    """Forwards commands for the life of one MQTT session (see ``Gateway`` session tasks)."""

    def __init__(
        self, config: GatewayConfig, decode: DecodeCommand, metrics: GatewayMetrics
    ) -> None:
        self._config = config
        self._decode = decode
        self._metrics = metrics

    async def __call__(self, client: aiomqtt.Client) -> None:
        settings, kafka = self._config.downlink, self._config.kafka
        consumer = AIOKafkaConsumer(
            settings.kafka_topic,
            group_id=settings.group_id,
            client_id=f"{kafka.client_id}-{self._config.mqtt.client_id}-downlink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            **kafka.aiokafka_kwargs(),
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=200)
                for partition, records in batches.items():
                    for record in records:
                        await self._forward(client, record.value, record.key)
                    await consumer.commit({partition: records[-1].offset + 1})
        finally:
            await consumer.stop()

    async def _forward(
        self, client: aiomqtt.Client, value: bytes | None, key: bytes | None
    ) -> None:
        try:
            command = await self._decode(value if value is not None else b"")
        except (AvroError, TypeError, ValueError, KeyError) as exc:
            self._metrics.downlink.labels("invalid").inc()
            log.warning("skipping undecodable command (key %r): %s", key, exc)
            return
        device_id = str(command.get("device_id", ""))
        if device_id_problem(device_id):
            self._metrics.downlink.labels("invalid").inc()
            log.warning(
                "skipping command %s for invalid device id %r", command.get("command_id"), device_id
            )
            return
        expires_at = command.get("expires_at")
        if expires_at is not None and expires_at < time.time() * 1000:
            self._metrics.downlink.labels("expired").inc()
            return
        topic = self._config.downlink.mqtt_topic.format(device_id=device_id)
        await client.publish(topic, command_payload(command), qos=1)
        self._metrics.downlink.labels("delivered").inc()
