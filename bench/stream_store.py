"""Benchmark: events/s per worker with exactly-once effects, SQLite and PostgreSQL adapters.

Applies a synthetic telemetry log (the simulator's metrics temp_c, humidity_pct, battery_pct;
6 partitions interleaved; 1% gateway duplicates at later offsets; 10% of devices without
sequence numbers; alert rules that fire) through :class:`streams.BatchProcessor`, in batches
of 500, 1000 and 2000 events, for two fleets:

* ``fleet``: 1000 devices at 1 Hz, so nearly every event of a batch touches its own device
  row and its own six window rows (3 metrics x 1m/1h): the worst case for write-through;
* ``dense``: 50 devices at 20 Hz, so a batch updates each device's rows many times and
  writes them once.

In the same run it measures the raw limit the numbers compare with: the same projections in
memory with no store at all. Writes ``bench/results/stream_store.json``.

    .venv/bin/python bench/stream_store.py [--events 100000] [--runs 3]

``--queries`` measures the query API's reads of the devices instead: a store of 300k devices
(each with temp_c, humidity_pct and battery_pct, one in 100 also co2_ppm; half of them seen a
day after the others), written through ``commit_batch``, then the median time of
``device_page`` pages of 100 (the API's default limit): unfiltered, ``has_metric`` of a common
and of the rare metric, from the start and from the middle, and with ``seen_since``. Writes
``bench/results/stream_store_queries.json``.

    .venv/bin/python -m bench.stream_store --queries [--devices 300000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from devstack import DevStackSettings
from streams import BatchProcessor, Position, TelemetryEvent
from streams.projections import AlertRule, DeviceState, LatestValue, Projector
from streams.store import PostgresStore, SqliteStore
from streams.store.port import BatchWrite, Store

PARTITIONS = 6
TOPIC = "iot.telemetry.v1"
RULES = (
    AlertRule("temperature-high", "temp_c", "above", 30.0, 28.0),
    AlertRule("battery-low", "battery_pct", "below", 15.0, 20.0),
)
FLEETS = {"fleet": (1000, 1000), "dense": (50, 50)}  # devices, period in ms
Log = list[tuple[Position, TelemetryEvent]]


def make_log(events: int, devices: int, period_ms: int = 1000, seed: int = 7) -> Log:
    rng = random.Random(seed)
    t0 = 1_700_000_000_000
    temps = [rng.uniform(15, 32) for _ in range(devices)]
    offsets = [0] * PARTITIONS
    log: Log = []
    recent: list[tuple[int, TelemetryEvent]] = []
    tick = 0
    while len(log) < events:
        for index in range(devices):
            if len(log) >= events:
                break
            device_id = f"dev-{index:05d}"
            temps[index] += rng.uniform(-0.5, 0.5)
            ts = t0 + tick * period_ms + rng.randrange(0, max(1, period_ms // 5))
            seq = None if index % 10 == 0 else tick
            event_id = f"{device_id}:{tick}" if seq is not None else uuid.uuid4().hex
            event = TelemetryEvent(
                event_id=event_id,
                device_id=device_id,
                ts=ts,
                received_at=ts + 5,
                seq=seq,
                metrics={
                    "temp_c": round(temps[index], 2),
                    "humidity_pct": round(rng.uniform(30, 70), 1),
                    "battery_pct": round(max(0.0, 100 - tick * 0.01 + rng.uniform(-1, 1)), 3),
                },
            )
            partition = index % PARTITIONS
            log.append((Position(TOPIC, partition, offsets[partition]), event))
            offsets[partition] += 1
            recent.append((partition, event))
            if rng.random() < 0.01 and recent:  # a gateway duplicate at a later offset
                dup_partition, dup = recent[rng.randrange(max(0, len(recent) - 200), len(recent))]
                log.append((Position(TOPIC, dup_partition, offsets[dup_partition]), dup))
                offsets[dup_partition] += 1
        tick += 1
        recent = recent[-1000:]
    return log


def run(store: Store, log: Log, batch_size: int, db_cpu: Callable[[], float]) -> dict[str, float]:
    """Wall-clock rate, and the rate per CPU second (worker + its database backend): on a
    shared, loaded machine the second estimates what one otherwise idle worker would do."""
    processor = BatchProcessor(store, "bench", rules=RULES)
    commit = 0.0
    cpu_before, db_before = time.process_time(), db_cpu()
    started = time.perf_counter()
    for start in range(0, len(log), batch_size):
        result = processor.apply(log[start : start + batch_size])
        commit += result.commit_seconds
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before + db_cpu() - db_before
    return {
        "events_per_s": round(len(log) / elapsed),
        "events_per_cpu_s": round(len(log) / cpu),
        "seconds": round(elapsed, 3),
        "commit_share": round(commit / elapsed, 3),
        "backlog": store.outbox_backlog(),
    }


def backend_cpu(dsn: str, application_name: str) -> Callable[[], float]:
    """CPU seconds used so far by the server process serving ``application_name``."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchone()
    assert row is not None, "the store's connection is not in pg_stat_activity"
    stat = Path(f"/proc/{row[0]}/stat")
    ticks = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    return read


