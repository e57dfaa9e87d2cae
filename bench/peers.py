"""Benchmark: our worker beside quixstreams and bytewax on one log, each checked by the oracle.

Pre-loads ``--events`` Avro telemetry records (Confluent framing, ``bench.stream_worker``'s
log of ``--devices`` devices on 6 partitions, with ``--redeliveries`` of them written twice,
see ``bench.peers_log``) and runs, in the same run, on that log, ``--repeats`` times each:

* ``raw``: ``bench.stream_worker``'s bare aiokafka consume loop that does nothing (the limit);
* ``ours``: one ``iotctl streams worker`` process, exactly-once effects, SQLite store, timed
  as ``bench.stream_worker`` times it (first committed batch to the store's positions at the
  end offsets);
* ``quix_exactly_once`` and ``quix_at_least_once``: ``bench.peer_quix``, a quixstreams
  application, with ``processing_guarantee`` exactly-once and at-least-once;
* ``bytewax``: ``bench.peer_bytewax``, a bytewax dataflow with recovery on.

Every system does the same work (``bench.peers_work``: repeated ``seq`` dropped, per device
the count and latest values, 1-minute and 1-hour tumbling windows with count, sum, min and max
per device and metric), and every run's outcome is held against the oracle's
(``tests.oracle`` on the generated events): a run whose outcome differs is reported as
failed and its rate is not used. A system's rate is the median of its matching runs.
Loopback only; stops by itself (``--timeout``). Writes ``bench/results/peers.json`` and
``.png``.

    .venv/bin/python -m bench.peers [--events 200000] [--repeats 3]   # ~5 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from bench.peers_log import differences, expected, peers_log, stored
from bench.peers_work import Outcome, stack_kafka
from bench.procs import Children
from bench.stream_worker import (
    PARTITIONS,
    log,
    preload,
    raw_loop,
    register_telemetry,
    run_to_files,
    run_worker,
    sqlite_positions,
    worker_env,
)
from contracts.kafka import KafkaClientSettings
from streams.store.sqlite import SqliteStore

RESULTS = Path(__file__).parent / "results"
PEERS_PYTHON = Path(__file__).resolve().parent.parent / ".venv-bench/bin/python"
"""The peers' interpreter (``make bench-venv``): quixstreams pins its own confluent-kafka."""
PEERS = {
    "quix_exactly_once": ("bench.peer_quix", ["--guarantee", "exactly-once"]),
    "quix_at_least_once": ("bench.peer_quix", ["--guarantee", "at-least-once"]),
    "bytewax": ("bench.peer_bytewax", []),
}
SYSTEMS = ["raw", "ours", *PEERS]
LABELS = {
    "raw": "raw aiokafka\nloop (limit)",
    "ours": "ours\nexactly-once",
    "quix_exactly_once": "quixstreams\nexactly-once",
    "quix_at_least_once": "quixstreams\nat-least-once",
    "bytewax": "bytewax\nrecovery on",
}


@dataclass(frozen=True, slots=True)
class Bench:
    """What every run of one benchmark shares: the log, its expected outcome, where to go."""

    kafka: KafkaClientSettings
    topic: str
    schema_id: int
    ends: dict[int, int]
    want: Outcome
    token: str
    work: Path
    children: Children
    timeout_s: float
    peers_python: Path

    @property
    def records(self) -> int:
        return sum(self.ends.values())


async def run_ours(bench: Bench, run: str) -> tuple[dict[str, Any], Outcome]:
    """Our worker on a fresh SQLite store; its outcome is read back from that store, which is
    deleted then (its log stays)."""
    db = bench.work / f"{run}.db"
    group = f"bench-peers-{bench.token}-{run}"
    result = await run_worker(
        bench.children,
        "ours",
        store_url=f"sqlite:///{db}",
        positions=sqlite_positions(db, f"{group}-ours", bench.topic),
        ends=bench.ends,
        env=worker_env(bench.kafka, bench.topic, group),
        logfile=bench.work / f"{run}.log",
        timeout_s=bench.timeout_s,
    )
    store = SqliteStore(db)
    try:
        return result, stored(store)
    finally:
        store.close()
        for path in bench.work.glob(f"{run}.db*"):
            path.unlink()


