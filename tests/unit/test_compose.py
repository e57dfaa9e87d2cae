"""compose.yaml cannot run here (no Docker engine), so check that it is coherent with the repo."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from iot_gateway.config import GatewayConfig
from iotctl.main import build_parser
from streams.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
BUILT = sorted(name for name, service in SERVICES.items() if "build" in service)
KAFKA = sorted(name for name, service in SERVICES.items() if "apache/kafka" in service["image"])

# Services whose command a later capability adds; xfail_strict turns this list into an error
# the moment the command exists, so it cannot go stale.
NOT_YET_IMPLEMENTED = {}


def _bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith((".", "/")):
            mounts.append(((ROOT / source).resolve(), target))
    return mounts


def test_topology_has_every_component() -> None:
    assert set(SERVICES) >= {"mosquitto", "postgres", "schema-registry", "gateway", "worker"}
    assert len(KAFKA) == 3
    assert SERVICES["gateway"]["deploy"]["replicas"] == 2
    assert SERVICES["worker"]["deploy"]["replicas"] == 2


def test_kafka_is_a_three_node_kraft_quorum_with_rf3_and_min_isr2() -> None:
    node_ids = set()
    for name in KAFKA:
        env = SERVICES[name]["environment"]
        node_ids.add(env["KAFKA_NODE_ID"])
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert sorted(voters.values()) == sorted(f"{n}:9093" for n in KAFKA)
        assert voters[str(env["KAFKA_NODE_ID"])] == f"{name}:9093"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3
        assert env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    assert node_ids == {1, 2, 3}


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


SETTINGS_BY_PREFIX = {"IOT_GATEWAY_": GatewayConfig, "IOT_STREAMS_": WorkerSettings}


@pytest.mark.parametrize("name", BUILT)
def test_every_platform_variable_a_service_sets_is_a_setting(name: str) -> None:
    """A variable nothing reads is a setting silently ignored (e.g. a store never wired)."""
    for variable in SERVICES[name].get("environment", {}):
        prefix = next((p for p in SETTINGS_BY_PREFIX if variable.startswith(p)), None)
        assert prefix is not None, f"{name}: {variable} belongs to no component's settings"
        field = variable.removeprefix(prefix).split("__")[0].lower()
        assert field in SETTINGS_BY_PREFIX[prefix].model_fields, f"{name}: {variable}"


def test_the_workers_keep_their_state_in_the_shared_postgresql() -> None:
    environment = SERVICES["worker"]["environment"]
    assert environment["IOT_STREAMS_STORE"].startswith("postgresql://iot:")
    assert "@postgres:5432/iot" in environment["IOT_STREAMS_STORE"]


@pytest.mark.parametrize("name", ["gateway", "worker"])
def test_an_unsecured_topology_says_so_instead_of_failing_to_start(name: str) -> None:
    """Authorization is on by default in the code: a topology without a policy must turn it
    off explicitly, or its processes refuse to start."""
    environment = SERVICES[name]["environment"]
    assert environment["IOT_GATEWAY_POLICY__ENABLED"] == "false"
    assert environment["IOT_STREAMS_QUERY__AUTH__ENABLED"] == "false"
