"""Settings of the local development stack, read once from ``IOT_*`` environment variables.

This module is the only place the dev stack reads the environment. Ports default to the
usual ones (Kafka 9092, MQTT 1883, PostgreSQL 5432) and each can be overridden.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from devstack.errors import SettingsError

ENV_PREFIX = "IOT_"
KAFKA_NODE_PORT_STEP = 10
"""Kafka node n's ports are node 1's plus this step times (n - 1): 9092, 9102, 9112."""
_MAX_KAFKA_NODES = 9
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _default_project_dir() -> Path:
    """The checkout that holds this package (editable install), else the working directory."""
    if (_PACKAGE_ROOT / "pyproject.toml").is_file() and (_PACKAGE_ROOT / "infra").is_dir():
        return _PACKAGE_ROOT
    return Path.cwd()


@dataclass(frozen=True, slots=True)
class KafkaNode:
    """One node of the local Kafka cluster: its id, address, and client and controller ports."""

    node_id: int
    host: str
    port: int
    controller_port: int

    @property
    def name(self) -> str:
        """The node's service name: ``kafka`` for node 1, ``kafka-<n>`` for the others."""
        return kafka_node_name(self.node_id)


def kafka_node_name(node_id: int) -> str:
    return "kafka" if node_id == 1 else f"kafka-{node_id}"


@dataclass(frozen=True, slots=True)
class Host:
    """A host of its own for one server: a network namespace (``ip netns``), the server's
    address in it, and the test network both belong to (a CIDR its clients connect from)."""

    namespace: str
    address: str
    network: str


