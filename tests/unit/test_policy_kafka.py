"""Kafka: the ACL bindings the policy implies decide like the engine (checked against a model
of StandardAuthorizer), and map one-to-one onto confluent-kafka's AclBinding."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import (
    AclBinding,
    Authorizer,
    Effect,
    Group,
    KafkaOperation,
    KafkaResource,
    KafkaResourceType,
    KafkaTarget,
    PatternType,
    Permission,
    Policy,
    Principal,
    PrincipalKind,
    Role,
    Rule,
    acl_bindings,
    load_policy,
    plan_acl_changes,
    super_users_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "policy.example.yaml"
Op = KafkaOperation
TOPIC, GROUP = KafkaResourceType.TOPIC, KafkaResourceType.GROUP


def test_bindings_for_the_example() -> None:
    policy = load_policy(EXAMPLE)
    bindings = acl_bindings(policy)
    assert bindings == tuple(sorted(set(bindings)))
    assert (
        AclBinding(
            TOPIC,
            "iot.telemetry.v1",
            PatternType.LITERAL,
            "User:gateway",
            "*",
            Op.WRITE,
            Permission.ALLOW,
        )
        in bindings
    )
    assert (
        AclBinding(
            KafkaResourceType.CLUSTER,
            "kafka-cluster",
            PatternType.LITERAL,
            "User:gateway",
            "*",
            Op.IDEMPOTENT_WRITE,
            Permission.ALLOW,
        )
        in bindings
    )
    assert (
        AclBinding(
            TOPIC,
            "iot.telemetry.dlq",
            PatternType.LITERAL,
            "User:*",
            "*",
            Op.DELETE,
            Permission.DENY,
        )
        in bindings
    )
    assert not any(b.principal == "User:dev-0001" for b in bindings)  # devices have no Kafka rules
    assert super_users_config(policy) == "User:ops-admin"


def test_groups_and_roles_expand_to_members() -> None:
    policy = Policy(
        principals=(
            Principal("a", PrincipalKind.SERVICE, groups=("g",)),
            Principal("b", PrincipalKind.SERVICE, roles=("r",)),
            Principal("c", PrincipalKind.SERVICE),
        ),
        groups=(Group("g", roles=("r",)),),
        roles=(Role("r"),),
        rules=(
            Rule(
                Effect.ALLOW,
                ("role:r", "c"),
                KafkaTarget(TOPIC, ("t",), PatternType.LITERAL, frozenset({Op.READ}), "10.0.0.1"),
            ),
        ),
    )
    assert [(b.principal, b.host) for b in acl_bindings(policy)] == [
        ("User:a", "10.0.0.1"),
        ("User:b", "10.0.0.1"),
        ("User:c", "10.0.0.1"),
    ]


@pytest.mark.parametrize(
    ("kind", "confluent_name"),
    [
        (KafkaResourceType.TOPIC, "TOPIC"),
        (KafkaResourceType.GROUP, "GROUP"),
        (KafkaResourceType.TRANSACTIONAL_ID, "TRANSACTIONAL_ID"),
        (KafkaResourceType.CLUSTER, "BROKER"),  # librdkafka's name for Kafka's CLUSTER
    ],
)
def test_to_confluent_is_one_to_one(kind: KafkaResourceType, confluent_name: str) -> None:
    from confluent_kafka.admin import AclPermissionType, ResourcePatternType, ResourceType  # noqa: PLC0415

    binding = AclBinding(
        kind, "n", PatternType.PREFIXED, "User:x", "*", Op.DESCRIBE_CONFIGS, Permission.DENY
    )
    converted = binding.to_confluent()
    assert converted.restype is ResourceType[confluent_name]
    assert converted.name == "n"
    assert converted.resource_pattern_type is ResourcePatternType.PREFIXED
    assert (converted.principal, converted.host) == ("User:x", "*")
    assert converted.operation.name == "DESCRIBE_CONFIGS"
    assert converted.permission_type is AclPermissionType.DENY
    assert AclBinding.from_confluent(converted) == binding


def test_plan_acl_changes() -> None:
    keep = AclBinding(TOPIC, "t", PatternType.LITERAL, "User:a", "*", Op.READ, Permission.ALLOW)
    old = AclBinding(TOPIC, "old", PatternType.LITERAL, "User:a", "*", Op.READ, Permission.ALLOW)
    new = AclBinding(TOPIC, "new", PatternType.LITERAL, "User:a", "*", Op.READ, Permission.ALLOW)
    changes = plan_acl_changes([keep, old], [keep, new])
    assert (changes.create, changes.delete) == ((new,), (old,))


# --- property: bindings + super.users decide like the engine -------------------------------

_DESCRIBE_IMPLIED = {Op.READ, Op.WRITE, Op.DELETE, Op.ALTER}


def standard_authorizer(
    bindings: tuple[AclBinding, ...],
    super_users: str,
    principal: str,
    host: str,
    op: KafkaOperation,
    kind: KafkaResourceType,
    name: str,
) -> bool:
    """A model of Kafka's StandardAuthorizer over plain bindings, written from its spec."""
    kafka_principal = f"User:{principal}"
    if kafka_principal in super_users.split(";"):
        return True
    matching = [
        b
        for b in bindings
        if b.resource_type is kind
        and b.principal in (kafka_principal, "User:*")
        and b.host in (host, "*")
        and (
            (b.pattern_type is PatternType.LITERAL and b.name in (name, "*"))
            or (b.pattern_type is PatternType.PREFIXED and name.startswith(b.name))
        )
    ]
    if any(b.permission is Permission.DENY and b.operation in (op, Op.ALL) for b in matching):
        return False
    allowing = {op, Op.ALL}
    if op is Op.DESCRIBE:
        allowing |= _DESCRIBE_IMPLIED
    if op is Op.DESCRIBE_CONFIGS:
        allowing.add(Op.ALTER_CONFIGS)
    return any(b.permission is Permission.ALLOW and b.operation in allowing for b in matching)


