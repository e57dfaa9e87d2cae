"""Effective policy, Mosquitto files, the Kafka plan and ``SecuredStack.apply`` with a fake
AdminClient (no services needed)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AclBinding as ConfluentBinding

from devstack import ADMIN, DevStackSettings, SecuredStack
from devstack.mosquitto import Mosquitto
from policy import (
    AclBinding,
    Authorizer,
    KafkaOperation,
    KafkaResourceType,
    MqttTopic,
    PatternType,
    Permission,
    PolicyError,
    PolicyLoadError,
    PrincipalKind,
    hash_password,
    loads_policy,
    verify_password,
)
from policy.mosquitto_acl import MosquittoAcl
from security import (
    ApplyError,
    Credential,
    DeviceError,
    DeviceStore,
    KafkaState,
    NotSecureError,
    PolicyWatch,
    credentialed_principals,
    effective_policy,
    ingest_authorize,
    watched_ingest_authorize,
)
from security import kafka as kafka_acls
from security import mosquitto as broker

POLICY = """\
version: 1
super_users: [ops]
principals:
  - {id: ops, kind: service}
  - {id: gateway, kind: service}
  - {id: dashboard, kind: api_client}
  - {id: sensor-9, kind: device, groups: [devices], roles: [extra]}
groups:
  devices: {roles: [device]}
roles:
  extra: {}
  device:
    rules:
      - id: own-telemetry
        effect: allow
        mqtt: {actions: [publish], topics: ["devices/%u/telemetry"]}
rules:
  - id: gateway-writes
    effect: allow
    principals: [gateway]
    kafka: {resource: topic, names: [t1], operations: [WRITE]}
