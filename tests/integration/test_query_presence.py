"""The query API's presence fold against the real Kafka: connects and disconnects the
gateway wrote, read back from the topic by a worker's fold."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.query.presence import Presence


async def test_presence_follows_the_latest_event_of_each_device(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    kafka, topic = kafka_client(settings), unique("device-events")
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(**kafka.aiokafka_kwargs(), acks="all")
    await producer.start()
    try:
        for device, kind, ts, reason in (
            ("d1", "CONNECTED", 1_000, None),
            ("d2", "CONNECTED", 1_100, None),
            ("d1", "DISCONNECTED", 2_000, "keep-alive timeout"),
        ):
            headers = [("kind", kind.encode()), ("ts", str(ts).encode())]
            if reason:
                headers.append(("reason", reason.encode()))
            await producer.send_and_wait(topic, b"", key=device.encode(), headers=headers)
    finally:
        await producer.stop()
    presence = Presence(kafka, topic, 3)
    presence.start()
    try:
        async with asyncio.timeout(20):
            while not presence.caught_up:  # noqa: ASYNC110 - the fold's own flag
                await asyncio.sleep(0.05)
    finally:
        await presence.stop()
    assert presence.of("d1") == {
        "online": False,
        "since": "1970-01-01T00:00:02.000Z",
        "since_ms": 2_000,
        "reason": "keep-alive timeout",
        "caught_up": True,
    }
    assert presence.of("d2")["online"] is True
    assert presence.of("d3")["online"] is None
