"""Benchmark: gateway ingest (MQTT 5 QoS 1 in, Kafka acks=all out), direct mode and bridge
mode, next to the raw limits, in the same run.

Run from the repository root, with Mosquitto and Kafka up (``make up``)::

    .venv/bin/python -m bench.gateway_ingest                 # 3 interleaved repeats, ~12 min
    .venv/bin/python -m bench.gateway_ingest --repeat 1 --measure 8      # a quicker look
    .venv/bin/python -m bench.gateway_ingest --profile 20    # + pyinstrument profiles

Writes ``bench/results/gateway_ingest.json`` and ``bench/results/gateway_ingest_*.png``
(``--profile`` also ``gateway_ingest_profile.txt``, bridge mode, ``gateway_direct_profile.txt``,
direct mode, and ``gateway_connect_profile.txt``, direct mode's connection set-up;
``--profile-modes`` picks). Everything runs on
loopback against the shared dev servers (the dev stack the ``IOT_*`` variables name, as
``iotctl dev`` does: its Kafka and MQTT ports; on a secured stack every client of this
benchmark, the gateways, the load generator, ``mosquitto_sub`` and ``kcat`` included,
connects as the stack's ``admin``; direct mode's load generator excepted, see below) but
under names of its own: a run id ``gwb-<hex>`` prefixes the MQTT topics
(``<run>-<phase>/devices/+/telemetry``), share groups, client ids, direct gateways' instance
names and Kafka topics (6 partitions each, deleted at the end). The gateways are this
benchmark's own processes with their own config files in a temp dir (direct ones on free
loopback ports); the dev stack's gateway (share group ``gw``) never sees this traffic. A
run is bounded (``--max-seconds``), stops every process it started (by pid) and drops the
MQTT sessions it created, so the broker keeps nothing queued for them.

One thing is shared: direct gateways claim their sessions in the dev stack's compacted
``iot.edge-sessions.v1`` (the gateway's default ``edge.sessions_topic``, which they keep: the
claim is part of what a CONNECT costs; ``--edge-sessions off`` turns it off for an A/B). At
the end the run writes a tombstone for each of its client ids still there (``sessions_topic``
in the results), so no process keeps them in its fold. The records stay in the log until
compaction (a full run adds about 57,000), and every direct gateway reads the whole log when
it starts.

``--broker own`` runs the raw-limit and bridge phases against a Mosquitto of the run's own
instead (free loopback port, anonymous, the dev stack's persistence and queue settings;
stopped and removed at the end): for when the dev stack's broker is not running (a direct-mode
stack) or misbehaves. ``settings.broker`` in the results says which one was measured.

Every gateway runs with authorization off (``policy.enabled: false``, also by name in the
environment): the admin publishes for every simulated device in bridge mode, and in direct
mode the load generator connects anonymously. The benchmark is about ingest, not the policy.

Per repeat, in this order (repeats are interleaved, so background load hits all alike):

``loadgen``        the load generator (``bench/loadgen.py``) alone, unthrottled, nothing
                   subscribed: what it and the broker's ingest can do.
``mosquitto_sub``  the C client ``mosquitto_sub -V mqttv5 -q 1`` on a shared subscription
                   while the load generator publishes unthrottled: how fast the broker pushes
                   QoS 1 messages to one subscriber (the raw limit of the MQTT side).
``kcat``           ``kcat -P`` of gateway-sized records (key, 4 headers), idempotent (hence
                   acks=all), ``linger.ms=5`` like the gateway, into a fresh topic: the raw
                   limit of the Kafka side. Time from process start to exit (kcat exits once
                   every record is acknowledged); end offsets are checked.
``gateway_x1/x2``  one, then two gateway processes, saturated: the offered rate is steered
                   every 0.25 s so that the backlog (acknowledged by the broker, not yet
                   received by a gateway) stays near ``--backlog`` per gateway, so gateways
                   always have work and the broker never builds a large queue. Throughput =
                   records acknowledged by Kafka per second (``produced_total``) after a
                   warm-up; also each gateway's CPU per message.
``latency``        one gateway at a fixed offered load (5,000 msg/s). Reported two ways:
                   the gateway's ``produce_latency_seconds`` histogram (from the moment the
                   bridge takes the message from the MQTT client's queue to Kafka's ack;
                   p50/p99 interpolated within its buckets; it does NOT include time in the
                   broker, in socket buffers or in the client's queue), and end to end (the
                   load generator's send time -> a Kafka consumer, ``fetch_max_wait_ms=5``,
                   sees the record: broker, gateway, Kafka ack and the consumer's fetch).
                   Records sent in the window that did not arrive within ``--settle`` s count
                   as infinitely late.

Direct mode (``bench/gateway_direct.py``; the gateway is the devices' MQTT server, its PUBACK
follows Kafka's ack; no broker in the path):

``direct_x1``      one direct gateway, the load generator connected to it directly
                   (``--direct-connections``), unthrottled: its windows (the gateway's Receive
                   Maximum per connection) are the back-pressure. Throughput = records
                   acknowledged by Kafka per second after the warm-up; gateway CPU per message;
                   the gateway's "did not run for N s" stalls (its view of the session claims
                   then expires and records wait until it is confirmed again).
``direct_x2``      two direct gateways sharing one port (SO_REUSEPORT): the kernel spreads the
                   load generator's connections (the split is recorded).
``direct_latency`` one direct gateway at 5,000 msg/s: publish -> PUBACK latency of every
                   message sent in the window as the load generator measures it (it includes
                   the Kafka ack); never-acknowledged ones count as infinitely late.
``direct_connect`` connections per second: ``--connect-count`` MQTT 5 connections (TCP, CONNECT,
                   CONNACK), ``--connect-concurrency`` at a time, held open until all are up.
                   Each CONNACK waits for the session's claim: written to the sessions topic
                   (acks=all) and read back.

Each direct phase runs on asyncio (the gateway's default ``event_loop``) and, right after,
the same on uvloop (``direct_x1_uvloop``, ``direct_x2_uvloop``, ``direct_latency_uvloop``,
``direct_connect_uvloop``); every second repeat runs the uvloop one first, so drift in the
background load does not favor one loop. ``summary.uvloop_vs_asyncio`` has the ratios
(per repeat, then their median).

The machine has 2 cores shared by the broker, Kafka, the load generator, the gateways and
whatever else runs (so two gateways never both get a whole core). Every phase records the
CPU each party used and ``other`` (everything this benchmark did not start, including other
people's work): read throughput against it, and prefer the gateways' CPU per message when
comparing runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import gateway_direct as direct
from bench import gateway_ingest_report as report
from bench.gateway_harness import (
    LOOPS,
    PARTITIONS,
    RESULTS,
    ROOT,
    SESSIONS_TOPIC,
    SUBJECT,
    Context,
    LoadGen,
    Samples,
    cpu_text,
    log,
    prune_tree,
    render_profile,
    sample,
    start_gateways,
    steady_state,
    stop_gateways,
    use_own_broker,
)
from bench.procs import Children, pid_listening
from devstack import DevStackSettings
from devstack.clients import kafka_client, mqtt_login

LATENCY_RATE = 5_000.0
HOT_PATH = (
    "bridge.py", "ingest.py", "codecs.py", "sink.py", "acks.py",
    "edge/connection.py", "edge/server.py", "edge/wire.py", "edge/v5.py",
    "edge/session_log.py", "edge/directory.py",
)  # fmt: skip
"""The gateway's files (under ``iot_gateway/``) whose hashes identify what was measured."""
PHASES = (
    "loadgen", "mosquitto_sub", "kcat", "gateway_x1", "gateway_x2", "latency",
    *direct.DIRECT_PHASES,
)  # fmt: skip
PROFILE_MODES = ("bridge", "direct", "connect")


