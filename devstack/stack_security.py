"""The security state of one dev stack: its policy file, secrets, devices, tokens and CA.

:class:`StackSecurity` reads and writes the files under ``<state dir>/security/`` only; the
servers' start-up (Kafka's SASL properties, Mosquitto's files) asks it for what they need.
Enforcing the state on the running servers is :class:`devstack.secured.SecuredStack`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr

from contracts.kafka import KafkaClientSettings
from devstack.settings import DevStackSettings
from policy import Policy, load_policy, super_users_config
from security import mosquitto as broker
from security.credentials import Credential, SecretStore
from security.devices import DeviceStore
from security.effective import credentialed_principals, effective_policy
from security.errors import NotSecureError, StoreError
from security.files import locked, private_dir
from security.layout import SecurityLayout
from security.tls import LocalCA

__all__ = ["ADMIN", "StackSecurity"]

ADMIN = "admin"
"""The stack's administrator: a super user on Kafka and Mosquitto (formats, creates topics)."""


class StackSecurity:
    """The security state of the stack ``settings`` describes: policy, secrets, devices, CA.

    Reads and writes files only; :class:`devstack.secured.SecuredStack` adds what touches
    the running servers.
    """

    def __init__(self, settings: DevStackSettings) -> None:
        self.settings = settings
        self.layout = SecurityLayout.under(settings.state_dir)
        self.secrets = SecretStore(self.layout.secrets_file)
        self.devices = DeviceStore(self.layout.devices_file)
        self.ca = LocalCA(self.layout.tls_dir)

    @property
    def policy_path(self) -> Path:
        """``IOT_POLICY_FILE``, else ``config/policy.yaml`` of the project."""
        configured = self.settings.policy_file
        return configured or self.settings.project_dir / "config" / "policy.yaml"

    def require_secure(self, what: str) -> None:
        if not self.settings.secure:
            raise NotSecureError(
                f"{what} needs the secured stack: this one runs with IOT_SECURE=false "
                "(PLAINTEXT Kafka, anonymous MQTT, nothing enforced); unset it or set "
                "IOT_SECURE=true and restart the stack"
            )

    def effective(self, *, adding: Sequence[str] = ()) -> Policy:
        """The policy file plus registered devices (plus ``adding``) plus the admin;
        PolicyLoadError with the line of the first problem in the file."""
        devices = [*self.devices.hashes(), *adding]
        return effective_policy(load_policy(self.policy_path), devices, admin=ADMIN)

    def admin_credential(self) -> Credential:
        """The stack administrator's credential, generated on first use."""
        private_dir(self.layout.root)
        return self.secrets.ensure([ADMIN])[ADMIN]

    def kafka_client(self, principal: str = ADMIN) -> KafkaClientSettings:
        """How ``principal`` (a service or super user with a stored password) connects to
        Kafka; StoreError if it has no password yet (``iotctl policy apply`` makes them)."""
        credential = self.secrets.get(principal)
        if credential is None:
            raise StoreError(f"{principal!r} has no password yet; run `iotctl policy apply`")
        return KafkaClientSettings(
            bootstrap=self.settings.kafka_bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=principal,
            sasl_password=SecretStr(credential.password),
        )

    @staticmethod
    def kafka_super_users(policy: Policy) -> str:
        """``super.users`` for server.properties: the policy's (the admin among them, which
        is also the principal of the controller listener and of inter-broker traffic)."""
        return super_users_config(policy)

    def broker_files(
        self, policy: Policy, credentials: dict[str, Credential]
    ) -> broker.BrokerFiles:
        """Mosquitto's password_file and acl_file for ``policy`` and these credentials."""
        hashes = {name: c.mosquitto_hash for name, c in credentials.items()}
        hashes.update(self.devices.hashes())
        return broker.render(policy, {u: h for u, h in hashes.items() if u in _users(policy)})

    def prepare_broker(self, home: Path, owner: str | None) -> broker.BrokerLayout:
        """Writes TLS material and both files for a broker about to start in ``home``."""
        layout = broker.BrokerLayout(home)
        with locked(self.layout.apply_lock):
            policy = self.effective()
            credentials = self.secrets.ensure(credentialed_principals(policy))
            files = self.broker_files(policy, credentials)
            hosts = tuple(dict.fromkeys((self.settings.host, "127.0.0.1", "localhost")))
            broker.install_tls(self.ca.ensure(hosts), layout, owner)
            files.install(layout, owner)
        return layout


def _users(policy: Policy) -> frozenset[str]:
    """Usernames the password_file may hold: principals and super users of the policy."""
    return frozenset(p.id for p in policy.principals) | policy.super_users
