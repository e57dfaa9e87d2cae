"""The security state and enforcement points of one dev stack, in secured mode.

:class:`SecuredStack` ties a :class:`DevStackSettings` to its policy file, secrets, device
and token stores, local CA, Mosquitto's files and Kafka's admin connection.

:meth:`SecuredStack.apply` is all-or-nothing with respect to bad input: it loads the policy,
merges the registered devices, renders Mosquitto's files, computes Kafka's users and ACL
bindings and reads the broker's current state *before* it changes anything, so a malformed
policy (reported with its line) or an unreachable Kafka leaves secrets, users, ACLs and files
exactly as they were. Then it writes in this order: new service passwords, Kafka users, Kafka
ACLs (creations before deletions), Mosquitto's files plus SIGHUP. Every step is idempotent;
a server failing half-way is an :class:`ApplyError` and the same apply converges later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from iot_gateway.devstack.accounts import service_user
from iot_gateway.devstack.kafka import Kafka
from iot_gateway.devstack.mosquitto import Mosquitto
from iot_gateway.devstack.process import running_pid
from iot_gateway.devstack.settings import DevStackSettings
from iot_gateway.kafka_client import KafkaClientSettings
from iot_gateway.policy import (
    AclBinding,
    Policy,
    PolicyError,
    acl_bindings,
    load_policy,
    super_users_config,
)
from iot_gateway.security import kafka as kafka_acls
from iot_gateway.security import mosquitto as broker
from iot_gateway.security._files import locked, private_dir
from iot_gateway.security.credentials import Credential, SecretStore
from iot_gateway.security.devices import (
    DeviceStore,
    IssuedDevice,
    RegisteredDevice,
    check_device_id,
)
from iot_gateway.security.effective import ADMIN, credentialed_principals, effective_policy
from iot_gateway.security.errors import DeviceError, NotSecureError, StoreError
from iot_gateway.security.layout import SecurityLayout
from iot_gateway.security.tls import LocalCA

__all__ = ["ApplyReport", "BrokerSync", "SecuredStack"]

Progress = Callable[[str], None]


_OFF = "secure mode is off (IOT_SECURE): the broker enforces nothing yet"


def _quiet(_: str) -> None:
    """Discards progress lines."""


@dataclass(frozen=True, slots=True)
class BrokerSync:
    """What happened to Mosquitto: files changed, the pid reloaded, users that lost access."""

    changed: bool
    reloaded_pid: int | None
    removed_users: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """The outcome (or, with ``dry_run``, the plan) of one :meth:`SecuredStack.apply`."""

    dry_run: bool
    policy_source: str
    kafka: kafka_acls.KafkaPlan
    foreign_bindings: tuple[str, ...]
    mosquitto: BrokerSync
    new_secrets: tuple[str, ...]
    warnings: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (``iotctl policy apply --json``); holds no secret."""

        def bindings(items: tuple[AclBinding, ...]) -> list[dict[str, str]]:
            return [
                {field.name: str(getattr(b, field.name)) for field in dataclasses.fields(b)}
                for b in items
            ]

        return {
            "dry_run": self.dry_run,
            "policy": self.policy_source,
            "kafka": {
                "create_users": list(self.kafka.create_users),
                "refresh_users": list(self.kafka.refresh_users),
                "delete_users": list(self.kafka.delete_users),
                "create_acls": bindings(self.kafka.acls.create),
                "delete_acls": bindings(self.kafka.acls.delete),
                "foreign_acls": list(self.foreign_bindings),
            },
            "mosquitto": {
                "changed": self.mosquitto.changed,
                "reloaded_pid": self.mosquitto.reloaded_pid,
                "removed_users": list(self.mosquitto.removed_users),
                "note": self.mosquitto.note,
            },
            "new_secrets": list(self.new_secrets),
            "warnings": list(self.warnings),
        }


