"""A topic folded into memory by every worker, from the oldest record retained when it started.

Each worker reads the whole topic with its own consumer (assigned partitions, no group) and
hands every record's key, headers and timestamp to :meth:`TopicFold.take`. The fold never blocks the
API: answers give what was read so far, with ``caught_up`` (the end offsets seen at the
start have been reached) and the positions read. A failed fold starts again after a second
from where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.kafka import KafkaClientSettings

__all__ = ["TopicFold"]

log = logging.getLogger("streams.query")


class TopicFold(ABC):
    """The background fold of ``topic`` (see the module docstring)."""

    def __init__(self, kafka: KafkaClientSettings, topic: str, partitions: int) -> None:
        self.topic = topic
        self._kafka = kafka
        self._partitions = partitions
        self._next: dict[int, int] = {}
        self.caught_up = partitions == 0
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def take(self, key: bytes | None, headers: dict[str, bytes], timestamp_ms: int = 0) -> None:
        """Folds one record: its key, headers and Kafka timestamp (epoch ms), never its value."""

    @property
    def positions(self) -> dict[str, int]:
        """The next offset to read, per partition."""
        return {str(p): o for p, o in sorted(self._next.items())}

    def start(self) -> None:
        if self._partitions:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._fold()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s fold: %s; restarting in 1s", self.topic, exc)
                await asyncio.sleep(1.0)

    async def _fold(self) -> None:
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            # a saved position retention removed continues at the first retained record,
            # never at the end (that would skip every record in between)
            auto_offset_reset="earliest",
            **self._kafka.aiokafka_kwargs(),
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self._partitions)]
            consumer.assign(tps)
            for tp in tps:
                if tp.partition in self._next:
                    consumer.seek(tp, self._next[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            ends = await consumer.end_offsets(tps)
            while True:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=1000)
                for tp, records in fetched.items():
                    for record in records:
                        self.take(record.key, dict(record.headers), record.timestamp)
                        self._next[tp.partition] = record.offset + 1
                if not self.caught_up:
                    positions = [await consumer.position(tp) for tp in tps]
                    self.caught_up = all(
                        position >= ends[tp] for position, tp in zip(positions, tps, strict=True)
                    )
        finally:
            await consumer.stop()
