"""PostgreSQL paused (SIGSTOP of the whole server) under a running worker: the worker's
``/readyz`` fails while the store hangs and recovers when it answers again, and every event
is applied once.

A paused server neither answers nor refuses (its kernel still acknowledges TCP), so no
timeout of the connection fires: readiness follows how long a store call has been waiting.
"""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from devstack import DevStackSettings
from devstack.clients import kafka_client
from devstack.postgres import Postgres
from devstack.process import running_pid
from streams.store.postgres import PostgresStore
from tests.clients import process_env
from tests.e2e.gateway_harness import create_topics
from tests.e2e.streams_harness import WorkerProcess, publish_readings, until
from tests.stacks import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (PostgreSQL's backends and helpers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.fixture
def schema(settings: DevStackSettings) -> Iterator[str]:
    name = f"e2e_pause_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def test_a_paused_database_fails_readiness_then_the_worker_recovers_applying_once(
    settings: DevStackSettings, unique: Callable[[str], str], schema: str, tmp_path: Path
) -> None:
    kafka, topic = kafka_client(settings), unique("telemetry")
    await create_topics(kafka, topic, partitions=3)
    [port] = free_ports(1)
    group = unique("workers")
    env = {
        **os.environ,
        **process_env(settings),
        "IOT_STREAMS_GROUP": group,
        "IOT_STREAMS_TELEMETRY_TOPIC": topic,
        "IOT_STREAMS_STORE": f"{settings.pg_dsn()}?schema={schema}",
        "IOT_STREAMS_NOTIFIER__ENABLED": "false",
        "IOT_STREAMS_QUERY__ENABLED": "false",
        "IOT_STREAMS_DATA_DIR": str(tmp_path / "faust"),
    }
    worker = WorkerProcess(env, tmp_path / "worker.log", port)
    worker.start()
    log = lambda: worker.log.read_text(errors="replace")[-3000:]  # noqa: E731
    try:
        await until(lambda: _readyz(port) == 200, 60, lambda: f"never ready\n{log()}")
        await publish_readings(kafka, topic, 1, 240)
        await until(lambda: worker.applied() >= 240, 60, lambda: f"stuck\n{log()}")

        server = running_pid(Postgres(settings).handle)
        assert server is not None, "the stack's PostgreSQL is not running"
        paused = [server, *_children(server)]  # each backend is a process group of its own
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        try:
            await publish_readings(kafka, topic, 21, 240)  # a batch that will hang on the store
            await until(lambda: _readyz(port) == 503, 40, lambda: f"/readyz stayed 200\n{log()}")
        finally:
            for pid in paused:
                os.kill(pid, signal.SIGCONT)
        await until(lambda: _readyz(port) == 200, 60, lambda: f"did not recover\n{log()}")
        await until(lambda: worker.applied() >= 480, 60, lambda: f"not caught up\n{log()}")
        assert worker.alive()
    finally:
        worker.terminate()
    store = PostgresStore(settings.pg_dsn(), schema=schema)
    try:
        devices = store.devices()
        assert sum(device.count for device in devices) == 480  # each event applied once
        assert {device.last_seq for device in devices} == {40}
    finally:
        store.close()
