"""The gateway checks every message against the security policy unless told not to."""

from __future__ import annotations

from pathlib import Path

import pytest

from iot_gateway import ConfigError
from iot_gateway.app import _policy_watch
from iot_gateway.config import PolicySettings, load_config
from security import DeviceStore
from security.hooks import watched_ingest_authorize

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "config" / "gateway.yaml")


def test_without_a_policy_file_the_gateway_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match=r"policy\.enabled=false explicitly"):
        _policy_watch(CONFIG)


def test_only_an_explicit_opt_out_lets_every_device_through() -> None:
    config = CONFIG.model_copy(update={"policy": PolicySettings(enabled=False)})
    assert _policy_watch(config) is None


def test_with_a_policy_a_device_publishes_only_its_own_telemetry(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\n"
        "groups:\n  devices: {roles: [device]}\n"
        "roles:\n  device:\n    rules:\n"
        "      - id: own\n        effect: allow\n"
        '        mqtt: {actions: [publish], topics: ["devices/%u/telemetry"]}\n'
    )
    DeviceStore(tmp_path / "devices.json").add("d1")
    config = CONFIG.model_copy(update={"policy": PolicySettings(file=policy)})
    watch = _policy_watch(config)
    assert watch is not None
    authorize = watched_ingest_authorize(watch)
    assert authorize("d1", object(), "devices/d1/telemetry") is None
    assert authorize("d1", object(), "devices/d2/telemetry") is not None
    assert authorize("d9", object(), "devices/d9/telemetry") is not None  # not registered
