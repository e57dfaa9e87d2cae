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
from devstack.process import stop
from security.kafka import admin_client
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


async def test_below_min_insync_replicas_the_device_gets_no_puback_until_they_return(
    cluster: DevStackSettings, tmp_path: Path
) -> None:
    """With three nodes in one KRaft quorum, losing two also loses the quorum; so this topic
    asks for all three replicas in sync, and one node is stopped to go below that."""
    topic, dlq = "isr.telemetry", "isr.dlq"
    kafka = kafka_client(cluster)
    await create_topics(kafka, topic, partitions=1, replicas=3, config={"min.insync.replicas": "3"})
    await create_topics(kafka, dlq, partitions=1, replicas=3)
    port = free_port()
    gateway = GatewayProcess(
        write_direct_config(
            tmp_path / "gateway.yaml",
            port=port,
            topic=topic,
            dlq=dlq,
            kafka={"request_timeout_ms": 5_000},
        ),
        "isr-gw",
        tmp_path / "gateway.log",
        cluster,
    )
    gateway.start()
    await gateway.wait_ready(60)
    acked: dict[int, float] = {}
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="isr-dev", protocol=mqtt.MQTTv5)
    device.on_publish = lambda _c, _u, mid, _rc, _p: acked.setdefault(mid, time.monotonic())
    device.reconnect_delay_set(min_delay=1, max_delay=2)
    session = Properties(PacketTypes.CONNECT)
    session.SessionExpiryInterval = 600
    device.connect("127.0.0.1", port, clean_start=False, properties=session)
    device.loop_start()

    def publish(seq: int) -> int:
        payload = json.dumps({"seq": seq, "metrics": {"t": 20.0 + seq}})
        return device.publish("devices/isr-dev/telemetry", payload, qos=1).mid

    third = Kafka(cluster, 3)
    try:
        before = publish(1)
        await until(lambda: before in acked, 30, lambda: "no PUBACK with every node up")
        assert await asyncio.to_thread(stop, third.handle)
        await _until_in_sync(cluster, topic, 2)
        during = publish(2)
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
        device.loop_stop()
        device.disconnect()
        assert gateway.terminate() == 0
