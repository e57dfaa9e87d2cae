"""Second, isolated dev stacks for tests that stop, break or reconfigure servers.

Each gets free ports and its own state folder, so the shared dev stack is never touched.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

from devstack import DevStackSettings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def isolated_settings(state_dir: Path, **overrides: Any) -> DevStackSettings:
    """A stack on free ports with its state under ``state_dir``; servers only (no apps)
    unless ``overrides`` say otherwise (e.g. ``secure=False``, ``policy_file=...``)."""
    defaults: dict[str, Any] = {
        "local_dir": state_dir,
        "kafka_port": free_port(),
        "kafka_controller_port": free_port(),
        "mqtt_port": free_port(),
        "mqtts_port": free_port(),
        "pg_port": free_port(),
        "gateway_http_port": free_port(),
        "worker_http_port": free_port(),
        "kafka_heap": "512m",
        "apps": False,
    }
    return DevStackSettings(**(defaults | overrides))


def remove_state(settings: DevStackSettings) -> None:
    """Deletes a stopped stack's data, also the folders moved out of the tree for the
    servers' own users (``/var/tmp/iot-telemetry-<hash>/``, see ``devstack.accounts``)."""
    for name in ("postgres", "mosquitto", "kafka"):
        link = settings.state_dir / name
        target = link.resolve()
        if not target.is_relative_to(settings.state_dir.resolve()):
            if target.parent.name.startswith("iot-telemetry-"):
                shutil.rmtree(target.parent, ignore_errors=True)
            link.unlink(missing_ok=True)
        elif target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
