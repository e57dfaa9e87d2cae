"""compose.yaml cannot run here (no Docker engine), so check that it is coherent with the repo:
the dev stack's cluster and security settings, the settings classes of the processes it starts,
and what `iot-init` writes for them."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from devstack import ADMIN, DevStackSettings
from devstack.apps import GatewayApp
from devstack.kafka import Kafka
from iot_gateway.config import GatewayConfig, load_config
from iotctl.main import build_parser
from policy import load_policy, super_users_config
from security import SecurityLayout
from security.effective import effective_policy
from security.mosquitto import BrokerLayout
from streams.settings import WorkerSettings, load_worker_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "compose.yaml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BUILT = sorted(name for name, service in SERVICES.items() if "build" in service)
KAFKA = sorted(name for name, service in SERVICES.items() if "apache/kafka" in service["image"])
INIT = "iot-init"
APPS = sorted(name for name in BUILT if name != INIT)
GATEWAYS = sorted(name for name in APPS if SERVICES[name]["command"][1] == "gateway")
WORKERS = sorted(name for name in APPS if SERVICES[name]["command"][1] == "streams")
ALL_NODES = {f"{name}:9092" for name in KAFKA}

# Services whose command a later capability adds; xfail_strict turns this list into an error
# the moment the command exists, so it cannot go stale.
NOT_YET_IMPLEMENTED: dict[str, str] = {}

REFERENCE = re.compile(r"\$\{(?P<name>[A-Z][A-Z0-9_]*)(?P<rest>(?::?[-?][^}]*)?)\}")
"""A compose variable reference: ``${NAME}``, ``${NAME:?message}``, ``${NAME:-default}``."""
SECRET_REFERENCE = re.compile(r"\$\{[A-Z][A-Z0-9_]*(?::\?[^}]*)?\}")
"""What a secret may be: a required reference, never a literal nor a default."""


def _env(name: str) -> dict[str, str]:
    return {key: str(value) for key, value in SERVICES[name].get("environment", {}).items()}


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """``value`` as compose would give it to the container, with ``variables`` as .env."""

    def substitute(match: re.Match[str]) -> str:
        rest = match["rest"]
        if match["name"] in variables:
            return variables[match["name"]]
        if rest.startswith((":-", "-")):
            return rest.split("-", 1)[1]
        raise AssertionError(f"{match['name']} is required and not in the test's .env")

    return REFERENCE.sub(substitute, value)


DOT_ENV = {
    "KAFKA_CLUSTER_ID": "Ab3dEf6hIj9lMn2pQr5tUv",
    "KAFKA_ADMIN_PASSWORD": "admin-pw",
    "GATEWAY_PASSWORD": "gateway-pw",
    "STREAMS_PASSWORD": "streams-pw",
    "POSTGRES_PASSWORD": "postgres-pw",
}


def _container_env(name: str) -> dict[str, str]:
    return {key: _interpolate(value, DOT_ENV) for key, value in _env(name).items()}


@pytest.fixture
def container_env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Sets a service's environment as its container gets it (and nothing else of ours)."""
    for key in list(os.environ):
        if key.startswith("IOT_"):
            monkeypatch.delenv(key)

    def apply(name: str) -> dict[str, str]:
        env = _container_env(name)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return env

    return apply


def _gateway_config(name: str, container_env: Any) -> GatewayConfig:
    container_env(name)
    return load_config(ROOT / "config" / "gateway.yaml")


def _worker_settings(name: str, container_env: Any) -> WorkerSettings:
    container_env(name)
    return load_worker_settings(ROOT / "config" / "streams.yaml")


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith((".", "/")):
            mounts.append(((ROOT / source).resolve(), target))
    return mounts


def _kafka_properties(env: dict[str, str]) -> dict[str, str]:
    """server.properties from a node's KAFKA_* variables, as infra/kafka/compose-node.sh
    (and the apache/kafka image) spell them."""
    properties = {}
    for key, value in env.items():
        if key.startswith("KAFKA_"):
            name = key.removeprefix("KAFKA_").lower().replace("_", ".")
            properties[name.replace("...", "-").replace("..", "_")] = value
    return properties


