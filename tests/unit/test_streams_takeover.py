"""A device state cached by a worker whose partition moved away and back is loaded again.

Found by the fault suite (seed 186630): worker-2, frozen 14 s, woke and retried its batch;
every record in it had been applied by worker-3 meanwhile, so nothing was applied, but the
devices of the batch were loaded into worker-2's cache, and not remembered as the
partition's. When the partition came back to worker-2 a moment later, the revocation
dropped the partition's position but kept those device states, older than what worker-3
applied after the load. worker-2 applied on them and overwrote the newer states: 30
devices lost 1 or 2 readings each, all of them in the log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams import BatchProcessor, Position
from streams.domain import TopicPartition
from streams.errors import PositionConflictError
from streams.store import SqliteStore
from tests.oracle import TOPIC, event

TP = TopicPartition(TOPIC, 0)


def _log(offsets: range) -> list[tuple[Position, object]]:
    return [
        (Position(TOPIC, 0, offset), event("dev-1", 1_000 * (offset + 1), seq=offset + 1, t=1.0))
        for offset in offsets
    ]


def test_a_partition_that_comes_back_reloads_the_devices_its_worker_had_cached(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    SqliteStore(path).migrate()
    sleeper = BatchProcessor(SqliteStore(path), "workers")
    taker = BatchProcessor(SqliteStore(path), "workers")
    sleeper.assign([TP])
    assert sleeper.apply(_log(range(3))).applied == 3  # type: ignore[arg-type]
    # frozen past its session: the group gives the partition to the other worker
    taker.assign([TP])
    assert taker.apply(_log(range(3, 5))).applied == 2  # type: ignore[arg-type]
    # awake, it commits what it had fetched: fenced, and retried on what the store holds
    with pytest.raises(PositionConflictError):
        sleeper.apply(_log(range(3, 5)))  # type: ignore[arg-type]
    assert sleeper.apply(_log(range(3, 5))).applied == 0  # applied by the other
    assert taker.apply(_log(range(5, 6))).applied == 1  # before the next rebalance
    sleeper.revoke([TP])  # the partition comes back to it
    sleeper.assign([TP])
    assert sleeper.apply(_log(range(6, 7))).applied == 1
    (device,) = SqliteStore(path).devices()
    assert (device.count, device.gaps, device.last_seq) == (7, (), 7)
