"""Benchmark: events/s of one ``iotctl streams worker`` process, SQLite and PostgreSQL.

Pre-loads ``--events`` Avro telemetry records (Confluent framing, schema registered in the
embedded registry, as the gateway writes them) into a fresh 6-partition topic: ``--devices``
devices at 1 Hz, keyed and partitioned by device, per-device ``seq`` and event time, the
simulator's metrics; a few devices cross the example alert rules, so the outbox relay works.
Then, in the same run, on the same log:

* ``raw``: a bare aiokafka consume loop that does nothing with the records (the limit);
* ``sqlite``: one worker process on a fresh SQLite store;
* ``postgres``: one worker process on a fresh schema of the dev stack's PostgreSQL;
* ``rebuild``: ``iotctl replay rebuild --jobs 1``'s code
  (``streams.replay.rebuild.rebuild``, in this process) into a fresh SQLite shadow store
  (``synchronous=OFF``), the whole log, same processor;
* ``rebuild_parallel``: ``--jobs N`` (N = CPUs): ``streams.replay.jobs.rebuild_parallel``,
  processes each rebuilding some partitions into a file of their own, merged into the shadow;
  its time includes starting the processes and the merge, and its hashes must equal the
  one-process rebuild's.

A worker's rate is measured from its first committed batch until the store's positions reach
the end offsets (start-up and the group join are not counted), from polling the store. The
outbox relay's p99 comes from the worker's ``iot_streams_outbox_publish_seconds`` histogram
(time to publish one claimed batch with acks=all; bucket upper bound). Loopback only; stops
by itself (``--timeout``). Writes ``bench/results/stream_worker.json`` and ``.png``.

    .venv/bin/python -m bench.stream_worker [--events 200000] [--devices 1000]   # ~3 min
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import sqlite3
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.procs import Children, cpu_seconds, pid_listening
from contracts.avro import RegisteredSchema, SchemaCatalog, encode
from contracts.kafka import KafkaClientSettings
from contracts.partitioning import partition_for
from contracts.registry.factory import open_registry
from devstack import DevStackSettings
from devstack.clients import client_env, kafka_client
from streams.replay.jobs import rebuild_parallel
from streams.replay.rebuild import rebuild
from streams.settings import WorkerSettings
from streams.store.postgres import PostgresStore
from streams.store.sqlite import SqliteStore
from tests.clients import AUTHORIZATION_OFF

PARTITIONS = 6
SUBJECT = "iot.telemetry.v1-value"
TARGETS = {"sqlite": 30_000, "postgres": 15_000}
REBUILD_TARGET = 50_000
RESULTS = Path(__file__).parent / "results"
ALERT_RULES = Path(__file__).resolve().parent.parent / "config/alerts.example.yaml"


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def make_records(events: int, devices: int, seed: int = 7) -> list[tuple[int, str, dict[str, Any]]]:
    """(partition, device_id, record): 1 Hz per device, realistic seq and timestamps; each
    device on the partition the platform's partitioner gives it (the worker skips a record
    on any other as ``misrouted``)."""
    rng = random.Random(seed)
    t0 = 1_764_000_000_000
    temps = [rng.uniform(18, 30) for _ in range(devices)]
    hot = set(rng.sample(range(devices), max(1, devices // 50)))  # these cross temperature-high
    out: list[tuple[int, str, dict[str, Any]]] = []
    tick = 0
    while len(out) < events:
        for index in range(devices):
            if len(out) >= events:
                break
            device_id = f"bsw-{index:05d}"
            drift = 0.8 if index in hot else 0.3
            temps[index] = min(45.0, max(5.0, temps[index] + rng.uniform(-drift, drift)))
            if index in hot and tick % 120 == 60:
                temps[index] = 38.0 if temps[index] < 35 else 25.0
            ts = t0 + tick * 1000 + rng.randrange(0, 200)
            out.append(
                (
                    partition_for(device_id, PARTITIONS),
                    device_id,
                    {
                        "event_id": f"{device_id}:{tick}",
                        "device_id": device_id,
                        "ts": ts,
                        "received_at": ts + rng.randrange(3, 40),
                        "seq": tick,
                        "metrics": {
                            "temp_c": round(temps[index], 2),
                            "humidity_pct": round(rng.uniform(35, 65), 1),
                            "battery_pct": round(max(0.0, 100 - tick * 0.02), 2),
                        },
                    },
                )
            )
        tick += 1
    return out


async def register_telemetry(kafka: KafkaClientSettings) -> RegisteredSchema:
    """The telemetry schema as registered in the embedded registry (idempotent: the same
    schema gets the same id every time)."""
    async with open_registry("embedded", kafka) as registry:
        return await registry.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))


async def preload(
    kafka: KafkaClientSettings, topic: str, records: list[tuple[int, str, dict[str, Any]]]
) -> dict[int, int]:
    """Creates ``topic`` and fills it with ``records`` (partition, device id, record) in
    their order; returns the end offset per partition."""
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    registered = await register_telemetry(kafka)
    producer = AIOKafkaProducer(
        acks=1, linger_ms=20, max_batch_size=256 * 1024, **kafka.aiokafka_kwargs()
    )
    await producer.start()
    try:
        pending = []
        for partition, device_id, record in records:
            pending.append(
                await producer.send(
                    topic,
                    value=encode(record, registered),
                    key=device_id.encode(),
                    partition=partition,
                    headers=[("event_id", record["event_id"].encode())],
                )
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return await end_offsets(kafka, topic)


async def end_offsets(kafka: KafkaClientSettings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**kafka.aiokafka_kwargs())
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def raw_loop(kafka: KafkaClientSettings, topic: str, ends: dict[int, int]) -> dict[str, Any]:
    """A consumer that fetches every record and does nothing with it."""
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
        **kafka.aiokafka_kwargs(),
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        total, count = sum(ends.values()), 0
        cpu0, started = time.process_time(), time.perf_counter()
        while count < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            count += sum(len(records) for records in batch.values())
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    finally:
        await consumer.stop()
    return {
        "events": count,
        "seconds": round(elapsed, 3),
        "events_per_s": round(count / elapsed),
        "cpu_pct_of_one_core": round(100 * cpu / elapsed, 1),
    }


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its children that ended (rebuild processes)."""
    me, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


