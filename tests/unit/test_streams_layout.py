"""Finding 4: a producer with another partitioner, or more partitions, put one device on two
partitions and two writers (160 distinct events counted 110). Records are judged by the
platform's partitioner under the layout in force at their offset; an unplanned count is
refused."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.partitioning import partition_for
from streams import BatchProcessor, Position, SkipReason, TelemetryEvent
from streams.domain import TopicPartition
from streams.errors import PartitionLayoutError
from streams.layout import PartitionLayout
from streams.replay.jobs import split
from streams.replay.rebuild import Plan
from streams.store import SqliteStore
from tests.oracle import TOPIC, event, make_log

DEVICES = [f"dev-{n}" for n in range(40)]


def _crc32(device_id: str, partitions: int) -> int:
    """librdkafka's default (consistent_random): CRC32 of the key."""
    return zlib.crc32(device_id.encode()) % partitions


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    opened = SqliteStore(tmp_path / "s.db")
    opened.migrate()
    return opened


def _readings(rounds: int) -> list[TelemetryEvent]:
    return [event(d, 1000 * n, seq=n, temp=1.0) for n in range(rounds) for d in DEVICES]


def test_the_first_assignment_records_the_layout_and_another_count_is_refused(
    store: SqliteStore,
) -> None:
    first = BatchProcessor(store, "g")
    first.assign([TopicPartition(TOPIC, 0)], 6)
    assert store.partition_layout(TOPIC) == PartitionLayout.single(6)
    with pytest.raises(PartitionLayoutError, match="iotctl replay repartition --partitions 8"):
        BatchProcessor(store, "g").assign([TopicPartition(TOPIC, 0)], 8)
    BatchProcessor(store, "g").assign([TopicPartition(TOPIC, 1)], 6)  # the planned count


def test_records_another_partitioner_put_elsewhere_are_skipped_and_counted(
    store: SqliteStore,
) -> None:
    worker = BatchProcessor(store, "g")
    worker.assign([TopicPartition(TOPIC, p) for p in range(6)], 6)
    good = worker.apply(make_log(_readings(4), 6, partition_for))
    assert good.applied == 160
    stray = [
        e for e in _readings(6)[160:] if _crc32(e.device_id, 6) != partition_for(e.device_id, 6)
    ]
    assert stray
    log = [
        (Position(TOPIC, p.partition, p.offset + 1000), e) for p, e in make_log(stray, 6, _crc32)
    ]
    result = worker.apply(log)
    assert result.applied == 0
    assert result.skipped == {SkipReason.MISROUTED: len(stray)}
    assert sum(d.count for d in store.devices()) == 160


def test_after_a_planned_repartition_old_records_keep_the_old_count(store: SqliteStore) -> None:
    old = make_log(_readings(2), 4, partition_for)
    ends = {p: 1 + max(pos.offset for pos, _ in old if pos.partition == p) for p in range(4)}
    layout = PartitionLayout.single(4).grown(8, ends)
    store.record_partition_layout(TOPIC, layout, None)
    worker = BatchProcessor(store, "g")
    worker.assign([TopicPartition(TOPIC, p) for p in range(8)], 8)
    assert worker.apply(old).applied == 80  # judged by 4 partitions
    moved = [
        (Position(TOPIC, partition_for(e.device_id, 4), ends[partition_for(e.device_id, 4)]), e)
        for e in _readings(3)[80:]
        if partition_for(e.device_id, 4) != partition_for(e.device_id, 8)
    ]
    assert moved
    late = worker.apply(moved[:1])  # an old-layout producer after the change
    assert late.skipped == {SkipReason.MISROUTED: 1}


@given(
    st.integers(1, 64),
    st.lists(
        st.tuples(st.integers(1, 16), st.dictionaries(st.integers(0, 63), st.integers(0, 10**6))),
        max_size=3,
    ),
    st.integers(0, 63),
    st.integers(0, 10**6),
)
def test_layouts_survive_json_and_the_count_in_force_is_the_latest_started(
    first: int, later: list[tuple[int, dict[int, int]]], partition: int, offset: int
) -> None:
    layout = PartitionLayout.single(first)
    for extra, starts in later:
        layout = layout.grown(layout.partitions + extra, starts)
    assert PartitionLayout.from_json(layout.to_json()) == layout
    expected = first
    for count, begins in layout.epochs[1:]:
        if offset >= begins.get(partition, 0):
            expected = count
    assert layout.count_at(partition, offset) == expected


def test_partitions_that_may_share_a_device_stay_in_one_rebuild_part() -> None:
    assert PartitionLayout.single(4).sharing() == [[0], [1], [2], [3]]
    doubled = PartitionLayout.single(3).grown(6, {0: 10, 1: 10, 2: 10})
    assert doubled.sharing() == [[0, 3], [1, 4], [2, 5]]
    assert PartitionLayout.single(3).grown(5, {}).sharing() == [[0, 1, 2, 3, 4]]
    chosen = Plan(start=dict.fromkeys(range(6), 0), end={0: 50, 1: 40, 2: 30, 3: 5, 4: 5, 5: 0})
    assert split(chosen, 3, doubled) == [[0, 3], [1, 4], [2]]
    assert split(chosen, 3) == [[0], [1], [2, 3, 4]]


@given(st.integers(1, 12), st.integers(1, 12), st.binary(min_size=1, max_size=12))
def test_every_device_keeps_its_partitions_in_one_group(before: int, more: int, key: bytes) -> None:
    layout = PartitionLayout.single(before).grown(before + more, {})
    groups = {p: n for n, group in enumerate(layout.sharing()) for p in group}
    old, new = partition_for(key, before), partition_for(key, before + more)
    assert groups[old] == groups[new]
