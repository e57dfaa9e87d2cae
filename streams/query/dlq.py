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

For the fleet, every rejection (with a device id or not) is also counted by reason per minute
of its record's timestamp, for the last :data:`TIMELINE_MINUTES` minutes before the newest
record read: the overview's "DLQ rejections by reason over time".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from contracts.kafka import KafkaClientSettings
from contracts.times import time_fields
from streams.query.folds import TopicFold

__all__ = ["TIMELINE_MINUTES", "DlqCounts", "DlqRejections"]

TIMELINE_MINUTES = 60
_MINUTE_MS = 60_000


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


class DlqRejections(TopicFold):
    """The background fold (see the module docstring); ``counts`` never blocks."""

    def __init__(
        self, kafka: KafkaClientSettings, topic: str, partitions: int, *, max_devices: int = 100_000
    ) -> None:
        super().__init__(kafka, topic, partitions)
        self._max_devices = max_devices
        self._counts: dict[str, Counter[str]] = {}
        self.untracked = 0
        self._minutes: dict[int, Counter[str]] = {}

    def counts(self, device_id: str) -> DlqCounts:
        reasons = self._counts.get(device_id, Counter())
        return DlqCounts(
            rejected=sum(reasons.values()),
            by_reason=dict(sorted(reasons.items())),
            positions=self.positions,
            caught_up=self.caught_up,
        )

    def timeline(self) -> list[dict[str, object]]:
        """Rejections by reason per minute (oldest first), only minutes that had some."""
        return [
            {**time_fields("start", start), "by_reason": dict(sorted(reasons.items()))}
            for start, reasons in sorted(self._minutes.items())
        ]

    def take(self, key: bytes | None, headers: dict[str, bytes], timestamp_ms: int = 0) -> None:
        device = headers.get("device_id")
        reason = headers.get("reason", b"unknown")
        self.add(
            device.decode("utf-8", "replace") if device else None,
            reason.decode("utf-8", "replace"),
            timestamp_ms,
        )

    def add(self, device_id: str | None, reason: str, timestamp_ms: int = 0) -> None:
        """Counts one rejection in its minute, and against its device (records without a
        device id have no device to charge)."""
        self._count_minute(timestamp_ms - timestamp_ms % _MINUTE_MS, reason)
        if device_id is None:
            return
        reasons = self._counts.get(device_id)
        if reasons is None:
            if len(self._counts) >= self._max_devices:
                self.untracked += 1
                return
            reasons = self._counts[device_id] = Counter()
        reasons[reason] += 1

    def _count_minute(self, minute: int, reason: str) -> None:
        newest = max(self._minutes, default=minute)
        oldest = max(minute, newest) - (TIMELINE_MINUTES - 1) * _MINUTE_MS
        if minute < oldest:
            return  # older than the timeline keeps
        self._minutes.setdefault(minute, Counter())[reason] += 1
        if minute > newest:
            for stale in [m for m in self._minutes if m < oldest]:
                del self._minutes[stale]