class SecuredStack:
    """Security state and enforcement of the stack ``settings`` describes."""

    def __init__(self, settings: DevStackSettings) -> None:
        self.settings = settings
        self.layout = SecurityLayout.under(settings.state_dir)
        self.secrets = SecretStore(self.layout.secrets_file)
        self.devices = DeviceStore(self.layout.devices_file)
        self.ca = LocalCA(self.layout.tls_dir)
        self._mosquitto = Mosquitto(settings)
        self._kafka = Kafka(settings)

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

    def require_secured_servers(self) -> None:
        """Refuses to touch servers of this state dir that run unsecured (started without
        ``IOT_SECURE``): their configs do not read what an apply would write."""
        unsecured = []
        broker_config = _read(Path(self._mosquitto.config_file)).splitlines()
        if self.broker_pid() is not None and "allow_anonymous false" not in broker_config:
            unsecured.append("mosquitto")
        kafka_config = _read(self._kafka.config_file)
        if running_pid(self._kafka.handle) is not None and "authorizer.class.name=" not in (
            kafka_config
        ):
            unsecured.append("kafka")
        if unsecured:
            raise NotSecureError(
                f"{' and '.join(unsecured)} of {self.settings.state_dir} run(s) unsecured; "
                "restart the stack in secured mode (`iotctl dev down`, then `iotctl dev up` "
                "without IOT_SECURE=false)"
            )

    def effective(self, *, adding: Sequence[str] = ()) -> Policy:
        """The policy file plus registered devices (plus ``adding``) plus the admin;
        PolicyLoadError with the line of the first problem in the file."""
        devices = [*self.devices.hashes(), *adding]
        return effective_policy(load_policy(self.policy_path), devices)

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

    # -- Mosquitto ------------------------------------------------------------------------

    @property
    def broker_layout(self) -> broker.BrokerLayout:
        return broker.BrokerLayout(self._mosquitto.home)

    def broker_pid(self) -> int | None:
        return running_pid(self._mosquitto.handle)

    def _broker_files(
        self, policy: Policy, credentials: dict[str, Credential]
    ) -> broker.BrokerFiles:
        hashes = {name: c.mosquitto_hash for name, c in credentials.items()}
        hashes.update(self.devices.hashes())
        return broker.render(policy, {u: h for u, h in hashes.items() if u in _users(policy)})

    def prepare_broker(self, owner: str | None) -> broker.BrokerLayout:
        """Writes TLS material and both files for a broker about to start (``dev up``)."""
        layout = self.broker_layout
        with locked(self.layout.apply_lock):
            policy = self.effective()
            credentials = self.secrets.ensure(credentialed_principals(policy))
            files = self._broker_files(policy, credentials)
            hosts = tuple(dict.fromkeys((self.settings.host, "127.0.0.1", "localhost")))
            broker.install_tls(self.ca.ensure(hosts), layout, owner)
            files.install(layout, owner)
        return layout

    def _sync_broker(self, files: broker.BrokerFiles, *, dry_run: bool) -> BrokerSync:
        layout, pid = self.broker_layout, self.broker_pid()
        try:
            before = layout.password_file.read_text()
        except OSError:
            before = ""
        removed = tuple(sorted(broker.password_file_users(before) - files.users))
        if pid is None:
            return BrokerSync(False, None, removed, "broker not running: `dev up` writes the files")
        changed = before != files.password_file or _read(layout.acl_file) != files.acl_file
        if dry_run or not changed:
            return BrokerSync(changed, None, removed, "dry run" if dry_run else "unchanged")
        files.install(layout, service_user("mosquitto"))
        broker.reload_broker(pid)
        return BrokerSync(True, pid, removed, "reloaded with SIGHUP")

    def sync_mosquitto(self) -> BrokerSync:
        """Regenerates Mosquitto's files from the effective policy and reloads the broker.

        Used by ``devices add``/``revoke``; Kafka is not involved (devices have no SCRAM user).
        """
        self.require_secure("reloading Mosquitto")
        self.require_secured_servers()
        with locked(self.layout.apply_lock):
            policy = self.effective()
            credentials = self.secrets.ensure(credentialed_principals(policy), dry_run=True)
            files = self._broker_files(policy, credentials)
            self.secrets.commit(credentials)
            return self._sync_broker(files, dry_run=False)

    def drop_from_broker(self, username: str) -> BrokerSync:
        """Removes one user's line from the installed password_file and reloads.

        The fallback of ``devices revoke`` when the policy file cannot be loaded:
        revocation must not wait for someone to fix an unrelated typo.
        """
        self.require_secure("reloading Mosquitto")
        self.require_secured_servers()
        layout, pid = self.broker_layout, self.broker_pid()
        with locked(self.layout.apply_lock):
            text = _read(layout.password_file)
            kept = "".join(
                line for line in text.splitlines(keepends=True) if line.split(":", 1)[0] != username
            )
            if pid is None:
                return BrokerSync(False, None, (), "broker not running: `dev up` writes the files")
            if kept == text:
                return BrokerSync(False, None, (), f"{username} was not in the password_file")
            broker.BrokerFiles(kept, _read(layout.acl_file)).install(
                layout, service_user("mosquitto")
            )
            broker.reload_broker(pid)
        return BrokerSync(True, pid, (username,), "dropped from the installed password_file")

    # -- devices --------------------------------------------------------------------------

    def add_device(self, device_id: str) -> tuple[IssuedDevice, BrokerSync]:
        """Registers a device and, in secured mode with the broker running, lets it in now.

        In secured mode the policy is checked first (it must load, and must not declare the
        id as another kind), so a device is never stored that the broker could not take.
        """
        issued, sync = self.add_devices([device_id])
        return issued[0], sync

    def add_devices(
        self, device_ids: Sequence[str], *, reissue: bool = False
    ) -> tuple[list[IssuedDevice], BrokerSync]:
        """:meth:`add_device` for a fleet, with one broker reload; ``reissue`` gives devices
        that are registered already a new password."""
        for device_id in device_ids:
            check_device_id(device_id)
        if self.settings.secure:
            self.effective(adding=[d for d in device_ids if d not in self.devices.hashes()])
        issued = self.devices.add_many(device_ids, reissue=reissue)
        if not self.settings.secure:
            return issued, BrokerSync(False, None, (), _OFF)
        return issued, self.sync_mosquitto()

    def revoke_device(self, device_id: str) -> tuple[RegisteredDevice, BrokerSync]:
        """Forgets a device and, in secured mode, reloads the broker, which disconnects it.

        Revocation never waits for a valid policy: if the file cannot be loaded (or clashes
        with another registered device), the device's line is cut from the installed
        password_file instead.
        """
        revoked = self.devices.revoke(device_id)
        if not self.settings.secure:
            return revoked, BrokerSync(False, None, (), _OFF)
        try:
            return revoked, self.sync_mosquitto()
        except (PolicyError, DeviceError) as exc:
            sync = self.drop_from_broker(device_id)
            return revoked, dataclasses.replace(sync, note=f"{sync.note} (policy: {exc})")

    # -- everything -----------------------------------------------------------------------

    def apply(self, *, dry_run: bool = False, progress: Progress = _quiet) -> ApplyReport:
        """Makes Kafka and Mosquitto enforce the effective policy (module docstring)."""
        self.require_secure("`policy apply`")
        self.require_secured_servers()
        with locked(self.layout.apply_lock):
            policy = self.effective()
            names = credentialed_principals(policy)
            credentials = self.secrets.ensure(names, dry_run=True)
            files = self._broker_files(policy, credentials)
            bindings = acl_bindings(policy)
            for binding in bindings:
                binding.to_confluent()  # fails now, not half-way through
            warnings = self._super_user_warnings(policy)
            admin = kafka_acls.admin_client(self.kafka_client(ADMIN))
            state = kafka_acls.read_state(admin)
            steps = kafka_acls.plan(state, names, bindings, keep_users=[ADMIN])
            new_secrets: tuple[str, ...] = tuple(n for n in names if self.secrets.get(n) is None)
            if dry_run:
                sync = self._sync_broker(files, dry_run=True)
            else:
                new_secrets = self.secrets.commit(credentials)
                progress(
                    f"kafka: {len(steps.create_users)} user(s) to create, "
                    f"{len(steps.delete_users)} to delete, {len(steps.acls.create)} ACL(s) to "
                    f"create, {len(steps.acls.delete)} to delete"
                )
                kafka_acls.execute(admin, steps, credentials)
                sync = self._sync_broker(files, dry_run=False)
                progress(f"mosquitto: {sync.note}")
        return ApplyReport(
            dry_run, str(self.policy_path), steps, state.foreign, sync, new_secrets, warnings
        )

    def _super_user_warnings(self, policy: Policy) -> tuple[str, ...]:
        wanted = self.kafka_super_users(policy)
        running = next(
            (
                line.removeprefix("super.users=")
                for line in _read(self._kafka.config_file).splitlines()
                if line.startswith("super.users=")
            ),
            None,
        )
        if running is None or running == wanted:
            return ()
        return (
            f"Kafka's super.users is {running!r} but the policy wants {wanted!r}; Kafka reads "
            "it only at start: restart Kafka (`iotctl dev down` then `iotctl dev up`)",
        )


def _users(policy: Policy) -> frozenset[str]:
    """Usernames the password_file may hold: principals and super users of the policy."""
    return frozenset(p.id for p in policy.principals) | policy.super_users


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