async def run_peer(bench: Bench, name: str, run: str) -> tuple[dict[str, Any], Outcome]:
    """One peer process on a fresh consumer group and state folder (deleted once it exited;
    its log stays); it reports its time and outcome in a file."""
    module, extra = PEERS[name]
    out = bench.work / f"{run}.json"
    with (bench.work / f"{run}.log").open("ab") as logfile:
        child = await bench.children.spawn(
            name,
            str(bench.peers_python),
            "-m",
            module,
            "--topic",
            bench.topic,
            "--schema-id",
            str(bench.schema_id),
            "--records",
            str(bench.records),
            "--group",
            f"bench-peers-{bench.token}-{run}",
            "--state-dir",
            str(bench.work / f"{run}-state"),
            "--out",
            str(out),
            *extra,
            stdout=logfile,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        rc = await asyncio.wait_for(child.process.wait(), bench.timeout_s)
    except TimeoutError:
        await child.stop(5)
        raise AssertionError(f"{name}: timed out; see {bench.work / f'{run}.log'}") from None
    finally:
        shutil.rmtree(bench.work / f"{run}-state", ignore_errors=True)
    assert rc == 0, f"{name} exited with {rc}; see {bench.work / f'{run}.log'}"
    report = json.loads(out.read_text())
    return report, Outcome.from_json(report.pop("outcome"))


async def measure(bench: Bench, name: str, repeat: int) -> dict[str, Any]:
    """One run of one system: its figures, and whether its outcome is the oracle's."""
    run = f"{name}-{repeat}"
    if name == "raw":
        return await raw_loop(bench.kafka, bench.topic, bench.ends)
    try:
        if name == "ours":
            result, outcome = await run_ours(bench, run)
        else:
            result, outcome = await run_peer(bench, name, run)
    except AssertionError as exc:  # it exited, failed or timed out
        return {"events_per_s": None, "matches_oracle": False, "error": str(exc)}
    found = differences(outcome, bench.want)
    return {**result, "matches_oracle": not found, "differences": found}


def summarize(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A system's rate is the median of its runs, if every one of them matched the oracle;
    otherwise it failed and has no rate."""
    rates = [run["events_per_s"] for run in runs]
    matched = name == "raw" or all(run["matches_oracle"] for run in runs)
    return {
        "status": "ok" if matched else "failed",
        "events_per_s": round(statistics.median(rates)) if matched else None,
        "events_per_s_runs": rates,
        "matches_oracle": None if name == "raw" else matched,
        "runs": runs,
    }


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Ours against each peer, and each system against the raw loop (None for a failed one)."""

    def ratio(a: str, b: str) -> float | None:
        x, y = results[a]["events_per_s"], results[b]["events_per_s"]
        return round(x / y, 3) if x and y else None

    return {
        "ours_vs_peer": {peer: ratio("ours", peer) for peer in PEERS},
        "vs_raw": {name: ratio(name, "raw") for name in SYSTEMS[1:]},
    }


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    results = report["results"]
    rates = [results[n]["events_per_s"] or 0 for n in SYSTEMS]
    colors = ["#999999", "#3b7dd8", "#e8590c", "#f59f00", "#2f9e44"]
    fig, ax = plt.subplots(figsize=(10, 4.6))
    bars = ax.bar([LABELS[n] for n in SYSTEMS], rates, color=colors)
    ax.set_yscale("log")
    ax.set_ylabel("events/s (log), median of runs")
    ax.set_title(
        f"{report['log']['events']:,} telemetry events, {report['log']['partitions']} partitions,"
        f" one process each, {report['repeats']} runs"
    )
    for name, bar, rate in zip(SYSTEMS, bars, rates, strict=True):
        vs_raw = report["ratios"]["vs_raw"].get(name)
        text = (
            "failed: no output equal\nto the oracle's"
            if results[name]["status"] == "failed"
            else f"{rate:,}" + (f"\n{vs_raw:.1%} of raw" if vs_raw else "")
        )
        ax.annotate(
            text,
            (bar.get_x() + bar.get_width() / 2, max(rate, 1)),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    ax.set_ylim(top=max(rates) * 3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def delete_topics(kafka: KafkaClientSettings, token: str) -> None:
    """Deletes the run's topics: the log and the changelog topics quixstreams created (their
    names hold the consumer group, so the run's token)."""
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.delete_topics([t for t in await admin.list_topics() if token in t])
    finally:
        await admin.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    kafka = stack_kafka()
    token = uuid.uuid4().hex[:8]
    topic = f"bench.peers.{token}.telemetry"
    records = peers_log(args.events, args.devices, args.redeliveries)
    log(f"preloading {len(records):,} records ({args.redeliveries:,} redelivered) into {topic}")
    started = time.perf_counter()
    ends = await preload(kafka, topic, records)
    preload_s = time.perf_counter() - started
    children = Children()
    try:
        registered = await register_telemetry(kafka)
        want = expected(records)
        log(f"preloaded in {preload_s:.1f}s; the oracle expects {len(want.windows):,} windows")
        work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
        log(f"logs in {work}")
        bench = Bench(
            kafka,
            topic,
            registered.schema_id,
            ends,
            want,
            token,
            work,
            children,
            args.phase_timeout,
            args.peers_python,
        )
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SYSTEMS}
        for repeat in range(1, args.repeats + 1):
            for name in SYSTEMS:
                result = await measure(bench, name, repeat)
                runs[name].append(result)
                verdict = {True: "matches the oracle", False: "DIFFERS from the oracle"}.get(
                    result.get("matches_oracle"), ""
                )
                log(f"run {repeat} {name}: {result['events_per_s'] or 0:,} ev/s {verdict}")
    finally:
        await children.stop_all()
        await delete_topics(kafka, token)
    results = {name: summarize(name, runs[name]) for name in SYSTEMS}
    return {
        "benchmark": "peers",
        "what": "our worker beside quixstreams and bytewax on one preloaded log, same work, "
        "each run's output checked against the oracle",
        "log": {
            "events": sum(ends.values()),
            "devices": args.devices,
            "redelivered": args.redeliveries,
            "partitions": PARTITIONS,
            "metrics_per_event": 3,
            "expected_windows": len(want.windows),
            "preload_seconds": round(preload_s, 1),
        },
        "repeats": args.repeats,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg": os.getloadavg(),
        },
        "versions": versions(args.peers_python),
        "results": results,
        "ratios": ratios(results),
        "notes": NOTES,
    }


NOTES = [
    "Rate = events / time. ours: from the first committed batch until the store's positions "
    "reach the end offsets (bench.stream_worker's timing); peers: from the first record "
    "read until the framework returned (quixstreams: final checkpoint committed, consumer "
    "and RocksDB closed; bytewax: end of input, last snapshot written); raw: first fetch to "
    "last record.",
    "ours also evaluates the example alert rules and publishes the alerts from its outbox "
    "(work the peers do not do); the peers keep their state in their own stores "
    "(quixstreams: RocksDB and changelog topics; bytewax: SQLite recovery snapshots every "
    "5 s) and hand their emitted values to an in-memory collector for the oracle check.",
    "A run's outcome (per device count and latest values; every 1m and 1h window's count, "
    "sum, min and max) must equal tests.oracle's exactly, sums included; a system with a "
    "run that differs is 'failed' and gets no rate.",
    "One process per system, one at a time; Kafka runs on the same 2 cores.",
]


def versions(python: Path) -> dict[str, str]:
    """The versions of the systems compared, as the interpreter running each has them."""
    ask = (
        "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
        "('quixstreams', 'bytewax', 'confluent-kafka')}))"
    )
    peers = json.loads(
        subprocess.run([str(python), "-c", ask], check=True, capture_output=True, text=True).stdout
    )
    return {"python": platform.python_version(), "aiokafka": metadata.version("aiokafka"), **peers}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="records in the log")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument(
        "--redeliveries", type=int, default=None, help="records written twice (default: 1%%)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each system")
    parser.add_argument("--phase-timeout", type=float, default=120, help="one run of a system")
    parser.add_argument("--timeout", type=float, default=600, help="the whole benchmark")
    parser.add_argument("--out", type=Path, default=RESULTS / "peers.json")
    parser.add_argument(
        "--peers-python", type=Path, default=PEERS_PYTHON, help="interpreter with .[bench]"
    )
    args = parser.parse_args()
    if not args.peers_python.exists():
        parser.error(f"{args.peers_python} not found: `make bench-venv` installs the peers")
    if args.redeliveries is None:
        args.redeliveries = args.events // 100
    run_to_files(run(args), args.timeout, args.out, chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
