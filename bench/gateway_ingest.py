"""Benchmark: gateway ingest (MQTT 5 QoS 1 in, Kafka acks=all out) next to its raw limits.

Run from the repository root, with Mosquitto and Kafka up (``make up``)::

    .venv/bin/python -m bench.gateway_ingest                 # 3 interleaved repeats, ~7 min
    .venv/bin/python -m bench.gateway_ingest --repeat 1 --measure 8      # a quicker look
    .venv/bin/python -m bench.gateway_ingest --profile 20    # + a pyinstrument profile

Writes ``bench/results/gateway_ingest.json`` and ``bench/results/gateway_ingest_*.png``
(``--profile`` also ``gateway_ingest_profile.txt``). Everything runs on loopback against the
shared dev servers (the dev stack the ``IOT_*`` variables name, as ``iotctl dev`` does: its
Kafka and MQTT ports; on a secured stack every client of this benchmark, the gateways, the
load generator, ``mosquitto_sub`` and ``kcat`` included, connects as the stack's ``admin``)
but under names of its own: a run id ``gwb-<hex>`` prefixes the MQTT
topics (``<run>-<phase>/devices/+/telemetry``), share groups, client ids and Kafka topics (6
partitions each, deleted at the end). The gateways are this benchmark's own processes with
their own config files in a temp dir; the dev stack's gateway (share group ``gw``) never sees
this traffic. A run is bounded (``--max-seconds``), stops every process it started (by pid)
and drops the MQTT sessions it created, so the broker keeps nothing queued for them.

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

The machine has 2 cores shared by the broker, Kafka, the load generator, the gateways and
whatever else runs. Every phase records the CPU each party used and ``other`` (everything
this benchmark did not start, including other people's work): read throughput against it,
and prefer the gateways' CPU per message when comparing runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import gateway_ingest_report as report
from bench.loadgen import PASSWORD_ENV, drop_sessions
from bench.procs import Children, CpuWindow, Spawned, pid_listening
from contracts.kafka import KafkaClientSettings
from devstack import DevStackSettings
from devstack.clients import MqttLogin, client_env, kafka_client, mqtt_login
from tests.clients import AUTHORIZATION_OFF

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SUBJECT = "iot.telemetry.v1-value"
PARTITIONS = 6
LATENCY_RATE = 5_000.0
HOT_PATH = ("bridge.py", "ingest.py", "codecs.py")
PHASES = ("loadgen", "mosquitto_sub", "kcat", "gateway_x1", "gateway_x2", "latency")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Context:
    """What every phase needs: settings, names, children, an HTTP session, Kafka admin."""

    args: argparse.Namespace
    run_id: str
    tmp: Path
    children: Children
    http: aiohttp.ClientSession
    infra: dict[str, int | None]
    kafka: KafkaClientSettings
    """The dev stack administrator's Kafka connection (every Kafka client of the run)."""
    login: MqttLogin | None
    """The administrator's MQTT login; None on an unsecured (anonymous) stack."""
    topics: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)

    async def create_topics(self, *names: str) -> None:
        admin = AIOKafkaAdminClient(**self.kafka.aiokafka_kwargs())
        await admin.start()
        try:
            await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
            self.topics.extend(names)
        finally:
            await admin.close()

    async def delete_topics(self) -> None:
        if not self.topics or self.args.keep_topics:
            return
        admin = AIOKafkaAdminClient(**self.kafka.aiokafka_kwargs())
        await admin.start()
        try:
            await admin.delete_topics(self.topics)
        finally:
            await admin.close()

    def window(self, **pids: int | None) -> CpuWindow:
        """CPU accounting for the shared servers plus ``pids``."""
        return CpuWindow({**self.infra, **pids})

    def mqtt_auth_args(self) -> list[str]:
        """``-u``/``-P`` for Mosquitto's command-line clients (nothing when anonymous)."""
        login = self.login
        return [] if login is None else ["-u", login.username, "-P", login.password]

    def kcat_args(self) -> list[str]:
        """``-b`` and the connection's ``-X`` settings (SASL on a secured stack) for kcat."""
        config = self.kafka.confluent_config()
        args = ["-b", config.pop("bootstrap.servers")]
        for key, value in config.items():
            args += ["-X", f"{key}={value}"]
        return args

    async def drop_sessions(self, client_ids: list[str]) -> None:
        """Ends these broker sessions (and what the broker queued for them), as the admin."""
        login = self.login
        await drop_sessions(
            self.args.mqtt_host,
            self.args.mqtt_port,
            client_ids,
            username=login.username if login else None,
            password=login.password if login else None,
        )


