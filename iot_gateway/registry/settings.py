"""Registry settings: which registry a process uses, from ``IOT_REGISTRY_*`` variables.

``IOT_REGISTRY_URL`` is ``embedded`` (the default: the Kafka-log registry, no server) or the
base URL of a Confluent-compatible registry; ``IOT_REGISTRY_KAFKA_BOOTSTRAP`` and
``IOT_REGISTRY_TOPIC`` place the embedded registry's log; ``IOT_REGISTRY_USERNAME`` and
``IOT_REGISTRY_PASSWORD`` are HTTP basic-auth credentials (the password is masked when printed).
On the secured dev stack the embedded registry's log is read as the stack's admin.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from iot_gateway.devstack.clients import on_local_stack
from iot_gateway.kafka_client import KafkaClientSettings
from iot_gateway.registry.confluent import ConfluentSchemaRegistry
from iot_gateway.registry.embedded import DEFAULT_TOPIC, EmbeddedSchemaRegistry
from iot_gateway.registry.factory import EMBEDDED
from iot_gateway.registry.port import SchemaRegistry

__all__ = ["RegistrySettings"]


class RegistrySettings(BaseSettings):
    """Where the schema registry is; frozen once loaded."""

    model_config = SettingsConfigDict(env_prefix="IOT_REGISTRY_", extra="ignore", frozen=True)
    url: str = EMBEDDED
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic: str = DEFAULT_TOPIC
    replication_factor: int | None = Field(None, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    username: str | None = None
    password: SecretStr | None = None

    def open(self) -> SchemaRegistry:
        """A new, not yet started adapter for :attr:`url` (start it, or ``async with`` it)."""
        if self.url == EMBEDDED:
            return EmbeddedSchemaRegistry(
                on_local_stack(KafkaClientSettings(bootstrap=self.kafka_bootstrap)),
                topic=self.topic,
                replication_factor=self.replication_factor,
                request_timeout_s=self.timeout_s,
            )
        auth = None
        if self.username is not None:
            password = self.password.get_secret_value() if self.password is not None else ""
            auth = (self.username, password)
        return ConfluentSchemaRegistry(self.url, auth=auth, timeout_s=self.timeout_s)