# -- topology ---------------------------------------------------------------------------


def test_topology_has_every_component() -> None:
    assert set(SERVICES) >= {INIT, "postgres", "gateway", "mqtt-lb", "worker"}
    assert len(KAFKA) == 3
    assert SERVICES["gateway"]["deploy"]["replicas"] == 2
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    assert GATEWAYS == ["gateway", "gateway-bridge"]
    assert WORKERS == ["worker"]


def test_the_schema_registry_is_the_embedded_one_as_on_the_dev_stack(container_env: Any) -> None:
    images = {str(service.get("image", "")) for service in SERVICES.values()}
    assert not any("schema-registry" in image for image in images)
    for name in GATEWAYS:
        args = build_parser().parse_args(SERVICES[name]["command"][1:])
        assert args.registry == "embedded"
    assert _worker_settings("worker", container_env).registry == "embedded"


# -- Kafka: the dev stack's cluster mode, secured like the dev stack --------------------


@pytest.fixture
def dev_cluster(tmp_path: Path) -> dict[str, str]:
    """server.properties of node 1 of the secured dev stack with IOT_KAFKA_BROKERS=3."""
    settings = DevStackSettings(project_dir=ROOT, local_dir=tmp_path, kafka_brokers=3, secure=True)
    node = Kafka(settings, 1)
    node._write_configs()
    lines = node.config_file.read_text().splitlines()[1:]
    properties = dict(line.split("=", 1) for line in lines)
    admin = node._scram_arguments()[1].removesuffix("]").rsplit("password=", 1)[1]
    # The admin's password is the one secret in it: compose names it instead.
    return {k: v.replace(admin, "${KAFKA_ADMIN_PASSWORD}") for k, v in properties.items()}


SAME_AS_THE_DEV_CLUSTER = [
    "process.roles",
    "controller.listener.names",
    "inter.broker.listener.name",
    "listener.security.protocol.map",
    "default.replication.factor",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "controller.quorum.fetch.timeout.ms",
    "controller.quorum.election.timeout.ms",
    "sasl.enabled.mechanisms",
    "sasl.mechanism.inter.broker.protocol",
    "sasl.mechanism.controller.protocol",
    "listener.name.controller.sasl.enabled.mechanisms",
    "listener.name.controller.plain.sasl.jaas.config",
    "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config",
    "authorizer.class.name",
    "allow.everyone.if.no.acl.found",
]


@pytest.mark.parametrize("name", KAFKA)
def test_each_node_is_configured_as_a_node_of_the_secured_dev_cluster(
    name: str, dev_cluster: dict[str, str]
) -> None:
    properties = _kafka_properties(_env(name))
    for key in SAME_AS_THE_DEV_CLUSTER:
        assert properties.get(key) == dev_cluster[key], key
    assert dev_cluster["default.replication.factor"] == "3"
    assert dev_cluster["min.insync.replicas"] == "2"
    assert dev_cluster["unclean.leader.election.enable"] == "false"
    assert dev_cluster["broker.session.timeout.ms"] == "4000"
    assert dev_cluster["allow.everyone.if.no.acl.found"] == "false"
    assert properties["auto.create.topics.enable"] == "false"  # iot-init creates them


def test_super_users_are_the_policys_plus_the_admin_as_the_dev_stack_computes_them() -> None:
    policy = effective_policy(load_policy(ROOT / "config" / "policy.yaml"), [], admin=ADMIN)
    for name in KAFKA:
        assert _kafka_properties(_env(name))["super.users"] == super_users_config(policy)
    assert f"User:{ADMIN}" in super_users_config(policy).split(";")