NAMES = st.sampled_from(["t", "t1", "tx", "u", "*"])
kafka_rules = st.builds(
    lambda effect, who, target: Rule(effect, tuple(who), target),
    st.sampled_from(list(Effect)),
    st.lists(
        st.sampled_from(["*", "a", "b", "group:g", "role:r", "ghost"]), min_size=1, max_size=2
    ),
    st.builds(
        KafkaTarget,
        st.sampled_from([TOPIC, GROUP]),
        st.lists(NAMES, min_size=1, max_size=2).map(tuple),
        st.sampled_from(list(PatternType)),
        st.sets(st.sampled_from(list(Op)), min_size=1, max_size=3).map(frozenset),
        st.sampled_from(["*", "10.0.0.1"]),
    ).filter(lambda t: not (t.pattern_type is PatternType.PREFIXED and "*" in t.names)),
)
kafka_policies = st.builds(
    lambda rules, supers: Policy(
        principals=(
            Principal("a", PrincipalKind.SERVICE, groups=("g",)),
            Principal("b", PrincipalKind.SERVICE, roles=("r",)),
        ),
        groups=(Group("g"),),
        roles=(Role("r"),),
        rules=tuple(rules),
        super_users=frozenset(supers),
    ),
    st.lists(kafka_rules, max_size=6),
    st.sets(st.sampled_from(["a", "b"]), max_size=1),
)


@settings(max_examples=300, deadline=None)
@given(kafka_policies)
def test_kafka_decides_like_the_engine_with_the_generated_bindings(policy: Policy) -> None:
    bindings = acl_bindings(policy)
    supers = super_users_config(policy)
    engine = Authorizer(policy)
    for principal in ("a", "b", "ghost", "stranger"):
        for host in ("10.0.0.1", "10.0.0.2"):
            for kind in (TOPIC, GROUP):
                for name in ("t", "t1", "tx", "u", "v", "*"):
                    for op in Op:
                        if op is Op.ALL:
                            continue  # requests name a concrete operation
                        expected = engine.authorize(
                            principal, op, KafkaResource(kind, name), host=host
                        )
                        got = standard_authorizer(bindings, supers, principal, host, op, kind, name)
                        assert got == expected.allowed, (principal, host, kind, name, op, bindings)
