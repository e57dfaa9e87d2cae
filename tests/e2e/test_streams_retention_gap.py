"""Finding 7, second half: a worker down longer than retention jumped ahead with no gap
reported. The records retention deleted before they were applied are counted, recorded in the
store (the loss answer's ``retention_gap``) and the worker goes on from the log's start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.domain import TopicPartition as StorePartition
from streams.store import SqliteStore
from tests.e2e.gateway_harness import create_topics
from tests.e2e.streams_harness import WorkerProcess, publish_readings, until, worker_env
from tests.stacks import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


GAP = 'iot_streams_retention_gap_records_total{partition="0"}'


async def test_records_deleted_before_they_were_applied_are_reported_as_a_gap(
    settings: DevStackSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    kafka, topic, group = kafka_client(settings), unique("telemetry"), unique("workers")
    await create_topics(kafka, topic, partitions=1)
    await publish_readings(kafka, topic, 1, 48)
    store = tmp_path / "state.db"
    env = worker_env(settings, topic, group, f"sqlite:///{store}", tmp_path / "faust")
    for attempt, expected in enumerate((48, 48 + 36)):
        [port] = free_ports(1)
        worker = WorkerProcess(env, tmp_path / f"w{attempt}.log", port)
        worker.start()
        try:
            await until(
                lambda w=worker, n=expected - 48 * attempt: w.applied() >= n,  # type: ignore[misc]
                60,
                lambda w=worker: w.log.read_text()[-2000:],  # type: ignore[misc]
            )
            if attempt:
                assert worker.metric(GAP) == 24
        finally:
            assert worker.terminate() == 0
        if attempt == 0:  # while it is down: 60 more, and retention deletes the first 24
            await publish_readings(kafka, topic, 5, 60)
            admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
            await admin.start()
            try:
                await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(72)})
            finally:
                await admin.close()
    reader = SqliteStore(store)
    try:
        assert reader.retention_gaps(group) == {StorePartition(topic, 0): 24}
        assert sum(d.count for d in reader.devices()) == 48 + 36
    finally:
        reader.close()
