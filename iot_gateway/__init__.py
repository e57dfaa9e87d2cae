"""The MQTT to Kafka gateway: routes, validation, DLQ, PUBACK-after-ack, downlink."""

from iot_gateway.bridge import Gateway
from iot_gateway.config import GatewayConfig, RouteSettings, load_config
from iot_gateway.errors import ConfigError, GatewayError
from iot_gateway.ingest import REASONS, Accepted, Ingest, Rejected

__all__ = [
    "REASONS",
    "Accepted",
    "ConfigError",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "Ingest",
    "Rejected",
    "RouteSettings",
    "load_config",
]
