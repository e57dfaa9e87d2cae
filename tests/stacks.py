"""Second, isolated dev stacks for tests that stop, break or reconfigure servers.

Each gets free ports and its own state folder, so the shared dev stack is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devstack import DevStackSettings, down, up
from devstack.settings import KAFKA_NODE_PORT_STEP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """Distinct free ports (all bound at once, so no two are the same)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _free_node_port(nodes: int) -> int:
    """A free port whose Kafka node neighbours (``KAFKA_NODE_PORT_STEP`` apart) are free too."""
    while True:
        port = free_port()
        wanted = [port + KAFKA_NODE_PORT_STEP * n for n in range(1, nodes)]
        if all(_is_free(other) for other in wanted):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def isolated_settings(state_dir: Path, **overrides: Any) -> DevStackSettings:
    """A stack on free ports with its state under ``state_dir``; servers only (no apps)
    unless ``overrides`` say otherwise (e.g. ``secure=False``, ``policy_file=...``,
    ``kafka_brokers=3``)."""
    nodes = int(overrides.get("kafka_brokers", 1))
    defaults: dict[str, Any] = {
        "local_dir": state_dir,
        "kafka_port": _free_node_port(nodes),
        "kafka_controller_port": _free_node_port(nodes),
        "mqtt_port": free_port(),
        "mqtts_port": free_port(),
        "mosquitto_port": free_port(),
        "mosquitto_tls_port": free_port(),
        "pg_port": free_port(),
        "gateway_http_port": free_port(),
        "worker_http_port": free_port(),
        "kafka_heap": "512m",
        "apps": False,
    }
    return DevStackSettings(**(defaults | overrides))


@contextlib.contextmanager
def running_stack(settings: DevStackSettings, *, start: bool = True) -> Iterator[DevStackSettings]:
    """The isolated stack ``settings`` describes, up (unless ``start`` is False: the test
    starts it), then stopped and its data removed whatever happened."""
    try:
        if start:
            up(settings, lambda _: None)
        yield settings
    finally:
        down(settings, lambda _: None)
        remove_state(settings)


def remove_state(settings: DevStackSettings) -> None:
    """Deletes a stopped stack's data, also the folders moved out of the tree for the
    servers' own users (``/var/tmp/iot-telemetry-<hash>/``, see ``devstack.accounts``)."""
    kafka = ["kafka", *(f"kafka-{n}" for n in range(2, settings.kafka_brokers + 1))]
    for name in ("postgres", "mosquitto", *kafka):
        link = settings.state_dir / name
        target = link.resolve()
        if not target.is_relative_to(settings.state_dir.resolve()):
            if target.parent.name.startswith("iot-telemetry-"):
                shutil.rmtree(target.parent, ignore_errors=True)
            link.unlink(missing_ok=True)
        elif target.is_dir():
            shutil.rmtree(target, ignore_errors=True)


def exposed(state_dir: Path) -> list[str]:
    """Files and folders of the stack that anyone but their owner may read (or, for folders,
    list): the state dir itself may only be passed through (0711). Not counted: sockets
    (reachable only through their private folder) and certificates (public by nature)."""
    found = []
    for root, folders, files in os.walk(state_dir, followlinks=True):
        for name in [*folders, *files]:
            path = Path(root) / name
            info = path.stat()
            if stat.S_ISSOCK(info.st_mode) or path.suffix == ".crt":
                continue
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                found.append(f"{path} {mode:04o}")
    if stat.S_IMODE(state_dir.stat().st_mode) & 0o066:
        found.append(f"{state_dir} {stat.S_IMODE(state_dir.stat().st_mode):04o}")
    return found