@dataclass(frozen=True, slots=True)
class DevStackSettings:
    """Where each local service listens and where its files live.

    Every field maps to ``IOT_<FIELD NAME IN UPPER CASE>``; ``local_dir`` holds data, logs and
    pid files and is git-ignored.
    """

    project_dir: Path = field(default_factory=_default_project_dir)
    local_dir: Path | None = None
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_version: str = "3.9.1"
    kafka_heap: str = "1g"
    kafka_partitions: int = 6
    kafka_servers: str | None = None
    """``host:port,...`` of a Kafka cluster this stack does not run (``compose.yaml``'s nodes),
    for ``iotctl`` commands pointed at it: then ``kafka_bootstrap`` is this list, and
    ``kafka_brokers`` only says how many nodes it has (replication, min ISR)."""
    kafka_brokers: int = 1
    """Kafka nodes, each a KRaft broker and controller: 1, or a cluster (``IOT_KAFKA_BROKERS=3``)
    whose topics are replicated ``kafka_replication`` times, acknowledged by
    ``kafka_min_insync`` replicas. Node n listens on ``kafka_port`` and
    ``kafka_controller_port`` plus ``KAFKA_NODE_PORT_STEP`` * (n - 1)."""
    mqtt_port: int = 1883
    """Where devices connect: the gateway itself (direct mode), or Mosquitto (bridge mode)."""
    gateway_mode: str = "direct"
    """``direct``: devices connect to the gateway, no broker in between; ``bridge``: they
    connect to Mosquitto and the gateway subscribes to it (``IOT_GATEWAY_MODE``)."""
    mosquitto: bool = False
    """Also run Mosquitto in direct mode, on ``mosquitto_port`` (the bridge-mode tests and
    benchmarks use it); in bridge mode it always runs, on ``mqtt_port``."""
    mosquitto_port: int = 1884
    mosquitto_tls_port: int = 8884
    pg_port: int = 5432
    pg_database: str = "iot"
    pg_user: str = "iot"
    pg_password: str = field(default="iot", repr=False)
    gateway_http_port: int = 9464
    worker_http_port: int = 9465
    apps: bool = True
    """Also run the platform's own processes (gateway, ...), not only the servers."""
    simulate: bool = False
    """Also run simulated devices (``make run`` turns this on)."""
    simulator_devices: int = 200
    simulator_rate: float = 200.0
    start_timeout_s: float = 90.0
    secure: bool = True
    """Authenticate and authorize everything from the security policy: Kafka on
    SASL_PLAINTEXT with SCRAM-SHA-512 and ACLs, Mosquitto with passwords, an acl_file and a
    TLS listener, every process as its own principal. ``IOT_SECURE=false`` runs the stack
    anonymous (PLAINTEXT Kafka, anonymous MQTT), e.g. to try a client without credentials."""
    mqtts_port: int = 8883
    """MQTT over TLS where devices connect (secure mode only), with a certificate of the
    local CA: the gateway's in direct mode, Mosquitto's in bridge mode."""
    policy_file: Path | None = None
    """The security policy in secure mode; ``config/policy.yaml`` of the project by default."""
    server_hosts: tuple[tuple[str, Host], ...] = ()
    """Servers that run on a host of their own (by service name: ``kafka-2``, ``postgres``),
    e.g. the fault suite's network namespaces; the others listen on ``host``. Not read from
    the environment."""

    @property
    def state_dir(self) -> Path:
        """Data, logs and pid files of the local services (``.local/`` by default)."""
        return self.local_dir if self.local_dir is not None else self.project_dir / ".local"

    def __post_init__(self) -> None:
        if not 1 <= self.kafka_brokers <= _MAX_KAFKA_NODES:
            raise SettingsError(
                f"IOT_KAFKA_BROKERS={self.kafka_brokers} is not a node count: use 1 to "
                f"{_MAX_KAFKA_NODES} (3 for a replicated cluster)"
            )
        if self.gateway_mode not in ("direct", "bridge"):
            raise SettingsError(
                f"IOT_GATEWAY_MODE={self.gateway_mode!r} is not a mode: use direct or bridge"
            )

    def host_of(self, service: str) -> Host | None:
        """The host of its own ``service`` runs on, if it has one."""
        return dict(self.server_hosts).get(service)

    def address_of(self, service: str) -> str:
        """Where ``service`` listens: its own host's address, else ``host``."""
        own = self.host_of(service)
        return own.address if own else self.host

    @property
    def direct(self) -> bool:
        """True when devices connect to the gateway itself."""
        return self.gateway_mode == "direct"

    @property
    def runs_mosquitto(self) -> bool:
        """Mosquitto is part of this stack (bridge mode, or asked for)."""
        return not self.direct or self.mosquitto

    @property
    def broker_port(self) -> int:
        """Mosquitto's plain listener: where devices connect in bridge mode, else its own."""
        return self.mosquitto_port if self.direct else self.mqtt_port

    @property
    def broker_tls_port(self) -> int:
        return self.mosquitto_tls_port if self.direct else self.mqtts_port

    @property
    def kafka_nodes(self) -> tuple[KafkaNode, ...]:
        """The Kafka cluster's nodes, node 1 first."""
        return tuple(
            KafkaNode(
                n,
                self.address_of(kafka_node_name(n)),
                self.kafka_port + KAFKA_NODE_PORT_STEP * (n - 1),
                self.kafka_controller_port + KAFKA_NODE_PORT_STEP * (n - 1),
            )
            for n in range(1, self.kafka_brokers + 1)
        )

    @property
    def kafka_replication(self) -> int:
        """Replicas of every topic: 3 in a cluster of 3 or more nodes."""
        return min(self.kafka_brokers, 3)

    @property
    def kafka_min_insync(self) -> int:
        """Replicas that must have a record before it is acknowledged (acks=all): all but one,
        so one node may be lost without losing an acknowledged record or availability."""
        return max(1, self.kafka_replication - 1)

    @property
    def kafka_bootstrap(self) -> str:
        """Every node: clients find the cluster through whichever answers."""
        if self.kafka_servers:
            return self.kafka_servers
        return ",".join(f"{node.host}:{node.port}" for node in self.kafka_nodes)

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://{self.host}:{self.mqtt_port}"

    def pg_dsn(self, *, masked: bool = False) -> str:
        """libpq URI of the project database; ``masked`` hides the password for printing."""
        password = "***" if masked else self.pg_password
        return (
            f"postgresql://{self.pg_user}:{password}@{self.address_of('postgres')}:{self.pg_port}"
            f"/{self.pg_database}"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DevStackSettings:
        """Build settings from ``IOT_*`` variables; a malformed value raises SettingsError."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for spec in fields(cls):
            raw = env.get(ENV_PREFIX + spec.name.upper())
            if raw is None or raw == "" or spec.name == "server_hosts":
                continue
            values[spec.name] = _convert(spec.name, str(spec.type), raw)
        return cls(**values)  # type: ignore[arg-type]


def _convert(name: str, type_name: str, raw: str) -> object:
    variable = ENV_PREFIX + name.upper()
    if type_name == "int":
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r} is not an integer") from None
        if name.endswith("port") and not 0 < value < 65536:
            raise SettingsError(f"{variable}={value} is not a TCP port (1-65535)")
        if value <= 0:
            raise SettingsError(f"{variable}={value} must be positive")
        return value
    if type_name == "float":
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{variable}={raw!r} is not a number") from None
    if "Path" in type_name:
        return Path(raw).expanduser().resolve()
    if type_name == "bool":
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{variable}={raw!r} is not a boolean (true/false)")
    return raw