# ---------------------------------------------------------------------------- raw limits


async def phase_loadgen(ctx: Context, repeat: int) -> dict[str, Any]:
    """The load generator alone, unthrottled, with nothing subscribed to its topics."""
    a = ctx.args
    loadgen = await LoadGen.start(ctx, f"{ctx.run_id}-lg{repeat}", a.warmup + a.measure)
    await asyncio.sleep(a.warmup)
    cpu = ctx.window(loadgen=loadgen.child.pid)
    t0 = time.monotonic()
    cpu.start()
    await asyncio.sleep(a.measure)
    t1 = time.monotonic()
    usage = cpu.stop()
    final = await loadgen.wait(a.warmup + a.measure + 30)
    rate = loadgen.rate_between(t0, t1)
    log(f"loadgen alone: {rate:,.0f} msg/s (loadgen {usage['loadgen']}% of a core)")
    return {"rate": rate, "cpu_pct": usage, "loadgen": final}


async def phase_mosquitto_sub(ctx: Context, repeat: int) -> dict[str, Any]:
    """C ``mosquitto_sub`` (QoS 1, shared subscription) receiving while the loadgen publishes."""
    a = ctx.args
    prefix = f"{ctx.run_id}-sub{repeat}"
    sub = await ctx.children.spawn(
        "mosquitto_sub", "mosquitto_sub", "-h", a.mqtt_host, "-p", str(a.mqtt_port),
        *ctx.mqtt_auth_args(), "-V", "mqttv5", "-q", "1", "-i", f"{prefix}-sub",
        "-D", "connect", "receive-maximum", str(a.receive_maximum),
        "-t", f"$share/{prefix}/{prefix}/devices/+/telemetry", "-F", ".", "-N",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    received: list[tuple[float, float]] = [(time.monotonic(), 0)]

    async def count() -> None:  # one byte per message (-F . -N)
        stdout = sub.process.stdout
        assert stdout is not None
        total = 0
        while chunk := await stdout.read(1 << 16):
            total += len(chunk)
            received.append((time.monotonic(), total))

    counter = asyncio.create_task(count())
    await asyncio.sleep(1)  # subscribed
    loadgen = await LoadGen.start(ctx, prefix, a.warmup + a.measure)
    await asyncio.sleep(a.warmup)
    cpu = ctx.window(loadgen=loadgen.child.pid, mosquitto_sub=sub.pid)
    t0 = time.monotonic()
    cpu.start()
    await asyncio.sleep(a.measure)
    t1 = time.monotonic()
    usage = cpu.stop()
    await loadgen.wait(a.warmup + a.measure + 30)
    await asyncio.sleep(1)
    await sub.stop()
    await asyncio.wait_for(counter, 5)
    rate = report.slope(received, t0, t1)
    published = loadgen.rate_between(t0, t1)
    log(f"mosquitto_sub: {rate:,.0f} msg/s received; loadgen {published:,.0f} msg/s published")
    return {
        "rate": rate,
        "loadgen_rate": published,
        "received_total": received[-1][1],
        "published_total": loadgen.acked,
        "cpu_pct": usage,
    }


async def phase_kcat(ctx: Context, repeat: int, records: Path, count: int) -> dict[str, Any]:
    """``kcat -P`` of ``count`` gateway-sized records, idempotent (acks=all), into a new topic."""
    topic = f"{ctx.run_id}.kcat{repeat}"
    await ctx.create_topics(topic)
    headers = [
        "-H", "event_id=gwb-d00042:123456", "-H", "device_id=gwb-d00042",
        "-H", f"mqtt_topic={ctx.run_id}/devices/gwb-d00042/telemetry",
        "-H", "content_type=application/vnd.confluent.avro",
    ]  # fmt: skip
    cpu = ctx.window()  # kcat itself is in "other": it has exited when the window closes
    started = time.monotonic()
    cpu.start()
    kcat = await ctx.children.spawn(
        "kcat", "kcat", "-P", *ctx.kcat_args(), "-t", topic, "-K", "|", *headers,
        "-X", "enable.idempotence=true", "-X", "acks=all", "-X", "linger.ms=5",
        "-X", "queue.buffering.max.messages=1000000", "-l", str(records),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(kcat.process.communicate(), ctx.args.measure * 20 + 60)
    seconds = time.monotonic() - started
    usage = cpu.stop()
    written = await _end_offsets(ctx, topic)
    if kcat.process.returncode != 0 or written != count:
        raise RuntimeError(
            f"kcat exit {kcat.process.returncode}, {written}/{count} records: {stderr[-500:]!r}"
        )
    rate = count / seconds
    log(f"kcat -P: {rate:,.0f} msg/s ({count:,} records in {seconds:.2f}s)")
    return {"rate": rate, "records": count, "seconds": seconds, "cpu_pct": usage}


async def _end_offsets(ctx: Context, topic: str) -> int:
    consumer = AIOKafkaConsumer(**ctx.kafka.aiokafka_kwargs(), group_id=None)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


def write_kcat_records(ctx: Context, count: int, value_bytes: int) -> Path:
    """``key|value`` lines: device ids as keys, printable values the size of a gateway record."""
    path = ctx.tmp / "kcat-records.txt"
    devices = [f"gwb-d{i:05d}" for i in range(ctx.args.devices)]
    filler = "x" * value_bytes
    with path.open("w") as out:
        for index in range(count):
            out.write(f"{devices[index % len(devices)]}|{index:012d}{filler[12:]}\n")
    return path


def gateway_record_size() -> int:
    """Bytes of one Avro telemetry record as the gateway writes it (Confluent framing)."""
    from contracts.avro import SchemaCatalog, encode  # noqa: PLC0415
    from tests.fakes import InMemorySchemas  # noqa: PLC0415

    registered = InMemorySchemas().register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
    record = {
        "event_id": "gwb-d00042:123456",
        "device_id": "gwb-d00042",
        "ts": 1714564800123,
        "received_at": 1714564800187,
        "seq": 123456,
        "metrics": {"temp_c": 21.5, "humidity_pct": 40.1, "battery_pct": 88.0},
    }
    return len(encode(record, registered))


# ---------------------------------------------------------------------------- gateway phases


async def phase_saturated(
    ctx: Context, name: str, count: int, profile_to: Path | None = None
) -> dict[str, Any]:
    """``count`` gateways kept saturated; steady-state Kafka-acknowledged records per second.

    Every 0.25 s the offered rate is set to the measured drain rate plus a correction that
    steers the backlog (acknowledged by the broker, not yet received by a gateway) toward
    ``--backlog`` per gateway: the gateways always have messages waiting, and the broker,
    the load generator and Kafka do only the work the gateways pass on.
    """
    a = ctx.args
    duration = a.warmup + a.measure
    prefix, _topic, gateways = await start_gateways(ctx, name, count, profile_to)
    samples: Samples = []
    try:
        loadgen = await LoadGen.start(ctx, prefix, duration + 1, rate=2_000)
        started = time.monotonic()
        pids = {f"gateway{i}": g.pid for i, g in enumerate(gateways)}
        cpu = ctx.window(loadgen=loadgen.child.pid, **pids)
        t0, measuring = started + a.warmup, False
        while time.monotonic() - started < duration:
            await asyncio.sleep(0.25)
            samples.append(await sample(gateways))
            recent = [(t, sum(c["produced"] for c in cs)) for t, cs in samples[-5:]]
            drain = report.slope(recent, recent[0][0], recent[-1][0])
            backlog = loadgen.acked - sum(c["received"] for c in samples[-1][1])
            loadgen.set_rate(max(500.0, drain + (a.backlog * count - backlog) / 0.5))
            if not measuring and samples[-1][0] >= t0:
                measuring, t0 = True, samples[-1][0]
                cpu.start()
        t1 = samples[-1][0]
        usage = cpu.stop()
        loadgen.set_rate(1)
        await loadgen.wait(30)
    finally:
        final = await asyncio.gather(*(g.counters() for g in gateways), return_exceptions=True)
        codes = await stop_gateways(ctx, gateways)
    return _saturated_result(ctx, count, samples, (started, t0, t1), usage, loadgen, final, codes)


def _saturated_result(
    ctx: Context,
    count: int,
    samples: Samples,
    times: tuple[float, float, float],
    usage: dict[str, Any],
    loadgen: LoadGen,
    final: list[Any],
    codes: list[int | None],
) -> dict[str, Any]:
    _, t0, t1 = times
    counters = [c for c in final if isinstance(c, dict)]
    result = steady_state(samples, times, usage, count) | {
        "offered_rate": loadgen.rate_between(t0, t1),
        "backlog_end": loadgen.acked - sum(c["received"] for c in samples[-1][1]),
        "dlq": sum(c["dlq"] for c in counters),
        "reconnects": sum(c["reconnects"] for c in counters),
        "exit_codes": codes,
        "cpu_pct": usage,
        "warmup_s": ctx.args.warmup,
    }
    per_gateway = ", ".join(f"{r:,.0f}" for r in result["per_gateway"])
    log(
        f"gateway x{count}: {result['rate']:,.0f} msg/s acked by Kafka (per gateway "
        f"{per_gateway}; {result['gateway_cpu_us_per_msg']} us CPU/msg; CPU % of a core: "
        f"{cpu_text(usage)})"
    )
    return result


class _Arrivals:
    """A Kafka consumer noting when each event_id (header) is first seen."""

    def __init__(self, ctx: Context, topic: str) -> None:
        self.topic = topic
        self.seen: dict[str, tuple[float, float]] = {}  # event_id -> (seen, record timestamp)
        self.consumer = AIOKafkaConsumer(
            **ctx.kafka.aiokafka_kwargs(), group_id=None, fetch_max_wait_ms=5,
            enable_auto_commit=False,
        )  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                for record in records:
                    event_id = dict(record.headers).get("event_id")
                    if event_id is not None:
                        self.seen.setdefault(event_id.decode(), (now, record.timestamp / 1000))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()


async def phase_latency(ctx: Context, repeat: int) -> dict[str, Any]:
    """One gateway at a fixed offered load; its histogram and end-to-end latency."""
    a = ctx.args
    prefix, topic, gateways = await start_gateways(ctx, f"lat{repeat}", 1)
    gateway, sends_file = gateways[0], ctx.tmp / f"{prefix}-sends.json"
    arrivals = _Arrivals(ctx, topic)
    try:
        await arrivals.start()
        loadgen = await LoadGen.start(
            ctx, prefix, a.warmup + a.measure, rate=a.latency_rate, sends=sends_file
        )
        await asyncio.sleep(a.warmup)
        cpu = ctx.window(loadgen=loadgen.child.pid, gateway0=gateway.pid)
        hist0, (tc0, c0), wall0 = await gateway.histogram(), await sample([gateway]), time.time()
        cpu.start()
        await asyncio.sleep(a.measure)
        hist1, (tc1, c1), wall1 = await gateway.histogram(), await sample([gateway]), time.time()
        usage = cpu.stop()
        final = await loadgen.wait(30)
        settle = time.monotonic() + a.settle  # bounded wait for the window's last records
        while time.monotonic() < settle and len(arrivals.seen) < final["acked"]:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        waited = time.monotonic() - (settle - a.settle)
    finally:
        await arrivals.stop()
        await stop_gateways(ctx, gateways)
    sends = json.loads(sends_file.read_text())
    latencies, before, after, missing = _end_to_end(sends, arrivals.seen, wall0, wall1)
    histogram = [(le, n1 - n0) for (le, n1), (_, n0) in zip(hist1, hist0, strict=True)]
    achieved = (c1[0]["produced"] - c0[0]["produced"]) / (tc1 - tc0)
    e2e = report.latency_summary(latencies, missing) | {
        "missing": missing,
        "waited_after_window_s": round(waited, 1),
    }
    gw = {
        "p50_ms": report.bucket_quantile(histogram, 0.5),
        "p99_ms": report.bucket_quantile(histogram, 0.99),
        "count": histogram[-1][1] if histogram else 0,
    }
    log(
        f"latency at {a.latency_rate:,.0f} msg/s offered ({achieved:,.0f} produced/s): gateway "
        f"histogram p50 {gw['p50_ms']} ms p99 {gw['p99_ms']} ms; end to end p50 "
        f"{e2e['p50_ms']} ms p99 {e2e['p99_ms']} ms ({missing} late or missing); p99 before "
        f"the record was created {report.latency_summary(before)['p99_ms']} ms, after "
        f"{report.latency_summary(after)['p99_ms']} ms"
    )
    return {
        "offered_rate": a.latency_rate,
        "achieved_rate": achieved,
        "gateway_histogram": gw,
        "gateway_histogram_buckets": histogram,
        "end_to_end": e2e,
        "end_to_end_parts": {
            "send_to_record_created": report.latency_summary(before),
            "record_created_to_consumer": report.latency_summary(after),
            "note": "split at the Kafka record timestamp (CreateTime, set by the gateway's "
            "producer when it appends the record; ms resolution)",
        },
        "end_to_end_cdf": report.cdf(latencies),
        "broker_puback_ms": final["puback_ms"],
        "cpu_pct": usage,
    }


def _end_to_end(
    sends: dict[str, list[float]],
    seen: dict[str, tuple[float, float]],
    wall0: float,
    wall1: float,
) -> tuple[list[float], list[float], list[float], int]:
    """For the records sent in [wall0, wall1]: end-to-end latencies (s), the part before the
    gateway appended the record (its Kafka CreateTime, ms resolution) and the part after, and
    how many never arrived."""
    total, before, after, missing = [], [], [], 0
    for device_id, times in sends.items():
        for seq, sent in enumerate(times):
            if wall0 <= sent <= wall1:
                arrival = seen.get(f"{device_id}:{seq}")
                if arrival is None:
                    missing += 1
                else:
                    arrived, created = arrival
                    total.append(arrived - sent)
                    before.append(created - sent)
                    after.append(arrived - created)
    return total, before, after, missing


# ---------------------------------------------------------------------------- profile


async def phase_profile(ctx: Context, seconds: float) -> dict[str, Any]:
    """One saturated gateway under pyinstrument (statistical, wall clock, all frames)."""
    session = ctx.args.profile_session or ctx.tmp / "gateway.pyisession"
    saved = (ctx.args.warmup, ctx.args.measure)
    ctx.args.warmup, ctx.args.measure = 3, seconds
    try:
        result = await phase_saturated(ctx, "prof", 1, profile_to=session)
    finally:
        ctx.args.warmup, ctx.args.measure = saved
    tree = await render_profile(session, "--show-all")
    path = ctx.args.out / "gateway_ingest_profile.txt"
    path.write_text(
        "# pyinstrument (wall clock, statistical) of one saturated gateway; call tree, frames\n"
        f"# >= 1% only. {result['rate']:,.0f} msg/s while profiled (profiling slows it down)\n"
        + prune_tree(tree, min_share=0.01)
        + "\n"
    )
    log(f"profile written to {path}")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return {"rate_while_profiled": result["rate"], "file": str(shown)}


# ---------------------------------------------------------------------------- main


def environment(ctx: Context) -> dict[str, Any]:
    gateway_dir = Path(ctx.args.gateway_src) / "iot_gateway"
    packages = (
        "aiokafka", "aiomqtt", "paho-mqtt", "fastavro", "mqtt5", "prometheus-client", "uvloop",
    )  # fmt: skip
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": {name: metadata.version(name) for name in packages},
        "hot_path_sha1": {
            name: (
                hashlib.sha1((gateway_dir / name).read_bytes()).hexdigest()[:12]  # noqa: S324
                if (gateway_dir / name).is_file()
                else None
            )
            for name in HOT_PATH
        },
        "infra_pids": ctx.infra,
        "git": _git(Path(ctx.args.gateway_src)),
    }


def _git(tree: Path) -> dict[str, Any]:
    """The commit of the tree the gateways ran from, and whether its gateway was edited."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(tree), *args],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        return done.stdout.strip()

    return {
        "head": git("rev-parse", "HEAD") or None,
        "gateway_edited": bool(git("status", "--porcelain", "--", "iot_gateway", "iotctl")),
    }


async def run(args: argparse.Namespace, stack: DevStackSettings) -> dict[str, Any]:
    run_id = f"gwb-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{run_id}-"))
    infra = {  # the servers this run talks to: whoever listens on their ports
        "mosquitto": pid_listening(stack.broker_port),
        "kafka": pid_listening(stack.kafka_port),
    }
    kafka, login = kafka_client(stack), mqtt_login(stack)
    if stack.secure and login is None:
        raise RuntimeError("the secured dev stack has no admin password yet: `iotctl dev up`")
    results: dict[str, Any] = {
        "benchmark": "gateway_ingest",
        "run_id": run_id,
        "label": args.label,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average_before": os.getloadavg(),
        "gateway_record_bytes": gateway_record_size(),
        "phases": {name: [] for name in PHASES if name in args.phases},
    }
    broker_dir = None
    sessions_since: dict[int, int] | None = None
    async with aiohttp.ClientSession() as http:
        ctx = Context(args, run_id, tmp, Children(), http, infra, kafka, login)
        try:
            if any(name.startswith("direct") for name in args.phases) or (
                args.profile and {"direct", "connect"} & set(args.profile_modes)
            ):
                sessions_since = await ctx.sessions_topic_ends()  # it exists: checked here
                results["sessions_topic"] = {
                    "name": SESSIONS_TOPIC,
                    "records_before": sum(sessions_since.values()),
                }
            if args.broker == "own":
                broker_dir = await use_own_broker(ctx)
            results["settings"] = {
                k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
            }
            results["environment"] = environment(ctx)
            await _repeats(ctx, results)
            if args.profile and "bridge" in args.profile_modes:
                results["profile"] = await phase_profile(ctx, args.profile)
            if args.profile and "direct" in args.profile_modes:
                results["profile_direct"] = await direct.phase_profile(ctx, args.profile)
            if args.profile and "connect" in args.profile_modes:
                results["profile_connect"] = await direct.phase_profile_connect(
                    ctx, args.profile_loop
                )
        except BaseException:
            _log_gateway_problems(ctx)  # their logs go with tmp
            raise
        finally:
            await ctx.children.stop_all()
            with contextlib.suppress(Exception):
                await ctx.drop_sessions(ctx.sessions)
            if sessions_since is not None:
                try:
                    dropped = await ctx.drop_edge_sessions(sessions_since)
                    results["sessions_topic"] |= dropped
                    log(f"{SESSIONS_TOPIC}: {dropped}")
                except Exception as exc:  # reported; the cleanup goes on
                    log(f"{SESSIONS_TOPIC}: this run's sessions not dropped: {exc!r}")
            with contextlib.suppress(Exception):
                await ctx.delete_topics()
            shutil.rmtree(tmp, ignore_errors=True)
            if broker_dir is not None:
                shutil.rmtree(broker_dir, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    results["summary"] = report.summarize(results["phases"])
    return results


def _log_gateway_problems(ctx: Context) -> None:
    """What the run's gateways logged as warnings or errors, and how they exited."""
    for gateway in ctx.gateways:
        found = gateway.problems(limit=5)
        code = gateway.child.process.returncode if gateway.child else None
        if found["count"] or code:
            log(f"{gateway.client_id} (exit {code}) logged {found['count']} problem(s):")
            for line in found["first"]:
                log(f"    {line}")


async def _repeats(ctx: Context, results: dict[str, Any]) -> None:
    args = ctx.args
    records = None
    if "kcat" in args.phases:
        records = write_kcat_records(ctx, args.kcat_records, results["gateway_record_bytes"])
    for repeat in range(1, args.repeat + 1):
        log(f"repeat {repeat}/{args.repeat} ({ctx.run_id})")
        steps: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "loadgen": partial(phase_loadgen, ctx, repeat),
            "mosquitto_sub": partial(phase_mosquitto_sub, ctx, repeat),
            "gateway_x1": partial(phase_saturated, ctx, f"one{repeat}", 1),
            "gateway_x2": partial(phase_saturated, ctx, f"two{repeat}", 2),
            "latency": partial(phase_latency, ctx, repeat),
        }
        for loop in LOOPS:
            tag = f"{repeat}{loop[:2]}"
            steps |= {
                direct.phase_name("direct_x1", loop): partial(
                    direct.phase_saturated, ctx, f"done{tag}", 1, loop=loop
                ),
                direct.phase_name("direct_x2", loop): partial(
                    direct.phase_saturated, ctx, f"dtwo{tag}", 2, loop=loop
                ),
                direct.phase_name("direct_latency", loop): partial(
                    direct.phase_latency, ctx, repeat, loop
                ),
                direct.phase_name("direct_connect", loop): partial(
                    direct.phase_connect, ctx, repeat, loop
                ),
            }
        if records is not None:
            steps["kcat"] = partial(phase_kcat, ctx, repeat, records, args.kcat_records)
        for name in _order(repeat):
            if name in args.phases:
                results["phases"][name].append(await steps[name]())


