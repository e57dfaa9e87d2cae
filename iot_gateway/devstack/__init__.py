"""The local development stack: real Kafka, Mosquitto and PostgreSQL as plain processes."""

from iot_gateway.devstack.errors import (
    DevStackError,
    PortInUseError,
    ServiceStartError,
    SettingsError,
)
from iot_gateway.devstack.settings import DevStackSettings
from iot_gateway.devstack.stack import ServiceStatus, down, services, status, up

__all__ = [
    "DevStackError",
    "DevStackSettings",
    "PortInUseError",
    "ServiceStartError",
    "ServiceStatus",
    "SettingsError",
    "down",
    "services",
    "status",
    "up",
]
