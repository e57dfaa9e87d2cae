"""Secured Mosquitto, against the real broker of an isolated secured stack.

One stack (own ports, own state dir, ``secure=True``, a copy of the project's
``config/policy.yaml``) serves every test of this module; devices are registered through
``iotctl devices``.
Proves: anonymous and wrong-password clients are refused; a device publishes only to its own
telemetry (PUBACK 0x87 elsewhere) and receives only its own commands; revocation disconnects
the device and refuses its reconnect without restarting the broker; TLS with the project CA.
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devstack import ADMIN, DevStackSettings, SecuredStack
from iotctl.main import main
from tests.stacks import isolated_settings, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PROJECT = Path(__file__).resolve().parents[2]
NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStackSettings]:
    root = tmp_path_factory.mktemp("secured-mqtt")
    shutil.copy(PROJECT / "config" / "policy.yaml", root / "policy.yaml")
    settings = isolated_settings(
        root / "stack", secure=True, policy_file=root / "policy.yaml", gateway_mode="bridge"
    )
    with running_stack(settings):
        yield settings


def _env(settings: DevStackSettings) -> dict[str, str]:
    return {
        "IOT_SECURE": "true",
        "IOT_GATEWAY_MODE": "bridge",
        "IOT_LOCAL_DIR": str(settings.state_dir),
        "IOT_KAFKA_PORT": str(settings.kafka_port),
        "IOT_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
        "IOT_MQTT_PORT": str(settings.mqtt_port),
        "IOT_MQTTS_PORT": str(settings.mqtts_port),
        "IOT_PG_PORT": str(settings.pg_port),
        "IOT_APPS": "false",
        "IOT_POLICY_FILE": str(settings.policy_file),
    }


def _iotctl(
    settings: DevStackSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
) -> tuple[int, str]:
    for name, value in _env(settings).items():
        monkeypatch.setenv(name, value)
    code = main(list(args))
    return code, capsys.readouterr().out


def _register(
    settings: DevStackSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[str, str]:
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    code, out = _iotctl(settings, monkeypatch, capsys, "devices", "add", device_id, "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["mqtt"]["reloaded_pid"] is not None
    return device_id, str(answer["password"])


class Client:
    """A paho MQTT 5 client on a background thread, recording what the broker says."""

    def __init__(self, client_id: str | None = None) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5,
        )
        self.connack: queue.Queue[int] = queue.Queue()
        self.pubacks: dict[int, int] = {}
        self.puback_event = threading.Condition()
        self.messages: queue.Queue[str] = queue.Queue()
        self.disconnected = threading.Event()
        self.client.on_connect = lambda _c, _u, _f, code, _p: self.connack.put(code.value)
        self.client.on_disconnect = lambda *_: self.disconnected.set()
        self.client.on_message = lambda _c, _u, message: self.messages.put(message.topic)
        self.client.on_publish = self._on_publish

    def _on_publish(self, _c: object, _u: object, mid: int, code: object, _p: object) -> None:
        with self.puback_event:
            self.pubacks[mid] = int(getattr(code, "value", 0))
            self.puback_event.notify_all()

    def connect(
        self,
        port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        ca_file: Path | None = None,
    ) -> int:
        """Connects and returns the CONNACK reason code (0 is success)."""
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        return self.connack.get(timeout=10)

    def publish(self, topic: str) -> int:
        """Publishes QoS 1 and returns the PUBACK reason code."""
        info = self.client.publish(topic, b"{}", qos=1)
        with self.puback_event:
            assert self.puback_event.wait_for(lambda: info.mid in self.pubacks, timeout=10)
            return self.pubacks[info.mid]

    def subscribe(self, *topics: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe([(topic, 1) for topic in topics])
        assert done.wait(10)

    def received(self, within_s: float) -> set[str]:
        deadline, topics = time.monotonic() + within_s, set()
        while time.monotonic() < deadline:
            try:
                topics.add(self.messages.get(timeout=0.1))
            except queue.Empty:
                continue
        return topics

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def _admin(settings: DevStackSettings) -> tuple[str, str]:
    credential = SecuredStack(settings).secrets.get(ADMIN)
    assert credential is not None
    return ADMIN, credential.password


def test_anonymous_and_wrong_password_clients_are_refused(
    secured: DevStackSettings, clients: list[Client]
) -> None:
    anonymous, wrong = Client(), Client()
    clients += [anonymous, wrong]
    assert anonymous.connect(secured.mqtt_port) == NOT_AUTHORIZED
    assert wrong.connect(secured.mqtt_port, ADMIN, "not-the-password") in {
        NOT_AUTHORIZED,
        BAD_CREDENTIALS,
    }


def test_a_device_publishes_only_to_its_own_telemetry(
    secured: DevStackSettings,
    clients: list[Client],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    device, password = _register(secured, monkeypatch, capsys)
    other, _ = _register(secured, monkeypatch, capsys)
    watcher, client = Client(), Client()
    clients += [watcher, client]
    assert watcher.connect(secured.mqtt_port, *_admin(secured)) == 0
    watcher.subscribe("devices/#")
    assert client.connect(secured.mqtt_port, device, password) == 0

    assert client.publish(f"devices/{device}/telemetry") < 0x80
    assert client.publish(f"devices/{device}/telemetry/avro") < 0x80
    assert client.publish(f"devices/{other}/telemetry") == NOT_AUTHORIZED
    assert client.publish(f"devices/{device}/commands") == NOT_AUTHORIZED  # deny rule
    assert client.publish(f"devices/{device}") == NOT_AUTHORIZED

    assert watcher.received(within_s=1.0) == {
        f"devices/{device}/telemetry",
        f"devices/{device}/telemetry/avro",
    }


def test_a_device_receives_only_its_own_commands(
    secured: DevStackSettings,
    clients: list[Client],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    device, password = _register(secured, monkeypatch, capsys)
    other, _ = _register(secured, monkeypatch, capsys)
    gateway, client = Client(), Client()
    clients += [gateway, client]
    assert client.connect(secured.mqtt_port, device, password) == 0
    # Mosquitto 2.0.11 grants every SUBSCRIBE; its acl_file is checked per delivered message.
    client.subscribe(f"devices/{device}/commands", f"devices/{other}/commands", "devices/#")
    gateway_password = SecuredStack(secured).secrets.get("gateway")
    assert gateway_password is not None
    assert gateway.connect(secured.mqtt_port, "gateway", gateway_password.password) == 0
    assert gateway.publish(f"devices/{other}/commands") < 0x80
    assert gateway.publish(f"devices/{device}/commands") < 0x80
    assert client.received(within_s=1.0) == {f"devices/{device}/commands"}


def test_revocation_disconnects_the_device_without_restarting_the_broker(
    secured: DevStackSettings,
    clients: list[Client],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = SecuredStack(secured)
    pid = stack.broker_pid()
    assert pid is not None
    revoked, password = _register(secured, monkeypatch, capsys)
    kept, kept_password = _register(secured, monkeypatch, capsys)
    victim, bystander = Client(), Client()
    clients += [victim, bystander]
    assert victim.connect(secured.mqtt_port, revoked, password) == 0
    assert bystander.connect(secured.mqtt_port, kept, kept_password) == 0

    started = time.monotonic()
    code, out = _iotctl(secured, monkeypatch, capsys, "devices", "revoke", revoked, "--json")
    assert code == 0
    assert json.loads(out)["mqtt"]["reloaded_pid"] == pid
    assert victim.disconnected.wait(5), "the revoked device is still connected"
    took = time.monotonic() - started

    assert stack.broker_pid() == pid  # reloaded, not restarted
    assert not bystander.disconnected.is_set()
    assert bystander.publish(f"devices/{kept}/telemetry") < 0x80
    again = Client()
    clients.append(again)
    assert again.connect(secured.mqtt_port, revoked, password) == NOT_AUTHORIZED
    assert took < 5


def test_revocation_works_even_while_the_policy_file_is_broken(
    secured: DevStackSettings,
    clients: list[Client],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert secured.policy_file is not None
    revoked, password = _register(secured, monkeypatch, capsys)
    victim = Client()
    clients.append(victim)
    assert victim.connect(secured.mqtt_port, revoked, password) == 0
    good = secured.policy_file.read_text()
    secured.policy_file.write_text(good + "oops: [\n")
    try:
        code, out = _iotctl(secured, monkeypatch, capsys, "devices", "revoke", revoked, "--json")
    finally:
        secured.policy_file.write_text(good)
    assert code == 0
    note = json.loads(out)["mqtt"]["note"]
    assert "dropped from the installed password_file" in note
    assert "not valid YAML" in note
    assert victim.disconnected.wait(5)
    again = Client()
    clients.append(again)
    assert again.connect(secured.mqtt_port, revoked, password) == NOT_AUTHORIZED


def test_tls_listener_with_the_project_ca(
    secured: DevStackSettings,
    clients: list[Client],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    device, password = _register(secured, monkeypatch, capsys)
    client = Client()
    clients.append(client)
    ca_file = SecuredStack(secured).ca.files.ca_cert
    assert client.connect(secured.mqtts_port, device, password, ca_file=ca_file) == 0
    assert client.publish(f"devices/{device}/telemetry") < 0x80

    untrusting = ssl.create_default_context()  # the system's CAs: ours is not among them
    with (
        socket.create_connection(("127.0.0.1", secured.mqtts_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        untrusting.wrap_socket(raw, server_hostname="127.0.0.1")
