"""The dev stack's Kafka cluster mode (``IOT_KAFKA_BROKERS=3``) and what its guarantees cost.

One isolated stack of three KRaft nodes: topics are replicated three times, need two
replicas in sync, and never elect an unclean leader; a direct-mode gateway acknowledges a
reading (PUBACK) only once the replicas Kafka requires have it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka.admin import ConfigResource
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devstack import DevStackSettings, up
from devstack.clients import kafka_client
from devstack.kafka import Kafka
from devstack.process import running_pid, stop
from security.kafka import admin_client
from tests.disks import fill, small_disk
from tests.e2e.gateway_harness import (
    GatewayProcess,
    create_topics,
    event_ids,
    write_direct_config,
)
from tests.e2e.streams_harness import until
from tests.stacks import free_port, isolated_settings, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStackSettings]:
    settings = isolated_settings(
        tmp_path_factory.mktemp("cluster") / "stack", kafka_brokers=3, kafka_heap="384m"
    )
    with running_stack(settings):
        yield settings


def _in_sync(settings: DevStackSettings, topic: str) -> list[int]:
    """The in-sync replica count of each partition of ``topic``."""
    metadata = admin_client(kafka_client(settings)).list_topics(topic, timeout=10)
    return [len(p.isrs) for _, p in sorted(metadata.topics[topic].partitions.items())]


async def _until_in_sync(settings: DevStackSettings, topic: str, replicas: int) -> None:
    await until(
        lambda: _in_sync(settings, topic) == [replicas],
        90,
        lambda: f"{topic} never had {replicas} replicas in sync: {_in_sync(settings, topic)}",
    )


def test_platform_topics_are_replicated_three_times_and_need_two_in_sync(
    cluster: DevStackSettings,
) -> None:
    admin = admin_client(kafka_client(cluster))
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.brokers) == 3
    telemetry = metadata.topics["iot.telemetry.v1"]
    assert {len(p.replicas) for p in telemetry.partitions.values()} == {3}
    resource = ConfigResource("topic", "iot.telemetry.v1")
    config = admin.describe_configs([resource])[resource].result()
    assert config["min.insync.replicas"].value == "2"
    assert config["unclean.leader.election.enable"].value == "false"
    assert len(cluster.kafka_bootstrap.split(",")) == 3  # every client knows every node


class Device:
    """One device of paho's MQTT 5 client with a persistent session: it sends again what was
    not acknowledged whenever it reconnects; ``acked`` dates each PUBACK by message id."""

    def __init__(self, client_id: str, port: int) -> None:
        self.client_id = client_id
        self.acked: dict[int, float] = {}
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self._client.on_publish = lambda _c, _u, mid, _rc, _p: self.acked.setdefault(
            mid, time.monotonic()
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        session = Properties(PacketTypes.CONNECT)
        session.SessionExpiryInterval = 600
        self._client.connect("127.0.0.1", port, clean_start=False, properties=session)
        self._client.loop_start()

    def publish(self, seq: int) -> int:
        payload = json.dumps({"seq": seq, "metrics": {"t": 20.0 + seq % 10}})
        topic = f"devices/{self.client_id}/telemetry"
        return self._client.publish(topic, payload, qos=1).mid

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


async def _gateway(
    settings: DevStackSettings, folder: Path, topic: str, *, min_insync: int = 2
) -> tuple[GatewayProcess, int]:
    """A direct-mode gateway writing to ``topic`` (replicated 3 times, ``min_insync``), and
    the port its devices connect to."""
    kafka = kafka_client(settings)
    config = {"min.insync.replicas": str(min_insync)}
    await create_topics(kafka, topic, partitions=1, replicas=3, config=config)
    await create_topics(kafka, f"{topic}.dlq", partitions=1, replicas=3)
    port = free_port()
    gateway = GatewayProcess(
        write_direct_config(
            folder / "gateway.yaml",
            port=port,
            topic=topic,
            dlq=f"{topic}.dlq",
            kafka={"request_timeout_ms": 5_000},
        ),
        f"{topic}-gw",
        folder / "gateway.log",
        settings,
    )
    gateway.start()
    await gateway.wait_ready(60)
    return gateway, port


async def test_below_min_insync_replicas_the_device_gets_no_puback_until_they_return(
    cluster: DevStackSettings, tmp_path: Path
) -> None:
    """With three nodes in one KRaft quorum, losing two also loses the quorum; so this topic
    asks for all three replicas in sync, and one node is stopped to go below that."""
    topic, kafka = "isr.telemetry", kafka_client(cluster)
    gateway, port = await _gateway(cluster, tmp_path, topic, min_insync=3)
    device = Device("isr-dev", port)
    acked = device.acked
    third = Kafka(cluster, 3)
    try:
        before = device.publish(1)
        await until(lambda: before in acked, 30, lambda: "no PUBACK with every node up")
        assert await asyncio.to_thread(stop, third.handle)
        await _until_in_sync(cluster, topic, 2)
        during = device.publish(2)
        await asyncio.sleep(15)  # produce requests refused (NOT_ENOUGH_REPLICAS), retried
        assert during not in acked
        assert "isr-dev:2" not in await event_ids(kafka, topic, {"isr-dev:2"}, timeout_s=3)
        restarted = time.monotonic()
        await asyncio.to_thread(up, cluster, lambda _: None)  # starts the stopped node again
        await _until_in_sync(cluster, topic, 3)
        # the device sends it again; now it is acknowledged
        await until(lambda: during in acked, 60, lambda: "no PUBACK once in sync again")
        assert acked[during] > restarted
        assert "isr-dev:2" in await event_ids(kafka, topic, {"isr-dev:2"}, timeout_s=30)
    finally:
        device.close()
        assert gateway.terminate() == 0


async def test_a_node_whose_disk_fills_leaves_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    """One node's log dir on a small disk: filled, the node can no longer write its logs
    (its metadata log among them) and stops; the other two, still the quorum and min ISR,
    carry on, and every reading the device got a PUBACK for is in the topic. With room
    again the node comes back and catches up."""
    settings = isolated_settings(tmp_path / "stack", kafka_brokers=3, kafka_heap="384m")
    third = Kafka(settings, 3)
    topic, readings = "full.telemetry", 300
    with small_disk(third.data_dir, "512m") as disk, running_stack(settings):
        gateway, port = await _gateway(settings, tmp_path, topic)
        device = Device("full-dev", port)
        try:
            first = device.publish(0)
            await until(lambda: first in device.acked, 30, lambda: "no PUBACK with every node up")
            filler = fill(disk)
            sent = []
            for seq in range(1, readings + 1):
                # at most 50 unacknowledged: paho sends every queued message again at once
                # when it reconnects, past the gateway's Receive Maximum (100)
                while sum(mid not in device.acked for mid in sent) >= 50:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                sent.append(device.publish(seq))
                await asyncio.sleep(0.02)
            await until(
                lambda: running_pid(third.handle) is None,
                60,
                lambda: "the node with a full disk still runs",
            )
            await until(
                lambda: all(mid in device.acked for mid in sent),
                90,
                lambda: f"{sum(mid not in device.acked for mid in sent)} readings unacknowledged",
            )
            wanted = {f"full-dev:{seq}" for seq in range(readings + 1)}
            logged = await event_ids(kafka_client(settings), topic, wanted, timeout_s=60)
            assert wanted <= set(logged)  # nothing acknowledged is lost
            filler.unlink()
            await asyncio.to_thread(up, settings, lambda _: None)
            await _until_in_sync(settings, topic, 3)
        finally:
            device.close()
            assert gateway.terminate() == 0
