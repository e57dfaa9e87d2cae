"""The platform's Kafka topics: one catalog that tooling and deployments create them from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A Kafka topic the platform owns; ``partitions`` None means the cluster default."""

    name: str
    doc: str
    partitions: int | None = None
    config: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


TELEMETRY = TopicSpec("iot.telemetry.v1", "device readings as Avro, key = device id")
TELEMETRY_DLQ = TopicSpec(
    "iot.telemetry.dlq", "rejected input: the raw bytes plus reason headers", partitions=1
)
ALERTS = TopicSpec("iot.alerts.v1", "alerts raised and cleared, published from the outbox")
COMMANDS = TopicSpec("iot.commands.v1", "downlink commands to devices, key = device id")
DEVICE_EVENTS = TopicSpec(
    "iot.device-events.v1",
    "device lifecycle: registered, revoked, connected, disconnected",
    config=MappingProxyType({"cleanup.policy": "compact,delete"}),
)

EDGE_SESSIONS = TopicSpec(
    "iot.edge-sessions.v1",
    "the gateways' MQTT sessions (direct mode): claims and state, key = client id, JSON",
    # A state topic: compact it within the hour, so a restarted gateway reads little. The
    # broker dates each record: session expiry is measured on its clock, not a gateway's.
    config=MappingProxyType(
        {
            "cleanup.policy": "compact",
            "segment.ms": "3600000",
            "message.timestamp.type": "LogAppendTime",
        }
    ),
)

PLATFORM_TOPICS: tuple[TopicSpec, ...] = (
    TELEMETRY,
    TELEMETRY_DLQ,
    ALERTS,
    COMMANDS,
    DEVICE_EVENTS,
    EDGE_SESSIONS,
)