def _order(repeat: int) -> list[str]:
    """``PHASES``, with each direct phase's loops in reverse order every second repeat."""
    order = list(PHASES)
    if repeat % 2 == 0:
        for base in direct.DIRECT_BASE:
            names = [direct.phase_name(base, loop) for loop in LOOPS]
            slots = sorted(order.index(name) for name in names)
            for slot, name in zip(slots, reversed(names), strict=True):
                order[slot] = name
    return order


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--repeat", type=int, default=3, help="interleaved repeats of every phase")
    add("--warmup", type=float, default=4.0, help="seconds before measuring, per phase")
    add("--measure", type=float, default=12.0, help="seconds measured, per phase")
    add("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    add("--devices", type=int, default=500, help="simulated devices")
    add("--connections", type=int, default=16, help="load generator MQTT connections")
    add("--backlog", type=int, default=3_000, help="target backlog per saturated gateway")
    add("--receive-maximum", type=int, default=1_000, help="gateways' MQTT Receive Maximum")
    add("--latency-rate", type=float, default=LATENCY_RATE, help="offered msg/s, latency phase")
    add("--settle", type=float, default=10.0, help="max seconds to wait for late records")
    add("--kcat-records", type=int, default=500_000)
    add("--broker", choices=("stack", "own"), default="stack", help="bridge/raw phases' broker")
    add("--direct-connections", type=int, default=16, help="loadgen connections, direct mode")
    add("--edge-receive-maximum", type=int, help="direct gateways' Receive Maximum")
    add(
        "--edge-sessions", choices=("on", "off"), default="on",
        help="off: direct gateways without the sessions topic (no claims; an A/B only)",
    )  # fmt: skip
    add("--connect-count", type=int, default=2_000, help="connections set up, direct_connect")
    add("--connect-concurrency", type=int, default=20, help="set up at once, direct_connect")
    add("--profile", type=float, default=0, help="seconds of pyinstrument profile at the end")
    add("--profile-modes", nargs="+", default=list(PROFILE_MODES), choices=PROFILE_MODES)
    add("--profile-session", type=Path, help="keep the bridge pyinstrument session file here")
    add("--profile-loop", choices=LOOPS, default="asyncio", help="event loop, connect profile")
    add("--gateway-src", type=Path, default=ROOT, help="run gateways from this tree (A/B)")
    add("--keep-topics", action="store_true", help="do not delete this run's Kafka topics")
    add("--label", default="", help="free text stored with the results")
    add("--out", type=Path, default=RESULTS, help="results directory")
    add("--max-seconds", type=float, default=2700, help="hard bound on the whole run")
    add("--report-only", type=Path, help="recompute summary and charts of a results JSON")
    return parser


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.report_only:
        results = json.loads(args.report_only.read_text())
        results["summary"] = report.summarize(results["phases"])
        results["charts"] = report.charts(results, args.report_only.parent)
        args.report_only.write_text(json.dumps(results, indent=2) + "\n")
        report.print_summary(results["summary"])
        return
    # The servers are the dev stack's (IOT_* variables, as for `iotctl dev`), so are the
    # credentials: stored with the settings, as the flags they replace were.
    stack = DevStackSettings.from_env()
    args.mqtt_host, args.mqtt_port = stack.host, stack.broker_port  # Mosquitto, in any mode
    args.bootstrap, args.secure = stack.kafka_bootstrap, stack.secure
    if stack.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark runs on loopback only (IOT_HOST)")
    for tool in ("mosquitto_sub", "kcat"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    args.out.mkdir(parents=True, exist_ok=True)
    args.gateway_src = args.gateway_src.resolve()

    async def bounded() -> dict[str, Any]:
        task = asyncio.ensure_future(run(args, stack))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        return await asyncio.wait_for(task, args.max_seconds)

    results = asyncio.run(bounded())
    results["charts"] = report.charts(results, args.out)
    (args.out / "gateway_ingest.json").write_text(json.dumps(results, indent=2) + "\n")
    report.print_summary(results["summary"])
    print(f"wrote {args.out / 'gateway_ingest.json'} and {', '.join(results['charts'])}")


if __name__ == "__main__":
    main()
