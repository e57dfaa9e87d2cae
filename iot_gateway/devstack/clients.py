"""How a principal of the dev stack connects: Kafka client settings and MQTT logins.

Unsecured, everybody is anonymous (PLAINTEXT Kafka, MQTT without a password); secured, each
service principal connects with the password the stack generated for it
(``.local/security/secrets.json``). Tests, benchmarks and the stack's own processes ask here
rather than assembling bootstrap strings and credentials themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from iot_gateway.devstack.settings import DevStackSettings
from iot_gateway.kafka_client import KafkaClientSettings

ADMIN = "admin"
"""The stack's administrator: a super user on Kafka and Mosquitto (formats, creates topics)."""


@dataclass(frozen=True, slots=True)
class MqttLogin:
    """A username and password for Mosquitto."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"MqttLogin({self.username!r}, ********)"


def kafka_client(settings: DevStackSettings, principal: str = ADMIN) -> KafkaClientSettings:
    """Kafka connection settings of ``principal`` on this stack."""
    if not settings.secure:
        return KafkaClientSettings(bootstrap=settings.kafka_bootstrap)
    from iot_gateway.security import SecuredStack  # noqa: PLC0415 - security imports devstack

    return SecuredStack(settings).kafka_client(principal)


def mqtt_login(settings: DevStackSettings, principal: str = ADMIN) -> MqttLogin | None:
    """Mosquitto login of service principal ``principal``; None when the stack is unsecured."""
    if not settings.secure:
        return None
    from iot_gateway.security import SecuredStack, StoreError  # noqa: PLC0415

    credential = SecuredStack(settings).secrets.get(principal)
    if credential is None:
        raise StoreError(f"{principal!r} has no password yet; run `iotctl policy apply`")
    return MqttLogin(principal, credential.password)
