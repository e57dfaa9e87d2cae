"""A worker whose SQLite store's disk fills up rides it through: it says it is not ready and
why, never exits, and goes on by itself once there is room, nothing skipped or applied twice.
(SQLite's "disk full" used to be a non-retriable error: the worker exited and crash-looped.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.store import SqliteStore
from tests.disks import fill, small_disk
from tests.e2e.gateway_harness import create_topics
from tests.e2e.streams_harness import WorkerProcess, publish_readings, until, worker_env
from tests.stacks import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

READINGS = 600


async def test_a_full_disk_under_the_store_is_waited_out_and_the_worker_goes_on(
    settings: DevStackSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    kafka, topic, group = kafka_client(settings), unique("telemetry"), unique("workers")
    await create_topics(kafka, topic, partitions=2)
    with small_disk(tmp_path / "disk", "2m") as disk:
        store = disk / "state.db"
        env = worker_env(settings, topic, group, f"sqlite:///{store}", tmp_path / "faust")
        [port] = free_ports(1)
        worker = WorkerProcess(env, tmp_path / "worker.log", port)
        worker.start()
        try:
            await until(worker.ready, 60, lambda: worker.log.read_text()[-2000:])
            filler = fill(disk)
            await publish_readings(kafka, topic, 1, READINGS)
            await until(
                lambda: "disk is full" in json.dumps(worker.readyz()),
                60,
                lambda: f"{worker.readyz()}\n{worker.log.read_text()[-2000:]}",
            )
            assert worker.alive()
            assert worker.applied() < READINGS
            filler.unlink()  # room again
            await until(
                lambda: worker.applied() >= READINGS, 60, lambda: worker.log.read_text()[-2000:]
            )
            await until(worker.ready, 30, lambda: str(worker.readyz()))
        finally:
            assert worker.terminate() == 0
        reader = SqliteStore(store)
        try:
            assert sum(d.count for d in reader.devices()) == READINGS
            assert sum(d.duplicates for d in reader.devices()) == 0
        finally:
            reader.close()