def raw_limit(log: Log) -> int:
    """Projections only, in memory: what the store adds its cost to."""
    projector = Projector(rules=RULES)
    started = time.perf_counter()
    for _, event in log:
        projector.apply(event)
    projector.take_changes()
    return round(len(log) / (time.perf_counter() - started))


Factory = Callable[[], tuple[Store, Callable[[], None], Callable[[], float]]]


def best_of(runs: int, make: Factory, log: Log, batch_size: int) -> dict[str, object]:
    results = []
    for _ in range(runs):
        store, cleanup, db_cpu = make()
        try:
            results.append(run(store, log, batch_size, db_cpu))
        finally:
            cleanup()
    rates = [r["events_per_s"] for r in results]
    per_cpu = [r["events_per_cpu_s"] for r in results]
    return {
        "best": max(rates),
        "median": statistics.median(rates),
        "per_cpu_s_median": statistics.median(per_cpu),
        "runs": results,
    }


def sqlite_factory(tmp: Path) -> Factory:
    def make() -> tuple[Store, Callable[[], None], Callable[[], float]]:
        path = tmp / f"bench-{uuid.uuid4().hex[:8]}.db"
        store = SqliteStore(path)
        store.migrate()

        def cleanup() -> None:
            store.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return store, cleanup, lambda: 0.0  # in process: counted by process_time()

    return make


def postgres_factory(dsn: str) -> Factory:
    def make() -> tuple[Store, Callable[[], None], Callable[[], float]]:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        separator = "&" if "?" in dsn else "?"
        store = PostgresStore(f"{dsn}{separator}application_name={schema}", schema=schema)
        store.migrate()
        db_cpu = backend_cpu(dsn, schema)

        def cleanup() -> None:
            store.close()
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')

        return store, cleanup, db_cpu

    return make


QUERY_T0 = 1_700_000_000_000
QUERY_METRICS = ("temp_c", "humidity_pct", "battery_pct")
RECENT = QUERY_T0 + 86_400_000
RARE_METRIC = "co2_ppm"  # one device in 100
PAGE = 100  # the query API's default limit


