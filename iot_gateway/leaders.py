"""Finding a partition's new leader when its old one holds the gateway's records.

aiokafka learns leaders from the metadata answer of a random node, and asks again only on an
error that says its metadata is stale. A leader cut off from the other Kafka nodes (the
gateway still reaches it) gives no such error: it holds acks=all produce requests until
their timeout, as its replicas never fetch, and asked for metadata it still names itself.
The controller fences it and elects another leader within seconds, yet the gateway would
keep writing to it for as long as the cut lasts.

So a batch unacknowledged after ``stall_s`` has the gateway ask the *other* nodes for
metadata, one after another, and take the first answer that names another leader for that
partition. The producer's connections to the replaced leader are then closed, so that the
requests it holds fail at once and aiokafka retries them at the new leader (rather than
after ``kafka.request_timeout_ms``). Idempotence keeps a retry from writing anything twice.

A closed connection has aiokafka ask a random node for metadata, the cut-off one among
them. For ``PIN_S`` after the other nodes named a new leader, an answer that names the old
one again is overruled by theirs (as Kafka's own clients refuse metadata with an older
leader epoch, which aiokafka does not read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.cluster import ClusterMetadata
from aiokafka.conn import CloseReason
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import TopicPartition
from prometheus_client import Counter

log = logging.getLogger(__name__)
ASK_TIMEOUT_S = 2.0
PIN_S = 15.0
"""How long the other nodes' answer overrules one naming the leader they replaced."""


@dataclass(slots=True)
class _Replaced:
    """A partition's leader the other nodes no longer name, and their answer."""

    stale: int
    answer: object
    at: float


class LeaderWatch:
    """Watches batches in flight; a stalled one has its partition's leader looked for anew."""

    def __init__(self, producer: AIOKafkaProducer, rediscovered: Counter, stall_s: float) -> None:
        self._producer = producer
        self._rediscovered = rediscovered
        self.stall_s = stall_s
        self._asking: dict[TopicPartition, asyncio.Task[bool]] = {}
        self._replaced: dict[TopicPartition, _Replaced] = {}
        self._overruling = False
        producer.client.cluster.add_listener(self._updated)

    def watch(self, topic: str, partition: int, acked: asyncio.Future[object]) -> None:
        """Looks at ``acked`` after ``stall_s`` and every ``stall_s`` after, until it is done."""
        asyncio.get_running_loop().call_later(
            self.stall_s, self._check, TopicPartition(topic, partition), acked
        )

    def _check(self, tp: TopicPartition, acked: asyncio.Future[object]) -> None:
        if acked.done():
            return
        if tp not in self._asking:
            leader = self._producer.client.cluster.leader_for_partition(tp)
            log.debug("%s: a batch waits on node %s; asking the other nodes", tp, leader)
            task = asyncio.get_running_loop().create_task(self.rediscover(tp))
            self._asking[tp] = task
            task.add_done_callback(lambda _: self._asking.pop(tp, None))
        asyncio.get_running_loop().call_later(self.stall_s, self._check, tp, acked)

    async def rediscover(self, tp: TopicPartition) -> bool:
        """Asks every node but ``tp``'s current leader for metadata, in random order; the
        first answer naming another leader becomes the producer's metadata. True if one did."""
        client = self._producer.client
        cluster = client.cluster
        stale = cluster.leader_for_partition(tp)
        others = [broker.nodeId for broker in cluster.brokers() if broker.nodeId != stale]
        random.shuffle(others)
        request = MetadataRequest(sorted(cluster.topics()) or [tp.topic])
        for node in others:
            with contextlib.suppress(KafkaError, TimeoutError, OSError):
                async with asyncio.timeout(ASK_TIMEOUT_S):
                    answer = await client.send(node, request)
                leader = _leader_in(answer, tp)
                if leader not in (None, -1, stale):
                    log.info(
                        "%s: node %s leads it now, not %s (said node %s)", tp, leader, stale, node
                    )
                    self._replaced[tp] = _Replaced(stale, answer, time.monotonic())
                    cluster.update_metadata(answer)
                    self._rediscovered.inc()
                    if stale is not None:
                        self._hang_up(stale)
                    return True
        return False

    def _hang_up(self, node: int) -> None:
        """Closes the producer's connections to ``node``: what it holds fails now and is
        retried. (aiokafka's client has no public call for this; its connections are kept
        by (node, group).)"""
        connections = getattr(self._producer.client, "_conns", {})
        for (node_id, _), connection in list(connections.items()):
            if node_id == node:
                connection.close(reason=CloseReason.CONNECTION_BROKEN)

    def _updated(self, cluster: ClusterMetadata) -> None:
        """aiokafka took a metadata answer: one that names a replaced leader again within
        ``PIN_S`` is overruled by the answer that replaced it."""
        if self._overruling:
            return
        now = time.monotonic()
        for tp, replaced in list(self._replaced.items()):
            if now - replaced.at > PIN_S:
                del self._replaced[tp]
            elif cluster.leader_for_partition(tp) == replaced.stale:
                log.info("%s: an answer naming node %s again is overruled", tp, replaced.stale)
                self._overruling = True
                try:
                    cluster.update_metadata(replaced.answer)
                finally:
                    self._overruling = False
                return

    def close(self) -> None:
        self._producer.client.cluster.remove_listener(self._updated)
        for task in list(self._asking.values()):
            task.cancel()


def _leader_in(answer: object, tp: TopicPartition) -> int | None:
    """The leader ``answer`` (a metadata response) names for ``tp``, None if it has none."""
    view = ClusterMetadata()
    view.update_metadata(answer)
    leader: int | None = view.leader_for_partition(tp)
    return leader