# ---------------------------------------------------------------------------- load generator


class LoadGen:
    """``bench.loadgen`` as a child process: progress lines in, rate commands out."""

    def __init__(self, child: Spawned) -> None:
        self.child = child
        self.progress: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls,
        ctx: Context,
        prefix: str,
        duration_s: float,
        rate: float = 0,
        sends: Path | None = None,
    ) -> LoadGen:
        a = ctx.args
        args = [
            sys.executable, "-m", "bench.loadgen", "--prefix", prefix, "--devices", str(a.devices),
            "--connections", str(a.connections), "--duration", str(duration_s),
            "--rate", str(rate), "--progress", "0.25", "--host", a.mqtt_host,
            "--port", str(a.mqtt_port), "--commands",
        ]  # fmt: skip
        if sends is not None:
            args += ["--record-sends", str(sends)]
        env = None
        if ctx.login is not None:  # the password in the environment, not on the command line
            args += ["--username", ctx.login.username]
            env = {**os.environ, PASSWORD_ENV: ctx.login.password}
        child = await ctx.children.spawn(
            "loadgen", *args, cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(child)

    async def _read(self) -> None:
        stdout = self.child.process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            data = json.loads(line)
            data["mono"] = time.monotonic()
            if data.get("final"):
                self.final = data
            else:
                self.progress.append(data)

    @property
    def acked(self) -> int:
        return int(self.progress[-1]["acked"]) if self.progress else 0

    def set_rate(self, rate: float) -> None:
        stdin = self.child.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(f"rate {max(rate, 1.0):.0f}\n".encode())

    async def wait(self, timeout_s: float) -> dict[str, Any]:
        await asyncio.wait_for(self.child.process.wait(), timeout_s)
        await asyncio.wait_for(self._reader, 5)
        if self.final is None or self.child.process.returncode != 0:
            raise RuntimeError(f"load generator failed (exit {self.child.process.returncode})")
        if self.final["failed"]:
            raise RuntimeError(f"load generator saw {self.final['failed']} failed publishes")
        return self.final

    def rate_between(self, t0: float, t1: float) -> float:
        """Broker-acknowledged publishes per second between two monotonic instants."""
        return report.slope([(p["mono"], p["acked"]) for p in self.progress], t0, t1)


# ---------------------------------------------------------------------------- gateways


class Gateway:
    """One ``iotctl gateway run`` process of this benchmark, with its own client id and port."""

    def __init__(self, ctx: Context, config: Path, client_id: str) -> None:
        self.ctx, self.config, self.client_id = ctx, config, client_id
        self.log = ctx.tmp / f"{client_id}.log"
        self.http_port = _free_port()
        self.child: Spawned | None = None

    async def start(self, profile_to: Path | None = None) -> None:
        env = {
            **os.environ,
            **client_env("IOT_GATEWAY_", self.ctx.kafka, self.ctx.login),
            **AUTHORIZATION_OFF,  # the admin publishes for every simulated device
            "IOT_GATEWAY_MQTT__CLIENT_ID": self.client_id,
            "IOT_GATEWAY_HTTP__PORT": str(self.http_port),
        }
        source = self.ctx.args.gateway_src  # a checkout whose iot_gateway/ is imported first
        if source != ROOT:
            env["PYTHONPATH"] = str(source)
        command = ["-m", "iotctl.main", "gateway", "run", "--config", str(self.config)]
        command += ["--log-level", "warning"]
        if profile_to is None:
            args = [sys.executable, *command]
        else:
            args = [_pyinstrument(), "-r", "session", "-o", str(profile_to), *command]
        with self.log.open("ab") as out:
            self.child = await self.ctx.children.spawn(
                f"gateway {self.client_id}", *args, cwd=source, env=env, stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    async def get(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        async with self.ctx.http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            return await response.text()

    async def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.child is None or self.child.process.returncode is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                if json.loads(await self.get("/stats")).get("ready"):
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"gateway not ready: {self.log.read_text()[-2000:]}")

    async def counters(self) -> dict[str, float]:
        metrics = json.loads(await self.get("/stats"))["metrics"]

        def total(prefix: str) -> float:
            return float(sum(v for k, v in metrics.items() if k.startswith(prefix)))

        return {
            "produced": total("iot_gateway_produced_total"),
            "received": total("iot_gateway_received_total"),
            "pubacks": total("iot_gateway_pubacks_total"),
            "dlq": total("iot_gateway_dlq_total"),
            "reconnects": total("iot_gateway_reconnects_total"),
        }

    async def histogram(self) -> list[tuple[float, float]]:
        """Cumulative (upper bound s, count) buckets of the produce latency histogram."""
        text = await self.get("/metrics")
        pattern = r'^iot_gateway_produce_latency_seconds_bucket\{le="([^"]+)"\} (\S+)$'
        return sorted(
            (float(m.group(1)), float(m.group(2))) for m in re.finditer(pattern, text, re.M)
        )

    async def stop(self) -> int | None:
        return await self.child.stop(30) if self.child else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pyinstrument() -> str:
    found = shutil.which("pyinstrument", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("--profile needs pyinstrument (.venv/bin/pip install pyinstrument)")
    return found


def write_gateway_config(ctx: Context, prefix: str, topic: str) -> Path:
    """A gateway config confined to ``<prefix>/devices/+/telemetry`` and this run's topics."""
    a = ctx.args
    config: dict[str, Any] = {
        "mqtt": {
            "host": a.mqtt_host,
            "port": a.mqtt_port,
            "share_group": prefix,
            "filters": [f"{prefix}/devices/+/telemetry/#"],
            "session_expiry_s": 300,
            "receive_maximum": a.receive_maximum,
        },
        # The credentials (SASL on a secured stack) come from the environment: Gateway.start.
        "kafka": {"bootstrap": ctx.kafka.bootstrap, "dlq_topic": f"{topic}.dlq"},
        "routes": [
            {
                "name": "telemetry",
                "filter": f"{prefix}/devices/+/telemetry",
                "kafka_topic": topic,
                "subject": SUBJECT,
            }
        ],
        # High enough that no benchmark device is ever rate limited.
        "limits": {"device_rate_per_s": 1_000_000, "device_burst": 1_000_000},
        "downlink": {"enabled": False},
    }
    path = ctx.tmp / f"{prefix}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def start_gateways(
    ctx: Context, name: str, count: int, profile_to: Path | None = None
) -> tuple[str, str, list[Gateway]]:
    """``count`` gateways sharing one subscription, ready; (prefix, topic, gateways)."""
    prefix = f"{ctx.run_id}-{name}"
    topic = f"{prefix}.telemetry"
    await ctx.create_topics(topic, f"{topic}.dlq")
    config = write_gateway_config(ctx, prefix, topic)
    gateways = [Gateway(ctx, config, f"{prefix}-gw{index}") for index in range(count)]
    ctx.sessions.extend(g.client_id for g in gateways)
    for gateway in gateways:
        await gateway.start(profile_to)
    await asyncio.gather(*(g.wait_ready() for g in gateways))
    return prefix, topic, gateways


async def stop_gateways(ctx: Context, gateways: list[Gateway]) -> list[int | None]:
    """SIGTERM (the gateways drain), then drop their broker sessions and what they queued."""
    codes = await asyncio.gather(*(g.stop() for g in gateways))
    await ctx.drop_sessions([g.client_id for g in gateways])
    return list(codes)


async def sample(gateways: list[Gateway]) -> tuple[float, list[dict[str, float]]]:
    counters = await asyncio.gather(*(g.counters() for g in gateways))
    return time.monotonic(), list(counters)


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
    samples: list[tuple[float, list[dict[str, float]]]] = []
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
    samples: list[tuple[float, list[dict[str, float]]]],
    times: tuple[float, float, float],
    usage: dict[str, Any],
    loadgen: LoadGen,
    final: list[Any],
    codes: list[int | None],
) -> dict[str, Any]:
    started, t0, t1 = times
    produced = [(t, sum(c["produced"] for c in cs)) for t, cs in samples]
    rate = report.slope(produced, t0, t1)
    per_gateway = [
        report.slope([(t, cs[i]["produced"]) for t, cs in samples], t0, t1) for i in range(count)
    ]
    gateway_cpu = sum(usage["cpu_seconds"].get(f"gateway{i}", 0.0) for i in range(count))
    cpu_us = gateway_cpu / (rate * (t1 - t0)) * 1e6 if rate else None
    timeline = [
        {"t": round(tb - started, 2), "rate": round((vb - va) / (tb - ta), 1)}
        for (ta, va), (tb, vb) in itertools.pairwise(produced)
        if tb > ta
    ]
    steady = [p["rate"] for p in timeline if t0 - started <= p["t"] <= t1 - started]
    counters = [c for c in final if isinstance(c, dict)]
    result = {
        "gateways": count,
        "rate": rate,
        "pubacks_rate": report.slope(
            [(t, sum(c["pubacks"] for c in cs)) for t, cs in samples], t0, t1
        ),
        "per_gateway": per_gateway,
        "window_s": round(t1 - t0, 2),
        "samples_p10_p90": report.quantiles(steady, (0.1, 0.9)),
        "gateway_cpu_us_per_msg": round(cpu_us, 1) if cpu_us else None,
        "msgs_per_gateway_cpu_second": round(1e6 / cpu_us) if cpu_us else None,
        "offered_rate": loadgen.rate_between(t0, t1),
        "backlog_end": loadgen.acked - sum(c["received"] for c in samples[-1][1]),
        "dlq": sum(c["dlq"] for c in counters),
        "reconnects": sum(c["reconnects"] for c in counters),
        "exit_codes": codes,
        "cpu_pct": usage,
        "timeline": timeline,
        "warmup_s": ctx.args.warmup,
    }
    cpu_text = ", ".join(
        f"{k} {v}%" for k, v in usage.items() if isinstance(v, int | float) and k != "seconds"
    )
    log(
        f"gateway x{count}: {rate:,.0f} msg/s acked by Kafka (per gateway "
        f"{', '.join(f'{r:,.0f}' for r in per_gateway)}; {result['gateway_cpu_us_per_msg']} us "
        f"CPU/msg; CPU % of a core: {cpu_text})"
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
        "broker_puback_ms": final["broker_puback_ms"],
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
    tree = await _render(session, "--show-all")
    path = ctx.args.out / "gateway_ingest_profile.txt"
    path.write_text(
        "# pyinstrument (wall clock, statistical) of one saturated gateway; call tree, frames\n"
        f"# >= 1% only. {result['rate']:,.0f} msg/s while profiled (profiling slows it down)\n"
        + _prune(tree, min_share=0.01)
        + "\n"
    )
    log(f"profile written to {path}")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return {"rate_while_profiled": result["rate"], "file": str(shown)}


async def _render(session: Path, *options: str) -> str:
    process = await asyncio.create_subprocess_exec(
        _pyinstrument(), "--load", str(session), "-r", "text", "--no-color", *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), 120)
    return stdout.decode()


def _prune(tree: str, min_share: float) -> str:
    """The call tree without frames under ``min_share`` of the total."""
    lines = tree.splitlines()
    total = None
    kept = []
    for line in lines:
        match = re.match(r"^([│├└─ ]*)(\d+\.\d+) ", line)
        if match is None:
            kept.append(line)
            continue
        seconds = float(match.group(2))
        total = total or seconds
        if seconds >= min_share * total:
            kept.append(line)
    return "\n".join(kept)


# ---------------------------------------------------------------------------- main


def environment(ctx: Context) -> dict[str, Any]:
    gateway_dir = Path(ctx.args.gateway_src) / "iot_gateway" / "gateway"
    packages = ("aiokafka", "aiomqtt", "paho-mqtt", "fastavro")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": {name: metadata.version(name) for name in packages},
        "hot_path_sha1": {
            name: hashlib.sha1((gateway_dir / name).read_bytes()).hexdigest()[:12]  # noqa: S324
            for name in HOT_PATH
        },
        "infra_pids": ctx.infra,
    }


