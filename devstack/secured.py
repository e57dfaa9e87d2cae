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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.accounts import service_user
from devstack.apps import GatewayApp
from devstack.kafka import Kafka, create_topics
from devstack.mosquitto import Mosquitto
from devstack.process import running_pid
from devstack.settings import DevStackSettings
from devstack.stack_security import ADMIN, StackSecurity
from policy import (
    AclBinding,
    Policy,
    PolicyError,
    acl_bindings,
)
from security import kafka as kafka_acls
from security import mosquitto as broker
from security.devices import (
    IssuedDevice,
    RegisteredDevice,
    check_device_id,
)
from security.effective import credentialed_principals
from security.errors import DeviceError, NotSecureError
from security.files import locked

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
            "mqtt": {
                "changed": self.mosquitto.changed,
                "reloaded_pid": self.mosquitto.reloaded_pid,
                "removed_users": list(self.mosquitto.removed_users),
                "note": self.mosquitto.note,
            },
            "new_secrets": list(self.new_secrets),
            "warnings": list(self.warnings),
        }


class SecuredStack(StackSecurity):
    """The stack's security state, enforced on its running Kafka and Mosquitto."""

    def __init__(self, settings: DevStackSettings) -> None:
        super().__init__(settings)
        self._mosquitto = Mosquitto(settings)
        self._kafka = Kafka(settings)

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

    # -- Mosquitto ------------------------------------------------------------------------

    @property
    def broker_layout(self) -> broker.BrokerLayout:
        return broker.BrokerLayout(self._mosquitto.home)

    def broker_pid(self) -> int | None:
        return running_pid(self._mosquitto.handle)

    def _sync_broker(self, files: broker.BrokerFiles, *, dry_run: bool) -> BrokerSync:
        """Installs the files where the stack's MQTT servers read them: Mosquitto's (then a
        SIGHUP) and, in direct mode, the gateway's (which re-reads its password file by
        itself and disconnects the logins that are gone)."""
        edge = self._sync_edge(files, dry_run=dry_run)
        if not self.settings.runs_mosquitto:
            return edge
        layout, pid = self.broker_layout, self.broker_pid()
        before = _read(layout.password_file)
        removed = tuple(sorted(broker.password_file_users(before) - files.users))
        if pid is None:
            sync = BrokerSync(False, None, removed, "broker not running: `dev up` writes the files")
        elif before == files.password_file and _read(layout.acl_file) == files.acl_file:
            sync = BrokerSync(False, None, removed, "unchanged")
        elif dry_run:
            sync = BrokerSync(True, None, removed, "dry run")
        else:
            files.install(layout, service_user("mosquitto"))
            broker.reload_broker(pid)
            sync = BrokerSync(True, pid, removed, "reloaded with SIGHUP")
        if not self.settings.direct:
            return sync
        return dataclasses.replace(sync, note=f"{sync.note}; gateway: {edge.note}")

    def _sync_edge(self, files: broker.BrokerFiles, *, dry_run: bool) -> BrokerSync:
        """The gateway's own MQTT server (direct mode): its password file, re-read live."""
        if not self.settings.direct:
            return BrokerSync(False, None, (), "bridge mode: the gateway takes no logins")
        layout = broker.BrokerLayout(GatewayApp(self.settings).mqtt_home)
        before = _read(layout.password_file)
        removed = tuple(sorted(broker.password_file_users(before) - files.users))
        if not layout.password_file.exists():
            return BrokerSync(False, None, removed, "gateway not prepared: `dev up` writes it")
        if before == files.password_file:
            return BrokerSync(False, None, removed, "unchanged")
        if dry_run:
            return BrokerSync(True, None, removed, "dry run")
        files.install(layout, None)
        return BrokerSync(True, None, removed, "password file rewritten (re-read within 1 s)")

    def sync_mosquitto(self) -> BrokerSync:
        """Regenerates Mosquitto's files from the effective policy and reloads the broker.

        Used by ``devices add``/``revoke``; Kafka is not involved (devices have no SCRAM user).
        """
        self.require_secure("reloading Mosquitto")
        self.require_secured_servers()
        with locked(self.layout.apply_lock):
            policy = self.effective()
            credentials = self.secrets.ensure(credentialed_principals(policy), dry_run=True)
            files = self.broker_files(policy, credentials)
            self.secrets.commit(credentials)
            return self._sync_broker(files, dry_run=False)

    def drop_from_broker(self, username: str) -> BrokerSync:
        """Removes one user's line from the installed password files and reloads.

        The fallback of ``devices revoke`` when the policy file cannot be loaded:
        revocation must not wait for someone to fix an unrelated typo.
        """
        self.require_secure("reloading Mosquitto")
        self.require_secured_servers()
        notes: list[str] = []
        dropped = False
        reloaded: int | None = None
        with locked(self.layout.apply_lock):
            targets: list[tuple[str, broker.BrokerLayout, str | None, int | None]] = []
            if self.settings.direct:
                home = GatewayApp(self.settings).mqtt_home
                targets.append(("gateway", broker.BrokerLayout(home), None, None))
            if self.settings.runs_mosquitto:
                owner = service_user("mosquitto")
                targets.append(("mosquitto", self.broker_layout, owner, self.broker_pid()))
            for name, layout, owner, pid in targets:
                text = _read(layout.password_file)
                kept = "".join(
                    line
                    for line in text.splitlines(keepends=True)
                    if line.split(":", 1)[0] != username
                )
                if kept == text:
                    notes.append(f"{name}: {username} was not in its password file")
                    continue
                if name == "mosquitto" and pid is None:
                    notes.append(f"{name}: not running, `dev up` writes the files")
                    continue
                broker.BrokerFiles(kept, _read(layout.acl_file)).install(layout, owner)
                dropped = True
                if pid is not None:
                    broker.reload_broker(pid)
                    reloaded = pid
                notes.append(f"{name}: dropped from the installed password_file")
        return BrokerSync(dropped, reloaded, (username,) if dropped else (), "; ".join(notes))

    # -- devices --------------------------------------------------------------------------

    def add_device(self, device_id: str) -> tuple[IssuedDevice, BrokerSync]:
        """Registers a device and, in secured mode with the broker running, lets it in now.

        The policy is checked first (it must load, and the id must be neither reserved nor
        declared as another kind), so a device is never stored that the broker could not take.
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
        # Also unsecured: a device stored under a reserved name would break the next secured start.
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

    # -- a cluster the stack does not run (compose.yaml) ----------------------------------

    def adopt_passwords(self, passwords: Mapping[str, str]) -> tuple[str, ...]:
        """Stores the passwords a deployment hands its services itself (compose's ``.env``)
        in place of generated ones; returns the principals whose password changed. The next
        :meth:`apply` sets their SCRAM credentials and MQTT logins to these passwords."""
        self.require_secure("adopting passwords")
        with locked(self.layout.apply_lock):
            return tuple(
                name
                for name, password in sorted(passwords.items())
                if self.secrets.put(name, password)
            )

    def prepare_gateway(self, progress: Progress = _quiet) -> None:
        """Writes the gateway's MQTT files (the CA's certificate for ``settings.host``, the
        logins) as ``dev up`` does before it starts a gateway; for gateways that read them
        from a shared folder (compose's volume)."""
        self.require_secure("preparing the gateway's MQTT files")
        GatewayApp(self.settings).prepare(progress)

    def create_topics(self, progress: Progress = _quiet) -> None:
        """Creates the platform's missing topics as the admin (replication and min ISR of
        ``settings``), as Kafka's first node does on the local stack."""
        self.require_secure("creating topics")
        create_topics(kafka_acls.admin_client(self.kafka_client(ADMIN)), self.settings, progress)

    # -- everything -----------------------------------------------------------------------

    def apply(self, *, dry_run: bool = False, progress: Progress = _quiet) -> ApplyReport:
        """Makes Kafka and Mosquitto enforce the effective policy (module docstring)."""
        self.require_secure("`policy apply`")
        self.require_secured_servers()
        with locked(self.layout.apply_lock):
            policy = self.effective()
            names = credentialed_principals(policy)
            credentials = self.secrets.ensure(names, dry_run=True)
            files = self.broker_files(policy, credentials)
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
                progress(f"mqtt: {sync.note}")
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


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
