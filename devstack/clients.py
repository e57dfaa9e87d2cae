"""How a principal of the dev stack connects: Kafka client settings and MQTT logins.

Unsecured, everybody is anonymous (PLAINTEXT Kafka, MQTT without a password); secured, each
service principal connects with the password the stack generated for it
(``.local/security/secrets.json``). Tests, benchmarks and the stack's own processes ask here
rather than assembling bootstrap strings and credentials themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from contracts.kafka import KafkaClientSettings
from devstack.settings import DevStackSettings
from devstack.stack_security import ADMIN, StackSecurity


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
    return StackSecurity(settings).kafka_client(principal)


def mqtt_login(settings: DevStackSettings, principal: str = ADMIN) -> MqttLogin | None:
    """Mosquitto login of service principal ``principal``; None when the stack is unsecured
    (or before its first secured start generated the password)."""
    if not settings.secure:
        return None
    credential = StackSecurity(settings).secrets.get(principal)
    return None if credential is None else MqttLogin(principal, credential.password)


def client_env(
    prefix: str, kafka: KafkaClientSettings, mqtt: MqttLogin | None = None
) -> dict[str, str]:
    """Environment variables giving a process of ours (settings prefix ``prefix``, e.g.
    ``IOT_GATEWAY_``) its Kafka connection and MQTT login."""
    env = {
        f"{prefix}KAFKA__BOOTSTRAP": kafka.bootstrap,
        f"{prefix}KAFKA__SECURITY_PROTOCOL": kafka.security_protocol,
    }
    login = kafka.sasl()
    if login is not None:
        env[f"{prefix}KAFKA__SASL_MECHANISM"] = login.mechanism
        env[f"{prefix}KAFKA__SASL_USERNAME"] = login.username
        env[f"{prefix}KAFKA__SASL_PASSWORD"] = login.password
    if mqtt is not None:
        env[f"{prefix}MQTT__USERNAME"] = mqtt.username
        env[f"{prefix}MQTT__PASSWORD"] = mqtt.password
    return env


def on_local_stack(kafka: KafkaClientSettings, principal: str = ADMIN) -> KafkaClientSettings:
    """``kafka`` with ``principal``'s credentials when it points at the secured dev stack
    without credentials of its own, so ``iotctl`` commands work there as they are.
    Any other ``kafka`` (another cluster, or credentials given) is returned unchanged."""
    if kafka.sasl_mechanism is not None:
        return kafka
    stack = DevStackSettings.from_env()
    if not stack.secure or kafka.bootstrap != stack.kafka_bootstrap:
        return kafka
    if StackSecurity(stack).secrets.get(principal) is None:
        return kafka
    local = kafka_client(stack, principal)
    return kafka.model_copy(
        update={
            "security_protocol": local.security_protocol,
            "sasl_mechanism": local.sasl_mechanism,
            "sasl_username": local.sasl_username,
            "sasl_password": local.sasl_password,
        }
    )


def write_kcat_config(settings: DevStackSettings, principal: str = ADMIN) -> Path:
    """Writes ``<state dir>/kcat.conf`` (mode 0600): a librdkafka properties file with which
    ``kcat -F`` (or any librdkafka client) reaches this stack as ``principal``."""
    path = settings.state_dir / "kcat.conf"
    config = kafka_client(settings, principal).confluent_config()
    body = "".join(f"{key}={value}\n" for key, value in config.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file existed: private before the password is in it
    with os.fdopen(fd, "w") as file:
        file.write(body)
    return path