async def run(args: argparse.Namespace, stack: DevStackSettings) -> dict[str, Any]:
    run_id = f"gwb-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{run_id}-"))
    infra = {  # the servers this run talks to: whoever listens on their ports
        "mosquitto": pid_listening(stack.mqtt_port),
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
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_before": os.getloadavg(),
        "gateway_record_bytes": gateway_record_size(),
        "phases": {name: [] for name in PHASES if name in args.phases},
    }
    async with aiohttp.ClientSession() as http:
        ctx = Context(args, run_id, tmp, Children(), http, infra, kafka, login)
        results["environment"] = environment(ctx)
        try:
            await _repeats(ctx, results)
            if args.profile:
                results["profile"] = await phase_profile(ctx, args.profile)
        finally:
            await ctx.children.stop_all()
            with contextlib.suppress(Exception):
                await ctx.drop_sessions(ctx.sessions)
            with contextlib.suppress(Exception):
                await ctx.delete_topics()
            shutil.rmtree(tmp, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    results["summary"] = report.summarize(results["phases"])
    return results


async def _repeats(ctx: Context, results: dict[str, Any]) -> None:
    args = ctx.args
    records = None
    if "kcat" in args.phases:
        records = write_kcat_records(ctx, args.kcat_records, results["gateway_record_bytes"])
    for repeat in range(1, args.repeat + 1):
        log(f"repeat {repeat}/{args.repeat} ({ctx.run_id})")
        steps: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "loadgen": lambda r=repeat: phase_loadgen(ctx, r),
            "mosquitto_sub": lambda r=repeat: phase_mosquitto_sub(ctx, r),
            "kcat": lambda r=repeat: phase_kcat(ctx, r, records, args.kcat_records),  # type: ignore[arg-type]
            "gateway_x1": lambda r=repeat: phase_saturated(ctx, f"one{r}", 1),
            "gateway_x2": lambda r=repeat: phase_saturated(ctx, f"two{r}", 2),
            "latency": lambda r=repeat: phase_latency(ctx, r),
        }
        for name in PHASES:
            if name in args.phases:
                results["phases"][name].append(await steps[name]())


def main() -> None:
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
    add("--profile", type=float, default=0, help="seconds of pyinstrument profile at the end")
    add("--profile-session", type=Path, help="keep the pyinstrument session file here")
    add("--gateway-src", type=Path, default=ROOT, help="run gateways from this tree (A/B)")
    add("--keep-topics", action="store_true", help="do not delete this run's Kafka topics")
    add("--label", default="", help="free text stored with the results")
    add("--out", type=Path, default=RESULTS, help="results directory")
    add("--max-seconds", type=float, default=1800, help="hard bound on the whole run")
    add("--report-only", type=Path, help="recompute summary and charts of a results JSON")
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
    args.mqtt_host, args.mqtt_port = stack.host, stack.mqtt_port
    args.bootstrap, args.secure = stack.kafka_bootstrap, stack.secure
    if stack.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark runs on loopback only (IOT_HOST)")
    for tool in ("mosquitto_sub", "kcat"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    args.out.mkdir(parents=True, exist_ok=True)

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
