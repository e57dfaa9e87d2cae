"""Secured Kafka (SASL/SCRAM-SHA-512 + StandardAuthorizer), against the real broker.

One isolated secured stack with its own policy file (``IOT_POLICY_FILE``) serves every test
of this module. Proves: a principal without WRITE gets TOPIC_AUTHORIZATION_FAILED on produce
and one without READ on consume, from the broker itself; clients without (valid) SASL
credentials get nothing; ``policy apply`` deletes the binding of a removed rule; a malformed
policy changes nothing at all (ACLs, SCRAM users, Mosquitto files, secrets); the admin can
still do everything.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from contracts.kafka import KafkaClientSettings
from devstack import ADMIN, DevStackSettings, SecuredStack
from iotctl.main import main
from policy import AclBinding, KafkaOperation
from security.kafka import read_state
from tests.stacks import isolated_settings, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TOPIC = "sec.data"
POLICY = """\
version: 1
principals:
  - {id: writer, kind: service}
  - {id: reader, kind: service}
  - {id: stranger, kind: service}
rules:
  - id: writer-writes
    effect: allow
    principals: [writer]
    kafka: {resource: topic, names: [sec.data], operations: [WRITE]}
  - id: reader-reads
    effect: allow
    principals: [reader]
    kafka: {resource: topic, names: [sec.data], operations: [READ]}
  - id: groups
    effect: allow
    principals: [reader, stranger]
    kafka: {resource: group, pattern: prefixed, names: [sec-], operations: [READ]}
  - id: stranger-only-describes
    effect: allow
    principals: [stranger]
    kafka: {resource: topic, names: [sec.data], operations: [DESCRIBE]}
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStackSettings]:
    root = tmp_path_factory.mktemp("secured-kafka")
    (root / "policy.yaml").write_text(POLICY)
    settings = isolated_settings(
        root / "stack", secure=True, policy_file=root / "policy.yaml", gateway_mode="bridge"
    )
    with running_stack(settings):
        admin = _admin(settings)
        admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])[
            TOPIC
        ].result(timeout=30)
        yield settings


def _admin(settings: DevStackSettings) -> AdminClient:
    return AdminClient(SecuredStack(settings).kafka_client(ADMIN).confluent_config())


def _client(settings: DevStackSettings, principal: str) -> KafkaClientSettings:
    return SecuredStack(settings).kafka_client(principal)


def _produce(client: KafkaClientSettings, value: bytes) -> KafkaError | None:
    """Produces one record; the delivery error (None when acknowledged)."""
    errors: list[KafkaError | None] = []
    producer = Producer(
        {**client.confluent_config(), "message.timeout.ms": 10_000, "enable.idempotence": False}
    )
    producer.produce(TOPIC, value, on_delivery=lambda error, _msg: errors.append(error))
    producer.flush(15)
    assert errors, "no delivery report"
    return errors[0]


