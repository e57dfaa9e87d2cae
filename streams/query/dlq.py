"""DLQ rejections per device, folded from the DLQ topic itself by every worker.

The gateway writes each rejected message to the DLQ topic with headers ``device_id`` and
``reason``. Each worker reads the whole topic (its own consumer: assigned partitions, no
group) from the oldest record retained when it started and keeps counts per device and
reason in memory. The counts are never reduced when retention later deletes records: they
count the rejections seen since the log start this worker read from (so two workers started
at different times may differ by what retention removed in between); ``caught_up`` and the
positions say how far the fold has read.
Memory is bounded: at most ``max_devices`` devices are tracked, rejections of further
devices are counted together as ``untracked``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.kafka import KafkaClientSettings

__all__ = ["DlqCounts", "DlqRejections"]

log = logging.getLogger("streams.query")


@dataclass(frozen=True, slots=True)
class DlqCounts:
    """One device's DLQ rejections as far as the fold has read."""

    rejected: int
    by_reason: dict[str, int]
    positions: dict[str, int]
    caught_up: bool

    def as_json(self) -> dict[str, object]:
        return {
            "rejected": self.rejected,
            "by_reason": self.by_reason,
            "positions": self.positions,
            "caught_up": self.caught_up,
            "source": "DLQ records read since the log start this worker read from",
        }


class DlqRejections:
    """The background fold (see the module docstring); ``counts`` never blocks."""

    def __init__(
        self, kafka: KafkaClientSettings, topic: str, partitions: int, *, max_devices: int = 100_000
    ) -> None:
        self.topic = topic
        self._kafka = kafka
        self._partitions = partitions
        self._max_devices = max_devices
        self._counts: dict[str, Counter[str]] = {}
        self.untracked = 0
        self._next: dict[int, int] = {}
        self.caught_up = partitions == 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._partitions:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def counts(self, device_id: str) -> DlqCounts:
        reasons = self._counts.get(device_id, Counter())
        return DlqCounts(
            rejected=sum(reasons.values()),
            by_reason=dict(sorted(reasons.items())),
            positions={str(p): o for p, o in sorted(self._next.items())},
            caught_up=self.caught_up,
        )

    def add(self, device_id: str | None, reason: str) -> None:
        """Counts one rejection (records without a device id have no device to charge)."""
        if device_id is None:
            return
        reasons = self._counts.get(device_id)
        if reasons is None:
            if len(self._counts) >= self._max_devices:
                self.untracked += 1
                return
            reasons = self._counts[device_id] = Counter()
        reasons[reason] += 1

    async def _run(self) -> None:
        while True:
            try:
                await self._fold()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dlq fold: %s; restarting in 1s", exc)
                await asyncio.sleep(1.0)

    async def _fold(self) -> None:
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            # a saved position retention removed continues at the first retained record,
            # never at the end (that would skip every rejection in between)
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
                        headers = dict(record.headers)
                        device = headers.get("device_id")
                        reason = headers.get("reason", b"unknown")
                        self.add(
                            device.decode("utf-8", "replace") if device else None,
                            reason.decode("utf-8", "replace"),
                        )
                        self._next[tp.partition] = record.offset + 1
                if not self.caught_up:
                    positions = [await consumer.position(tp) for tp in tps]
                    self.caught_up = all(
                        position >= ends[tp] for position, tp in zip(positions, tps, strict=True)
                    )
        finally:
            await consumer.stop()
