"""The local stack's conveniences: ``iotctl`` commands pointed at the dev stack work as they
are, connecting with the credentials the stack generated.

Only the command line uses this module; the processes themselves get their credentials as
settings (environment variables), see :func:`devstack.clients.client_env`.
"""

from __future__ import annotations

from pathlib import Path

from contracts.kafka import KafkaClientSettings
from contracts.registry import RegistrySettings, SchemaRegistry
from devstack.clients import on_local_stack
from streams.settings import WorkerSettings, load_worker_settings

__all__ = ["open_registry", "registry_login", "worker_settings"]


def worker_settings(path: Path | None, *, principal: str) -> WorkerSettings:
    """:func:`streams.settings.load_worker_settings`; pointed at the secured dev stack
    without credentials, the worker connects as ``principal``."""
    settings = load_worker_settings(path)
    kafka = on_local_stack(settings.kafka, principal)
    return settings if kafka is settings.kafka else settings.model_copy(update={"kafka": kafka})


def _registry_kafka(settings: RegistrySettings) -> KafkaClientSettings:
    """The embedded registry's Kafka connection: the stack's admin on the secured dev stack."""
    return on_local_stack(KafkaClientSettings(bootstrap=settings.kafka_bootstrap))


def open_registry(settings: RegistrySettings) -> SchemaRegistry:
    """``settings.open()``; on the secured dev stack the embedded registry's log is read as
    the stack's admin."""
    return settings.open(_registry_kafka(settings))


def registry_login(settings: RegistrySettings) -> tuple[str, str] | None:
    """Who may write to a served registry: ``IOT_REGISTRY_USERNAME``/``_PASSWORD`` when set;
    on the secured dev stack, its admin; else nobody (the registry is served read-only)."""
    if settings.username is not None and settings.password is not None:
        return settings.username, settings.password.get_secret_value()
    login = _registry_kafka(settings).sasl()
    return None if login is None else (login.username, login.password)
