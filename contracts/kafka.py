"""How every component connects to Kafka: one settings model, mapped onto each client library.

aiokafka (data path) and confluent-kafka (admin, interop) spell the same connection settings
differently; ``KafkaClientSettings`` is the single place that knows both spellings, so a
component connecting as its own SASL principal is a matter of configuration.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr

SecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class KafkaClientSettings(BaseModel):
    """Bootstrap servers and, when SASL is on, the principal's name and secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bootstrap: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None

    @property
    def principal(self) -> str:
        """The Kafka principal this client authenticates as (``User:ANONYMOUS`` without SASL)."""
        return f"User:{self.sasl_username}" if self.sasl_username else "User:ANONYMOUS"

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=(
                    self.sasl_password.get_secret_value() if self.sasl_password else None
                ),
            )
        return kwargs

    def confluent_config(self) -> dict[str, Any]:
        """A librdkafka configuration dict (confluent-kafka clients, kcat ``-X``)."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol.lower(),
        }
        if self.sasl_mechanism:
            config.update(
                {
                    "sasl.mechanism": self.sasl_mechanism,
                    "sasl.username": self.sasl_username,
                    "sasl.password": (
                        self.sasl_password.get_secret_value() if self.sasl_password else ""
                    ),
                }
            )
        return config
