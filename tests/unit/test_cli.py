from __future__ import annotations

import json
import socket

import pytest

from iotctl.main import main


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_lists_the_commands_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "dev" in capsys.readouterr().out


def test_a_wrong_command_line_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["dev", "sideways"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_status_json_reports_each_service_down_and_exits_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    for variable in (
        "IOT_KAFKA_PORT",
        "IOT_MQTT_PORT",
        "IOT_PG_PORT",
        "IOT_GATEWAY_HTTP_PORT",
        "IOT_WORKER_HTTP_PORT",
    ):
        monkeypatch.setenv(variable, str(_closed_port()))
    monkeypatch.setenv("IOT_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("IOT_GATEWAY_MODE", "direct")
    monkeypatch.setenv("IOT_MOSQUITTO", "false")
    assert main(["dev", "status", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)["services"]
    assert [item["name"] for item in report] == ["postgres", "kafka", "gateway", "worker"]
    assert not any(item["answers"] for item in report)
    assert all(item["pid"] is None for item in report)
    monkeypatch.setenv("IOT_MOSQUITTO", "true")  # beside the gateway, on its own port
    monkeypatch.setenv("IOT_MOSQUITTO_PORT", str(_closed_port()))
    assert main(["dev", "status", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)["services"]
    assert [item["name"] for item in report][:3] == ["postgres", "mosquitto", "kafka"]


def test_a_bad_setting_is_an_error_message_not_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOT_KAFKA_PORT", "ninety")
    assert main(["dev", "status"]) == 1
    assert "IOT_KAFKA_PORT='ninety' is not an integer" in capsys.readouterr().err
