"""``iotctl replay repartition``: add partitions to the telemetry topic without splitting a
device between two writers (see :mod:`streams.layout`).

Adding partitions moves devices. It is safe only at a point where every record of the old
layout is applied: from there on each partition's records are judged by the new count. The
plan therefore requires the store to have applied every partition up to its end offset (stop
the gateways first); ``execute`` adds the partitions and records the new layout, from those
offsets, in the store (compare-and-set). Workers that refused the new count are restarted
afterwards. If the partitions were added already (workers refuse since), the new count
applies from where the store stopped; records after that which the new count puts on
another partition are skipped as ``misrouted`` and counted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from streams.errors import ConfigError
from streams.layout import PartitionLayout
from streams.replay.rebuild import telemetry_partitions
from streams.settings import WorkerSettings
from streams.store.port import Store

__all__ = ["RepartitionPlan", "execute_repartition", "plan_repartition"]


@dataclass(frozen=True, slots=True)
class RepartitionPlan:
    """What ``execute`` would do, and why it would refuse (``refusal``)."""

    topic: str
    current: int
    """Partitions the topic has now."""
    planned: int
    """Partitions the store's layout plans."""
    target: int
    applied: dict[int, int]
    """partition -> next offset the store would apply."""
    ends: dict[int, int]
    """partition -> end offset of the log."""

    @property
    def pending(self) -> dict[int, int]:
        """Records of the planned layout not applied yet, per partition."""
        return {
            p: self.ends[p] - self.applied.get(p, 0)
            for p in sorted(self.ends)
            if p < self.planned and self.ends[p] > self.applied.get(p, 0)
        }

    def refusal(self) -> str | None:
        if self.target <= self.planned:
            return (
                f"{self.topic} is planned with {self.planned} partitions: only adding is possible"
            )
        if self.current < self.target and self.pending:
            waiting = ", ".join(f"partition {p}: {n:,}" for p, n in self.pending.items())
            return (
                f"records not applied yet ({waiting}): stop the gateways and wait until the "
                "workers applied everything, then run this again"
            )
        if self.current not in (self.planned, self.target):
            return f"{self.topic} has {self.current} partitions, neither the planned nor the target"
        return None


async def plan_repartition(settings: WorkerSettings, store: Store, target: int) -> RepartitionPlan:
    """Reads the topic, its end offsets and the store's layout and positions; changes nothing."""
    topic = settings.telemetry_topic
    partitions = await telemetry_partitions(settings)
    layout = await asyncio.to_thread(store.partition_layout, topic)
    planned = layout.partitions if layout is not None else len(partitions)
    positions = await asyncio.to_thread(store.positions, settings.group)
    applied = {tp.partition: offset + 1 for tp, offset in positions.items() if tp.topic == topic}
    consumer = AIOKafkaConsumer(group_id=None, **settings.kafka.aiokafka_kwargs())
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await consumer.stop()
    return RepartitionPlan(
        topic,
        len(partitions),
        planned,
        target,
        applied,
        {tp.partition: offset for tp, offset in ends.items()},
    )


async def execute_repartition(
    settings: WorkerSettings, store: Store, chosen: RepartitionPlan
) -> PartitionLayout:
    """Adds the partitions (if the topic has not got them) and records the new layout from
    the store's positions on the old partitions; ConfigError if refused or raced."""
    reason = chosen.refusal()
    if reason is not None:
        raise ConfigError(reason)
    if chosen.current < chosen.target:
        admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
        await admin.start()
        try:
            await admin.create_partitions({chosen.topic: NewPartitions(total_count=chosen.target)})
        finally:
            await admin.close()
    old = await asyncio.to_thread(store.partition_layout, chosen.topic)
    base = old if old is not None else PartitionLayout.single(chosen.planned)
    starts = {p: chosen.applied.get(p, 0) for p in range(chosen.planned)}
    layout = base.grown(chosen.target, starts)
    if not await asyncio.to_thread(store.record_partition_layout, chosen.topic, layout, old):
        raise ConfigError("the store's layout changed meanwhile; plan again")
    return layout