def query_fleet(devices: int, chunk: int = 10_000) -> Iterator[list[DeviceState]]:
    """The devices of the query benchmark, in chunks: alternate blocks of 100 devices were
    last seen a day apart (``QUERY_T0`` and ``RECENT``), so half of them, and half of those
    with the rare metric, are seen since ``RECENT``."""
    for first in range(0, devices, chunk):
        states = []
        for i in range(first, min(devices, first + chunk)):
            last_seen = (RECENT if i // 100 % 2 else QUERY_T0) + i
            names = (*QUERY_METRICS, RARE_METRIC) if i % 100 == 42 else QUERY_METRICS
            metrics = {name: LatestValue(float(i % 50), last_seen) for name in names}
            states.append(
                DeviceState(
                    f"dev-{i:07d}", QUERY_T0, last_seen, 1, 1, 1, -63, (), 0, 0, 0, 0, 0,
                    metrics=metrics,
                )
            )  # fmt: skip
        yield states


def fill(store: Store, devices: int) -> float:
    """Writes the query benchmark's devices; returns the seconds it took."""
    started = time.perf_counter()
    for states in query_fleet(devices):
        added = [(metric, state.device_id) for state in states for metric in state.metrics]
        store.commit_batch(BatchWrite("bench", (), states, (), (), (), metrics_added=added))
    return round(time.perf_counter() - started, 2)


def time_page(read: Callable[[], list[DeviceState]], repeat: int) -> dict[str, float | int]:
    """Median and best of ``repeat`` calls after two warm-ups (a warm cache, as a server has)."""
    rows = len(read())
    read()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return {
        "median_ms": round(statistics.median(times), 3),
        "best_ms": round(min(times), 3),
        "rows": rows,
    }


def query_pages(store: Store, devices: int, repeat: int) -> dict[str, dict[str, float | int]]:
    """The page reads the query API makes for ``/api/devices``."""
    middle = f"dev-{devices // 2:07d}"
    cases: dict[str, Callable[[], list[DeviceState]]] = {
        "all": lambda: store.device_page(None, PAGE),
        "has_metric_common": lambda: store.device_page(None, PAGE, has_metric="temp_c"),
        "has_metric_rare": lambda: store.device_page(None, PAGE, has_metric=RARE_METRIC),
        "has_metric_rare_from_middle": lambda: store.device_page(
            middle, PAGE, has_metric=RARE_METRIC
        ),
        "has_metric_rare_seen_since": lambda: store.device_page(
            None, PAGE, seen_since=RECENT, has_metric=RARE_METRIC
        ),
        "has_metric_absent": lambda: store.device_page(None, PAGE, has_metric="no_such_metric"),
    }
    return {name: time_page(read, repeat) for name, read in cases.items()}


def queries(args: argparse.Namespace) -> int:
    dsn = DevStackSettings.from_env().pg_dsn()
    results: dict[str, object] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-store-queries-") as tmp:
        factories = {"sqlite": sqlite_factory(Path(tmp)), "postgres": postgres_factory(dsn)}
        for name, factory in factories.items():
            store, cleanup, _ = factory()
            try:
                seconds = fill(store, args.devices)
                pages = query_pages(store, args.devices, args.repeat)
            finally:
                cleanup()
            results[name] = {"fill_seconds": seconds, "pages": pages}
            for case, timing in pages.items():
                print(f"{name:8} {case:30} {timing['median_ms']:>9.3f} ms ({timing['rows']} rows)")
    report = {
        "benchmark": "stream_store_queries",
        "what": f"ProjectionStore.device_page, pages of {PAGE}, median of {args.repeat} warm calls",
        "devices": args.devices,
        "metrics": {"every_device": QUERY_METRICS, "one_device_in_100": RARE_METRIC},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before_and_after": [load_before, os.getloadavg()],
        },
        "results": results,
    }
    out = Path(args.out or Path(__file__).parent / "results/stream_store_queries.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batches", default="500,1000,2000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", action="store_true", help="measure device pages instead")
    parser.add_argument("--devices", type=int, default=300_000, help="with --queries")
    parser.add_argument("--repeat", type=int, default=15, help="with --queries")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.queries:
        return queries(args)
    args.out = args.out or str(Path(__file__).parent / "results/stream_store.json")
    batch_sizes = [int(b) for b in args.batches.split(",")]
    dsn = DevStackSettings.from_env().pg_dsn()
    results: dict[str, dict[str, dict[str, object]]] = {}
    limits: dict[str, int] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-stream-store-") as tmp:
        factories = {"sqlite": sqlite_factory(Path(tmp)), "postgres": postgres_factory(dsn)}
        for fleet, (devices, period_ms) in FLEETS.items():
            log = make_log(args.events, devices, period_ms)
            # A worker holds one batch of events, not the whole log: keep the resident log out
            # of the cyclic GC's scans, or the benchmark measures the GC walking it.
            gc.collect()
            gc.freeze()
            limits[fleet] = max(raw_limit(log) for _ in range(3))
            print(f"{fleet}: raw limit (projections in memory) {limits[fleet]:>8} ev/s")
            for name, factory in factories.items():
                by_size = results.setdefault(f"{name}/{fleet}", {})
                for batch_size in batch_sizes:
                    outcome = best_of(args.runs, factory, log, batch_size)
                    by_size[str(batch_size)] = outcome
                    print(
                        f"{fleet}: {name:8} batch {batch_size:5}: {outcome['best']:>8} ev/s, "
                        f"{outcome['per_cpu_s_median']:>8} ev per CPU s"
                    )
    report = {
        "benchmark": "stream_store",
        "what": "BatchProcessor.apply with exactly-once effects, one worker, one thread",
        "log": {
            "events": args.events,
            "fleets": {k: {"devices": d, "period_ms": p} for k, (d, p) in FLEETS.items()},
            "metrics_per_event": 3,
            "partitions": PARTITIONS,
            "windows": ["1m", "1h"],
            "alert_rules": len(RULES),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before_and_after": [load_before, os.getloadavg()],
        },
        "targets_events_per_s": {"sqlite": 30_000, "postgres": 15_000},
        "raw_limit_projections_in_memory_events_per_s": limits,
        "results": results,
        "ratio_to_raw_limit": {
            key: {
                size: round(float(r["best"]) / limits[key.split("/")[1]], 3)  # type: ignore[arg-type]
                for size, r in by_size.items()
            }
            for key, by_size in results.items()
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
