"""Turning secured mode on and off on one isolated stack, with real servers.

A Kafka data dir formatted by the unsecured stack has no SCRAM users: the secured start
says so, formats it again and comes up with SASL; turning secured mode off again gives the
plain stack back (same data dir, PLAINTEXT, anonymous MQTT).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devstack import ADMIN, DevStackSettings, SecuredStack, down, up
from devstack.mosquitto import Mosquitto
from tests.stacks import exposed, isolated_settings, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[DevStackSettings]:
    settings = isolated_settings(tmp_path / "stack", secure=False, gateway_mode="bridge")
    with running_stack(settings, start=False):
        yield settings


def _topics(config: dict[str, object]) -> set[str]:
    admin = AdminClient({**config, "socket.timeout.ms": 3000})
    return set(admin.list_topics(timeout=5).topics)


def test_secured_mode_reformats_a_plain_data_dir_and_can_be_turned_off_again(
    plain: DevStackSettings,
) -> None:
    started = time.monotonic()
    up(plain, lambda _: None)
    assert "iot.telemetry.v1" in _topics({"bootstrap.servers": plain.kafka_bootstrap})
    down(plain, lambda _: None)

    secured = replace(plain, secure=True)
    said: list[str] = []
    report = up(secured, said.append)
    assert all(item.answers for item in report)
    assert any("formatted without SASL/SCRAM users" in line for line in said), said
    assert any("applying the security policy" in line for line in said)
    admin = SecuredStack(secured).kafka_client(ADMIN).confluent_config()
    assert "iot.telemetry.v1" in _topics(admin)  # topics created again, as the admin
    assert exposed(secured.state_dir) == []
    with pytest.raises(KafkaException):
        _topics({"bootstrap.servers": plain.kafka_bootstrap})  # PLAINTEXT is refused
    assert not Mosquitto(plain).probe().answers  # anonymous MQTT is refused
    down(secured, lambda _: None)

    said.clear()
    report = up(plain, said.append)
    assert all(item.answers for item in report)
    assert not any("SASL" in line for line in said)
    assert Mosquitto(plain).probe().answers  # anonymous again
    assert "iot.telemetry.v1" in _topics({"bootstrap.servers": plain.kafka_bootstrap})
    assert time.monotonic() - started < 150
