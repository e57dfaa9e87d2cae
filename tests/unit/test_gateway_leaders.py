"""A partition's new leader is looked for on the other nodes when its old one holds records."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.metadata import MetadataResponse_v0
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry, Counter

from iot_gateway import leaders
from iot_gateway.leaders import LeaderWatch

TOPIC = "iot.telemetry.v1"
BROKERS = [(1, "10.77.0.11", 9092), (2, "10.77.0.12", 9092), (3, "10.77.0.13", 9092)]


def answer(leader: int) -> MetadataResponse_v0:
    """A metadata answer naming ``leader`` for partition 0 (partition 1 always led by 3)."""
    return MetadataResponse_v0(
        BROKERS,
        [(0, TOPIC, [(0, 0, leader, [1, 2, 3], [1, 2, 3]), (0, 1, 3, [1, 2, 3], [1, 2, 3])])],
    )


@dataclass
class Connection:
    closed: bool = False

    def close(self, reason: object = None) -> None:
        self.closed = True


@dataclass
class Client:
    """aiokafka's client as the watch uses it: its cluster view and ``send`` to one node."""

    answers: dict[int, MetadataResponse_v0 | Exception]
    cluster: ClusterMetadata = field(default_factory=ClusterMetadata)
    asked: list[int] = field(default_factory=list)
    _conns: dict[tuple[int, int], Connection] = field(
        default_factory=lambda: {(node, 0): Connection() for node in (1, 2, 3)}
    )

    async def send(self, node: int, request: object) -> MetadataResponse_v0:
        self.asked.append(node)
        reply = self.answers[node]
        if isinstance(reply, Exception):
            raise reply
        return reply


@dataclass
class Producer:
    client: Client


def watch_over(answers: dict[int, MetadataResponse_v0 | Exception]) -> tuple[LeaderWatch, Client]:
    client = Client(answers)
    client.cluster.update_metadata(answer(1))  # node 1 leads partition 0
    counter = Counter("rediscovered", "", registry=CollectorRegistry())
    return LeaderWatch(Producer(client), counter, stall_s=0.05), client  # type: ignore[arg-type]


async def test_the_cut_leaders_own_stale_answer_is_never_asked_for_and_never_taken() -> None:
    watch, client = watch_over({1: answer(1), 2: KafkaConnectionError(), 3: answer(2)})
    assert await watch.rediscover(TopicPartition(TOPIC, 0))
    assert 1 not in client.asked  # it would name itself
    assert client.cluster.leader_for_partition(TopicPartition(TOPIC, 0)) == 2
    assert client.cluster.leader_for_partition(TopicPartition(TOPIC, 1)) == 3
    # what the replaced leader holds fails now, to be retried at the new one
    assert {node: c.closed for (node, _), c in client._conns.items()} == {
        1: True,
        2: False,
        3: False,
    }


async def test_nothing_changes_while_no_other_node_knows_a_new_leader() -> None:
    watch, client = watch_over({2: answer(1), 3: answer(1)})
    assert not await watch.rediscover(TopicPartition(TOPIC, 0))
    assert sorted(client.asked) == [2, 3]
    assert client.cluster.leader_for_partition(TopicPartition(TOPIC, 0)) == 1
    assert not any(c.closed for c in client._conns.values())
    watch, client = watch_over({2: answer(-1), 3: KafkaConnectionError()})  # mid-election
    assert not await watch.rediscover(TopicPartition(TOPIC, 0))
    assert client.cluster.leader_for_partition(TopicPartition(TOPIC, 0)) == 1


async def test_only_a_batch_still_unacknowledged_after_the_stall_time_asks() -> None:
    watch, client = watch_over({2: answer(3), 3: answer(3)})
    loop = asyncio.get_running_loop()
    acked, held = loop.create_future(), loop.create_future()
    watch.watch(TOPIC, 0, acked)
    acked.set_result(None)
    await asyncio.sleep(0.15)
    assert client.asked == []
    watch.watch(TOPIC, 0, held)
    await asyncio.sleep(0.15)
    assert client.asked  # asked, and again every stall time until it is acknowledged
    assert client.cluster.leader_for_partition(TopicPartition(TOPIC, 0)) == 3
    held.set_result(None)
    await asyncio.sleep(0.1)
    asked = len(client.asked)
    await asyncio.sleep(0.15)
    assert len(client.asked) == asked
    watch.close()


async def test_the_old_leaders_own_answer_is_overruled_for_a_while_after_it_was_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watch, client = watch_over({2: answer(2), 3: answer(2)})
    p0 = TopicPartition(TOPIC, 0)
    assert await watch.rediscover(p0)
    client.cluster.update_metadata(answer(1))  # aiokafka asked the cut-off node itself
    assert client.cluster.leader_for_partition(p0) == 2
    client.cluster.update_metadata(answer(3))  # another leader again: taken
    assert client.cluster.leader_for_partition(p0) == 3
    monkeypatch.setattr(leaders, "PIN_S", 0.0)  # past the pin: node 1 is believed again
    client.cluster.update_metadata(answer(1))
    assert client.cluster.leader_for_partition(p0) == 1
    watch.close()
    client.cluster.update_metadata(answer(2))
    client.cluster.update_metadata(answer(1))
    assert client.cluster.leader_for_partition(p0) == 1
