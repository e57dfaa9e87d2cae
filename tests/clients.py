"""Clients nobody here wrote, as the tests drive them."""

from __future__ import annotations

import subprocess

from iot_gateway.devstack import DevStackSettings


def mosquitto_pub(settings: DevStackSettings, topic: str, payload: bytes) -> None:
    """Publishes ``payload`` (from stdin, so any bytes) with Mosquitto's C client, MQTT 5, QoS 1."""
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            settings.host,
            "-p",
            str(settings.mqtt_port),
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