"""


def test_registered_devices_join_the_devices_group_and_admin_is_a_super_user() -> None:
    policy = effective_policy(loads_policy(POLICY), ["dev-1", "sensor-9"], admin=ADMIN)
    dev = policy.principal("dev-1")
    assert dev is not None
    assert dev.kind is PrincipalKind.DEVICE
    assert dev.groups == ("devices",)
    declared = policy.principal("sensor-9")
    assert declared is not None
    assert declared.roles == ("extra",)  # the file's declaration stands
    assert policy.super_users == {"ops", ADMIN}
    authorizer = Authorizer(policy)
    assert authorizer.authorize("dev-1", "publish", MqttTopic("devices/dev-1/telemetry")).allowed
    assert not authorizer.authorize(
        "dev-1", "publish", MqttTopic("devices/dev-2/telemetry")
    ).allowed
    assert [r.line for r in policy.rules] == [r.line for r in loads_policy(POLICY).rules]


def test_the_devices_group_is_declared_when_the_file_lacks_it() -> None:
    policy = effective_policy(loads_policy("version: 1"), ["d1"], admin=ADMIN)
    assert [group.name for group in policy.groups] == ["devices"]
    assert effective_policy(loads_policy("version: 1"), [], admin=ADMIN).groups == ()


def test_a_registered_device_the_file_declares_as_another_kind_is_refused() -> None:
    with pytest.raises(DeviceError, match="declares it as service"):
        effective_policy(loads_policy(POLICY), ["gateway"], admin=ADMIN)


@pytest.mark.parametrize("name", [ADMIN, "ops", "gateway", "dashboard"])
def test_a_reserved_principal_name_is_refused_as_a_device(name: str) -> None:
    """A device named like the admin, a super user or a service would take its rights (and
    its password line in Mosquitto's file)."""
    with pytest.raises(DeviceError, match=repr(name)):
        effective_policy(loads_policy(POLICY), [name], admin=ADMIN)


def test_services_and_super_users_get_passwords_devices_and_api_clients_do_not() -> None:
    policy = effective_policy(loads_policy(POLICY), ["dev-1"], admin=ADMIN)
    assert credentialed_principals(policy) == (ADMIN, "gateway", "ops")


def test_broker_files_let_in_exactly_the_credentialed_users() -> None:
    policy = effective_policy(loads_policy(POLICY), ["dev-1"], admin=ADMIN)
    hashes = {name: hash_password(name + "-pw") for name in ("admin", "gateway", "ops", "dev-1")}
    files = broker.render(policy, hashes)
    assert files.users == {"admin", "gateway", "ops", "dev-1"}
    for line in files.password_file.splitlines()[1:]:
        name, encoded = line.split(":", 1)
        assert verify_password(name + "-pw", encoded)
    acl = MosquittoAcl.parse(files.acl_file)
    assert acl.allows(
        username="dev-1", client_id="c", topic="devices/dev-1/telemetry", access="write"
    )
    assert not acl.allows(
        username="dev-1", client_id="c", topic="devices/x/telemetry", access="write"
    )
    assert acl.allows(username="admin", client_id="c", topic="any/thing", access="read")


def test_the_gateway_hook_lets_a_device_feed_only_its_own_key() -> None:
    authorize = ingest_authorize(
        Authorizer(effective_policy(loads_policy(POLICY), ["d1"], admin=ADMIN))
    )
    assert authorize("d1", object(), "devices/d1/telemetry") is None
    reason = authorize("d1", object(), "devices/d2/telemetry")
    assert reason is not None
    assert "default deny" in reason
    assert authorize("unknown", object(), "devices/unknown/telemetry") is not None
    assert authorize("d1", object(), "devices/d1/+") is not None  # bad input is a reason


def test_the_watched_hook_follows_registrations_revocations_and_keeps_a_good_policy(
    tmp_path: Path,
) -> None:
    policy_file, devices = tmp_path / "policy.yaml", DeviceStore(tmp_path / "devices.json")
    policy_file.write_text(POLICY)
    now = [0.0]
    watch = PolicyWatch(policy_file, devices.path, check_every_s=5.0, clock=lambda: now[0])
    authorize = watched_ingest_authorize(watch)
    assert authorize("d1", object(), "devices/d1/telemetry") is not None  # not registered

    devices.add("d1")  # a denial looks again at once: no wait for the periodic check
    assert authorize("d1", object(), "devices/d1/telemetry") is None
    assert authorize("d1", object(), "devices/d2/telemetry") is not None

    devices.revoke("d1")  # noticed by the periodic check
    assert authorize("d1", object(), "devices/d1/telemetry") is None
    now[0] += 5.0
    assert authorize("d1", object(), "devices/d1/telemetry") is not None

    devices.add("d1")
    assert authorize("d1", object(), "devices/d1/telemetry") is None
    policy_file.write_text(POLICY + "  - {id: broken, effect: alow}\n")  # the old one stays
    now[0] += 5.0
    assert authorize("d1", object(), "devices/d1/telemetry") is None
    assert authorize("d2", object(), "devices/d2/telemetry") is not None
    policy_file.unlink()  # caught between an editor's rename and its write: the old one stays
    now[0] += 5.0
    assert authorize("d1", object(), "devices/d1/telemetry") is None
    policy_file.write_text(POLICY + "  - {id: broken, effect: alow}\n")
    with pytest.raises(PolicyError):  # but a gateway never starts without a valid policy
        PolicyWatch(policy_file, devices.path)


# -- Kafka plan and execution with a fake AdminClient ------------------------------------


def _done(value: object = None, error: Exception | None = None) -> Future[Any]:
    future: Future[Any] = Future()
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
    return future


class _Description:
    def __init__(self) -> None:
        info = type("Info", (), {"mechanism": kafka_acls.ScramMechanism.SCRAM_SHA_512})
        self.scram_credential_infos = [info]


class FakeAdmin:
    """Records calls in order; answers like confluent-kafka's AdminClient."""

    def __init__(self, users: Iterable[str], bindings: Iterable[AclBinding]) -> None:
        self.users = set(users)
        self.bindings = [b.to_confluent() for b in bindings]
        self.calls: list[tuple[str, list[str]]] = []
        self.fail_on: str | None = None

    def describe_user_scram_credentials(self) -> Future[Any]:
        return _done({user: _Description() for user in self.users})

    def describe_acls(self, _filter: object, request_timeout: float) -> Future[Any]:
        return _done(list(self.bindings))

    def _answer(self, kind: str, items: list[Any]) -> dict[Any, Future[Any]]:
        names = [
            str(getattr(item, "user", None) or getattr(item, "principal", item)) for item in items
        ]
        self.calls.append((kind, names))
        error = KafkaException(KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED))
        failing = self.fail_on == kind
        return {name: _done(error=error if failing else None) for name in names}

    def alter_user_scram_credentials(self, alterations: list[Any]) -> dict[Any, Future[Any]]:
        kind = type(alterations[0]).__name__
        return self._answer(kind, alterations)

    def create_acls(self, bindings: list[Any], request_timeout: float) -> dict[Any, Future[Any]]:
        return self._answer("create_acls", bindings)

    def delete_acls(self, filters: list[Any], request_timeout: float) -> dict[Any, Future[Any]]:
        return self._answer("delete_acls", filters)


