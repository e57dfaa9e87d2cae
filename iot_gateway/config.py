"""Gateway settings: one YAML file (see ``config/gateway.yaml``) plus ``IOT_GATEWAY_*`` overrides.

Environment variables win over the file, nested with ``__``: ``IOT_GATEWAY_MQTT__PORT=1884``,
``IOT_GATEWAY_MQTT__CLIENT_ID=gateway-2``. Unknown keys are errors that name the key.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from contracts.kafka import KafkaClientSettings
from contracts.settings_file import FileSettings, load_settings
from contracts.topics import COMMANDS, DEVICE_EVENTS, EDGE_SESSIONS, TELEMETRY_DLQ
from iot_gateway.errors import ConfigError
from policy.topics import validate_topic_filter

_STRICT = ConfigDict(extra="forbid", frozen=True)


class MqttSettings(BaseModel):
    """How the gateway meets the broker: an MQTT 5 persistent session on a shared subscription."""

    model_config = _STRICT
    host: str = "127.0.0.1"
    port: int = Field(1883, gt=0, lt=65536)
    client_id: str = Field("gateway-1", min_length=1, max_length=128)
    """Stable per instance: the broker keeps this session's queue while the gateway is away.
    ``{hostname}`` is replaced by the host's name (one session per container)."""
    share_group: str = Field("gw", pattern=r"^[^/+#]+$")
    filters: tuple[str, ...] = ("devices/+/telemetry/#",)
    """What the gateway subscribes to. Wider than the routes on purpose: a message that no
    route matches still reaches the gateway and lands in the DLQ as ``unknown_route``."""
    session_expiry_s: int = Field(86_400, ge=0)
    receive_maximum: int = Field(1_000, ge=1, le=65_535)
    """Unacknowledged QoS 1 messages the broker may have in flight to us: our back-pressure."""
    keepalive_s: int = Field(30, ge=5)
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    """CA bundle for TLS; TLS is on when this is set."""

    @field_validator("client_id")
    @classmethod
    def _expand_hostname(cls, value: str) -> str:
        return value.replace("{hostname}", socket.gethostname())


class EdgeSettings(BaseModel):
    """The gateway as the devices' own MQTT server (``mode: direct``).

    Several processes may listen on the same port (``reuse_port``: the kernel spreads new
    connections) or sit behind any L4 balancer: a connection lives on one process.
    """

    model_config = _STRICT
    host: str = "127.0.0.1"
    """Where devices connect; loopback by default, like Mosquitto 2 without a listener."""
    port: int | None = Field(1883, ge=0, lt=65536)
    """Plain MQTT; null turns the plain listener off (TLS only); 0 picks a free port."""
    tls_port: int = Field(8883, ge=0, lt=65536)
    """MQTT over TLS, served when ``cert_file`` and ``key_file`` are set; 0 picks a free port."""
    cert_file: Path | None = None
    key_file: Path | None = None
    reuse_port: bool = True
    """SO_REUSEPORT: N gateway processes share the ports on one host."""
    password_file: Path | None = None
    """Who may log in (``username:$7$…`` lines, the file the policy renders for Mosquitto);
    re-read when it changes. Required while ``policy.enabled``."""
    instance: str = Field("{hostname}-{pid}", min_length=1, max_length=128)
    """This process's name in client ids (producer, downlink); unique per process."""
    receive_maximum: int = Field(100, ge=1, le=65_535)
    """QoS 1/2 messages one connection may have unacknowledged (MQTT 5 Receive Maximum; a
    3.1.1 connection is simply not read beyond it)."""
    max_in_flight: int = Field(20_000, ge=1)
    """Messages the whole process may have waiting for Kafka; beyond it no connection is
    read until half of them are acknowledged (back-pressure, not memory growth)."""
    max_packet_bytes: int = Field(262_144, ge=1_024, le=268_435_455)
    """Largest packet accepted; a bigger PUBLISH becomes a DLQ record without its payload
    and the connection is closed (MQTT 5: DISCONNECT 0x95)."""
    topic_alias_maximum: int = Field(16, ge=0, le=65_535)
    max_keepalive_s: int = Field(300, ge=5, le=65_535)
    """Longest keep-alive granted; a client asking for more (or none) gets this one (MQTT 5
    Server Keep Alive) and is disconnected after 1.5 times it without a packet."""
    connect_timeout_s: float = Field(10.0, gt=0)
    """A connection that sends no CONNECT within this is closed."""
    max_session_expiry_s: int = Field(86_400, ge=0)
    """Longest a disconnected persistent session is kept."""
    sessions_topic: str | None = EDGE_SESSIONS.name
    """The compacted topic where every gateway process claims the sessions it holds and keeps
    their state, so a device may reconnect to any process (null: sessions stay in the process
    that holds them)."""
    fence_lease_s: float = Field(1.0, gt=0)
    """How stale this process's view of the claims may be before it holds records back
    (see ``edge.session_log``)."""
    fence_pause_s: float = Field(0.5, gt=0)
    """A gap this long in the process's running (SIGSTOP, a stall) voids its view of the
    claims: records wait until it is confirmed again."""
    presence: bool = True
    """Connects and disconnects become ``DeviceEvent`` records on ``presence_topic``."""
    presence_topic: str = DEVICE_EVENTS.name

    @field_validator("instance")
    @classmethod
    def _expand_instance(cls, value: str) -> str:
        return value.replace("{hostname}", socket.gethostname()).replace("{pid}", str(os.getpid()))

    @model_validator(mode="after")
    def _tls_files_together(self) -> EdgeSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("edge.cert_file and edge.key_file go together")
        if self.port is None and self.cert_file is None:
            raise ValueError("edge.port is null and no TLS certificate is set: nothing to serve")
        return self


