"""How tests connect to the stack: clients nobody here wrote, and our own processes.

Tests act as the stack's administrator (a super user on Kafka and Mosquitto): they create
topics of their own and publish as any device. The principals of the platform's processes
are proven by the security tests and by the dev stack itself.
"""

from __future__ import annotations

import subprocess
import sys

from devstack import DevStackSettings
from devstack.clients import MqttLogin, client_env, kafka_client, mqtt_login


def mqtt_auth_args(settings: DevStackSettings, login: MqttLogin | None = None) -> list[str]:
    """``-u``/``-P`` for Mosquitto's command-line clients: ``login``, else the admin's
    (nothing on an anonymous stack)."""
    login = login or mqtt_login(settings)
    return [] if login is None else ["-u", login.username, "-P", login.password]


AUTHORIZATION_OFF = {
    "IOT_GATEWAY_POLICY__ENABLED": "false",
    "IOT_STREAMS_QUERY__AUTH__ENABLED": "false",
}
"""For processes whose test is about something else than authorization."""


def process_env(settings: DevStackSettings) -> dict[str, str]:
    """Environment for gateways, workers and simulators a test starts: the admin's
    Kafka connection and MQTT login, whatever the stack's security. Per-message and query
    authorization are switched off explicitly: the security tests turn them on."""
    kafka, login = kafka_client(settings), mqtt_login(settings)
    env = {
        **client_env("IOT_GATEWAY_", kafka, login),
        **client_env("IOT_STREAMS_", kafka),
        **AUTHORIZATION_OFF,
    }
    if login is not None:
        env["IOT_SIMULATOR_USERNAME"] = login.username
        env["IOT_SIMULATOR_PASSWORD"] = login.password
    return env


def mosquitto_pub(
    settings: DevStackSettings,
    topic: str,
    payload: bytes,
    login: MqttLogin | None = None,
    *,
    port: int | None = None,
) -> None:
    """Publishes ``payload`` (from stdin, so any bytes) with Mosquitto's C client, MQTT 5,
    QoS 1, as ``login`` (default: the admin), to ``port`` (default: where the stack's devices
    connect; ``settings.broker_port`` reaches Mosquitto)."""
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            settings.host,
            "-p",
            str(port or settings.mqtt_port),
            *mqtt_auth_args(settings, login),
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            topic,
            "-s",
        ],
        input=payload,
        check=True,
        timeout=10,
    )


def mqtt_login_kwargs(settings: DevStackSettings) -> dict[str, str]:
    """The admin's ``username``/``password`` as keywords (``SimulationSettings``, gateway
    MQTT settings, aiomqtt): the tests' devices are not registered, they publish as the admin."""
    login = mqtt_login(settings)
    return {} if login is None else {"username": login.username, "password": login.password}


def iotctl(
    env: dict[str, str], *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """``iotctl ARGS`` as its own process with ``env``, output captured, bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", "iotctl.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
