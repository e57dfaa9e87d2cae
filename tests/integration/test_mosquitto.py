"""The local Mosquitto keeps QoS 1 messages for a disconnected persistent session."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devstack import DevStackSettings
from tests.clients import mosquitto_pub, mqtt_login_kwargs


def _to_broker(settings: DevStackSettings, topic: str, payload: bytes) -> None:
    """``mosquitto_pub`` to Mosquitto itself (its port is the devices' one in bridge mode)."""
    mosquitto_pub(settings, topic, payload, port=settings.broker_port)


def _persistent(settings: DevStackSettings, client_id: str) -> aiomqtt.Client:
    """An MQTT 5 client with clean start off and a one-hour session expiry."""
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600
    return aiomqtt.Client(
        settings.host,
        settings.broker_port,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=properties,
        **mqtt_login_kwargs(settings),
    )


async def _receive(client: aiomqtt.Client, count: int) -> list[bytes]:
    payloads: list[bytes] = []
    async with asyncio.timeout(15):
        async for message in client.messages:
            assert message.qos == 1
            assert isinstance(message.payload, bytes)
            payloads.append(message.payload)
            if len(payloads) == count:
                break
    return payloads


async def test_qos1_messages_published_while_offline_reach_the_persistent_session(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("topic").replace(".", "/")
    subscriber_id = unique("sub")
    async with _persistent(settings, subscriber_id) as subscriber:
        await subscriber.subscribe(topic, qos=1)
        await subscriber.publish(topic, b"online", qos=1)
        assert await _receive(subscriber, 1) == [b"online"]

    # Published by a client nobody here wrote, while the subscriber is away.
    for i in range(20):  # exit status 0 required (mosquitto_pub runs with check=True)
        await asyncio.to_thread(_to_broker, settings, topic, f"offline-{i}".encode())

    async with _persistent(settings, subscriber_id) as subscriber:
        # No new SUBSCRIBE: the broker kept the subscription and queued the messages.
        received = await _receive(subscriber, 20)
    assert received == [f"offline-{i}".encode() for i in range(20)]


async def test_a_clean_session_gets_nothing_that_was_published_before_it_subscribed(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("topic").replace(".", "/")
    async with aiomqtt.Client(
        settings.host,
        settings.broker_port,
        identifier=unique("pub"),
        protocol=aiomqtt.ProtocolVersion.V5,
        **mqtt_login_kwargs(settings),
    ) as publisher:
        await publisher.publish(topic, b"before", qos=1)
        async with aiomqtt.Client(
            settings.host,
            settings.broker_port,
            identifier=unique("sub"),
            protocol=aiomqtt.ProtocolVersion.V5,
            **mqtt_login_kwargs(settings),
        ) as subscriber:
            await subscriber.subscribe(topic, qos=1)
            await publisher.publish(topic, b"after", qos=1)
            assert await _receive(subscriber, 1) == [b"after"]
