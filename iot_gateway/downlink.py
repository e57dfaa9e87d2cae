"""Downlink: commands from Kafka ``iot.commands.v1`` to MQTT ``devices/{id}/commands``.

Bridge mode: at least once, a record's offset is committed only after the broker
acknowledged (PUBACK) the QoS 1 publish of every record before it. Direct mode
(``edge.downlink``): every gateway process reads every command and hands it to the
session of its device, if this process holds one. Not sent, in both modes:

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
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Command:
    """A command ready to send: its MQTT topic and the JSON the device receives."""

    command_id: str
    device_id: str
    topic: str
    payload: bytes
    expires_at: int | None
    """Epoch milliseconds after which it is not sent any more (None: never)."""


class CommandReader:
    """Turns command records into :class:`Command` s, or None for a record not to send
    (``invalid``, ``expired``, ``duplicate``; each counted). A registry that cannot be
    reached raises its retriable error: the record must be read again later."""

    def __init__(
        self, config: GatewayConfig, decode: DecodeCommand, metrics: GatewayMetrics
    ) -> None:
        self._config = config
        self._decode = decode
        self._metrics = metrics
        self._sent: OrderedDict[str, None] = OrderedDict()  # recent command ids, oldest first

    def _invalid(self, key: bytes | None, exc: Exception) -> None:
        self._metrics.downlink.labels("invalid").inc()
        log.warning("skipping a command record that is not a command (key %r): %s", key, exc)

    async def read(self, value: bytes | None, key: bytes | None) -> Command | None:
        try:
            command = await self._decode(value if value is not None else b"")
            payload = command_payload(command)
        except ContractsError as exc:
            if exc.retriable:
                raise  # the registry is unreachable now: the record is read again later
            self._invalid(key, exc)
            return None
        except (TypeError, ValueError, KeyError) as exc:  # not a Command (another record type)
            self._invalid(key, exc)
            return None
        device_id = str(command.get("device_id", ""))
        if device_id_problem(device_id):
            self._metrics.downlink.labels("invalid").inc()
            log.warning(
                "skipping command %s for invalid device id %r", command.get("command_id"), device_id
            )
            return None
        expires_at = command.get("expires_at")
        if expires_at is not None and expires_at < time.time() * 1000:
            self._metrics.downlink.labels("expired").inc()
            return None
        command_id = str(command["command_id"])
        if command_id in self._sent:  # the outbox relay publishes at least once
            self._metrics.downlink.labels("duplicate").inc()
            return None
        topic = self._config.downlink.mqtt_topic.format(device_id=device_id)
        return Command(command_id, device_id, topic, payload, expires_at)

    def sent(self, command: Command) -> None:
        """Remembers ``command`` as sent: the same ``command_id`` again is a duplicate."""
        self._sent[command.command_id] = None
        if len(self._sent) > RECENT_COMMANDS:
            self._sent.popitem(last=False)


def command_consumer(
    config: GatewayConfig, instance: str, group_id: str | None
) -> AIOKafkaConsumer:
    """A consumer of the commands topic: in ``group_id`` from the committed offsets (bridge
    mode), or alone from the end (direct mode: every process reads every command)."""
    settings, kafka = config.downlink, config.kafka
    return AIOKafkaConsumer(
        settings.kafka_topic,
        group_id=group_id,
        client_id=f"{kafka.client_id}-{instance}-downlink",
        enable_auto_commit=False,
        auto_offset_reset="earliest" if group_id is not None else "latest",
        isolation_level="read_committed",
        **kafka.aiokafka_kwargs(),
    )


class Downlink:
    """Forwards commands through the broker for the life of one MQTT session (bridge mode,
    see ``Gateway`` session tasks)."""

    def __init__(
        self, config: GatewayConfig, decode: DecodeCommand, metrics: GatewayMetrics
    ) -> None:
        self._config = config
        self._metrics = metrics
        self.commands = CommandReader(config, decode, metrics)
        self.retry_delay_s = 1.0

    async def __call__(self, client: aiomqtt.Client) -> None:
        """Forwards until the MQTT session ends (its ``MqttError`` ends this too). A Kafka or
        registry failure of the downlink pauses and restarts the downlink alone, from the
        last committed offset: the uplink on the same session never stops for it."""
        await retrying(lambda: self._consume(client), self._metrics, self.retry_delay_s)

    async def _consume(self, client: aiomqtt.Client) -> None:
        consumer = command_consumer(
            self._config, self._config.mqtt.client_id, self._config.downlink.group_id
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
        command = await self.commands.read(value, key)
        if command is None:
            return
        await client.publish(command.topic, command.payload, qos=1)
        self.commands.sent(command)
        self._metrics.downlink.labels("delivered").inc()


async def retrying(
    run: Callable[[], Awaitable[None]], metrics: GatewayMetrics, first_delay_s: float
) -> None:
    """Runs ``run`` again after a Kafka or registry failure (backing off, counted as
    ``retried``); any other error ends it."""
    delay = first_delay_s
    while True:
        try:
            await run()
        except (KafkaError, ContractsError) as exc:
            metrics.downlink.labels("retried").inc()
            log.warning("downlink restarts in %.1fs: %s: %s", delay, type(exc).__name__, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
