"""A connection flood on one direct-mode gateway process: 10,000 devices connect and stay idle.

The process stays up and ready, answers every CONNECT, and a device connecting after the
flood still gets its reading into Kafka. The memory each idle connection costs is printed
(``-s`` shows it) as the gateway's resident set growth divided by the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import mqtt5
import pytest

from devstack import DevStackSettings
from devstack.clients import kafka_client
from tests.e2e.gateway_harness import (
    GatewayProcess,
    create_topics,
    event_ids,
    write_direct_config,
)
from tests.stacks import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DEVICES = 10_000
AT_ONCE = 200
"""Connections being set up at the same time."""


async def _connect(port: int, client_id: str) -> tuple[asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(mqtt5.ConnectPacket(client_id, keep_alive=600, clean_start=True).write())
    await writer.drain()
    return writer, await reader.readexactly(4)  # a CONNACK without properties would be 4


async def test_ten_thousand_idle_devices_on_one_process(
    settings: DevStackSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    topic, dlq = unique("telemetry"), unique("dlq")
    await create_topics(kafka_client(settings), topic, dlq)
    port = free_port()
    gateway = GatewayProcess(
        write_direct_config(
            tmp_path / "gateway.yaml", port=port, topic=topic, dlq=dlq, max_keepalive_s=600
        ),
        unique("flood"),
        tmp_path / "gateway.log",
        settings,
    )
    gateway.start()
    await gateway.wait_ready()
    before_kib = gateway.rss_kib()
    slots = asyncio.Semaphore(AT_ONCE)
    writers: list[asyncio.StreamWriter] = []
    first_bytes: list[bytes] = []

    async def one(n: int) -> None:
        async with slots:
            writer, head = await _connect(port, f"flood-{n:05d}")
            writers.append(writer)
            first_bytes.append(head[:1])

    try:
        async with asyncio.timeout(180):
            await asyncio.gather(*(one(n) for n in range(DEVICES)))
        await asyncio.sleep(1.0)
        after_kib = gateway.rss_kib()
        stats = await asyncio.to_thread(gateway.stats)
        assert stats["ready"]
        assert stats["metrics"]["iot_gateway_edge_connections"] >= DEVICES
        assert first_bytes.count(b"\x20") == DEVICES  # a CONNACK to every one
        assert stats["metrics"]["iot_gateway_edge_connects_total{code=0x00}"] == DEVICES
        # One more device, after the flood, still gets its reading into Kafka.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(mqtt5.ConnectPacket("after-the-flood").write())
        payload = json.dumps({"seq": 1, "metrics": {"t": 1.0}}).encode()
        writer.write(
            mqtt5.PublishPacket(
                "devices/after-the-flood/telemetry",
                payload,
                qos=mqtt5.QoS.AT_LEAST_ONCE,
                packet_id=1,
            ).write()
        )
        await writer.drain()
        answer = b""
        async with asyncio.timeout(30):
            while b"\x40\x02\x00\x01" not in answer:  # CONNACK, then the PUBACK of id 1
                chunk = await reader.read(256)
                assert chunk, f"connection closed after {answer!r}"
                answer += chunk
        writer.close()
        seen = await event_ids(kafka_client(settings), topic, {"after-the-flood:1"}, 30)
        assert seen == ["after-the-flood:1"]
        per_connection = (after_kib - before_kib) * 1024 / DEVICES
        print(
            f"\n{DEVICES:,} idle connections: gateway RSS {before_kib / 1024:.0f} MiB -> "
            f"{after_kib / 1024:.0f} MiB, {per_connection:,.0f} bytes per connection"
        )
    finally:
        for writer in writers:
            writer.close()
        assert gateway.terminate() == 0
        with contextlib.suppress(Exception):
            await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
