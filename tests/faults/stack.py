"""The fault suite's world: an isolated stack (own ports and state dir) and its processes.

Servers (Kafka, Mosquitto, PostgreSQL) are the dev stack's own (``iotctl dev up`` code on
other ports), so killing them disturbs nobody else; the platform's processes (gateways
sharing one MQTT port in direct mode, or one subscription in bridge mode, and one stream
worker) are started here, tracked, and each can be killed with SIGKILL, restarted, paused
with SIGSTOP and resumed.

How a spawned process connects (bootstrap, SASL credentials, MQTT login) is decided in one
place, :func:`process_env` (on top of the tests' ``tests.clients.process_env``). The
isolated stack is secured exactly when the shared one is (``IOT_SECURE``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from contracts.kafka import KafkaClientSettings
from devstack import DevStackSettings, down, up
from devstack.apps import http_probe
from devstack.clients import kafka_client
from devstack.kafka import Kafka, kafka_nodes
from devstack.mosquitto import Mosquitto
from devstack.postgres import Postgres
from devstack.process import LaunchSpec, alive, in_namespace, running_pid
from devstack.service import Service
from devstack.settings import Host
from security.kafka import admin_client
from streams.store import Store
from streams.store.factory import open_store
from tests import clients
from tests.clocks import HostClock
from tests.e2e.gateway_harness import track
from tests.faults.schedule import Target
from tests.stacks import free_port, remove_state

TELEMETRY_TOPIC = "iot.telemetry.v1"
DLQ_TOPIC = "iot.telemetry.dlq"
SUBJECT = "iot.telemetry.v1-value"
DEVICE_TOPIC = "devices/{device_id}/telemetry"
Say = Callable[[str], None]


def start_stack(settings: DevStackSettings, say: Say) -> None:
    """``iotctl dev up`` of the isolated stack."""
    up(settings, say)


def stop_stack(settings: DevStackSettings, say: Say) -> None:
    """Stops the isolated stack's servers and removes their data (also out-of-tree folders)."""
    down(settings, say)
    remove_state(settings)


def client_for(settings: DevStackSettings) -> KafkaClientSettings:
    """How the suite itself reads the stack's Kafka: as its administrator."""
    return kafka_client(settings)


