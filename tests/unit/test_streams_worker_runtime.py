"""The worker runtime in isolation: the notifier passes over records that are not alerts
(only a registry outage stops, and restarts, it), and readiness follows the store."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from contracts.avro import UnknownSchemaIdError
from contracts.registry.errors import RegistryUnavailableError
from streams import BatchProcessor, Position
from streams.domain import TopicPartition
from streams.errors import StoreUnavailableError
from streams.notifier import AlertCommandNotifier
from streams.settings import WorkerSettings
from streams.store import SqliteStore
from streams.worker.runtime import WorkerRuntime
from tests.oracle import RULES, TOPIC, event, make_log

ALERT = {
    "event_id": "a1",
    "device_id": "dev-1",
    "state": "RAISED",
    "rule": "temperature-high",
    "metric": "temp_c",
    "value": 31.0,
    "threshold": 30.0,
    "window_ms": 0,
    "ts": time.time_ns() // 1_000_000,
}


class _Registry:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def decode(self, _: bytes) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def runtime(tmp_path: Path) -> tuple[WorkerRuntime, AlertCommandNotifier]:
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    runtime = WorkerRuntime(WorkerSettings())
    return runtime, AlertCommandNotifier(store, {"temperature-high": "cool_down"})


@pytest.mark.parametrize(
    "answer",
    [
        UnknownSchemaIdError("schema id 7 is not known", schema_id=7),
        {"event_id": "dev-1:1", "device_id": "dev-1", "metrics": {}},  # a Telemetry record
        ["not", "a", "record"],
    ],
    ids=["unknown-schema", "telemetry", "not-a-record"],
)
async def test_a_record_that_is_not_an_alert_is_counted_and_passed_over(
    runtime: tuple[WorkerRuntime, AlertCommandNotifier], answer: Any
) -> None:
    worker, notifier = runtime
    worker.registry = _Registry(answer)  # type: ignore[assignment]
    await worker._notify(notifier, b"frame")
    assert worker.metrics.notifier_skipped._value.get() == 1
    assert worker.metrics.commands._value.get() == 0


async def test_an_alert_becomes_one_command_and_an_outage_is_raised_for_a_retry(
    runtime: tuple[WorkerRuntime, AlertCommandNotifier],
) -> None:
    worker, notifier = runtime
    worker.registry = _Registry(ALERT)  # type: ignore[assignment]
    await worker._notify(notifier, b"frame")
    await worker._notify(notifier, b"frame")  # redelivered: absorbed
    assert worker.metrics.commands._value.get() == 1
    worker.registry = _Registry(RegistryUnavailableError("down"))  # type: ignore[assignment]
    with pytest.raises(RegistryUnavailableError):
        await worker._notify(notifier, b"frame")
    assert worker.metrics.notifier_skipped._value.get() == 0
    worker.registry = _Registry({**ALERT, "event_id": "a0", "ts": 1})  # type: ignore[assignment]
    await worker._notify(notifier, b"frame")  # older than the dedupe horizon
    assert worker.metrics.notifier_stale._value.get() == 1
    assert worker.metrics.commands._value.get() == 1


async def test_readiness_follows_the_store_hung_or_failing() -> None:
    worker = WorkerRuntime(WorkerSettings(store_stall_s=0.2))
    worker._started = True  # what start() ends with
    assert worker.ready
    release = threading.Event()
    hung = asyncio.create_task(worker._on_store(lambda: release.wait(5)))
    await asyncio.sleep(0.5)  # a paused database: the call neither returns nor fails
    assert not worker.ready
    assert "has not returned" in (worker.problem() or "")
    release.set()
    await hung
    assert worker.ready

    def unavailable() -> None:
        raise StoreUnavailableError("postgres down")

    with pytest.raises(StoreUnavailableError):
        await worker._on_store(unavailable)
    assert not worker.ready  # until a store call succeeds again
    assert await worker._on_store(lambda: 7) == 7
    assert worker.ready


async def test_a_background_task_that_stopped_makes_the_worker_unready() -> None:
    worker = WorkerRuntime(WorkerSettings())
    worker._started = True

    async def crash() -> None:
        raise KeyError("rule")

    worker._tasks.append(asyncio.create_task(crash(), name="the notifier"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not worker.ready
    assert worker.problem() == "the notifier stopped: KeyError('rule')"


async def test_the_relay_deletes_rows_published_longer_ago_than_kept(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    BatchProcessor(store, "g", rules=RULES).apply(
        make_log([event("a", i * 1000, seq=i, temp=t) for i, t in enumerate([26.0, 18.0])])
    )
    with store.claim(10) as claim:
        assert len(claim.records) == 2
        claim.mark_published()
    worker = WorkerRuntime(WorkerSettings(outbox_keep_s=0))
    worker.store = store

    class _Idle:
        async def pump(self) -> int:
            worker._stop.set()  # one round is enough
            return 0

    await asyncio.sleep(0.01)  # published "longer ago" than 0 s
    await worker._run_relay(_Idle())  # type: ignore[arg-type]
    assert worker.metrics.outbox_pruned._value.get() == 2
    assert store.claim(10).records == []


async def test_the_relay_rides_through_a_store_lost_while_it_waits_for_appends(
    tmp_path: Path,
) -> None:
    """The cluster fault run on PostgreSQL: killed while the relays waited for appends (LISTEN),
    the server took every relay with it for good; rows appended later were never published."""
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    worker = WorkerRuntime(WorkerSettings())
    worker.store = store
    waits = 0

    def wait_for_outbox(timeout: float) -> bool:
        nonlocal waits
        waits += 1
        if waits == 1:
            raise StoreUnavailableError("postgres wait_for_outbox failed: server closed")
        return False

    store.wait_for_outbox = wait_for_outbox  # type: ignore[method-assign]
    pumps = 0

    class _Idle:
        async def pump(self) -> int:
            nonlocal pumps
            pumps += 1
            if pumps == 3:
                worker._stop.set()
            return 0

    await asyncio.wait_for(worker._run_relay(_Idle()), 10)  # type: ignore[arg-type]
    assert pumps == 3  # it pumped again after the lost wait
    assert waits >= 2


async def test_an_idle_worker_rides_through_a_store_lost_while_it_checks_for_a_swap(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    worker = WorkerRuntime(WorkerSettings())
    worker.store = store
    worker._started = True

    def lost() -> int:
        raise StoreUnavailableError("postgres stored_generation failed: server closed")

    store.stored_generation = lost  # type: ignore[method-assign]
    assert await worker.check_swap() is False  # no swap followed, and no crash
    assert not worker.ready  # until the store answers again


async def test_a_fetch_past_the_store_seeks_the_consumer_back_and_commits_nothing_of_it(
    tmp_path: Path,
) -> None:
    """The consumer of a worker whose partition came back to it may be positioned past the
    store (see ``test_streams_refetch``): it is seeked back to the stored position."""
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    worker = WorkerRuntime(WorkerSettings())
    worker.processor = BatchProcessor(store, "workers")
    seeks: list[dict[TopicPartition, int | None]] = []

    async def reseek(offsets: dict[TopicPartition, int | None]) -> None:
        seeks.append(offsets)

    worker.seek_with(reseek)
    tp = TopicPartition(TOPIC, 0)
    assert await worker.assigned([tp]) == {tp: None}
    log = [
        (Position(TOPIC, 0, offset), event("dev-1", 1_000 * (offset + 1), seq=offset + 1, t=1.0))
        for offset in range(8)
    ]
    assert (await worker._apply(log[:3])).applied == 3
    assert (await worker._apply(log[5:])).applied == 0
    assert seeks == [{tp: 3}]
    assert worker.reseeks == 1
    assert store.positions("workers")[tp] == 2
    assert (await worker._apply(log[3:])).applied == 5
    assert worker.reseeks == 1