def _binding(principal: str, operation: KafkaOperation = KafkaOperation.WRITE) -> AclBinding:
    return AclBinding(
        KafkaResourceType.TOPIC,
        "t1",
        PatternType.LITERAL,
        f"User:{principal}",
        "*",
        operation,
        Permission.ALLOW,
    )


def test_the_plan_creates_refreshes_and_deletes_but_never_touches_the_admin() -> None:
    state = KafkaState(frozenset({ADMIN, "gateway", "retired"}), frozenset({_binding("old")}))
    steps = kafka_acls.plan(
        state, [ADMIN, "gateway", "streams"], [_binding("gateway")], keep_users=[ADMIN]
    )
    assert steps.create_users == ("streams",)
    assert steps.refresh_users == ("gateway",)
    assert steps.delete_users == ("retired",)
    assert steps.acls.create == (_binding("gateway"),)
    assert steps.acls.delete == (_binding("old"),)


def test_read_state_sets_aside_bindings_outside_the_policy_model() -> None:
    admin = FakeAdmin({"gateway"}, [_binding("gateway")])
    foreign = _binding("broker").to_confluent()
    admin.bindings.append(
        ConfluentBinding(
            foreign.restype,
            foreign.name,
            foreign.resource_pattern_type,
            foreign.principal,
            foreign.host,
            kafka_acls.AclOperation.CLUSTER_ACTION,
            foreign.permission_type,
        )
    )
    state = kafka_acls.read_state(admin)  # type: ignore[arg-type]
    assert state.users == {"gateway"}
    assert state.bindings == {_binding("gateway")}
    assert len(state.foreign) == 1
    assert "CLUSTER_ACTION" in state.foreign[0]


def test_execution_order_users_first_then_acl_creations_then_deletions() -> None:
    admin = FakeAdmin(set(), [])
    steps = kafka_acls.plan(
        KafkaState(frozenset({"retired"}), frozenset({_binding("old")})),
        ["gateway"],
        [_binding("gateway")],
    )
    kafka_acls.execute(admin, steps, {"gateway": Credential("gateway", "pw", "h")})  # type: ignore[arg-type]
    assert [kind for kind, _ in admin.calls] == [
        "UserScramCredentialUpsertion",
        "UserScramCredentialDeletion",
        "create_acls",
        "delete_acls",
    ]


def test_a_refusal_by_kafka_is_an_apply_error_naming_what_failed() -> None:
    admin = FakeAdmin(set(), [])
    admin.fail_on = "create_acls"
    steps = kafka_acls.plan(KafkaState(frozenset(), frozenset()), [], [_binding("gateway")])
    with pytest.raises(ApplyError, match="create the ACL") as caught:
        kafka_acls.execute(admin, steps, {})  # type: ignore[arg-type]
    assert caught.value.retriable


