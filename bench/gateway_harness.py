"""What the gateway benchmarks share: settings and names of a run, the load generator as a
child process, gateway processes (bridge or direct mode) with their config files, and the
profile helpers.

``bench.gateway_ingest`` (the raw limits, bridge mode and the run itself) and
``bench.gateway_direct`` (direct mode) build their phases from these. Every process started
here is a child of the run's :class:`~bench.procs.Children` (stopped by pid at the end) and
every Kafka topic created is deleted by :meth:`Context.delete_topics`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import gateway_ingest_report as report
from bench.loadgen import PASSWORD_ENV, drop_sessions
from bench.procs import Children, CpuWindow, Spawned
from contracts.kafka import KafkaClientSettings
from contracts.topics import EDGE_SESSIONS
from devstack.clients import MqttLogin, client_env
from tests.clients import AUTHORIZATION_OFF

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SUBJECT = "iot.telemetry.v1-value"
PARTITIONS = 6
LOOPS = ("asyncio", "uvloop")
"""The gateway's ``event_loop`` settings the direct phases are measured on."""
SESSIONS_TOPIC = EDGE_SESSIONS.name
"""Direct gateways' default ``edge.sessions_topic``, which the benchmark's gateways keep: every
CONNECT writes a claim there (acks=all) and reads it back before CONNACK."""
_DECIDED_BY_CONFIG = ("IOT_GATEWAY_EVENT_LOOP", "IOT_GATEWAY_EDGE__SESSIONS_TOPIC")
"""Environment variables (they win over the config file) that must not leak into the run's
gateways from the caller's environment: the config files decide."""


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
    gateways: list[Gateway] = field(default_factory=list)
    """Every gateway of the run (their logs live in ``tmp`` until the end)."""

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

    async def sessions_topic_ends(self) -> dict[int, int]:
        """End offset of each partition of the sessions topic (raises if it does not exist:
        direct gateways would not start without it)."""
        admin = AIOKafkaAdminClient(**self.kafka.aiokafka_kwargs())
        await admin.start()
        try:
            described = await admin.describe_topics([SESSIONS_TOPIC])
        finally:
            await admin.close()
        if not described or described[0]["error_code"] or not described[0]["partitions"]:
            raise RuntimeError(f"no topic {SESSIONS_TOPIC}: direct mode needs it ({described})")
        tps = [TopicPartition(SESSIONS_TOPIC, p["partition"]) for p in described[0]["partitions"]]
        consumer = AIOKafkaConsumer(**self.kafka.aiokafka_kwargs(), group_id=None)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        return {tp.partition: offset for tp, offset in sorted(ends.items())}

    async def drop_edge_sessions(self, since: dict[int, int]) -> dict[str, int]:
        """Tombstones, in the shared sessions topic, for the client ids of this run (they name
        the run id) whose latest record since the offsets ``since`` is not one already: the
        run's direct gateways delete an ended session at their next sweep, but are often
        stopped before it. Returns what was read and written."""
        ends = await self.sessions_topic_ends()
        latest: dict[bytes, bool] = {}  # key -> its latest record is a tombstone
        read = 0
        consumer = AIOKafkaConsumer(
            **self.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(SESSIONS_TOPIC, p) for p in ends]
            consumer.assign(partitions)
            for tp in partitions:
                consumer.seek(tp, since.get(tp.partition, 0))
            run_id = self.run_id.encode()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                at = {tp.partition: await consumer.position(tp) for tp in partitions}
                if all(at[p] >= end for p, end in ends.items()):
                    break
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        read += 1
                        if record.key is not None and run_id in record.key:
                            latest[record.key] = record.value is None
        finally:
            await consumer.stop()
        live = [key for key, gone in latest.items() if not gone]
        if live:
            producer = AIOKafkaProducer(
                **self.kafka.aiokafka_kwargs(), enable_idempotence=True, acks="all"
            )
            await producer.start()
            try:
                sent = [await producer.send(SESSIONS_TOPIC, None, key=key) for key in live]
                await asyncio.gather(*sent)
            finally:
                await producer.stop()
        return {"records_read": read, "client_ids": len(latest), "tombstones_written": len(live)}

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
        *,
        port: int | None = None,
        connections: int | None = None,
        extra: tuple[str, ...] = (),
    ) -> LoadGen:
        """The load generator publishing on ``<prefix>/devices/...``: to the dev stack's
        broker as its admin, or (``port``) to a direct-mode gateway of this run, anonymously
        (the benchmark's direct gateways check no logins)."""
        a = ctx.args
        args = [
            sys.executable, "-m", "bench.loadgen", "--prefix", prefix, "--devices", str(a.devices),
            "--connections", str(connections or a.connections), "--duration", str(duration_s),
            "--rate", str(rate), "--progress", "0.25", "--host", a.mqtt_host,
            "--port", str(port or a.mqtt_port), "--commands", *extra,
        ]  # fmt: skip
        if sends is not None:
            args += ["--record-sends", str(sends)]
        env = None
        if ctx.login is not None and port is None:  # the password in the environment
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

    async def wait(self, timeout_s: float, *, check: bool = True) -> dict[str, Any]:
        """Its summary line once it exited; raises if it failed, or (``check``) if any publish
        or connection failed."""
        await asyncio.wait_for(self.child.process.wait(), timeout_s)
        await asyncio.wait_for(self._reader, 5)
        if self.final is None or self.child.process.returncode != 0:
            raise RuntimeError(f"load generator failed (exit {self.child.process.returncode})")
        if check and self.final["failed"]:
            raise RuntimeError(f"load generator saw {self.final['failed']} failed publishes")
        return self.final

    def rate_between(self, t0: float, t1: float) -> float:
        """Broker-acknowledged publishes per second between two monotonic instants."""
        return report.slope([(p["mono"], p["acked"]) for p in self.progress], t0, t1)


