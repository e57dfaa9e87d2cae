"""`iotctl dev up` / `down` on a second, isolated stack: idempotent, and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients import iotctl
from tests.stacks import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _iotctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return iotctl(env, *args, timeout_s=240)


def _alive_in_groups(groups: set[int]) -> list[str]:
    """Processes (not zombies) whose process group is one of ``groups``."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        state, pgid = fields[0], int(fields[3])
        if pgid in groups and state != "Z":
            alive.append(f"{entry.name}: {stat[:80]}")
    return alive


def test_up_is_idempotent_and_down_leaves_no_process_behind(tmp_path: Path) -> None:
    kafka, controller, mqtt, mqtts, pg, gateway, worker, broker, brokers = free_ports(9)
    env = {
        **os.environ,
        "IOT_LOCAL_DIR": str(tmp_path / "state"),
        "IOT_KAFKA_PORT": str(kafka),
        "IOT_KAFKA_CONTROLLER_PORT": str(controller),
        "IOT_MQTT_PORT": str(mqtt),
        "IOT_MQTTS_PORT": str(mqtts),
        "IOT_MOSQUITTO_PORT": str(broker),
        "IOT_MOSQUITTO_TLS_PORT": str(brokers),
        "IOT_MOSQUITTO": "false",  # direct mode, the default: no broker
        "IOT_GATEWAY_MODE": "direct",
        "IOT_PG_PORT": str(pg),
        "IOT_GATEWAY_HTTP_PORT": str(gateway),
        "IOT_WORKER_HTTP_PORT": str(worker),
        "IOT_KAFKA_HEAP": "512m",
    }
    first = _iotctl(env, "dev", "up", "--json")
    try:
        assert first.returncode == 0, first.stderr
        services = {item["name"]: item for item in json.loads(first.stdout)["services"]}
        assert set(services) == {"kafka", "postgres", "gateway", "worker"}
        assert f'"mqtt":{mqtt}' in services["gateway"]["detail"]  # devices connect to it
        assert all(item["answers"] and item["pid"] for item in services.values())
        assert services["kafka"]["endpoint"] == f"127.0.0.1:{kafka}"

        second = _iotctl(env, "dev", "up", "--json")
        assert second.returncode == 0, second.stderr
        again = {item["name"]: item["pid"] for item in json.loads(second.stdout)["services"]}
        assert again == {name: item["pid"] for name, item in services.items()}
        assert "already running" in second.stderr
    finally:
        groups = {
            int(item["pid"])
            for item in json.loads(first.stdout or '{"services": []}')["services"]
            if item["pid"]
        }
        stopped = _iotctl(env, "dev", "down", "--json")

    assert stopped.returncode == 0, stopped.stderr
    assert sorted(json.loads(stopped.stdout)["stopped"]) == [
        "gateway",
        "kafka",
        "postgres",
        "worker",
    ]
    assert _alive_in_groups(groups) == []
    status = _iotctl(env, "dev", "status", "--json")
    assert status.returncode == 1
    assert not any(item["answers"] for item in json.loads(status.stdout)["services"])
    for service in ("postgres",):  # folders moved out of reach of /tmp's 0700 dirs
        target = (tmp_path / "state" / service).resolve()
        if target.exists() and not target.is_relative_to(tmp_path):
            shutil.rmtree(target.parent)