# -- SecuredStack.apply without servers --------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[SecuredStack, FakeAdmin]:
    (tmp_path / "policy.yaml").write_text(POLICY)
    settings = DevStackSettings(
        local_dir=tmp_path / "state", secure=True, policy_file=tmp_path / "policy.yaml"
    )
    secured = SecuredStack(settings)
    secured.admin_credential()  # what `dev up` does before formatting Kafka
    admin = FakeAdmin({ADMIN}, [])
    monkeypatch.setattr(kafka_acls, "admin_client", lambda *_a, **_k: admin)
    return secured, admin


def test_apply_creates_users_and_bindings_and_saves_new_passwords(
    stack: tuple[SecuredStack, FakeAdmin],
) -> None:
    secured, admin = stack
    report = secured.apply()
    assert report.kafka.create_users == ("gateway", "ops")
    assert report.kafka.acls.create == (_binding("gateway"),)
    assert set(report.new_secrets) == {"gateway", "ops"}
    assert secured.secrets.get("gateway") is not None
    assert report.mosquitto.reloaded_pid is None  # no broker running here
    assert [kind for kind, _ in admin.calls] == ["UserScramCredentialUpsertion", "create_acls"]
    assert "password" not in str(report.as_dict())


def test_a_dry_run_changes_nothing(stack: tuple[SecuredStack, FakeAdmin]) -> None:
    secured, admin = stack
    before = secured.layout.secrets_file.read_bytes()
    report = secured.apply(dry_run=True)
    assert report.dry_run
    assert report.kafka.create_users == ("gateway", "ops")
    assert admin.calls == []
    assert secured.layout.secrets_file.read_bytes() == before


def test_a_malformed_policy_is_reported_with_its_line_and_changes_nothing(
    stack: tuple[SecuredStack, FakeAdmin],
) -> None:
    secured, admin = stack
    assert secured.settings.policy_file is not None
    text = POLICY.replace("  - {id: gateway, kind: service}\n", "  - {id: gateway, kind: servce}\n")
    secured.settings.policy_file.write_text(text)
    before = secured.layout.secrets_file.read_bytes()
    with pytest.raises(PolicyLoadError) as caught:
        secured.apply()
    assert caught.value.line == 5
    assert admin.calls == []
    assert secured.layout.secrets_file.read_bytes() == before


def test_an_unreachable_kafka_changes_nothing(
    stack: tuple[SecuredStack, FakeAdmin], monkeypatch: pytest.MonkeyPatch
) -> None:
    secured, _ = stack

    def unreachable(*_args: object, **_kwargs: object) -> KafkaState:
        raise ApplyError("Kafka did not answer within 15s")

    monkeypatch.setattr(kafka_acls, "read_state", unreachable)
    before = secured.layout.secrets_file.read_bytes()
    with pytest.raises(ApplyError):
        secured.apply()
    assert secured.layout.secrets_file.read_bytes() == before


def test_apply_needs_secure_mode(tmp_path: Path) -> None:
    with pytest.raises(NotSecureError, match="IOT_SECURE=true"):
        SecuredStack(DevStackSettings(local_dir=tmp_path, secure=False)).apply()


def test_servers_of_the_state_dir_running_unsecured_are_never_touched(
    stack: tuple[SecuredStack, FakeAdmin],
) -> None:
    secured, admin = stack
    config = Path(Mosquitto(secured.settings).config_file)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("listener 1883\nallow_anonymous true\n")
    # A stand-in for a broker started without IOT_SECURE: alive, its config on the command line.
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(config)],
    )
    try:
        pid_file = secured.settings.state_dir / "run" / "mosquitto.pid"
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{process.pid}\n")
        assert secured.broker_pid() == process.pid
        with pytest.raises(NotSecureError, match=r"mosquitto of .* run\(s\) unsecured"):
            secured.apply()
        with pytest.raises(NotSecureError):
            secured.sync_mosquitto()
        assert admin.calls == []
        assert process.poll() is None  # not signalled
    finally:
        process.kill()
        process.wait()
