"""Downlink: commands from Kafka ``iot.commands.v1`` to MQTT ``devices/{id}/commands``.

At least once: a record's offset is committed only after the broker acknowledged (PUBACK)
the QoS 1 publish of every record before it. Not sent:

* a command whose ``expires_at`` has passed (``expired``);
* one whose ``command_id`` this process sent already (``duplicate``: the outbox relay
  publishes at least once);
* a record that is not a command (does not decode, an unknown schema, another record type,
  an invalid device id): ``invalid``, skipped, never retried forever.

A registry that cannot be reached is retried: the downlink restarts from the last committed
offset after a pause, and the uplink on the same session goes on. The device sees JSON with
the command's fields.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import aiomqtt
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from contracts.errors import ContractsError
from contracts.identifiers import device_id_problem
from iot_gateway.config import GatewayConfig
from iot_gateway.metrics import GatewayMetrics

log = logging.getLogger("iot_gateway.downlink")

DecodeCommand = Callable[[bytes], Awaitable[dict[str, Any]]]

RECENT_COMMANDS = 65_536
"""Command ids remembered per gateway process: a command the relay publishes again (same
``command_id``) reaches the device once, as long as it is among the most recent this many."""


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
        self.retry_delay_s = 1.0
        self._sent: OrderedDict[str, None] = OrderedDict()  # recent command ids, oldest first

    async def __call__(self, client: aiomqtt.Client) -> None:
        """Forwards until the MQTT session ends (its ``MqttError`` ends this too). A Kafka or
        registry failure of the downlink pauses and restarts the downlink alone, from the
        last committed offset: the uplink on the same session never stops for it."""
        delay = self.retry_delay_s
        while True:
            try:
                await self._consume(client)
            except (KafkaError, ContractsError) as exc:
                self._metrics.downlink.labels("retried").inc()
                log.warning("downlink restarts in %.1fs: %s: %s", delay, type(exc).__name__, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _consume(self, client: aiomqtt.Client) -> None:
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

    def _invalid(self, key: bytes | None, exc: Exception) -> None:
        self._metrics.downlink.labels("invalid").inc()
        log.warning("skipping a command record that is not a command (key %r): %s", key, exc)

    async def _forward(
        self, client: aiomqtt.Client, value: bytes | None, key: bytes | None
    ) -> None:
        try:
            command = await self._decode(value if value is not None else b"")
            payload = command_payload(command)
        except ContractsError as exc:
            if exc.retriable:
                raise  # the registry is unreachable now: the record is read again later
            self._invalid(key, exc)
            return
        except (TypeError, ValueError, KeyError) as exc:  # not a Command (another record type)
            self._invalid(key, exc)
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
        command_id = str(command["command_id"])
        if command_id in self._sent:  # the outbox relay publishes at least once
            self._metrics.downlink.labels("duplicate").inc()
            return
        topic = self._config.downlink.mqtt_topic.format(device_id=device_id)
        await client.publish(topic, payload, qos=1)
        self._sent[command_id] = None
        if len(self._sent) > RECENT_COMMANDS:
            self._sent.popitem(last=False)
        self._metrics.downlink.labels("delivered").inc()
