"""Where the log ends and how far the store has applied it: positions, lag, strong reads.

A position is (partition, offset) in the telemetry topic. The store records the last applied
offset of every partition (the inbox); the log's end offset is the offset the next record will
get. ``lag = end - (applied + 1)``, summed over the partitions a read covers.

* Eventual reads report the applied and end offsets cached in the background every
  ``refresh_s`` (so a point query costs one store read and no Kafka round trip); applied
  offsets only grow, so the data read afterwards reflects at least the cached ones, and the
  answer says how old the cache is (``end_age_ms``).
* Strong reads fetch the end offsets of their partitions when the request arrives, then poll
  the store until it applied them; the data read afterwards reflects at least that position
  (positions are read *before* the data, and applied offsets only grow).

A device's partition is :func:`contracts.partitioning.partition_for` of its id, as the
gateway's producer places it, under the topic's partition count, learnt again every
``PARTITIONS_REFRESH_S`` (partitions added by ``iotctl replay repartition`` move devices).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.kafka import KafkaClientSettings
from contracts.partitioning import partition_for
from streams.query.errors import NotCaughtUpError
from streams.store.port import Store

__all__ = ["PARTITIONS_REFRESH_S", "LogPositions", "Reflects"]

PARTITIONS_REFRESH_S = 5.0


@dataclass(frozen=True, slots=True)
class Reflects:
    """What an answer reflects: applied offsets per partition, end offsets, the lag."""

    mode: str
    applied: Mapping[int, int]
    """Last applied offset per partition (-1: nothing applied)."""
    end: Mapping[int, int]
    lag: int
    end_age_ms: int
    """How old the end offsets are (0 for strong reads: fetched for this request)."""

    def as_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "applied": {str(p): o for p, o in sorted(self.applied.items())},
            "end": {str(p): o for p, o in sorted(self.end.items())},
            "lag": self.lag,
            "end_age_ms": self.end_age_ms,
        }


async def topic_partitions(kafka: KafkaClientSettings, topics: Sequence[str]) -> dict[str, int]:
    """Partition counts of ``topics`` (0 for a topic that does not exist)."""
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [topic for topic in topics if topic in existing]
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    counts = dict.fromkeys(topics, 0)
    for description in described:
        counts[description["topic"]] = len(description["partitions"])
    return counts


class LogPositions:
    """End offsets of one topic (cached and fresh) against a group's applied offsets."""

    def __init__(
        self,
        kafka: KafkaClientSettings,
        topic: str,
        partitions: int,
        store: Store,
        group: str,
        *,
        refresh_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic = topic
        self.partitions = partitions
        self._kafka = kafka
        self._store = store
        self._group = group
        self._refresh_s = refresh_s
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self._ends: dict[int, int] = {}
        self._applied: dict[int, int] = {}
        self._ends_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, **self._kafka.aiokafka_kwargs()
        )
        await self._consumer.start()
        await self._refresh()
        self._task = asyncio.create_task(self._refresh_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def group(self) -> str:
        """The consumer group whose applied offsets these are."""
        return self._group

    def partition_of(self, device_id: str) -> int:
        return partition_for(device_id, self.partitions)

    async def end_offsets(self, partitions: Sequence[int]) -> dict[int, int]:
        """The end offsets now (one ListOffsets request)."""
        assert self._consumer is not None  # noqa: S101 - start() ran
        tps = [TopicPartition(self.topic, p) for p in partitions]
        found = await self._consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in found.items()}

    async def _refresh(self) -> None:
        self._ends = await self.end_offsets(range(self.partitions))
        self._ends_at = self._clock()
        self._applied = await self.applied()

    async def _refresh_forever(self) -> None:
        counted = self._clock()
        while True:
            await asyncio.sleep(self._refresh_s)
            with contextlib.suppress(Exception):  # a broker hiccup only ages the cache
                if self._clock() - counted >= PARTITIONS_REFRESH_S:
                    counted = self._clock()
                    await self.recount()
                await self._refresh()

    async def recount(self) -> None:
        """Learns the topic's partition count again (it only grows)."""
        count = (await topic_partitions(self._kafka, [self.topic]))[self.topic]
        self.partitions = max(self.partitions, count)

    async def applied(self) -> dict[int, int]:
        stored = await asyncio.to_thread(self._store.positions, self._group)
        return {tp.partition: offset for tp, offset in stored.items() if tp.topic == self.topic}

    def _reflects(
        self,
        mode: str,
        partitions: Sequence[int],
        applied: Mapping[int, int],
        end: Mapping[int, int],
        age_ms: int,
    ) -> Reflects:
        mine = {p: applied.get(p, -1) for p in partitions}
        ends = {p: end.get(p, 0) for p in partitions}
        lag = sum(max(0, ends[p] - mine[p] - 1) for p in partitions)
        return Reflects(mode, mine, ends, lag, age_ms)

    async def eventual(self, partitions: Sequence[int]) -> Reflects:
        """Cached applied offsets against the cached end offsets: no store or Kafka round trip.

        Applied offsets only grow, so data read after this call reflects at least them.
        """
        applied = self._applied
        age_ms = int((self._clock() - self._ends_at) * 1000)
        return self._reflects("eventual", partitions, applied, self._ends, age_ms)

    async def strong(self, partitions: Sequence[int], timeout_ms: int) -> Reflects:
        """Waits until the store applied every record the partitions held on arrival.

        Raises NotCaughtUpError (with the remaining lag) after ``timeout_ms``.
        """
        deadline = self._clock() + timeout_ms / 1000
        end = await self.end_offsets(partitions)
        delay = 0.005
        while True:
            applied = await self.applied()
            reflects = self._reflects("strong", partitions, applied, end, 0)
            if reflects.lag == 0:
                return reflects
            if self._clock() >= deadline:
                raise NotCaughtUpError(
                    f"the store is {reflects.lag} record(s) behind the log after {timeout_ms} ms",
                    lag=reflects.lag,
                    positions=reflects.as_json(),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
