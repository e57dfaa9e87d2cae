"""Registry settings: which registry a process uses, from ``IOT_REGISTRY_*`` variables.

``IOT_REGISTRY_URL`` is ``embedded`` (the default: the Kafka-log registry, no server) or the
base URL of a Confluent-compatible registry; ``IOT_REGISTRY_KAFKA_BOOTSTRAP`` and
``IOT_REGISTRY_TOPIC`` place the embedded registry's log; ``IOT_REGISTRY_USERNAME`` and
``IOT_REGISTRY_PASSWORD`` are HTTP basic-auth credentials (the password is masked when printed).
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.kafka import KafkaClientSettings
from contracts.registry.confluent import ConfluentSchemaRegistry
from contracts.registry.embedded import DEFAULT_TOPIC, EmbeddedSchemaRegistry
from contracts.registry.factory import EMBEDDED
from contracts.registry.port import SchemaRegistry

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

    def open(self, kafka: KafkaClientSettings | None = None) -> SchemaRegistry:
        """A new, not yet started adapter for :attr:`url` (start it, or ``async with`` it);
        the embedded registry connects with ``kafka`` (default: :attr:`kafka_bootstrap`,
        no credentials)."""
        if self.url == EMBEDDED:
            return EmbeddedSchemaRegistry(
                kafka or KafkaClientSettings(bootstrap=self.kafka_bootstrap),
                topic=self.topic,
                replication_factor=self.replication_factor,
                request_timeout_s=self.timeout_s,
            )
        auth = None
        if self.username is not None:
            password = self.password.get_secret_value() if self.password is not None else ""
            auth = (self.username, password)
        return ConfluentSchemaRegistry(self.url, auth=auth, timeout_s=self.timeout_s)
