"""Exactly-once effects: a stream worker killed with SIGKILL ten times under load.

The gateway and simulated devices feed a topic of the test's own; the worker (a real
`iotctl streams worker` process on a SQLite store) is killed at random moments and restarted.
Afterwards the projections must equal an oracle computed directly from the Kafka log, and
every alert crossing must be in ``iot.alerts.v1`` at least once, exactly once after dedupe.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.store.sqlite import SqliteStore
from tests.clients import process_env
from tests.e2e.gateway_harness import (
    create_topics,
    free_port,
    start_gateway,
)
from tests.e2e.streams_harness import (
    RULES,
    WorkerProcess,
    assert_state_matches_log,
    end_offsets,
    until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


def _applied(store: SqliteStore, group: str) -> int:
    """How far the worker got: the sum of its stored offsets (-1 per unseen partition)."""
    return sum(store.positions(group).values())


async def test_sigkill_the_worker_ten_times_and_projections_equal_the_oracle(
    settings: DevStackSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique("streams").replace(".", "-")
    topic, dlq, partitions = f"{prefix}.telemetry", f"{prefix}.dlq", 6
    await create_topics(kafka_client(settings), topic, dlq, partitions=partitions)
    gateway = await start_gateway(settings, tmp_path, prefix=prefix, topic=topic, dlq=dlq)
    rules_file = tmp_path / "alerts.yaml"
    rules_file.write_text(RULES)
    store_path = tmp_path / "state.db"
    group = f"{prefix}-streams"
    worker = WorkerProcess(
        {
            **os.environ,
            "IOT_STREAMS_GROUP": group,
            "IOT_STREAMS_TELEMETRY_TOPIC": topic,
            **process_env(settings),
            "IOT_STREAMS_STORE": f"sqlite:///{store_path}",
            "IOT_STREAMS_ALERT_RULES": str(rules_file),
            "IOT_STREAMS_NOTIFIER__ENABLED": "false",
            "IOT_STREAMS_BATCH_MAX": "200",
        },
        tmp_path / "worker.log",
        free_port(),
    )
    worker.start()
    # The devices: `iotctl simulate` in a process of its own, publishing until told to stop.
    with (tmp_path / "simulator.log").open("ab") as simulator_log:
        simulator = subprocess.Popen(  # noqa: ASYNC220 - runs beside the test, not awaited
            [
                sys.executable,
                "-m",
                "iotctl.main",
                "simulate",
                "--json",
                "--quiet",
                "--devices",
                "12",
                "--rate",
                "150",
                "--duration",
                "300",
                "--duplicates",
                "0.05",
                "--seed",
                "5",
                "--port",
                str(settings.broker_port),
                "--prefix",
                f"{prefix}-dev",
                "--topic",
                f"{prefix}/devices/{{device_id}}/telemetry",
                "--state",
                str(tmp_path / "sim-state.json"),
            ],
            stdout=subprocess.PIPE,
            stderr=simulator_log,
            env={**os.environ, **process_env(settings)},
        )
    rng = random.Random(17)
    store = SqliteStore(store_path)
    store.migrate()  # idempotent, as the worker does it
    kills = 0
    while kills < 10:
        # Wait until this worker is applying batches, then kill it at a random moment.
        before = _applied(store, group)
        deadline = time.monotonic() + 60
        while _applied(store, group) <= before:
            assert time.monotonic() < deadline, (
                "the restarted worker never applied a batch; the gateway acknowledged "
                f"{gateway.stats()['metrics'].get('iot_gateway_pubacks_total')} messages"
            )
            await asyncio.sleep(0.1)
        await asyncio.sleep(rng.uniform(0.05, 1.5))
        worker.kill()
        kills += 1
        worker.start()
    simulator.send_signal(signal.SIGTERM)  # the kills are done; what it published is the log
    summary, _ = simulator.communicate(timeout=60)
    report = json.loads(summary)
    assert simulator.returncode == 0, report

    # Let the last worker catch up with the whole log and drain its outbox.
    ends = await end_offsets(kafka_client(settings), topic, partitions)
    deadline = time.monotonic() + 120
    while True:
        positions = {tp.partition: offset + 1 for tp, offset in store.positions(group).items()}
        caught_up = all(positions.get(p, 0) >= end for p, end in ends.items() if end)
        if caught_up and store.outbox_backlog() == 0:
            break
        assert time.monotonic() < deadline, f"worker stuck at {positions}, log ends {ends}"
        await asyncio.sleep(0.5)
    # The store may have caught up before the last restart: let that worker finish starting
    # (a SIGTERM before it installs its handlers would end it by the signal, not cleanly).
    await until(worker.ready, 60, lambda: "the last worker never became ready")
    assert worker.terminate() == 0
    assert gateway.terminate() == 0

    await assert_state_matches_log(
        settings, topic, partitions, store, rules_file, report["acked_by_kind"].get("ok", 0)
    )
    store.close()