def _consume(client: KafkaClientSettings) -> tuple[list[bytes], KafkaError | None]:
    """Reads the topic from the start for a few seconds: values, or the first error."""
    consumer = Consumer(
        {
            **client.confluent_config(),
            "group.id": f"sec-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([TOPIC])
    values: list[bytes] = []
    try:
        for _ in range(40):
            message = consumer.poll(0.25)
            if message is None:
                if values:
                    break
                continue
            error = message.error()
            if error is not None:
                return values, error
            values.append(message.value() or b"")
    finally:
        consumer.close()
    return values, None


def _env(settings: DevStackSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.policy_file is not None
    for name, value in {
        "IOT_SECURE": "true",
        "IOT_GATEWAY_MODE": "bridge",
        "IOT_LOCAL_DIR": str(settings.state_dir),
        "IOT_POLICY_FILE": str(settings.policy_file),
        "IOT_KAFKA_PORT": str(settings.kafka_port),
        "IOT_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
        "IOT_MQTT_PORT": str(settings.mqtt_port),
        "IOT_MQTTS_PORT": str(settings.mqtts_port),
        "IOT_PG_PORT": str(settings.pg_port),
    }.items():
        monkeypatch.setenv(name, value)


def _bindings(settings: DevStackSettings) -> frozenset[AclBinding]:
    return read_state(_admin(settings)).bindings


def _eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """ACL changes commit on the controller, then reach the broker's authorizer."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_produce_without_write_is_refused_by_the_broker(secured: DevStackSettings) -> None:
    assert _produce(_client(secured, "writer"), b"from-writer") is None
    error = _produce(_client(secured, "reader"), b"from-reader")
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_consume_without_read_is_refused_by_the_broker(secured: DevStackSettings) -> None:
    assert _produce(_client(secured, "writer"), b"for-readers") is None
    values, error = _consume(_client(secured, "reader"))
    assert error is None
    assert b"for-readers" in values
    values, error = _consume(_client(secured, "stranger"))
    assert values == []
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_clients_without_valid_credentials_get_nothing(secured: DevStackSettings) -> None:
    wrong = KafkaClientSettings.model_validate(
        {**_client(secured, "writer").model_dump(), "sasl_password": "not-the-password"}
    )
    plain = KafkaClientSettings(bootstrap=secured.kafka_bootstrap)
    for client in (wrong, plain):
        with pytest.raises(KafkaException):
            AdminClient({**client.confluent_config(), "socket.timeout.ms": 3000}).list_topics(
                timeout=3
            )


def test_apply_after_removing_a_rule_deletes_its_binding(
    secured: DevStackSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert secured.policy_file is not None
    reader_read = next(
        b
        for b in _bindings(secured)
        if b.principal == "User:reader" and b.operation is KafkaOperation.READ and b.name == TOPIC
    )
    _env(secured, monkeypatch)
    without = POLICY.replace(
        "  - id: reader-reads\n    effect: allow\n    principals: [reader]\n"
        "    kafka: {resource: topic, names: [sec.data], operations: [READ]}\n",
        "",
    )
    assert without != POLICY
    secured.policy_file.write_text(without)
    try:
        assert main(["policy", "apply", "--dry-run"]) == 0
        assert "would delete ACL ALLOW User:reader READ topic:literal:sec.data" in (
            capsys.readouterr().out
        )
        assert reader_read in _bindings(secured)  # a dry run changes nothing
        assert main(["policy", "apply"]) == 0
        assert "did delete ACL ALLOW User:reader READ" in capsys.readouterr().out
        assert _eventually(lambda: reader_read not in _bindings(secured))
        values, error = _consume(_client(secured, "reader"))
        assert values == []
        assert error is not None
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        secured.policy_file.write_text(POLICY)
        assert main(["policy", "apply"]) == 0
    assert _eventually(lambda: reader_read in _bindings(secured))


def _snapshot(settings: DevStackSettings) -> dict[str, Any]:
    stack = SecuredStack(settings)
    state = read_state(_admin(settings))
    layout = stack.broker_layout
    return {
        "bindings": state.bindings,
        "users": state.users,
        "password_file": layout.password_file.read_bytes(),
        "acl_file": layout.acl_file.read_bytes(),
        "secrets": stack.layout.secrets_file.read_bytes(),
    }


def test_a_malformed_policy_changes_nothing(
    secured: DevStackSettings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert secured.policy_file is not None
    _env(secured, monkeypatch)
    before = _snapshot(secured)
    # Valid additions first (a new principal, a new rule), then a typo on line 20: applying
    # "what parses" would create a SCRAM user and a binding; all-or-nothing creates neither.
    broken = POLICY.replace(
        "  - {id: stranger, kind: service}\n",
        "  - {id: stranger, kind: service}\n  - {id: intruder, kind: service}\n",
    ).replace(
        "    principals: [reader, stranger]\n", "    principals: [reader, stranger]\n    oops: 1\n"
    )
    line = broken.splitlines().index("    oops: 1") + 1
    secured.policy_file.write_text(broken)
    try:
        assert main(["policy", "apply"]) == 1
        error = capsys.readouterr().err
        assert f"{secured.policy_file}:{line}: unknown key 'oops'" in error
        assert _snapshot(secured) == before
    finally:
        secured.policy_file.write_text(POLICY)


def test_the_admin_can_still_do_everything(secured: DevStackSettings) -> None:
    admin_client = _client(secured, ADMIN)
    admin = _admin(secured)
    topic = f"sec.admin.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=30
    )
    producer = Producer(admin_client.confluent_config())  # idempotent by default
    producer.produce(topic, b"admin")
    assert producer.flush(15) == 0
    consumer = Consumer(
        {**admin_client.confluent_config(), "group.id": topic, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    try:
        message = None
        for _ in range(40):
            message = consumer.poll(0.25)
            if message is not None:
                break
        assert message is not None
        assert message.error() is None
        assert message.value() == b"admin"
    finally:
        consumer.close()
    assert read_state(admin).users >= {ADMIN, "writer", "reader", "stranger"}
    admin.delete_topics([topic])[topic].result(timeout=30)
