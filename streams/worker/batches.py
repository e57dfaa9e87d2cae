"""The telemetry consumer of a worker: whole fetches of records, straight into the runtime.

faust's stream engine handles records one by one (an event object, an ack, a sensor call
each), which costs about five times what the exactly-once batch itself costs. This consumer
hands aiokafka's fetched batches to :class:`~streams.worker.runtime.WorkerRuntime` as they
come, in the same consumer group semantics: partitions are split between the group's
workers, every assignment seeks to the store's position, and a revocation is handled before
the partitions move. Offsets committed to Kafka are only a hint, as with faust.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaPartition
from aiokafka.errors import KafkaError

from streams.domain import TopicPartition
from streams.errors import PartitionLayoutError
from streams.settings import WorkerSettings
from streams.worker.metrics import WorkerMetrics
from streams.worker.runtime import RawRecord, WorkerRuntime

log = logging.getLogger("streams.worker")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: WorkerRuntime, consumer: AIOKafkaConsumer) -> None:
        self._runtime, self._consumer = runtime, consumer

    async def on_partitions_revoked(self, revoked: list[KafkaPartition]) -> None:
        await self._runtime.revoked(TopicPartition(tp.topic, tp.partition) for tp in revoked)

    async def on_partitions_assigned(self, assigned: list[KafkaPartition]) -> None:
        mine = [TopicPartition(tp.topic, tp.partition) for tp in assigned]
        topics = {tp.topic for tp in assigned}
        counts = {len(self._consumer.partitions_for_topic(t) or ()) for t in topics}
        count = counts.pop() if len(counts) == 1 and len(topics) == 1 else None
        try:
            seeks = await self._runtime.assigned(mine, count or None)
        except PartitionLayoutError:
            return  # the runtime refuses; the consume loop stops at its next fetch
        stored = {KafkaPartition(tp.topic, tp.partition): o for tp, o in seeks.items() if o}
        starts = await self._consumer.beginning_offsets(list(stored)) if stored else {}
        for tp, offset in seeks.items():
            partition = KafkaPartition(tp.topic, tp.partition)
            if offset is None:
                await self._consumer.seek_to_beginning(partition)
            elif starts.get(partition, 0) > offset:  # retention deleted what was not applied
                await self._runtime.retention_gap(tp, starts[partition] - offset)
                self._consumer.seek(partition, starts[partition])
            else:
                self._consumer.seek(partition, offset)
        log.info("assigned %s", sorted(tp.partition for tp in mine))


async def consume_batches(runtime: WorkerRuntime, settings: WorkerSettings) -> None:
    """Consumes the telemetry topic in the worker group until cancelled."""
    consumer = AIOKafkaConsumer(
        group_id=settings.group,
        client_id=f"{settings.group}-telemetry",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(max(0.5, settings.session_timeout_s / 6) * 1000),
        max_poll_records=settings.batch_max,
        **settings.kafka.aiokafka_kwargs(),
    )
    consumer.subscribe([settings.telemetry_topic], listener=_Rebalance(runtime, consumer))

    async def reseek(offsets: dict[TopicPartition, int | None]) -> None:
        for tp, offset in offsets.items():
            partition = KafkaPartition(tp.topic, tp.partition)
            if offset is None:
                await consumer.seek_to_beginning(partition)
            else:
                consumer.seek(partition, offset)

    runtime.seek_with(reseek)
    await consumer.start()
    wait_ms = int(settings.batch_within_s * 1000)
    checked = time.monotonic()
    try:
        while runtime.refusal is None:
            fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=settings.batch_max)
            records = [
                RawRecord(tp.topic, tp.partition, record.offset, record.value)
                for tp, batch in fetched.items()
                for record in batch
            ]
            if not records:
                if time.monotonic() - checked >= 1.0:  # an idle worker still follows a swap
                    checked = time.monotonic()
                    await runtime.check_swap()
                continue
            reseeks = runtime.reseeks
            await runtime.handle(records)
            if runtime.reseeks != reseeks:  # the consumer was seeked: no hint past the batch
                continue
            for tp, batch in fetched.items():
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    runtime.metrics.lag.labels(str(tp.partition)).set(
                        max(0, highwater - batch[-1].offset - 1)
                    )
            offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items()}
            await commit_hint(consumer, offsets, runtime.metrics)
    except PartitionLayoutError:
        pass  # refused (the runtime keeps the reason for /readyz)
    finally:
        await consumer.stop()
    log.error("not consuming: %s", runtime.refusal)
    await asyncio.Event().wait()  # stays up, not ready, until stopped


async def commit_hint(
    consumer: AIOKafkaConsumer, offsets: dict[KafkaPartition, int], metrics: WorkerMetrics
) -> None:
    """Commits ``offsets`` to the group as a hint. The store holds the real positions (every
    assignment seeks to them), so a commit the group refuses (it rebalanced while Kafka was
    down or slow) or a broker that is gone is counted and passed over, never fatal: the next
    fetch rejoins the group."""
    try:
        await consumer.commit(offsets)
    except KafkaError as exc:
        metrics.commit_hints_refused.inc()
        log.warning("offset commit (a hint) refused, going on: %s: %s", type(exc).__name__, exc)
