"""The local development stack: real Kafka, Mosquitto and PostgreSQL as plain processes."""

from devstack.errors import (
    DevStackError,
    PortInUseError,
    ServiceStartError,
    SettingsError,
)
from devstack.secured import ApplyReport, BrokerSync, SecuredStack
from devstack.settings import DevStackSettings
from devstack.stack import ServiceStatus, down, services, status, up
from devstack.stack_security import ADMIN, StackSecurity

__all__ = [
    "ADMIN",
    "ApplyReport",
    "BrokerSync",
    "DevStackError",
    "DevStackSettings",
    "PortInUseError",
    "SecuredStack",
    "ServiceStartError",
    "ServiceStatus",
    "SettingsError",
    "StackSecurity",
    "down",
    "services",
    "status",
    "up",
]