# ---------------------------------------------------------------------------- gateways


class Gateway:
    """One ``iotctl gateway run`` process of this benchmark, with its own HTTP port and name:
    in bridge mode its MQTT client id, in direct mode its ``edge.instance``."""

    def __init__(
        self,
        ctx: Context,
        config: Path,
        client_id: str,
        mode: Literal["bridge", "direct"],
        loop: str = "asyncio",
    ) -> None:
        self.ctx, self.config, self.client_id, self.mode = ctx, config, client_id, mode
        self.loop = loop
        """The ``event_loop`` its config file asks for."""
        self.log = ctx.tmp / f"{client_id}.log"
        self.http_port = free_port()
        self.child: Spawned | None = None
        self.ready_at: float | None = None
        """Wall-clock time (epoch s) it was first seen ready."""
        ctx.gateways.append(self)

    async def start(self, profile_to: Path | None = None) -> None:
        inherited = {k: v for k, v in os.environ.items() if k not in _DECIDED_BY_CONFIG}
        env = {
            **inherited,
            **client_env("IOT_GATEWAY_", self.ctx.kafka, self.ctx.login),
            **AUTHORIZATION_OFF,  # the admin publishes for every simulated device
            "IOT_GATEWAY_HTTP__PORT": str(self.http_port),
        }
        if self.mode == "bridge":
            env["IOT_GATEWAY_MQTT__CLIENT_ID"] = self.client_id
        source = self.ctx.args.gateway_src  # a checkout whose iot_gateway/ is imported first
        if source != ROOT:
            env["PYTHONPATH"] = str(source)
        command = ["-m", "iotctl.main", "gateway", "run", "--config", str(self.config)]
        command += ["--log-level", "warning"]
        if profile_to is None:
            args = [sys.executable, *command]
        else:
            args = [pyinstrument(), "-r", "session", "-o", str(profile_to), *command]
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
                    self.ready_at = time.time()
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
            "connections": total("iot_gateway_edge_connections"),
            "connects": total("iot_gateway_edge_connects_total"),
            "protocol_errors": total("iot_gateway_edge_protocol_errors_total"),
            "disconnects_by_server": total("iot_gateway_edge_disconnects_total")
            - total("iot_gateway_edge_disconnects_total{reason=client}"),
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

    def observed_loop(self) -> str | None:
        """The event loop the running process is on, as its open files show: libuv (uvloop)
        keeps an eventfd, asyncio's selector loop does not (it wakes itself through a socket
        pair). None if the process is gone."""
        if self.pid is None:
            return None
        try:
            fds = list(Path(f"/proc/{self.pid}/fd").iterdir())
        except OSError:
            return None
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd) == "anon_inode:[eventfd]":
                    return "uvloop"
        return "asyncio"

    def stalls(self) -> dict[str, list[float]]:
        """The gateway's "this process did not run for N s" warnings (its sessions view was
        voided and records held back until confirmed again): the seconds of each, split into
        those logged up to the moment it was seen ready (start-up) and after (serving)."""
        found: dict[str, list[float]] = {"startup": [], "serving": []}
        with contextlib.suppress(OSError):
            for line in self.log.read_text(errors="replace").splitlines():
                match = _STALL.search(line)
                if match is None:
                    continue
                try:
                    at = datetime.fromisoformat(json.loads(line)["ts"]).timestamp()
                except (ValueError, KeyError, TypeError):
                    at = float("inf")
                serving = self.ready_at is None or at > self.ready_at
                found["serving" if serving else "startup"].append(float(match.group(1)))
        return found

    def problems(self, limit: int = 10) -> dict[str, Any]:
        """Warnings and errors in the gateway's log (JSON lines), less the two warnings every
        benchmark gateway logs on purpose (authorization and logins switched off)."""
        found: list[str] = []
        count = 0
        with contextlib.suppress(OSError):
            for line in self.log.read_text(errors="replace").splitlines():
                try:
                    level = json.loads(line).get("level", "")
                except ValueError:
                    level = "error" if "Traceback" in line or "Error" in line else ""
                if level in {"warning", "error", "critical"} and not any(
                    expected in line for expected in _EXPECTED_WARNINGS
                ):
                    count += 1
                    if len(found) < limit:
                        found.append(line[:500])
        return {"count": count, "first": found}


