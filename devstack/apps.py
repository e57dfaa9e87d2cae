"""The platform's own processes in the local stack, started after the servers they need."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path

from devstack.clients import client_env, kafka_client, mqtt_login
from devstack.errors import ServiceStartError
from devstack.process import LaunchSpec, ProcessHandle, running_pid
from devstack.service import Probe, Progress, Service
from devstack.stack_security import ADMIN, StackSecurity
from policy import PolicyError
from security import SecurityError
from security.mosquitto import BrokerLayout

GATEWAY = "gateway"
"""The gateway's principal in the security policy (``config/policy.yaml``)."""
STREAMS = "streams"
"""The stream workers' principal."""


def http_probe(url: str, timeout_s: float) -> Probe:
    """GETs ``url``; answers when it returns 200 (the body's JSON is the detail)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback
            body = response.read(2048).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return Probe(False, f"HTTP {exc.code} from {url}")
    except (OSError, urllib.error.URLError) as exc:
        return Probe(False, f"no answer from {url}: {getattr(exc, 'reason', exc)}")
    try:
        detail = json.dumps(json.loads(body), separators=(",", ":"))
    except ValueError:
        detail = body[:200]
    return Probe(True, detail)


class GatewayApp(Service):
    """``iotctl gateway run`` with ``config/gateway.yaml``, pointed at the local servers."""

    name = "gateway"
    stage = 1

    @property
    def port(self) -> int:
        return self.settings.gateway_http_port

    @property
    def endpoint(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def env_port_variable(self) -> str:
        return "IOT_GATEWAY_HTTP_PORT"

    @property
    def config_file(self) -> Path:
        return self.settings.project_dir / "config" / "gateway.yaml"

    @property
    def mqtt_home(self) -> Path:
        """Direct mode, secured: the logins, the (unused) acl file and the TLS files of the
        gateway's own MQTT server, rendered from the policy like Mosquitto's."""
        return self.home / "mqtt"

    def prepare(self, progress: Progress) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.settings.direct and self.settings.secure:
            try:
                StackSecurity(self.settings).prepare_broker(self.mqtt_home, None)
            except (PolicyError, SecurityError) as exc:
                raise ServiceStartError(f"gateway: cannot secure its MQTT server: {exc}") from exc

    @property
    def handle(self) -> ProcessHandle:
        # SIGTERM: stop taking messages, wait for in-flight records, disconnect.
        return ProcessHandle(self.pid_file, "gateway run", signal.SIGTERM, 45.0)

    def launch(self) -> LaunchSpec:
        s = self.settings
        env = dict(os.environ)
        env.update(
            {
                "IOT_GATEWAY_MODE": s.gateway_mode,
                "IOT_GATEWAY_MQTT__HOST": s.host,
                "IOT_GATEWAY_MQTT__PORT": str(s.broker_port),
                "IOT_GATEWAY_HTTP__HOST": s.host,
                "IOT_GATEWAY_HTTP__PORT": str(self.port),
                **client_env("IOT_GATEWAY_", kafka_client(s, GATEWAY), mqtt_login(s, GATEWAY)),
            }
        )
        if s.direct:
            env |= {
                "IOT_GATEWAY_EDGE__HOST": s.host,
                "IOT_GATEWAY_EDGE__PORT": str(s.mqtt_port),
                "IOT_GATEWAY_EDGE__INSTANCE": "gateway-1",
            }
            if s.secure:
                layout = BrokerLayout(self.mqtt_home)
                env |= {
                    "IOT_GATEWAY_EDGE__TLS_PORT": str(s.mqtts_port),
                    "IOT_GATEWAY_EDGE__CERT_FILE": str(layout.tls.server_cert),
                    "IOT_GATEWAY_EDGE__KEY_FILE": str(layout.tls.server_key),
                    "IOT_GATEWAY_EDGE__PASSWORD_FILE": str(layout.password_file),
                }
        if s.secure:
            # Every message is also checked against the policy plus the registered devices.
            stack = StackSecurity(s)
            env["IOT_GATEWAY_POLICY__FILE"] = str(stack.policy_path)
            env["IOT_GATEWAY_POLICY__DEVICES_FILE"] = str(stack.layout.devices_file)
            if s.direct:  # the admin logs in to the gateway itself, as it does to Mosquitto
                env["IOT_GATEWAY_POLICY__ADMIN"] = ADMIN
        else:
            env["IOT_GATEWAY_POLICY__ENABLED"] = "false"  # IOT_SECURE=false: nothing enforced
        return LaunchSpec(
            argv=[
                sys.executable,
                "-m",
                "iotctl.main",
                "gateway",
                "run",
                "--config",
                str(self.config_file),
            ],
            log_file=self.log_file,
            env=env,
        )

    def probe(self, timeout_s: float = 2.0) -> Probe:
        """Ready when connected to the broker and to Kafka (``/readyz``)."""
        return http_probe(f"{self.endpoint}/readyz", timeout_s)


class SimulatorApp(Service):
    """``iotctl simulate`` in the background: devices publishing for ``make run``."""

    name = "simulator"
    stage = 2
    listens = False

    @property
    def port(self) -> int:
        return self.settings.mqtt_port

    @property
    def endpoint(self) -> str:
        s = self.settings
        return f"{s.simulator_devices} devices, {s.simulator_rate:g} msg/s -> {s.mqtt_url}"

    def prepare(self, progress: Progress) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def handle(self) -> ProcessHandle:
        return ProcessHandle(self.pid_file, "simulate --devices", signal.SIGTERM, 20.0)

    def launch(self) -> LaunchSpec:
        s = self.settings
        return LaunchSpec(
            argv=[
                sys.executable,
                "-m",
                "iotctl.main",
                "simulate",
                "--devices",
                str(s.simulator_devices),
                "--rate",
                f"{s.simulator_rate:g}",
                "--host",
                s.host,
                "--port",
                str(s.mqtt_port),
                "--state",
                str(self.home / "sim.json"),
                "--quiet",
            ],
            log_file=self.log_file,
        )

    def probe(self, timeout_s: float = 2.0) -> Probe:
        """A simulator has no endpoint: it answers while its process runs."""
        pid = running_pid(self.handle)
        return Probe(pid is not None, "publishing" if pid else "not running")


class StreamsWorkerApp(Service):
    """``iotctl streams worker`` with ``config/streams.yaml`` and its SQLite store in .local."""

    name = "worker"
    stage = 1

    @property
    def port(self) -> int:
        return self.settings.worker_http_port

    @property
    def endpoint(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def env_port_variable(self) -> str:
        return "IOT_WORKER_HTTP_PORT"

    def prepare(self, progress: Progress) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def handle(self) -> ProcessHandle:
        return ProcessHandle(self.pid_file, "streams worker", signal.SIGTERM, 45.0)

    def launch(self) -> LaunchSpec:
        s = self.settings
        env = dict(os.environ)
        env.update(
            {
                **client_env("IOT_STREAMS_", kafka_client(s, STREAMS)),
                "IOT_STREAMS_STORE": f"sqlite:///{self.home / 'state.db'}",
                "IOT_STREAMS_DATA_DIR": str(self.home / "faust"),
                "IOT_STREAMS_HTTP__HOST": s.host,
                "IOT_STREAMS_HTTP__PORT": str(self.port),
                "IOT_STREAMS_ALERT_RULES": str(s.project_dir / "config" / "alerts.example.yaml"),
                # the fleet overview shows the gateway's readiness beside the worker's
                "IOT_STREAMS_QUERY__PROCESSES": json.dumps(
                    {"gateway": f"http://{s.host}:{s.gateway_http_port}/readyz"}
                ),
            }
        )
        if s.secure:
            # The query API answers bearer tokens (`iotctl tokens add`) within their policy.
            stack = StackSecurity(s)
            env["IOT_STREAMS_QUERY__AUTH__ENABLED"] = "true"
            env["IOT_STREAMS_QUERY__AUTH__POLICY_FILE"] = str(stack.policy_path)
            env["IOT_STREAMS_QUERY__AUTH__TOKENS_FILE"] = str(stack.layout.tokens_file)
        else:
            env["IOT_STREAMS_QUERY__AUTH__ENABLED"] = "false"  # IOT_SECURE=false
        return LaunchSpec(
            argv=[
                sys.executable,
                "-m",
                "iotctl.main",
                "streams",
                "worker",
                "--config",
                str(s.project_dir / "config" / "streams.yaml"),
            ],
            log_file=self.log_file,
            env=env,
            cwd=s.project_dir,
        )

    def probe(self, timeout_s: float = 2.0) -> Probe:
        """Ready once the store, registry and relay are up (``/readyz``)."""
        return http_probe(f"{self.endpoint}/readyz", timeout_s)