class KafkaSettings(KafkaClientSettings):
    """The idempotent, acks=all producer (and the downlink consumer), and how they connect."""

    model_config = _STRICT
    dlq_topic: str = TELEMETRY_DLQ.name
    linger_ms: int = Field(5, ge=0)
    """How long a batch of received messages waits for more before it is produced."""
    max_batch_bytes: int = Field(512 * 1024, ge=1024)
    request_timeout_ms: int = Field(5_000, ge=1_000)
    """How long Kafka may hold a produce (waiting for its replicas) before it is retried:
    below a device's publish timeout, so that a leader cut off from its replicas costs
    seconds, not the device's patience."""
    leader_stall_s: float = Field(1.0, gt=0)
    """A batch unacknowledged this long has its partition's leader looked for anew, on
    nodes other than the current one (``iot_gateway.leaders``)."""
    client_id: str = "iot-gateway"


class RouteSettings(BaseModel):
    """One MQTT topic filter mapped to a Kafka topic, a schema subject and a payload format."""

    model_config = _STRICT
    name: str = Field(min_length=1)
    filter: str
    kafka_topic: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    payload_format: Literal["json", "avro"] = "json"
    device_level: int | None = None
    """Which topic level holds the device id; default: the filter's first ``+``."""

    @model_validator(mode="after")
    def _device_level_is_a_wildcard(self) -> RouteSettings:
        validate_topic_filter(self.filter)
        levels = self.filter.split("/")
        level = self.device_level
        if level is None:
            if "+" not in levels:
                raise ValueError(f"route {self.name}: filter {self.filter!r} has no '+' level")
            object.__setattr__(self, "device_level", levels.index("+"))
        elif not 0 <= level < len(levels) or levels[level] != "+":
            raise ValueError(f"route {self.name}: device_level {level} is not a '+' level")
        return self


