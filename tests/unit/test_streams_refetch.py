"""A worker whose consumer fetches from past the store's position fetches again, never skips.

The inbox took any offset above the stored one, so a consumer positioned past the store
would have skipped the records in between without a trace. This was first suspected for
the fault suite's lost readings (seed 11); their cause turned out to be a stale device
cache (``test_streams_takeover``). The guard stays: a gap is now fetched again, and one
the log really has is taken on the second fetch.
"""

from __future__ import annotations

from pathlib import Path

from streams import BatchProcessor, Position, SkipReason
from streams.domain import TopicPartition
from streams.store import SqliteStore
from tests.oracle import TOPIC, event

TP = TopicPartition(TOPIC, 0)


def _log(offsets: range) -> list[tuple[Position, object]]:
    return [
        (Position(TOPIC, 0, offset), event("dev-1", 1_000 * (offset + 1), seq=offset + 1, t=1.0))
        for offset in offsets
    ]


def _worker(tmp_path: Path) -> tuple[BatchProcessor, SqliteStore]:
    store = SqliteStore(tmp_path / "state.db")
    store.migrate()
    processor = BatchProcessor(store, "workers")
    processor.refetch_gaps = True  # as a worker with a seekable consumer runs it
    processor.assign([TP])
    return processor, store


def test_a_fetch_starting_past_the_store_is_fetched_again_from_it_not_applied(
    tmp_path: Path,
) -> None:
    processor, store = _worker(tmp_path)
    assert processor.apply(_log(range(4))).applied == 4  # type: ignore[arg-type]
    ahead = processor.apply(_log(range(7, 10)))  # type: ignore[arg-type]
    assert ahead.applied == 0
    assert ahead.refetch == {TP: 4}
    assert ahead.skipped == {SkipReason.REFETCHED: 3}
    assert store.positions("workers")[TP] == 3  # nothing moved past what was applied
    assert processor.apply(_log(range(4, 10))).applied == 6  # type: ignore[arg-type]
    (device,) = store.devices()
    assert (device.count, device.gaps, device.missing) == (10, (), 0)


def test_records_the_log_does_not_have_are_not_asked_for_twice(tmp_path: Path) -> None:
    processor, store = _worker(tmp_path)
    assert processor.apply(_log(range(3))).applied == 3  # type: ignore[arg-type]
    first = processor.apply(_log(range(5, 6)))  # type: ignore[arg-type]
    assert first.refetch == {TP: 3}
    again = processor.apply(_log(range(5, 6)))  # type: ignore[arg-type]
    assert again.refetch == {}  # fetched from 3, the log starts at 5 (compacted, truncated)
    assert again.applied == 1
    assert store.positions("workers")[TP] == 5


def test_without_a_seekable_consumer_offsets_are_taken_as_they_come(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.migrate()
    processor = BatchProcessor(store, "replay")  # replay reads the log in order itself
    assert processor.apply(_log(range(2))).applied == 2  # type: ignore[arg-type]
    assert processor.apply(_log(range(5, 6))).applied == 1  # type: ignore[arg-type]