def test_kafka_is_a_three_node_kraft_quorum_without_a_plaintext_listener() -> None:
    node_ids = set()
    for name in KAFKA:
        properties = _kafka_properties(_env(name))
        node_ids.add(properties["node.id"])
        voters = dict(v.split("@") for v in properties["controller.quorum.voters"].split(","))
        assert sorted(voters.values()) == sorted(f"{n}:9093" for n in KAFKA)
        assert voters[properties["node.id"]] == f"{name}:9093"
        assert properties["advertised.listeners"] == f"SASL_PLAINTEXT://{name}:9092"
        listeners = dict(
            item.split("://") for item in properties["listeners"].split(",")
        )  # name -> address
        protocols = dict(
            item.split(":") for item in properties["listener.security.protocol.map"].split(",")
        )
        assert set(listeners) == {"SASL_PLAINTEXT", "CONTROLLER"}
        assert {protocols[listener] for listener in listeners} == {"SASL_PLAINTEXT"}
        assert "PLAINTEXT" not in protocols.values()
    assert node_ids == {"1", "2", "3"}


@pytest.fixture
def kafka_stubs(tmp_path: Path) -> Path:
    """Stand-ins for the image's kafka-storage.sh and kafka-server-start.sh that record
    their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kafka-storage.sh", "kafka-server-start.sh"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/{tool}.args"\n')
        script.chmod(0o755)
    return tmp_path


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_node_script_formats_with_the_admins_scram_credential_once(
    kafka_stubs: Path,
) -> None:
    service = SERVICES["kafka-1"]
    script = next(src for src, target in _bind_mounts(service) if target.endswith(".sh"))
    assert service["entrypoint"] == ["/bin/sh", "/opt/iot/compose-node.sh"]
    data = kafka_stubs / "data"
    data.mkdir()
    env = {
        **_container_env("kafka-1"),
        "KAFKA_LOG_DIRS": str(data),
        "NODE_BIN": str(kafka_stubs / "bin"),
        "NODE_RUN": str(kafka_stubs / "run"),
        "PATH": os.environ["PATH"],
    }

    def run() -> None:
        subprocess.run(["sh", str(script)], env=env, check=True, timeout=30)

    run()
    written = (kafka_stubs / "run" / "server.properties").read_text().splitlines()
    assert dict(line.split("=", 1) for line in written) == _kafka_properties(env)
    jaas = "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"
    assert 'password="admin-pw";' in _kafka_properties(env)[jaas]
    assert (kafka_stubs / "kafka-storage.sh.args").read_text().splitlines() == [
        "format",
        "--cluster-id",
        DOT_ENV["KAFKA_CLUSTER_ID"],
        "--config",
        str(kafka_stubs / "run" / "server.properties"),
        "--add-scram",
        "SCRAM-SHA-512=[name=admin,password=admin-pw]",
    ]
    assert (kafka_stubs / "kafka-server-start.sh.args").read_text().splitlines() == [
        str(kafka_stubs / "run" / "server.properties")
    ]
    admin = (kafka_stubs / "run" / "admin.properties").read_text()
    assert 'username="admin" password="admin-pw";' in admin
    assert stat.S_IMODE((kafka_stubs / "run" / "admin.properties").stat().st_mode) == 0o600
    assert "--command-config /tmp/kafka/admin.properties" in " ".join(
        service["healthcheck"]["test"]
    )

    (kafka_stubs / "kafka-storage.sh.args").unlink()
    (data / "meta.properties").write_text("formatted\n")
    run()  # a restart: the log dir is not formatted again
    assert not (kafka_stubs / "kafka-storage.sh.args").exists()


# -- clients ----------------------------------------------------------------------------


def test_every_kafka_client_bootstraps_from_all_three_nodes() -> None:
    for name in BUILT:
        env = _env(name)
        bootstraps = [
            v for k, v in env.items() if k.endswith(("KAFKA__BOOTSTRAP", "KAFKA_SERVERS"))
        ]
        assert len(bootstraps) == 1, name
        assert set(bootstraps[0].split(",")) == ALL_NODES, name


@pytest.mark.parametrize("name", GATEWAYS)
def test_gateways_connect_over_sasl_scram_as_their_principal_with_authorization_on(
    name: str, container_env: Any
) -> None:
    config = _gateway_config(name, container_env)
    login = config.kafka.sasl()
    assert config.kafka.security_protocol == "SASL_PLAINTEXT"
    assert login is not None
    assert (login.mechanism, login.username, login.password) == (
        "SCRAM-SHA-512",
        "gateway",
        "gateway-pw",
    )
    assert set(config.kafka.bootstrap.split(",")) == ALL_NODES
    assert config.policy.enabled
    assert config.policy.file == Path("/etc/iot/policy.yaml")
    state = Path(_env(INIT)["IOT_LOCAL_DIR"])
    assert config.policy.devices_file == SecurityLayout.under(state).devices_file


def test_direct_mode_gateways_serve_mqtt_and_mqtts_with_what_iot_init_writes(
    container_env: Any,
) -> None:
    config = _gateway_config("gateway", container_env)
    assert config.mode == "direct"
    assert config.edge.host == "0.0.0.0"  # noqa: S104 - the container's interfaces
    assert (config.edge.port, config.edge.tls_port) == (1883, 8883)
    assert "{hostname}" in _env("gateway")["IOT_GATEWAY_EDGE__INSTANCE"]
    state = DevStackSettings(project_dir=ROOT, local_dir=Path(_env(INIT)["IOT_LOCAL_DIR"]))
    files = BrokerLayout(GatewayApp(state).mqtt_home)
    assert config.edge.password_file == files.password_file
    assert (config.edge.cert_file, config.edge.key_file) == (
        files.tls.server_cert,
        files.tls.server_key,
    )
    assert config.policy.admin == ADMIN
    balancer = (ROOT / "config" / "haproxy" / "compose.cfg").read_text()
    for port in (config.edge.port, config.edge.tls_port):
        assert f"gateway:{port} check port {config.http.port} " in balancer
        assert f"bind :{port}\n" in balancer
    assert SERVICES["mqtt-lb"]["ports"] == ["1883:1883", "8883:8883"]
    assert "8883" not in str(SERVICES["gateway"].get("ports", ""))  # replicas share the balancer


def test_the_bridge_profile_adds_mosquitto_with_the_policys_logins_and_bridge_gateways(
    container_env: Any,
) -> None:
    for name in ("mosquitto", "gateway-bridge"):
        assert SERVICES[name]["profiles"] == ["bridge"]
    assert all("profiles" not in SERVICES[name] for name in ("gateway", "worker", INIT))
    config = _gateway_config("gateway-bridge", container_env)
    assert config.mode == "bridge"
    assert (config.mqtt.host, config.mqtt.username) == ("mosquitto", "gateway")
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == DOT_ENV["GATEWAY_PASSWORD"]
    assert config.mqtt.client_id.startswith("gateway-bridge-")
    assert config.downlink.group_id.startswith("iot-gateway")  # the policy's group prefix
    conf = dict(
        line.split(" ", 1)
        for line in (ROOT / "config" / "mosquitto" / "compose-bridge.conf").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert conf["allow_anonymous"] == "false"
    direct = _env("gateway")
    assert conf["password_file"] == direct["IOT_GATEWAY_EDGE__PASSWORD_FILE"]
    assert conf["certfile"] == direct["IOT_GATEWAY_EDGE__CERT_FILE"]
    assert "iot-state:/var/lib/iot:ro" in SERVICES["mosquitto"]["volumes"]


def test_the_workers_keep_their_state_in_the_shared_postgresql(container_env: Any) -> None:
    settings = _worker_settings("worker", container_env)
    assert settings.store == "postgresql://iot:postgres-pw@postgres:5432/iot"
    postgres = _container_env("postgres")
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("iot", "iot")
    assert postgres["POSTGRES_PASSWORD"] == DOT_ENV["POSTGRES_PASSWORD"]


def test_the_workers_connect_over_sasl_scram_and_answer_only_bearer_tokens(
    container_env: Any,
) -> None:
    settings = _worker_settings("worker", container_env)
    login = settings.kafka.sasl()
    assert settings.kafka.security_protocol == "SASL_PLAINTEXT"
    assert login is not None
    assert (login.mechanism, login.username, login.password) == (
        "SCRAM-SHA-512",
        "streams",
        "streams-pw",
    )
    auth = settings.query.auth
    assert auth.enabled
    assert auth.policy_file == Path("/etc/iot/policy.yaml")
    state = Path(_env(INIT)["IOT_LOCAL_DIR"])
    assert auth.tokens_file == SecurityLayout.under(state).tokens_file


def test_no_service_turns_authorization_off() -> None:
    for name, service in SERVICES.items():
        for key, value in service.get("environment", {}).items():
            if key.endswith(("POLICY__ENABLED", "AUTH__ENABLED", "IOT_SECURE")):
                assert str(value).lower() == "true", f"{name}: {key}={value}"
    assert "not secured" not in COMPOSE_TEXT.lower()


# -- iot-init ---------------------------------------------------------------------------


def test_iot_init_applies_the_policy_once_before_any_app_starts() -> None:
    init = SERVICES[INIT]
    assert init["restart"] == "no"
    args = build_parser().parse_args(init["command"][1:])
    assert (args.command, args.action) == ("policy", "apply")
    assert args.create_topics
    assert args.prepare_gateway
    assert not args.dry_run
    for name in [*APPS, "mosquitto"]:
        assert SERVICES[name]["depends_on"][INIT] == {
            "condition": "service_completed_successfully"
        }, name
    for name in KAFKA:
        assert init["depends_on"][name] == {"condition": "service_healthy"}


def test_iot_init_gives_each_principal_the_password_its_service_logs_in_with() -> None:
    init = _env(INIT)
    args = build_parser().parse_args(SERVICES[INIT]["command"][1:])
    given = {principal: init[variable] for principal, variable in args.password}
    assert given[ADMIN] == _env("kafka-1")["ADMIN_PASSWORD"]
    assert given["gateway"] == _env("gateway")["IOT_GATEWAY_KAFKA__SASL_PASSWORD"]
    assert given["gateway"] == _env("gateway-bridge")["IOT_GATEWAY_MQTT__PASSWORD"]
    assert given["streams"] == _env("worker")["IOT_STREAMS_KAFKA__SASL_PASSWORD"]
    known = {f"IOT_{spec.name.upper()}" for spec in fields(DevStackSettings)}
    for variable in init:
        assert variable in known or variable in dict(args.password).values(), variable


def test_iot_init_reaches_the_cluster_with_the_dev_clusters_replication(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in list(os.environ):
        if key.startswith("IOT_"):
            monkeypatch.delenv(key)
    env = {k: v for k, v in _container_env(INIT).items() if k.startswith("IOT_")}
    settings = DevStackSettings.from_env(env)
    assert set(settings.kafka_bootstrap.split(",")) == ALL_NODES
    assert (settings.kafka_replication, settings.kafka_min_insync) == (3, 2)
    assert settings.kafka_partitions == int(_env("kafka-1")["KAFKA_NUM_PARTITIONS"])
    assert settings.direct
    assert settings.secure
    assert settings.policy_file == Path("/etc/iot/policy.yaml")


# -- secrets ----------------------------------------------------------------------------


def test_no_secret_is_written_in_compose_yaml_only_required_references() -> None:
    checked = 0
    for name, service in SERVICES.items():
        for key, raw in service.get("environment", {}).items():
            value = str(raw)
            if key.endswith("PASSWORD"):
                assert SECRET_REFERENCE.fullmatch(value), f"{name}: {key}"
                checked += 1
            for secret in re.findall(r'(?:password|user_\w+)="([^"]*)"', value):
                assert SECRET_REFERENCE.fullmatch(secret), f"{name}: {key}"
                checked += 1
            for secret in re.findall(r"://[^:/@]+:([^@]*)@", value):
                assert SECRET_REFERENCE.fullmatch(secret), f"{name}: {key}"
                checked += 1
    assert checked >= 10
    assert "CLUSTER_ID" in _env("kafka-1")
    assert SECRET_REFERENCE.fullmatch(_env("kafka-1")["CLUSTER_ID"])


def test_every_variable_compose_reads_is_documented_in_env_example() -> None:
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    referenced = {match["name"] for match in REFERENCE.finditer(COMPOSE_TEXT)}
    assert referenced == set(example)
    for name in referenced - {"IOT_PUBLIC_HOST"}:
        assert example[name].startswith("<"), f"{name} in .env.example is not a placeholder"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


# -- settings and commands --------------------------------------------------------------


def _field(model: type[BaseModel], path: list[str]) -> bool:
    """Whether ``path`` (lower-case keys) names a field of ``model`` or of its sections."""
    head, *rest = path
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True
    section = field.annotation
    return isinstance(section, type) and issubclass(section, BaseModel) and _field(section, rest)


SETTINGS = {"gateway": ("IOT_GATEWAY_", GatewayConfig), "streams": ("IOT_STREAMS_", WorkerSettings)}


@pytest.mark.parametrize("name", APPS)
def test_every_variable_an_app_sets_is_a_setting_of_its_process(name: str) -> None:
    """A variable nothing reads is a setting silently ignored (e.g. a store never wired)."""
    prefix, settings = SETTINGS[SERVICES[name]["command"][1]]
    for variable in _env(name):
        assert variable.startswith(prefix), f"{name}: {variable} is not for {settings.__name__}"
        path = variable.removeprefix(prefix).lower().split("__")
        assert _field(settings, path), f"{name}: {variable} is not a setting"


def test_a_variable_the_settings_do_not_know_is_caught() -> None:
    assert _field(GatewayConfig, ["edge", "instance"])
    assert not _field(GatewayConfig, ["edge", "instanc"])
    assert not _field(WorkerSettings, ["store", "url"])
    assert not _field(WorkerSettings, ["store_url"])


@pytest.mark.parametrize("name", [*APPS, *KAFKA, "postgres"])
def test_kafka_postgresql_and_the_apps_have_healthchecks(name: str) -> None:
    test = " ".join(SERVICES[name]["healthcheck"]["test"])
    if name in APPS:
        _, settings = SETTINGS[SERVICES[name]["command"][1]]
        port = settings.model_fields["http"].default.port
        assert f"http://127.0.0.1:{port}/readyz" in test
    for dependency in ("kafka-1", "kafka-2", "kafka-3"):
        if name in APPS:
            assert SERVICES[name]["depends_on"][dependency] == {"condition": "service_healthy"}
    if name in WORKERS:
        assert SERVICES[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_bind_mount_source_exists_in_the_repo(name: str) -> None:
    for source, target in _bind_mounts(SERVICES[name]):
        assert source.exists(), f"{name} mounts {source} at {target}, which is not in the repo"
        assert source.is_relative_to(ROOT)


@pytest.mark.parametrize("name", BUILT)
def test_built_images_copy_only_what_exists(name: str) -> None:
    build = SERVICES[name]["build"]
    context = ROOT / build["context"]
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file()
    copies = re.findall(r"^COPY\s+(.+)\s+\S+$", dockerfile.read_text(), flags=re.MULTILINE)
    sources = [source for line in copies for source in line.split()]
    assert sources
    assert all((context / source).exists() for source in sources), sources
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    installed = {name.rstrip("*") for name in packages["packages"]["find"]["include"]}
    assert installed <= set(sources), (
        f"`pip install .` in the image misses {installed - set(sources)}"
    )


def _config_paths(service: dict[str, Any], argv: list[str]) -> list[Path]:
    """Maps each container path named on the command line back into the repo."""
    paths = []
    for arg in argv:
        for source, target in _bind_mounts(service):
            if arg.startswith(target.rstrip("/") + "/"):
                paths.append(source / arg.removeprefix(target.rstrip("/") + "/"))
    return paths


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=NOT_YET_IMPLEMENTED[n], strict=True))
        if n in NOT_YET_IMPLEMENTED
        else n
        for n in BUILT
    ],
)
def test_commands_of_built_services_exist_with_their_config_files(name: str) -> None:
    argv = SERVICES[name]["command"]
    assert argv[0] == "iotctl"
    build_parser().parse_args(argv[1:])  # exits (SystemExit 2) on an unknown command
    for path in _config_paths(SERVICES[name], argv):
        assert path.is_file(), f"{name} names {path}, which is not in the repo"
