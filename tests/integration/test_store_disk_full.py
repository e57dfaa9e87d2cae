"""A full disk under the worker's SQLite store is waited out, never a crash and never a loss.

The store lives on a small tmpfs mounted for the test (as root, which the test machines
are): writes fail with a real ENOSPC, SQLite says "database or disk is full". The batch is
rolled back whole, the error is retriable, and once room is made the same batch commits and
the state equals the oracle's, as if the disk had never filled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams import BatchProcessor
from streams.errors import StoreError
from streams.store import SqliteStore
from tests.contracts.store import assert_matches_oracle
from tests.disks import resize, small_disk
from tests.oracle import RULES, WINDOWS, make_log, random_events

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", "1m") as mount:
        yield mount


def test_a_full_disk_fails_the_batch_retriably_and_the_retry_commits_it(disk: Path) -> None:
    store = SqliteStore(disk / "state.db")
    store.migrate()
    processor = BatchProcessor(store, "workers", windows=WINDOWS, rules=RULES)
    log = make_log(random_events(seed=11, count=6000, devices=300))
    batches = [log[i : i + 200] for i in range(0, len(log), 200)]
    failure: StoreError | None = None
    done = 0
    for batch in batches:
        try:
            processor.apply(batch)
        except StoreError as exc:
            failure = exc
            break
        done += 1
    assert failure is not None, "the disk never filled: make the mount smaller"
    assert failure.retriable, failure
    assert "full" in str(failure)
    with pytest.raises(StoreError):  # still full: the retry fails the same way, nothing half-done
        processor.apply(batches[done])
    resize(disk, "64m")
    for batch in batches[done:]:
        processor.apply(batch)
    assert_matches_oracle(store, log)
    store.close()