def process_env(settings: DevStackSettings, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a spawned gateway or worker: the isolated stack's endpoints and
    credentials (the tests' one helper, ``tests.clients.process_env``) and ``extra``; none
    of the caller's ``IOT_*`` variables, which describe the shared stack."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("IOT_")}
    env.update(clients.process_env(settings))
    env["IOT_GATEWAY_MQTT__HOST"] = settings.host
    env["IOT_GATEWAY_MQTT__PORT"] = str(settings.mqtt_port)
    env.update(extra)
    return env


def device_login(settings: DevStackSettings) -> tuple[str | None, str | None]:
    """How simulated devices log in to Mosquitto (as the tests do: the admin, when secured)."""
    login = clients.mqtt_login_kwargs(settings)
    return login.get("username"), login.get("password")


def write_gateway_config(path: Path, settings: DevStackSettings, mode: str, edge_port: int) -> Path:
    """The platform's telemetry route and topics, with limits no simulated device reaches.
    In direct mode every gateway serves devices on ``edge_port`` (SO_REUSEPORT)."""
    config = {
        "mode": mode,
        "edge": {"host": settings.host, "port": edge_port, "reuse_port": True},
        "mqtt": {
            "share_group": "gw",
            "filters": ["devices/+/telemetry/#"],
            "session_expiry_s": 600,
            "receive_maximum": 500,
        },
        "kafka": {"dlq_topic": DLQ_TOPIC},  # the gateway's own timeouts, as deployed
        "routes": [
            {
                "name": "telemetry",
                "filter": "devices/+/telemetry",
                "kafka_topic": TELEMETRY_TOPIC,
                "subject": SUBJECT,
            }
        ],
        "http": {"host": settings.host},
        "downlink": {"enabled": False},
    }
    path.write_text(yaml.safe_dump(config))
    return path


class AppProcess:
    """One platform process (a gateway or a worker), started, killed and paused for real;
    on ``host``, a host of its own (network namespace), when given."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log: Path, host: Host | None
    ) -> None:
        self.name, self.log, self.host = name, log, host
        self.argv = list(in_namespace(LaunchSpec(argv, log), host.namespace).argv) if host else argv
        self.address = host.address if host else "127.0.0.1"
        self.http_port = free_port()
        self.env = {**env, self._port_variable(argv): str(self.http_port)}
        self.process: subprocess.Popen[bytes] | None = None
        self.expected_down = False
        """True while a fault holds it down (a death then is not a crash)."""

    @staticmethod
    def _port_variable(argv: list[str]) -> str:
        return "IOT_GATEWAY_HTTP__PORT" if "gateway" in argv else "IOT_STREAMS_HTTP__PORT"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = track(
                subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
            )
        self.expected_down = False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        return (
            self.running()
            and http_probe(f"http://{self.address}:{self.http_port}/readyz", 1).answers
        )

    def metric(self, name: str) -> float:
        """The value of the process's unlabelled metric ``name`` (``/metrics``)."""
        url = f"http://{self.address}:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        raise LookupError(f"{self.name} has no metric {name}")

    def wait_ready(self, timeout_s: float = 60) -> float:
        """Blocks until ``/readyz`` answers; returns the seconds it took."""
        started = time.monotonic()
        while not self.ready():
            if not self.running():
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f}s: {self.tail()}")
            time.sleep(0.1)
        return time.monotonic() - started

    def kill(self) -> None:
        self.expected_down = True
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def terminate(self, timeout_s: float = 60) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); the exit status, None if killed."""
        if not self.running():
            return self.process.returncode if self.process else None
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return None

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(text[-lines:])


def gateway_process(
    settings: DevStackSettings,
    config: Path,
    number: int,
    logs: Path,
    host: Host | None = None,
    clock: HostClock | None = None,
) -> AppProcess:
    """Gateway ``number``; on ``host``, it serves devices and HTTP on that host's address,
    and reads the host's wall ``clock`` (one the suite steps) when given."""
    client_id = f"faults-gw-{number}"
    extra = {"IOT_GATEWAY_MQTT__CLIENT_ID": client_id, "IOT_GATEWAY_EDGE__INSTANCE": client_id}
    if host:
        extra |= {"IOT_GATEWAY_EDGE__HOST": host.address, "IOT_GATEWAY_HTTP__HOST": host.address}
    if clock:
        extra |= clock.env()
    env = process_env(settings, extra)
    argv = [sys.executable, "-m", "iotctl.main", "gateway", "run", "--config", str(config)]
    return AppProcess(f"gateway-{number}", argv, env, logs / f"gateway-{number}.log", host)


class WorkerStore:
    """Where the workers keep their state (``url``: an SQLite file for one worker, the
    stack's PostgreSQL for several), their consumer group, and the suite's one reader of it
    (opened and migrated once, not at every sample; a PostgreSQL connection lost to a fault
    is made again by the store itself)."""

    def __init__(self, url: str, group: str = "faults-streams") -> None:
        self.url, self.group = url, group
        self._reader: Store | None = None
        self._opening = threading.Lock()

    @classmethod
    def sqlite(cls, path: Path) -> WorkerStore:
        return cls(f"sqlite:///{path}")

    @classmethod
    def postgres(cls, settings: DevStackSettings) -> WorkerStore:
        return cls(f"{settings.pg_dsn()}?schema=faults")

    def reader(self) -> Store:
        """The store, open for reading what the workers did."""
        with self._opening:
            if self._reader is None:
                self._reader = open_store(self.url)
            return self._reader

    def applied(self) -> dict[int, int]:
        """Each partition's next offset to apply."""
        return {tp.partition: o + 1 for tp, o in self.reader().positions(self.group).items()}

    def close(self) -> None:
        with self._opening:
            if self._reader is not None:
                self._reader.close()
                self._reader = None


