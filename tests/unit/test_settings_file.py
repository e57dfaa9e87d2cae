from __future__ import annotations

from pathlib import Path

import pytest

from iot_gateway.config import load_config
from iot_gateway.errors import ConfigError
from streams.errors import ConfigError as StreamsConfigError
from streams.settings import load_worker_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_configs_load() -> None:
    gateway = load_config(ROOT / "config" / "gateway.yaml")
    assert gateway.subscriptions == ["$share/gw/devices/+/telemetry/#"]
    assert [route.device_level for route in gateway.routes] == [1, 1]
    worker = load_worker_settings(ROOT / "config" / "streams.yaml")
    assert worker.group == "iot-streams"


def test_environment_variables_win_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOT_GATEWAY_MQTT__CLIENT_ID", "gateway-7")
    monkeypatch.setenv("IOT_STREAMS_HTTP__PORT", "9999")
    assert load_config(ROOT / "config" / "gateway.yaml").mqtt.client_id == "gateway-7"
    assert load_worker_settings(ROOT / "config" / "streams.yaml").http.port == 9999


def test_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "gateway.yaml"
    bad.write_text("routes: []\nmqtt: {port: 0, colour: blue}\n")
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    message = str(error.value)
    assert str(bad) in message
    assert "mqtt.port" in message
    assert "mqtt.colour" in message
    assert "routes" in message
    (tmp_path / "streams.yaml").write_text("batch_max: 0\n")
    with pytest.raises(StreamsConfigError, match="batch_max"):
        load_worker_settings(tmp_path / "streams.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
