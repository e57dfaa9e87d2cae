"""Apache Kafka 3.9 in KRaft mode (combined broker and controller) from Maven Central's jars.

One node by default; ``IOT_KAFKA_BROKERS=3`` runs a cluster of three nodes on loopback, each
with its own ports, folder and log, all voters of one controller quorum. Topics are then
replicated three times with ``min.insync.replicas=2`` and unclean leader election off, so an
acknowledged record survives the loss of any one node and produce stays available.

The jars are resolved by Maven into its local cache (``~/.m2``) from ``infra/kafka/pom.xml``;
the broker runs with the machine's Java 17 and is formatted with Kafka's own storage tool.

Secured mode (the default; ``IOT_SECURE=false`` turns it off) changes only what it must: the
client listener becomes SASL_PLAINTEXT with SCRAM-SHA-512 (inter-broker traffic too, as the
stack's admin), the controller listener SASL_PLAINTEXT with PLAIN (the admin only), the
StandardAuthorizer denies whatever no ACL allows, the admin's SCRAM credential is written at
format time (KIP-900), and probes and topic creation connect as the admin. Unsecured, the
generated files are exactly the plain ones.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from contracts.topics import PLATFORM_TOPICS, TopicSpec
from devstack.clients import write_kcat_config
from devstack.errors import ServiceStartError
from devstack.process import LaunchSpec, ProcessHandle
from devstack.service import Probe, Progress, Service
from devstack.settings import KAFKA_NODE_PORT_STEP, DevStackSettings, kafka_node_name
from devstack.stack_security import StackSecurity
from policy import PolicyError
from security import SecurityError
from security.kafka import admin_client as sasl_admin

_QUIET = logging.getLogger("devstack.kafka.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID as 22 characters of URL-safe base64, never starting
    with ``-`` (the storage tool would read it as an option; Kafka's own ids avoid it too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def admin_client(bootstrap: str, timeout_s: float = 5.0) -> AdminClient:
    """A confluent-kafka AdminClient whose connection noise goes nowhere."""
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": int(timeout_s * 1000),
            "logger": _QUIET,  # type: ignore[dict-item]  # librdkafka's documented option
        }
    )


def kafka_nodes(settings: DevStackSettings, *, every_kind: bool = False) -> list[Kafka]:
    """The cluster's nodes; ``every_kind`` adds nodes a larger cluster left running (their
    pid files), so ``down`` stops them whatever ``IOT_KAFKA_BROKERS`` says now."""
    count = settings.kafka_brokers
    if every_kind:
        for pid_file in (settings.state_dir / "run").glob("kafka-*.pid"):
            suffix = pid_file.stem.removeprefix("kafka-")
            if suffix.isdigit():
                count = max(count, int(suffix))
    return [Kafka(settings, n) for n in range(1, count + 1)]


class Kafka(Service):
    """One KRaft node (broker and controller) on loopback with a PLAINTEXT listener (SASL when
    secured); node 1 is ``kafka``, the others ``kafka-<n>``."""

    def __init__(self, settings: DevStackSettings, node_id: int = 1) -> None:
        super().__init__(settings)
        self.node_id = node_id
        self.name = kafka_node_name(node_id)
        step = KAFKA_NODE_PORT_STEP * (node_id - 1)
        self._port = settings.kafka_port + step
        self._controller_port = settings.kafka_controller_port + step

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def env_port_variable(self) -> str:
        return "IOT_KAFKA_PORT"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def classpath_file(self) -> Path:
        # one for every node, in node 1's folder: Maven resolves the jars once
        return self.settings.state_dir / "kafka" / f"classpath-{self.settings.kafka_version}.txt"

    def _classpath(self, progress: Progress) -> str:
        if self.classpath_file.is_file():
            cached = self.classpath_file.read_text().strip()
            if cached and all(Path(jar).is_file() for jar in cached.split(":")):
                return cached
        if shutil.which("mvn") is None:
            raise ServiceStartError(
                "Maven is not installed: run `make up` or `apt-get install maven`"
            )
        progress(
            f"resolving Kafka {self.settings.kafka_version} jars with Maven "
            "(first run downloads ~60 MB into ~/.m2)"
        )
        pom = self.settings.project_dir / "infra" / "kafka" / "pom.xml"
        result = subprocess.run(
            [
                "mvn",
                "-B",
                "-q",
                "-f",
                str(pom),
                f"-Dkafka.version={self.settings.kafka_version}",
                f"-Dmdep.outputFile={self.classpath_file}",
                "dependency:build-classpath",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceStartError(
                "Maven could not resolve the Kafka jars; check that Maven Central is reachable.\n"
                + (result.stdout + result.stderr)[-2000:]
            )
        return self.classpath_file.read_text().strip()

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise ServiceStartError(
                "Java is not installed: run `make up` or `apt-get install openjdk-17-jre-headless`"
            )
        return java

    @property
    def cluster_id_file(self) -> Path:
        """One cluster id for every node, kept in node 1's folder."""
        return self.settings.state_dir / "kafka" / "cluster.id"

    @property
    def _cluster_marker(self) -> Path:
        """Written at format time: the node count the data dir was formatted for."""
        return self.home / "cluster-nodes"

    def _write_configs(self) -> None:
        settings = self.settings
        host, port, controller = self.address, self.port, self._controller_port
        replication, min_insync = settings.kafka_replication, settings.kafka_min_insync
        voters = ",".join(
            f"{node.node_id}@{node.host}:{node.controller_port}" for node in settings.kafka_nodes
        )
        properties = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.settings.kafka_partitions),
            "default.replication.factor": str(replication),
            "min.insync.replicas": str(min_insync),
            "unclean.leader.election.enable": "false",
            "offsets.topic.replication.factor": str(replication),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(replication),
            "transaction.state.log.min.isr": str(min_insync),
            "transaction.state.log.num.partitions": "10",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "168",
        }
        if settings.kafka_brokers > 1:
            # A node that stops heartbeating is fenced, and its partitions led elsewhere,
            # after 4 s instead of 9: the stall a lost node causes is mostly this wait.
            properties["broker.session.timeout.ms"] = "4000"
            properties["broker.heartbeat.interval.ms"] = "1000"
            # A lost active controller is noticed after 1 s without its fetch answers (2 s by
            # default) and replaced within half a second more, before the fencing above.
            properties["controller.quorum.fetch.timeout.ms"] = "1000"
            properties["controller.quorum.election.timeout.ms"] = "500"
        self.home.mkdir(parents=True, exist_ok=True)
        if self.settings.secure:
            properties.update(self._secured_properties())
            # The file holds the admin's password: readable by its owner only.
            self.config_file.touch(mode=0o600)
            self.config_file.chmod(0o600)
        self.config_file.write_text(
            "# Generated by `iotctl dev up`; edits are overwritten.\n"
            + "".join(f"{key}={value}\n" for key, value in properties.items())
        )
        (self.home / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, file\n"
            "log4j.appender.file=org.apache.log4j.RollingFileAppender\n"
            f"log4j.appender.file.File={self.settings.state_dir / 'logs' / self.name}-server.log\n"
            "log4j.appender.file.MaxFileSize=50MB\n"
            "log4j.appender.file.MaxBackupIndex=2\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\n"
            "log4j.logger.state.change.logger=WARN\n"
        )

    def _secured_properties(self) -> dict[str, str]:
        """SASL/SCRAM listener, StandardAuthorizer and super users (secured mode only)."""
        host, port, controller = self.address, self.port, self._controller_port
        stack = StackSecurity(self.settings)
        try:
            admin = stack.admin_credential()
            super_users = stack.kafka_super_users(stack.effective())
        except (PolicyError, SecurityError) as exc:
            raise ServiceStartError(f"kafka: cannot secure the broker: {exc}") from exc
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{admin.principal}" password="{admin.password}";'
        )
        # The controller listener takes SASL/PLAIN with one static user, the admin: SCRAM
        # users live in the metadata log the controller serves, so it cannot use them.
        controller_jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{admin.principal}" password="{admin.password}" '
            f'user_{admin.principal}="{admin.password}";'
        )
        return {
            "listeners": f"SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            "advertised.listeners": f"SASL_PLAINTEXT://{host}:{port}",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "listener.security.protocol.map": (
                "CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
            ),
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": controller_jaas,
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": super_users,
        }

    @property
    def _sasl_marker(self) -> Path:
        """Written after a secured format: which admin credential the data dir was made for."""
        return self.home / "sasl-format"

    def _sasl_fingerprint(self) -> str:
        admin = StackSecurity(self.settings).admin_credential()
        digest = hashlib.sha256(admin.password.encode()).hexdigest()
        return f"SCRAM-SHA-512 {admin.principal} {digest}\n"

    def _scram_arguments(self) -> list[str]:
        """``--add-scram`` for the admin (KIP-900); empty unless secured."""
        if not self.settings.secure:
            return []
        admin = StackSecurity(self.settings).admin_credential()
        return ["--add-scram", f"SCRAM-SHA-512=[name={admin.principal},password={admin.password}]"]

    def _reformat_unless_sasl(self, progress: Progress) -> None:
        """Secured mode: a data dir formatted without the admin's SCRAM user (or for another
        admin password) cannot authenticate anyone, so it is discarded and formatted again."""
        if not (self.data_dir / "meta.properties").is_file():
            return
        try:
            if self._sasl_marker.read_text() == self._sasl_fingerprint():
                return
        except OSError:
            pass
        progress(
            f"kafka: {self.data_dir} was formatted without SASL/SCRAM users (or for another "
            "admin password); secured mode needs them, so it is formatted again and its "
            "topics and data are discarded"
        )
        shutil.rmtree(self.data_dir)

    def _jvm_args(self) -> list[str]:
        heap = self.settings.kafka_heap
        return [
            self._java(),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.settings.state_dir / 'logs'}",
            "-cp",
            self.classpath_file.read_text().strip(),
        ]

    def _refuse_other_cluster_size(self) -> None:
        """A data dir formatted for another node count belongs to another quorum."""
        if not (self.data_dir / "meta.properties").is_file():
            return
        try:
            formatted = int(self._cluster_marker.read_text())
        except (OSError, ValueError):
            formatted = 1  # formatted before cluster mode: one node
        if formatted != self.settings.kafka_brokers:
            raise ServiceStartError(
                f"{self.name}: {self.data_dir} holds a {formatted}-node cluster's data, but "
                f"IOT_KAFKA_BROKERS={self.settings.kafka_brokers}; run with "
                f"IOT_KAFKA_BROKERS={formatted}, or `make clean` (deletes all local data) "
                "to start a new cluster"
            )

    def prepare(self, progress: Progress) -> None:
        self._java()
        self._classpath(progress)
        self._refuse_other_cluster_size()
        self._write_configs()
        if self.settings.secure:
            self._reformat_unless_sasl(progress)
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id_file = self.cluster_id_file
        if not cluster_id_file.is_file():
            cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
            cluster_id_file.write_text(new_cluster_id() + "\n")
        progress(f"{self.name}: formatting the KRaft log directory with kafka.tools.StorageTool")
        result = subprocess.run(
            [
                *self._jvm_args(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id_file.read_text().strip(),
                "-c",
                str(self.config_file),
                *self._scram_arguments(),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceStartError(
                f"kafka-storage format failed; remove {self.data_dir} to start afresh.\n"
                + (result.stdout + result.stderr)[-2000:]
            )
        self._cluster_marker.write_text(f"{self.settings.kafka_brokers}\n")
        if self.settings.secure:
            self._sasl_marker.write_text(self._sasl_fingerprint())
            self._sasl_marker.chmod(0o600)

    @property
    def handle(self) -> ProcessHandle:
        # SIGTERM makes the broker shut down in a controlled way (flushes, closes the log).
        return ProcessHandle(self.pid_file, str(self.config_file), signal.SIGTERM, 30.0)

    def launch(self) -> LaunchSpec:
        return LaunchSpec(
            argv=[*self._jvm_args(), "kafka.Kafka", str(self.config_file)], log_file=self.log_file
        )

    def _admin(self, timeout_s: float = 5.0) -> AdminClient:
        """An AdminClient of this node only: anonymous, or the stack's admin over SASL when
        secured."""
        if not self.settings.secure:
            return admin_client(self.endpoint, timeout_s)
        client = StackSecurity(self.settings).kafka_client()
        return sasl_admin(client.model_copy(update={"bootstrap": self.endpoint}), timeout_s)

    def probe(self, timeout_s: float = 2.0) -> Probe:
        """Asks this node for cluster metadata (as the admin when secured); it answers once
        every node of the cluster is registered."""
        try:
            metadata = self._admin(timeout_s).list_topics(timeout=timeout_s)
        except Exception as exc:
            return Probe(False, f"no metadata: {exc}")
        brokers, expected = len(metadata.brokers), self.settings.kafka_brokers
        return Probe(
            brokers >= expected,
            f"cluster {metadata.cluster_id}, {brokers} of {expected} broker(s), "
            f"{len(metadata.topics)} topics",
        )

    def after_start(self, progress: Progress) -> None:
        """Node 1 creates the platform's topics that do not exist yet and writes
        ``kcat.conf`` for the admin (the stack applies the security policy once every server
        answers)."""
        if self.node_id != 1:
            return
        create_topics(self._admin(), self.settings, progress)
        write_kcat_config(self.settings)


def create_topics(admin: AdminClient, settings: DevStackSettings, progress: Progress) -> None:
    """Creates the platform's topics that do not exist yet, replicated ``kafka_replication``
    times with ``min.insync.replicas`` ``kafka_min_insync`` and unclean election off."""
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [topic for topic in PLATFORM_TOPICS if topic.name not in existing]
    align_topics(admin, [topic for topic in PLATFORM_TOPICS if topic.name in existing])
    if not missing:
        return
    progress("creating topics " + ", ".join(topic.name for topic in missing))
    futures = admin.create_topics(
        [
            NewTopic(
                topic.name,
                num_partitions=topic.partitions or settings.kafka_partitions,
                replication_factor=settings.kafka_replication,
                config={
                    "min.insync.replicas": str(settings.kafka_min_insync),
                    "unclean.leader.election.enable": "false",
                    **topic.config,
                },
            )
            for topic in missing
        ],
        operation_timeout=30,
    )
    for name, future in futures.items():
        try:
            future.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise ServiceStartError(f"could not create topic {name}: {exc}") from exc


def align_topics(admin: AdminClient, topics: list[TopicSpec]) -> None:
    """Sets the catalog's settings on topics that exist (a setting added to the catalog
    reaches a stack made before it; setting one it already has changes nothing)."""
    resources = [
        ConfigResource(
            ResourceType.TOPIC,
            topic.name,
            incremental_configs=[
                ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
                for name, value in topic.config.items()
            ],
        )
        for topic in topics
        if topic.config
    ]
    if not resources:
        return
    for resource, future in admin.incremental_alter_configs(resources).items():
        try:
            future.result()
        except Exception as exc:
            raise ServiceStartError(f"could not set {resource.name}'s settings: {exc}") from exc