_EXPECTED_WARNINGS = ("AUTHORIZATION IS DISABLED", "LOGINS ARE NOT CHECKED")
_STALL = re.compile(r"did not run for (\d+(?:\.\d+)?)s")


# ---------------------------------------------------------------------------- own broker

OWN_BROKER_CONFIG = (
    "allow_anonymous true",
    "persistence true",
    "autosave_interval 1",
    "max_queued_messages 1000000",
    "max_queued_bytes 0",
    "max_packet_size 262144",
    "log_dest stderr",
    "log_type error",
    "log_type warning",
    "log_type notice",
)
"""The dev stack's Mosquitto settings that matter for throughput (persistence, autosaved every
second; queue and packet limits), without its security: the run's own broker listens on
loopback only, for the run's own clients."""


async def use_own_broker(ctx: Context) -> Path:
    """Starts a Mosquitto of this run only (``--broker own``) on a free loopback port and points
    the run's MQTT clients at it, anonymously; returns its directory (config, persistence,
    log), which the caller removes at the end. The broker is one of ``ctx.children``.

    For when the dev stack's broker cannot be used (it is not running, or misbehaves); its
    numbers are then the own broker's, which ``settings.broker`` records.
    """
    directory = Path(tempfile.mkdtemp(prefix=f"{ctx.run_id}-mosquitto-"))
    port = free_port()
    config = directory / "mosquitto.conf"
    lines = [f"listener {port} 127.0.0.1", f"persistence_location {directory}/"]
    config.write_text("\n".join([*lines, *OWN_BROKER_CONFIG]) + "\n")
    if os.geteuid() == 0:  # started as root, Mosquitto runs as its own user: let it write here
        shutil.chown(directory, "mosquitto")
    with (directory / "mosquitto.log").open("ab") as out:
        child = await ctx.children.spawn(
            "mosquitto", "mosquitto", "-c", str(config), stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if child.process.returncode is not None or time.monotonic() > deadline:
                log_text = (directory / "mosquitto.log").read_text(errors="replace")[-1000:]
                raise RuntimeError(f"the run's own Mosquitto did not start: {log_text}") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        break
    ctx.args.mqtt_port, ctx.login = port, None
    ctx.infra["mosquitto"] = child.pid
    log(f"own Mosquitto (pid {child.pid}) on 127.0.0.1:{port}, anonymous, persistence on")
    return directory


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pyinstrument() -> str:
    found = shutil.which("pyinstrument", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("--profile needs pyinstrument (.venv/bin/pip install pyinstrument)")
    return found


def write_gateway_config(
    ctx: Context,
    prefix: str,
    topic: str,
    edge: dict[str, Any] | None = None,
    loop: str = "asyncio",
    *,
    sessions_topic: bool = True,
) -> Path:
    """A gateway config confined to ``<prefix>/devices/+/telemetry`` and this run's topics.

    Without ``edge``, bridge mode (a shared subscription on the dev stack's broker); with it,
    direct mode, serving devices itself with these ``edge`` settings (a port, an instance
    name), written to ``<instance>.yaml``; direct gateways keep the default sessions topic
    (``SESSIONS_TOPIC``) unless ``sessions_topic`` is false (``--edge-sessions off``, for an
    A/B of what the claims cost). Authorization is off either way (also by name in the environment,
    ``AUTHORIZATION_OFF``): the benchmark measures ingest, not the policy. ``loop`` other than
    ``asyncio`` becomes the top-level ``event_loop`` (asyncio is the default, so the file
    stays valid for a ``--gateway-src`` tree older than the setting).
    """
    a = ctx.args
    config: dict[str, Any] = {
        "mode": "bridge" if edge is None else "direct",
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
        "policy": {"enabled": False},
    }
    if edge is not None:
        if "sessions_topic" in edge:
            raise ValueError("the benchmark's direct gateways keep the default sessions topic")
        config["edge"] = {"host": "127.0.0.1", **edge}
        if not sessions_topic:
            config["edge"]["sessions_topic"] = None
        del config["mqtt"]
    if loop != "asyncio":
        config["event_loop"] = loop
    name = prefix if edge is None else edge["instance"]
    path = ctx.tmp / f"{name}.yaml"
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
    gateways = [Gateway(ctx, config, f"{prefix}-gw{index}", "bridge") for index in range(count)]
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


Samples = list[tuple[float, list[dict[str, float]]]]
"""(monotonic time, every gateway's counters) every 0.25 s of a phase."""


async def sample(gateways: list[Gateway]) -> tuple[float, list[dict[str, float]]]:
    counters = await asyncio.gather(*(g.counters() for g in gateways))
    return time.monotonic(), list(counters)


def steady_state(
    samples: Samples, times: tuple[float, float, float], usage: dict[str, Any], count: int
) -> dict[str, Any]:
    """What a saturated phase measured between t0 and t1 (``times``: started, t0, t1):
    Kafka-acknowledged records per second (all gateways and each), the gateways' CPU per
    record, and the 0.25 s timeline of the whole phase."""
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
    return {
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
        "timeline": timeline,
    }


def cpu_text(usage: dict[str, Any]) -> str:
    """``name N%`` of every party of a CPU window, for the log."""
    return ", ".join(
        f"{k} {v}%" for k, v in usage.items() if isinstance(v, int | float) and k != "seconds"
    )


# ---------------------------------------------------------------------------- profiles


async def render_profile(session: Path, *options: str) -> str:
    """pyinstrument's text rendering of a saved session."""
    process = await asyncio.create_subprocess_exec(
        pyinstrument(), "--load", str(session), "-r", "text", "--no-color", *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), 120)
    return stdout.decode()


def prune_tree(tree: str, min_share: float) -> str:
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
