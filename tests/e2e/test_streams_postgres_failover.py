"""Scale-out failover: two stream workers on PostgreSQL, one killed with SIGKILL mid-run.

The gateway and simulated devices feed a topic of the test's own (6 partitions); two real
`iotctl streams worker` processes share it in one consumer group and one PostgreSQL store.
Once both apply batches, one is killed: its partitions must move to the survivor, which
catches up with the whole log. The projections must then equal an oracle computed directly
from the Kafka log, and every alert crossing must be in ``iot.alerts.v1`` at least once,
exactly once after dedupe.

The store gets a PostgreSQL schema of its own (``?schema=`` on the store URL), dropped
afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.store.postgres import PostgresStore
from tests.clients import process_env
from tests.e2e.gateway_harness import (
    create_topics,
    start_gateway,
    track,
)
from tests.e2e.streams_harness import (
    RULES,
    WorkerProcess,
    assert_state_matches_log,
    end_offsets,
    until,
)
from tests.stacks import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PARTITIONS = 6


def _shared(first: set[int], second: set[int]) -> bool:
    """Both hold partitions, none twice, all of them between them."""
    return bool(first and second) and first.isdisjoint(second) and len(first | second) == PARTITIONS


def _positions(store: PostgresStore, group: str) -> dict[int, int]:
    """Next offset to apply per partition, as the store says."""
    return {tp.partition: offset + 1 for tp, offset in store.positions(group).items()}


async def test_two_postgres_workers_one_killed_partitions_move_and_projections_hold(
    settings: DevStackSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = unique("pgfail").replace(".", "-")
    topic, dlq = f"{prefix}.telemetry", f"{prefix}.dlq"
    await create_topics(kafka_client(settings), topic, dlq, partitions=PARTITIONS)
    dsn = settings.pg_dsn()
    schema = f"e2e_failover_{uuid.uuid4().hex[:12]}"
    store = PostgresStore(dsn, schema=schema)
    store.migrate()  # the same migration the workers run (idempotent, advisory-locked)
    try:
        await _run(settings, prefix, topic, dlq, schema, store, tmp_path)
    finally:
        store.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _run(
    settings: DevStackSettings,
    prefix: str,
    topic: str,
    dlq: str,
    schema: str,
    store: PostgresStore,
    tmp_path: Path,
) -> None:
    gateway = await start_gateway(settings, tmp_path, prefix=prefix, topic=topic, dlq=dlq)
    rules_file = tmp_path / "alerts.yaml"
    rules_file.write_text(RULES)
    group = f"{prefix}-streams"
    env = {
        **os.environ,
        "IOT_STREAMS_GROUP": group,
        "IOT_STREAMS_TELEMETRY_TOPIC": topic,
        **process_env(settings),
        "IOT_STREAMS_STORE": f"{settings.pg_dsn()}?schema={schema}",
        "IOT_STREAMS_ALERT_RULES": str(rules_file),
        "IOT_STREAMS_NOTIFIER__ENABLED": "false",
        "IOT_STREAMS_BATCH_MAX": "200",
    }
    ports = free_ports(2)
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log", ports[n]) for n in (0, 1)]
    for worker in workers:
        worker.start()

    def logs() -> str:
        """Each worker's crashes and assignments, for failure messages."""
        return "\n".join(
            f"worker-{n}: {line[:300]}"
            for n, worker in enumerate(workers)
            for line in worker.log.read_text(errors="replace").splitlines()
            if "Crashed" in line or "Error" in line or "assigned [" in line
        )

    # The group settles (each worker holds partitions) before the devices publish.
    await until(
        lambda: _shared(workers[0].assigned(), workers[1].assigned()),
        60,
        lambda: f"the workers should share the partitions\n{logs()}",
    )
    with (tmp_path / "simulator.log").open("ab") as simulator_log:
        simulator = track(
            subprocess.Popen(  # noqa: ASYNC220 - runs beside the test, not awaited
                [
                    sys.executable,
                    "-m",
                    "iotctl.main",
                    "simulate",
                    "--json",
                    "--quiet",
                    "--devices",
                    "18",
                    "--rate",
                    "180",
                    "--duration",
                    "150",
                    "--duplicates",
                    "0.05",
                    "--seed",
                    "11",
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
        )

    # Both workers own partitions and apply batches; the store's positions grow.
    await until(
        lambda: all(w.applied() > 0 for w in workers) and all(w.assigned() for w in workers),
        90,
        lambda: f"both workers should apply batches: {[w.applied() for w in workers]}\n{logs()}",
    )
    before = sum(_positions(store, group).values())
    await until(
        lambda: sum(_positions(store, group).values()) > before,
        30,
        lambda: f"store positions stuck at {_positions(store, group)}",
    )
    assert workers[0].assigned().isdisjoint(workers[1].assigned())
    victim, survivor = workers
    moved = victim.assigned()
    await asyncio.sleep(0.7)  # mid-run: the simulator keeps publishing, batches in flight
    victim.kill()
    at_kill = _positions(store, group)
    survivor_applied = survivor.applied()

    # The survivor takes the victim's partitions (after the session timeout) and applies
    # the records published to them after the kill.
    await until(
        lambda: survivor.assigned() == set(range(PARTITIONS)),
        45,
        lambda: f"survivor still assigned {survivor.assigned()}\n{logs()}",
    )
    await until(
        lambda: any(_positions(store, group).get(p, 0) > at_kill.get(p, 0) for p in moved),
        45,
        lambda: f"the victim's partitions {moved} did not advance past {at_kill}\n{logs()}",
    )
    assert survivor.applied() > survivor_applied
    assert survivor.alive()

    await asyncio.sleep(3)  # more traffic on the survivor alone
    simulator.send_signal(signal.SIGTERM)
    summary, _ = simulator.communicate(timeout=60)
    report = json.loads(summary)
    assert simulator.returncode == 0, report
    assert gateway.terminate() == 0  # drained: everything acknowledged is in the log

    ends = await end_offsets(kafka_client(settings), topic, PARTITIONS)

    def caught_up() -> bool:
        positions = _positions(store, group)
        done = all(positions.get(p, 0) >= end for p, end in ends.items() if end)
        return done and store.outbox_backlog() == 0

    await until(caught_up, 60, lambda: f"survivor at {_positions(store, group)}, log ends {ends}")
    assert {p: _positions(store, group).get(p, 0) for p in ends if ends[p]} == {
        p: end for p, end in ends.items() if end
    }
    assert any(ends[p] > at_kill.get(p, 0) for p in moved), "the moved partitions got traffic"
    assert survivor.terminate() == 0

    await assert_state_matches_log(
        settings, topic, PARTITIONS, store, rules_file, report["acked_by_kind"].get("ok", 0)
    )