async def rebuild_phase(
    settings: DevStackSettings, topic: str, group: str, jobs: int
) -> dict[str, Any]:
    """The whole topic rebuilt into a fresh SQLite shadow store by ``jobs`` processes
    (``streams.replay.rebuild.rebuild`` in this process for 1, ``rebuild_parallel`` otherwise)."""
    worker = WorkerSettings(
        telemetry_topic=topic, group=group, kafka=kafka_client(settings), alert_rules=ALERT_RULES
    )
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as tmp:
        shadow = SqliteStore(Path(tmp) / "shadow.db", synchronous="OFF")
        shadow.migrate()
        cpu0 = _cpu_with_children()
        if jobs == 1:
            report = await rebuild(worker, shadow)
        else:
            report = await rebuild_parallel(worker, shadow, jobs=jobs)
        cpu = _cpu_with_children() - cpu0
        shadow.close()
    return {
        "jobs": jobs,
        "events": report.events,
        "seconds": round(report.seconds, 3),
        "events_per_s": round(report.rate),
        "cpu_seconds_all_processes": round(cpu, 2),
        "cpu_us_per_event": round(1e6 * cpu / report.events, 1),
        "events_per_cpu_s": round(report.events / cpu),
        "hashes": report.hashes,
    }


def histogram_p(text: str, name: str, q: float) -> tuple[float | None, int]:
    """The ``q`` quantile of a Prometheus histogram (bucket upper bound) and its count."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    count = int(buckets[-1][1]) if buckets else 0
    if not count:
        return None, 0
    for bound, cumulative in buckets:
        if cumulative >= q * count:
            return bound, count
    return None, count


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def worker_env(kafka: KafkaClientSettings, topic: str, group: str) -> dict[str, str]:
    """The environment of a benchmarked worker: this process's, plus the topic, the group
    (``run_worker`` suffixes it per phase), the bench principal's Kafka login, no query
    authorization and no downlink notifier (neither is measured here)."""
    return {
        **os.environ,
        "IOT_STREAMS_GROUP": group,
        "IOT_STREAMS_TELEMETRY_TOPIC": topic,
        **client_env("IOT_STREAMS_", kafka),
        **AUTHORIZATION_OFF,
        "IOT_STREAMS_NOTIFIER__ENABLED": "false",
        "IOT_STREAMS_ALERT_RULES": str(ALERT_RULES),
    }


async def run_worker(
    children: Children,
    name: str,
    *,
    store_url: str,
    positions: Callable[[], dict[int, int]],
    ends: dict[int, int],
    env: dict[str, str],
    logfile: Path,
    timeout_s: float,
) -> dict[str, Any]:
    """Starts a worker, times it from its first committed batch to the end offsets."""
    port = _free_port()
    worker_env = {
        **env,
        "IOT_STREAMS_STORE": store_url,
        "IOT_STREAMS_GROUP": f"{env['IOT_STREAMS_GROUP']}-{name}",
        "IOT_STREAMS_HTTP__PORT": str(port),
    }
    with logfile.open("ab") as out:
        child = await children.spawn(
            name,
            sys.executable,
            "-m",
            "iotctl.main",
            "streams",
            "worker",
            "--log-level",
            "warning",
            env=worker_env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    total = sum(ends.values())
    spawned = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    first: tuple[float, int, float | None] | None = None
    samples: list[tuple[float, int]] = []
    while True:
        assert child.process.returncode is None, f"{name} exited; see {logfile}"
        assert time.monotonic() < deadline, f"{name}: timed out at {positions()} of {ends}"
        now, done = time.perf_counter(), sum(positions().values())
        if done and first is None:
            first = (now, done, cpu_seconds(child.pid))
        if first is not None:
            samples.append((round(now - first[0], 2), done))
        if done >= total:
            break
        await asyncio.sleep(0.05)
    assert first is not None
    cpu_end = cpu_seconds(child.pid)
    elapsed = now - first[0]
    measured = total - first[1]
    backlog_deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < backlog_deadline:
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        if metric(text, "iot_streams_outbox_backlog") == 0:
            break
        await asyncio.sleep(0.5)
    p99, publishes = histogram_p(text, "iot_streams_outbox_publish_seconds", 0.99)
    p50, _ = histogram_p(text, "iot_streams_outbox_publish_seconds", 0.50)
    commit_p50, _ = histogram_p(text, "iot_streams_commit_seconds", 0.50)
    commit_p99, _ = histogram_p(text, "iot_streams_commit_seconds", 0.99)
    batches = metric(text, "iot_streams_batch_size_count")
    batch_events = metric(text, "iot_streams_batch_size_sum")
    rc = await child.stop()
    return {
        "events_measured": measured,
        "events_before_first_sample": first[1],
        "startup_to_first_batch_s": round(first[0] - spawned, 2),
        "seconds": round(elapsed, 3),
        "events_per_s": round(measured / elapsed),
        "worker_cpu_pct_of_one_core": (
            round(100 * (cpu_end - first[2]) / elapsed, 1)
            if cpu_end is not None and first[2] is not None
            else None
        ),
        "applied": metric(text, "iot_streams_events_applied_total"),
        "batches": batches,
        "mean_batch_size": round(batch_events / batches) if batches and batch_events else None,
        "commit_p50_s_le": commit_p50,
        "commit_p99_s_le": commit_p99,
        "outbox_published": metric(text, "iot_streams_outbox_published_total"),
        "outbox_publish_batches": publishes,
        "outbox_publish_p50_s_le": p50,
        "outbox_publish_p99_s_le": p99,
        "exit_code": rc,
        "progress": samples[:: max(1, len(samples) // 40)],
    }


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http://127.0.0.1
        return str(response.read().decode())


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_cpu(kafka_pid: int | None) -> dict[str, float]:
    """CPU seconds of the Kafka broker and of every ``postgres`` process (all backends,
    also other clients'), read from ``/proc``."""
    postgres = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().startswith("postgres"):
                    postgres += cpu_seconds(int(entry.name)) or 0.0
    return {"kafka": cpu_seconds(kafka_pid) or 0.0, "postgres": postgres}


def sqlite_positions(path: Path, group: str, topic: str) -> Callable[[], dict[int, int]]:
    """Next offset per partition from the worker's SQLite store (read-only, WAL)."""

    def read() -> dict[int, int]:
        if not path.exists():
            return {}
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                rows = db.execute(
                    "SELECT kafka_partition, last_offset FROM inbox_offsets "
                    "WHERE group_id = ? AND topic = ?",
                    (group, topic),
                ).fetchall()
        except sqlite3.OperationalError:
            return {}  # not migrated yet
        return {int(p): int(o) + 1 for p, o in rows}

    return read


def pg_positions(store: PostgresStore, group: str) -> Callable[[], dict[int, int]]:
    def read() -> dict[int, int]:
        return {tp.partition: o + 1 for tp, o in store.positions(group).items()}

    return read


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = ["raw", "sqlite", "postgres", "rebuild", "rebuild_parallel"]
    rates = [report["results"][n]["events_per_s"] for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    jobs = report["results"]["rebuild_parallel"]["jobs"]
    labels = [*names[:3], "rebuild\n1 proc", f"rebuild\n{jobs} procs"]
    colors = ["#999999", "#3b7dd8", "#2f9e44", "#e8590c", "#c92a2a"]
    bars = left.bar(labels, rates, color=colors)
    left.set_yscale("log")
    left.set_ylabel("events/s (log)")
    left.set_title(f"{report['log']['events']:,} telemetry events, one worker")
    for bar, rate in zip(bars, rates, strict=True):
        left.annotate(
            f"{rate:,}",
            (bar.get_x() + bar.get_width() / 2, rate),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    for index, name in enumerate(names[1:], start=1):
        target = {**TARGETS, "rebuild": REBUILD_TARGET, "rebuild_parallel": REBUILD_TARGET}[name]
        left.hlines(target, index - 0.4, index + 0.4, colors="red", linestyles="--")
        left.annotate(
            f"target {target:,}", (index + 0.42, target), fontsize=8, color="red", va="center"
        )
    for name in names[1:3]:
        series = report["results"][name]["progress"]
        right.plot([t for t, _ in series], [n for _, n in series], label=name)
    right.set_xlabel("seconds since the first committed batch")
    right.set_ylabel("events applied (store positions)")
    right.set_title("progress")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = DevStackSettings.from_env()
    kafka, dsn = kafka_client(settings), settings.pg_dsn()
    token = uuid.uuid4().hex[:8]
    topic = f"bench.stream-worker.{token}.telemetry"
    schema = f"bench_sw_{token}"
    log(f"preloading {args.events:,} records from {args.devices} devices into {topic}")
    started = time.perf_counter()
    ends = await preload(kafka, topic, make_records(args.events, args.devices))
    preload_s = time.perf_counter() - started
    log(f"preloaded in {preload_s:.1f}s; end offsets {ends}")
    results: dict[str, Any] = {}
    results["raw"] = await raw_loop(kafka, topic, ends)
    log(f"raw aiokafka loop: {results['raw']['events_per_s']:,} ev/s")
    jobs = args.jobs or os.cpu_count() or 1
    for name, n in (("rebuild", 1), ("rebuild_parallel", jobs)):
        results[name] = await rebuild_phase(settings, topic, f"bench-sw-{token}-rebuild", n)
        log(
            f"replay rebuild, {n} process(es): {results[name]['events_per_s']:,} ev/s "
            f"(target {REBUILD_TARGET:,})"
        )
    same = results["rebuild"]["hashes"] == results["rebuild_parallel"]["hashes"]
    assert same, "a parallel rebuild must give the one-process rebuild's hashes"
    env = worker_env(kafka, topic, f"bench-sw-{token}")
    logs = Path(tempfile.mkdtemp(prefix="bench-stream-worker-logs-"))
    log(f"worker logs in {logs}")
    children = Children()
    kafka_pid = pid_listening(settings.kafka_port)
    pg_store = PostgresStore(dsn, schema=schema)
    pg_store.migrate()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-stream-worker-") as tmp:
            db = Path(tmp) / "state.db"
            phases: list[tuple[str, str, Callable[[], dict[int, int]]]] = [
                (
                    "sqlite",
                    f"sqlite:///{db}",
                    sqlite_positions(db, f"bench-sw-{token}-sqlite", topic),
                ),
                (
                    "postgres",
                    f"{dsn}?schema={schema}",
                    pg_positions(pg_store, f"bench-sw-{token}-postgres"),
                ),
            ]
            for name, url, positions in phases:
                before = server_cpu(kafka_pid)
                t0 = time.perf_counter()
                results[name] = await run_worker(
                    children,
                    name,
                    store_url=url,
                    positions=positions,
                    ends=ends,
                    env=env,
                    logfile=logs / f"{name}.log",
                    timeout_s=args.phase_timeout,
                )
                wall = time.perf_counter() - t0
                after = server_cpu(kafka_pid)
                results[name]["server_cpu_pct_of_one_core_whole_phase"] = {
                    k: round(100 * (after[k] - before[k]) / wall, 1) for k in after
                }
                log(
                    f"{name}: {results[name]['events_per_s']:,} ev/s "
                    f"(target {TARGETS[name]:,}); outbox publish p99 <= "
                    f"{results[name]['outbox_publish_p99_s_le']} s"
                )
    finally:
        await children.stop_all()
        pg_store.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
        await admin.start()
        try:
            await admin.delete_topics([topic])
        finally:
            await admin.close()
    raw = results["raw"]["events_per_s"]
    return {
        "benchmark": "stream_worker",
        "what": "one `iotctl streams worker` process, exactly-once effects, pre-loaded topic",
        "log": {
            "events": sum(ends.values()),
            "devices": args.devices,
            "rate_per_device_hz": 1,
            "partitions": PARTITIONS,
            "metrics_per_event": 3,
            "preload_seconds": round(preload_s, 1),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg": os.getloadavg(),
        },
        "targets_events_per_s": TARGETS,
        "results": results,
        "ratio_to_raw_loop": {
            n: round(results[n]["events_per_s"] / raw, 3)
            for n in [*TARGETS, "rebuild", "rebuild_parallel"]
        },
        "rebuild_target_events_per_s": REBUILD_TARGET,
        "rebuild_ratio_to_live_sqlite": round(
            results["rebuild"]["events_per_s"] / results["sqlite"]["events_per_s"], 3
        ),
        "rebuild_parallel_speedup": round(
            results["rebuild_parallel"]["events_per_s"] / results["rebuild"]["events_per_s"], 3
        ),
        "rebuild_hashes_equal": same,
        "meets_target": {
            **{n: results[n]["events_per_s"] >= t for n, t in TARGETS.items()},
            "rebuild": results["rebuild"]["events_per_s"] >= REBUILD_TARGET,
            "rebuild_parallel": results["rebuild_parallel"]["events_per_s"] >= REBUILD_TARGET,
        },
        "notes": [
            "Rate = events from the first committed batch to the end offsets / that time, "
            "from polling the store's positions every 50 ms.",
            "Outbox publish latency is the worker's iot_streams_outbox_publish_seconds "
            "(one claimed batch, acks=all), reported as the upper bound of the p99 bucket.",
            "The PostgreSQL worker stores into a schema of this run (?schema= on its URL).",
            "Rebuild = streams.replay.rebuild.rebuild in the benchmark process (one process, the "
            "workers' BatchProcessor) into a new SQLite shadow with synchronous=OFF; its rate "
            "is the events applied / the time from the first fetch to the last commit.",
            "rebuild_parallel = streams.replay.jobs.rebuild_parallel (iotctl replay rebuild "
            "--jobs N): N spawned processes, each rebuilding a share of the partitions into its "
            "own SQLite file, merged into the shadow in one transaction; its time covers "
            "process start-up (~0.7 s of imports each), applying and the merge. The Kafka "
            "broker runs on the same cores, and this machine is shared: cpu_us_per_event "
            "(all processes, children included) is the load-independent figure.",
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--phase-timeout", type=float, default=150)
    parser.add_argument("--jobs", type=int, default=None, help="parallel rebuild (default: CPUs)")
    parser.add_argument("--timeout", type=float, default=420, help="the whole run")
    parser.add_argument("--out", type=Path, default=RESULTS / "stream_worker.json")
    args = parser.parse_args()
    run_to_files(run(args), args.timeout, args.out, chart)
    return 0


def run_to_files(
    benchmark: Coroutine[Any, Any, dict[str, Any]],
    timeout: float,
    out: Path,
    draw: Callable[[dict[str, Any], Path], None],
) -> None:
    """Runs ``benchmark`` (cancelled after ``timeout`` s), writes its report to ``out`` (JSON)
    and ``draw``'s chart of it beside it (PNG)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    report = asyncio.run(asyncio.wait_for(benchmark, timeout))
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    draw(report, out.with_suffix(".png"))
    log(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    sys.exit(main())
