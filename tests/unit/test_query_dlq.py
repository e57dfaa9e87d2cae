"""The DLQ fold: rejections per device, and per minute by reason for the fleet."""

from __future__ import annotations

from contracts.kafka import KafkaClientSettings
from streams.query.dlq import TIMELINE_MINUTES, DlqRejections

MINUTE = 60_000


def _dlq() -> DlqRejections:
    return DlqRejections(KafkaClientSettings(), "dlq", 0)


def test_rejections_are_counted_per_minute_by_reason_with_or_without_a_device() -> None:
    dlq = _dlq()
    dlq.add("d1", "schema_invalid", 10 * MINUTE + 5)
    dlq.add(None, "schema_invalid", 10 * MINUTE + 59_999)
    dlq.add("d2", "too_large", 10 * MINUTE + 1)
    dlq.add("d1", "schema_invalid", 12 * MINUTE)
    assert dlq.timeline() == [
        {
            "start": "1970-01-01T00:10:00.000Z",
            "start_ms": 10 * MINUTE,
            "by_reason": {"schema_invalid": 2, "too_large": 1},
        },
        {
            "start": "1970-01-01T00:12:00.000Z",
            "start_ms": 12 * MINUTE,
            "by_reason": {"schema_invalid": 1},
        },
    ]
    assert dlq.counts("d1").by_reason == {"schema_invalid": 2}
    assert dlq.counts("d2").rejected == 1


def test_the_timeline_keeps_only_the_minutes_before_the_newest_record() -> None:
    dlq = _dlq()
    dlq.add("d1", "too_large", 0)
    last = TIMELINE_MINUTES * MINUTE  # the first minute falls out of the kept hour
    dlq.add("d1", "too_large", last)
    dlq.add("d1", "too_large", MINUTE // 2)  # arrives late and is older than the hour
    starts = [minute["start_ms"] for minute in dlq.timeline()]
    assert starts == [last]
    assert dlq.counts("d1").rejected == 3  # the device's counts are never pruned