class LimitSettings(BaseModel):
    """Bounds on what one message and one device may cost."""

    model_config = _STRICT
    max_payload_bytes: int = Field(64 * 1024, ge=64)
    device_rate_per_s: float = Field(100.0, gt=0)
    device_burst: int = Field(200, ge=1)
    over_rate: Literal["delay", "drop"] = "delay"
    """What happens to a device's message beyond its rate: ``delay`` (the default) holds it
    until the device's bucket refills, which back-pressures the session and loses nothing;
    ``drop`` sends it to the DLQ as ``rate_limited`` (acknowledged, not ingested)."""
    ts_ahead_s: int = Field(300, ge=0)
    ts_behind_s: int = Field(30 * 86_400, ge=0)
    """A device's ``ts`` must lie in [received_at - ts_behind_s, received_at + ts_ahead_s];
    outside that band the message goes to the DLQ as ``implausible_timestamp`` (one reading
    dated 2100 would otherwise hold the device's latest values and windows forever). The
    band behind is wide for devices that buffer readings while offline."""

    def timestamp_problem(self, ts: int, received_at: int) -> str | None:
        """Why event time ``ts`` is implausible for a message received at ``received_at``."""
        if ts > received_at + self.ts_ahead_s * 1000:
            return f"ts {ts} is more than {self.ts_ahead_s} s after its receipt ({received_at})"
        if ts < received_at - self.ts_behind_s * 1000:
            return f"ts {ts} is more than {self.ts_behind_s} s before its receipt ({received_at})"
        return None


class HttpSettings(BaseModel):
    """Metrics (/metrics), liveness (/healthz) and readiness (/readyz)."""

    model_config = _STRICT
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, lt=65536)


class DownlinkSettings(BaseModel):
    """Kafka commands to MQTT devices, at least once."""

    model_config = _STRICT
    enabled: bool = True
    kafka_topic: str = COMMANDS.name
    group_id: str = "iot-gateway-downlink"
    mqtt_topic: str = "devices/{device_id}/commands"


class PolicySettings(BaseModel):
    """Per-message authorization from the security policy (``security``).

    With ``file`` set, a message is accepted only if the device its topic names may publish
    on that topic under the policy plus the registered devices (``devices_file``); anything
    else goes to the DLQ as ``unauthorized``. Both files are re-read when they change.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = True
    """Off only when set explicitly: then every device may publish anything (logged loudly)."""
    file: Path | None = None
    devices_file: Path | None = None
    admin: str | None = None
    """A principal allowed everything (the stack's administrator, like the policy's super
    users); direct mode only, where it can log in to the gateway itself."""


class GatewayConfig(FileSettings):
    """Everything one gateway process needs; frozen once loaded."""

    model_config = SettingsConfigDict(
        env_prefix="IOT_GATEWAY_", env_nested_delimiter="__", extra="forbid", frozen=True
    )
    mode: Literal["direct", "bridge"] = "direct"
    """``direct``: devices connect to the gateway itself (``edge``), and a PUBACK means the
    reading is in Kafka. ``bridge``: the gateway subscribes to an existing broker (``mqtt``),
    whose own durability bounds what its PUBACKs promise."""
    edge: EdgeSettings = EdgeSettings()
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"
    """The event loop the process runs on (``uvloop``: libuv's, see the README's numbers)."""
    mqtt: MqttSettings = MqttSettings()
    kafka: KafkaSettings = KafkaSettings()
    routes: tuple[RouteSettings, ...] = Field(min_length=1)
    limits: LimitSettings = LimitSettings()
    http: HttpSettings = HttpSettings()
    downlink: DownlinkSettings = DownlinkSettings()
    policy: PolicySettings = PolicySettings()
    schemas_dir: Path | None = None
    """Folder of the Avro schemas (``schemas/`` of the checkout by default)."""

    @property
    def subscriptions(self) -> list[str]:
        """The shared subscriptions: ``$share/<group>/<filter>`` for each of ``mqtt.filters``."""
        return [f"$share/{self.mqtt.share_group}/{f}" for f in self.mqtt.filters]


def load_config(path: Path) -> GatewayConfig:
    """Reads and validates ``path``; every problem is a ConfigError naming the key."""
    return load_settings(GatewayConfig, path, ConfigError)
