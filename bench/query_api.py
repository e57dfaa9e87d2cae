"""Benchmark: the query API's point-query latency and ingest->queryable freshness, during ingest.

One ``iotctl streams worker`` process (SQLite store, its own group and topic) applies a live
stream of Avro telemetry that this process produces at ``--ingest`` msg/s (``--devices``
devices, keyed, 6 partitions; produced straight to Kafka as the gateway writes it: the MQTT
leg is ``bench/gateway_ingest.py``'s subject). Meanwhile, in the same run:

* ``point``: an open-loop client at ``--rate`` req/s of ``GET /api/devices/{id}`` (random
  device, eventual consistency, keep-alive), latency from the scheduled send time;
* ``raw``: the same client and rate against the worker's ``/healthz`` (a trivial aiohttp
  handler in the same process: the limit the query is compared with);
* ``freshness``: every 200 ms a probe record with a unique value is produced; the time from
  the producer's ack until ``GET /api/devices/{probe}`` first shows the value (polled every
  5 ms) is the ingest->queryable freshness.

The two client phases run one after the other, ingest runs throughout. The machine has 2 cores
shared with Kafka, the worker and this load generator; the JSON records the CPU it had.
Writes ``bench/results/query_api.json`` and ``.png``.

    .venv/bin/python -m bench.query_api [--seconds 20] [--rate 500] [--ingest 5000]   # ~1.5 min
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.procs import Children
from contracts.avro import SchemaCatalog, encode
from contracts.kafka import KafkaClientSettings
from contracts.registry.factory import open_registry
from devstack import DevStackSettings
from devstack.clients import client_env, kafka_client
from tests.clients import AUTHORIZATION_OFF

PARTITIONS = 6
SUBJECT = "iot.telemetry.v1-value"
TARGET_P99_MS = 10.0
TARGET_FRESHNESS_P99_MS = 1000.0
RESULTS = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(f"[query_api] {message}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def summary(latencies_ms: list[float], errors: int, seconds: float) -> dict[str, Any]:
    return {
        "requests": len(latencies_ms),
        "errors": errors,
        "achieved_rps": round(len(latencies_ms) / seconds, 1),
        "p50_ms": pct(latencies_ms, 0.50),
        "p90_ms": pct(latencies_ms, 0.90),
        "p99_ms": pct(latencies_ms, 0.99),
        "max_ms": round(max(latencies_ms), 3) if latencies_ms else None,
    }


def record(device: str, seq: int, value: float) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "event_id": f"{device}:{seq}",
        "device_id": device,
        "ts": now,
        "received_at": now,
        "seq": seq,
        "metrics": {"temp_c": value},
        "attributes": {},
    }


class Ingest:
    """Produces telemetry at a steady rate until stopped; probes ride on the same producer."""

    def __init__(self, kafka: KafkaClientSettings, topic: str, rate: int, devices: int) -> None:
        self.kafka, self.topic, self.rate, self.devices = kafka, topic, rate, devices
        self.sent = 0
        self.producer: AIOKafkaProducer | None = None
        self.writer: Any = None
        self.seqs: dict[str, int] = {}

    async def start(self) -> None:
        async with open_registry("embedded", self.kafka) as registry:
            self.writer = await registry.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
        self.producer = AIOKafkaProducer(
            acks="all", enable_idempotence=True, linger_ms=5, **self.kafka.aiokafka_kwargs()
        )
        await self.producer.start()

    async def send(self, device: str, value: float) -> Any:
        assert self.producer is not None
        seq = self.seqs[device] = self.seqs.get(device, 0) + 1
        return await self.producer.send(
            self.topic, encode(record(device, seq, value), self.writer), key=device.encode()
        )

    async def run(self, stop: asyncio.Event) -> None:
        tick = 0.01
        per_tick = self.rate * tick
        started, owed = time.perf_counter(), 0.0
        while not stop.is_set():
            due = (time.perf_counter() - started) * self.rate - self.sent
            owed = max(0.0, due)
            for _ in range(int(min(owed, per_tick * 5))):
                device = f"dev-{random.randrange(self.devices):05d}"
                await self.send(device, random.uniform(10, 30))
                self.sent += 1
            await asyncio.sleep(tick)


async def open_loop(
    session: aiohttp.ClientSession, urls: list[str], rate: int, seconds: float
) -> dict[str, Any]:
    """Sends at ``rate`` req/s on a fixed schedule; latency counts from the scheduled time."""
    latencies: list[float] = []
    errors = 0

    async def one(url: str, scheduled: float) -> None:
        nonlocal errors
        try:
            async with session.get(url) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
                    return
        except aiohttp.ClientError:
            errors += 1
            return
        latencies.append((time.perf_counter() - scheduled) * 1000)

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    total = int(rate * seconds)
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(random.choice(urls), scheduled)))
    await asyncio.gather(*tasks)
    return summary(latencies, errors, time.perf_counter() - start)


async def freshness(
    session: aiohttp.ClientSession, base: str, ingest: Ingest, stop: asyncio.Event
) -> list[float]:
    samples: list[float] = []
    n = 0
    while not stop.is_set():
        n += 1
        device, value = f"probe-{n % 20}", float(n)
        acked = await (await ingest.send(device, value))
        del acked
        sent = time.perf_counter()
        deadline = sent + 10
        while time.perf_counter() < deadline:
            async with session.get(f"{base}/api/devices/{device}") as response:
                if response.status == 200:
                    body = await response.json()
                    if body["metrics"]["temp_c"]["value"] == value:
                        samples.append((time.perf_counter() - sent) * 1000)
                        break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)
    return samples


def _devices_ready(base: str, wanted: int) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/api/devices?limit=1000", timeout=2) as r:  # noqa: S310
            return len(json.loads(r.read())["devices"]) >= wanted
    except OSError:
        return False


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(args: argparse.Namespace) -> dict[str, Any]:  # noqa: PLR0915 - one run, in order
    settings = DevStackSettings.from_env()
    kafka = kafka_client(settings)
    token = uuid.uuid4().hex[:8]
    topic, group = f"bench.query.{token}", f"bench-query-{token}"
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    ingest = Ingest(kafka, topic, args.ingest, args.devices)
    await ingest.start()
    for device in range(args.devices):  # every device exists before the point queries
        await ingest.send(f"dev-{device:05d}", 20.0)
    assert ingest.producer is not None
    await ingest.producer.flush()
    work = Path(tempfile.mkdtemp(prefix="bench-query-"))
    port = free_port()
    env = {
        **os.environ,
        **client_env("IOT_STREAMS_", kafka),
        **AUTHORIZATION_OFF,  # the benchmark measures queries, not token checks
        "IOT_STREAMS_GROUP": group,
        "IOT_STREAMS_TELEMETRY_TOPIC": topic,
        "IOT_STREAMS_STORE": f"sqlite:///{work / 'state.db'}",
        "IOT_STREAMS_HTTP__PORT": str(port),
        "IOT_STREAMS_NOTIFIER__ENABLED": "false",
        "IOT_STREAMS_RELAY": "false",
        "IOT_STREAMS_DATA_DIR": str(work / "faust"),
    }
    children = Children()
    base = f"http://127.0.0.1:{port}"
    report: dict[str, Any] = {}
    try:
        with (work / "worker.log").open("ab") as out:
            await children.spawn(
                "worker",
                sys.executable,
                "-m",
                "iotctl.main",
                "streams",
                "worker",
                "--log-level",
                "warning",
                env=env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            if await asyncio.to_thread(_devices_ready, base, min(args.devices, 1000)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError((work / "worker.log").read_text()[-3000:])
            await asyncio.sleep(0.5)
        log(f"worker ready on {base}; ingesting {args.ingest} msg/s")
        stop = asyncio.Event()
        ingest_task = asyncio.create_task(ingest.run(stop))
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.sleep(3)  # warm-up at full ingest
            sent0, t0 = ingest.sent, time.perf_counter()
            probes_stop = asyncio.Event()
            probes = asyncio.create_task(freshness(session, base, ingest, probes_stop))
            urls = [f"{base}/api/devices/dev-{d:05d}" for d in range(args.devices)]
            log("point queries")
            point = await open_loop(session, urls, args.rate, args.seconds)
            log("raw /healthz")
            raw = await open_loop(session, [f"{base}/healthz"], args.rate, args.seconds)
            probes_stop.set()
            fresh = await probes
            ingested = (ingest.sent - sent0) / (time.perf_counter() - t0)
        stop.set()
        await ingest_task
        report = {
            "benchmark": "query_api",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "params": vars(args),
            "ingest_msgs_per_s": round(ingested, 1),
            "point_query": point,
            "raw_healthz": raw,
            "p99_ratio_point_vs_raw": (
                round(point["p99_ms"] / raw["p99_ms"], 2)
                if point["p99_ms"] and raw["p99_ms"]
                else None
            ),
            "freshness_ms": {
                "samples": len(fresh),
                "p50": pct(fresh, 0.5),
                "p99": pct(fresh, 0.99),
                "max": round(max(fresh), 1) if fresh else None,
            },
            "targets": {"point_p99_ms": TARGET_P99_MS, "freshness_p99_ms": TARGET_FRESHNESS_P99_MS},
            "met": {
                "point_p99": bool(point["p99_ms"] is not None and point["p99_ms"] <= TARGET_P99_MS),
                "freshness_p99": bool(fresh and (pct(fresh, 0.99) or 0) <= TARGET_FRESHNESS_P99_MS),
            },
        }
    finally:
        await children.stop_all()
        if ingest.producer is not None:
            await ingest.producer.stop()
    return report


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4))
    names = ["p50", "p90", "p99"]
    point = [report["point_query"][f"{n}_ms"] or 0 for n in names]
    raw = [report["raw_healthz"][f"{n}_ms"] or 0 for n in names]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], point, 0.4, label="GET /api/devices/{id}")
    ax.bar([x + 0.2 for x in xs], raw, 0.4, label="GET /healthz (raw limit)")
    ax.axhline(TARGET_P99_MS, color="red", linestyle="--", label="p99 target")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("ms")
    fresh = report["freshness_ms"]
    ax.set_title(
        f"{report['params']['rate']} req/s during {report['ingest_msgs_per_s']:.0f} msg/s ingest; "
        f"freshness p99 {fresh['p99']} ms"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--ingest", type=int, default=5000)
    parser.add_argument("--devices", type=int, default=1000)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "query_api.json").write_text(json.dumps(report, indent=2) + "\n")
    chart(report, RESULTS / "query_api.png")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
