"""Apache Kafka 3.9 in KRaft mode (combined broker and controller) from Maven Central's jars.

The jars are resolved by Maven into its local cache (``~/.m2``) from ``infra/kafka/pom.xml``;
the broker runs with the machine's Java 17 and is formatted with Kafka's own storage tool.
"""

from __future__ import annotations

import base64
import logging
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from iot_gateway.devstack.errors import ServiceStartError
from iot_gateway.devstack.process import LaunchSpec, ProcessHandle
from iot_gateway.devstack.service import Probe, Progress, Service
from iot_gateway.topics import PLATFORM_TOPICS

_QUIET = logging.getLogger("iot_gateway.devstack.kafka.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID as 22 characters of URL-safe base64."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def admin_client(bootstrap: str, timeout_s: float = 5.0) -> AdminClient:
    """A confluent-kafka AdminClient whose connection noise goes nowhere."""
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.timeout.ms": int(timeout_s * 1000),
            "logger": _QUIET,  # type: ignore[dict-item]  # librdkafka's documented option
        }
    )


class Kafka(Service):
    """Single-node KRaft Kafka on loopback with a PLAINTEXT listener."""

    name = "kafka"

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def endpoint(self) -> str:
        return self.settings.kafka_bootstrap

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def classpath_file(self) -> Path:
        return self.home / f"classpath-{self.settings.kafka_version}.txt"

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

    def _write_configs(self) -> None:
        host, port = self.settings.host, self.port
        controller = self.settings.kafka_controller_port
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{controller}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": str(self.settings.kafka_partitions),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.retention.hours": "168",
        }
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "# Generated by `iotctl dev up`; edits are overwritten.\n"
            + "".join(f"{key}={value}\n" for key, value in properties.items())
        )
        (self.home / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, file\n"
            "log4j.appender.file=org.apache.log4j.RollingFileAppender\n"
            f"log4j.appender.file.File={self.settings.state_dir / 'logs' / 'kafka-server.log'}\n"
            "log4j.appender.file.MaxFileSize=50MB\n"
            "log4j.appender.file.MaxBackupIndex=2\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\n"
            "log4j.logger.state.change.logger=WARN\n"
        )

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

    def prepare(self, progress: Progress) -> None:
        self._java()
        self._classpath(progress)
        self._write_configs()
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id_file = self.home / "cluster.id"
        if not cluster_id_file.is_file():
            cluster_id_file.write_text(new_cluster_id() + "\n")
        progress("formatting the KRaft log directory with kafka.tools.StorageTool")
        result = subprocess.run(
            [
                *self._jvm_args(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id_file.read_text().strip(),
                "-c",
                str(self.config_file),
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

    @property
    def handle(self) -> ProcessHandle:
        # SIGTERM makes the broker shut down in a controlled way (flushes, closes the log).
        return ProcessHandle(self.pid_file, str(self.config_file), signal.SIGTERM, 30.0)

    def launch(self) -> LaunchSpec:
        return LaunchSpec(
            argv=[*self._jvm_args(), "kafka.Kafka", str(self.config_file)], log_file=self.log_file
        )

    def probe(self, timeout_s: float = 2.0) -> Probe:
        """Asks the broker for cluster metadata."""
        try:
            metadata = admin_client(self.endpoint, timeout_s).list_topics(timeout=timeout_s)
        except Exception as exc:
            return Probe(False, f"no metadata: {exc}")
        brokers = len(metadata.brokers)
        return Probe(
            brokers > 0,
            f"cluster {metadata.cluster_id}, {brokers} broker(s), {len(metadata.topics)} topics",
        )

    def after_start(self, progress: Progress) -> None:
        """Creates the platform's topics that do not exist yet."""
        admin = admin_client(self.endpoint)
        existing = set(admin.list_topics(timeout=10).topics)
        missing = [topic for topic in PLATFORM_TOPICS if topic.name not in existing]
        if not missing:
            return
        progress("creating topics " + ", ".join(topic.name for topic in missing))
        futures = admin.create_topics(
            [
                NewTopic(
                    topic.name,
                    num_partitions=topic.partitions or self.settings.kafka_partitions,
                    replication_factor=1,
                    config=dict(topic.config),
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