def worker_process(
    settings: DevStackSettings,
    store: WorkerStore,
    rules: Path,
    work: Path,
    number: int = 1,
    host: Host | None = None,
) -> AppProcess:
    env = process_env(
        settings,
        {
            "IOT_STREAMS_GROUP": store.group,
            "IOT_STREAMS_TELEMETRY_TOPIC": TELEMETRY_TOPIC,
            "IOT_STREAMS_STORE": store.url,
            "IOT_STREAMS_ALERT_RULES": str(rules),
            "IOT_STREAMS_NOTIFIER__ENABLED": "false",
            "IOT_STREAMS_BATCH_MAX": "500",
            "IOT_STREAMS_DATA_DIR": str(work / f"faust-{number}"),
            "IOT_STREAMS_HTTP__HOST": host.address if host else settings.host,
        },
    )
    argv = [sys.executable, "-m", "iotctl.main", "streams", "worker"]
    return AppProcess(f"worker-{number}", argv, env, work / f"worker-{number}.log", host)


@dataclass(frozen=True, slots=True)
class Server:
    """A server of the isolated stack, found through the dev stack's pid file."""

    service: Service

    @property
    def name(self) -> str:
        return self.service.name

    def pid(self) -> int:
        pid = running_pid(self.service.handle)
        if pid is None:
            raise RuntimeError(f"{self.name} of the isolated stack is not running")
        return pid

    def kill(self) -> None:
        """SIGKILL every process of the server (PostgreSQL's backends too, as when its host
        dies) and wait until they are gone and reaped: a server that finds its old pid
        still there, a zombie of this process, refuses to start (PostgreSQL's lock file)."""
        pid = self.pid()
        os.killpg(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.02)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def pause(self) -> int:
        """SIGSTOP every process of the server (a frozen host); returns whom to resume."""
        pid = self.pid()
        os.killpg(pid, signal.SIGSTOP)
        return pid

    @staticmethod
    def resume(pid: int) -> None:
        os.killpg(pid, signal.SIGCONT)


def kafka_server(settings: DevStackSettings, target: Target = Target.KAFKA) -> Server:
    """The Kafka node a fault on ``target`` hits: the one node, the node leading the most
    telemetry partitions, or the active controller."""
    nodes = kafka_nodes(settings)
    if target is Target.KAFKA_LEADER:
        return Server(nodes[_telemetry_leader(settings) - 1])
    if target is Target.KAFKA_CONTROLLER:
        return Server(nodes[_quorum_leader(nodes) - 1])
    return Server(nodes[0])


def _telemetry_leader(settings: DevStackSettings) -> int:
    """The node id leading the most partitions of the telemetry topic."""
    metadata = admin_client(client_for(settings)).list_topics(TELEMETRY_TOPIC, timeout=10)
    leaders = Counter(p.leader for p in metadata.topics[TELEMETRY_TOPIC].partitions.values())
    return leaders.most_common(1)[0][0]


def _quorum_leader(nodes: list[Kafka]) -> int:
    """The KRaft quorum's leader (the active controller), as the nodes' own quorum state
    files say: the leader of the newest epoch. (Kafka's metadata answers name a random
    broker as the controller in KRaft mode, not the active one.)"""
    newest = (-1, 1)
    for node in nodes:
        path = node.data_dir / "__cluster_metadata-0" / "quorum-state"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if state.get("leaderId", -1) > 0:
            newest = max(newest, (state["leaderEpoch"], state["leaderId"]))
    return newest[1]


def mosquitto_server(settings: DevStackSettings) -> Server:
    return Server(Mosquitto(settings))


def postgres_server(settings: DevStackSettings) -> Server:
    return Server(Postgres(settings))


def mosquitto_saved_at(settings: DevStackSettings) -> float | None:
    """When Mosquitto last wrote its persistence file, on ``time.monotonic()``'s clock.

    The file is replaced whole at each save, so its mtime is the end of the last save. None
    if it was never saved.
    """
    db = Mosquitto(settings).home / "data" / "mosquitto.db"
    try:
        mtime = db.stat().st_mtime
    except OSError:
        return None
    return time.monotonic() - (time.time() - mtime)


def restart_servers(settings: DevStackSettings, say: Say) -> float:
    """Starts whatever server of the stack is down (``iotctl dev up``); returns seconds."""
    started = time.monotonic()
    up(replace(settings), say)
    return time.monotonic() - started
