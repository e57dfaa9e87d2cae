"""A worker on a new (or wiped) store starts from the log's start, whatever offsets its
group committed to Kafka before: the store, not Kafka, says what was applied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.store import SqliteStore
from tests.e2e.gateway_harness import create_topics
from tests.e2e.streams_harness import WorkerProcess, until, worker_env
from tests.e2e.test_streams_postgres_pause import publish_readings
from tests.stacks import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_a_wiped_store_is_rebuilt_from_the_log_start_not_the_committed_offsets(
    settings: DevStackSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    kafka, topic, group = kafka_client(settings), unique("telemetry"), unique("workers")
    await create_topics(kafka, topic, partitions=3)
    await publish_readings(kafka, topic, 1, 240)
    for attempt, store in enumerate(("first.db", "wiped.db")):  # the same group, a new store
        [port] = free_ports(1)
        path = tmp_path / store
        env = worker_env(settings, topic, group, f"sqlite:///{path}", tmp_path / "faust")
        worker = WorkerProcess(env, tmp_path / f"w{attempt}.log", port)
        worker.start()
        try:
            await until(
                lambda w=worker: w.applied() >= 240,  # type: ignore[misc]
                60,
                lambda w=worker: f"applied {w.applied()} of 240\n{w.log.read_text()[-2000:]}",  # type: ignore[misc]
            )
        finally:
            assert worker.terminate() == 0  # its offsets are committed to the group
        reader = SqliteStore(path)
        try:
            assert sum(device.count for device in reader.devices()) == 240
        finally:
            reader.close()
