"""How every component connects to Kafka: one settings model, mapped onto each client library.

aiokafka (data path) and confluent-kafka (admin, interop) spell the same connection settings
differently; ``KafkaClientSettings`` is the single place that knows both spellings, so a
component connecting as its own SASL principal is a matter of configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr

SecurityProtocol = Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


@dataclass(frozen=True, slots=True)
class SaslLogin:
    """The SASL mechanism, username and password one client logs in with."""

    mechanism: SaslMechanism
    username: str
    password: str = field(repr=False)


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

    def sasl(self) -> SaslLogin | None:
        """The SASL login, or None without SASL: the one reading of the sasl_* settings."""
        if not self.sasl_mechanism:
            return None
        password = self.sasl_password.get_secret_value() if self.sasl_password else ""
        return SaslLogin(self.sasl_mechanism, self.sasl_username or "", password)

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        login = self.sasl()
        if login is not None:
            kwargs.update(
                sasl_mechanism=login.mechanism,
                sasl_plain_username=login.username,
                sasl_plain_password=login.password,
            )
        return kwargs

    def confluent_config(self) -> dict[str, Any]:
        """A librdkafka configuration dict (confluent-kafka clients, kcat ``-X``)."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol.lower(),
        }
        login = self.sasl()
        if login is not None:
            config.update(
                {
                    "sasl.mechanism": login.mechanism,
                    "sasl.username": login.username,
                    "sasl.password": login.password,
                }
            )
        return config
