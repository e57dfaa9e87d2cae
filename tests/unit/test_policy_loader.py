"""Loading the policy file: the example loads, and every malformed input names its line."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from policy import (
    Effect,
    KafkaOperation,
    KafkaTarget,
    MqttAction,
    MqttTarget,
    PatternType,
    Policy,
    PolicyLoadError,
    PrincipalError,
    PrincipalKind,
    dump_policy,
    load_policy,
    loads_policy,
    validate_principal_id,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "policy.example.yaml"


def test_the_commented_example_loads() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.source == str(EXAMPLE)
    assert {p.kind for p in policy.principals} == set(PrincipalKind)
    assert "ops-admin" in policy.super_users
    ids = [rule.id for rule in policy.rules]
    assert "device-publishes-own-telemetry" in ids
    assert all(rule.line for rule in policy.rules)
    assert [rule.line for rule in policy.rules] == sorted(rule.line or 0 for rule in policy.rules)


def test_round_trip_through_dump() -> None:
    policy = load_policy(EXAMPLE)
    assert loads_policy(dump_policy(policy)) == policy


def test_empty_files_are_empty_policies() -> None:
    assert loads_policy("") == Policy()
    assert loads_policy("# nothing yet\n") == Policy()


def test_rule_shapes() -> None:
    policy = loads_policy(
        dedent(
            """\
            principals:
              - {id: svc, kind: service}
            rules:
              - effect: allow
                principals: [svc]
                mqtt: {actions: publish, topics: "a/#"}
              - effect: DENY
                principals: ["*"]
                kafka:
                  resource: topic
                  pattern: prefixed
                  names: [iot.]
                  operations: [describe-configs, AlterConfigs]
              - effect: allow
                principals: [svc]
                kafka: {resource: cluster, operations: [IdempotentWrite]}
            """
        )
    )
    mqtt, kafka, cluster = policy.rules
    assert mqtt.target == MqttTarget(frozenset({MqttAction.PUBLISH}), ("a/#",))
    assert kafka.effect is Effect.DENY
    assert isinstance(kafka.target, KafkaTarget)
    assert kafka.target.pattern_type is PatternType.PREFIXED
    assert kafka.target.operations == {
        KafkaOperation.DESCRIBE_CONFIGS,
        KafkaOperation.ALTER_CONFIGS,
    }
    assert isinstance(cluster.target, KafkaTarget)
    assert cluster.target.names == ("kafka-cluster",)


def test_role_rules_are_selected_by_role() -> None:
    policy = loads_policy(
        dedent(
            """\
            roles:
              reader:
                rules:
                  - {effect: allow, http: {devices: ["*"]}}
            """
        )
    )
    assert policy.rules[0].principals == ("role:reader",)


def lines(*text: str) -> str:
    return "\n".join(text) + "\n"


RULE_A = ("rules:", "  - effect: allow", "    principals: [a]")
BAD_FILES = [
    # (yaml, line, text in the message)
    (lines("principals: []", "whatever: 1"), 2, "unknown key 'whatever'"),
    (lines("principals:", "  - {id: a, kind: device, colour: red}"), 2, "unknown key 'colour'"),
    (
        lines(
            "principals:",
            "  - {id: a, kind: device}",
            "  - {id: b, kind: device}",
            "  - {id: a, kind: service}",
        ),
        4,
        "duplicate principal 'a' (first on line 2)",
    ),
    (lines("rules: []", "rules: []"), 2, "duplicate key 'rules'"),
    (lines("principals:", "  - {id: 'a,b', kind: device}"), 2, "','"),
    (lines("principals:", "  - {id: 'a;b', kind: device}"), 2, "';'"),
    (lines("principals:", "  - {id: 'dev/1', kind: device}"), 2, "'/'"),
    (lines("principals:", "  - {id: 'dev+', kind: device}"), 2, "'+'"),
    (lines("principals:", "  - {id: 'dev#', kind: device}"), 2, "'#'"),
    (lines("principals:", '  - {id: "dev\\0x", kind: device}'), 2, "NUL"),
    (lines("principals:", '  - {id: "dev\\udc80", kind: device}'), 2, "UTF-8"),
    (lines("principals:", "  - {id: a, kind: robot}"), 2, "unknown kind 'robot'"),
    (
        lines(*RULE_A, "    mqtt: {actions: [publish], topics: ['a/#/b']}"),
        4,
        "'#' must be the last level",
    ),
    (
        lines(*RULE_A, "    mqtt: {actions: [publish], topics: ['a/x%u']}"),
        4,
        "%u must be a whole topic level",
    ),
    (
        lines(*RULE_A, "    mqtt:", "      actions: [publish, read]", "      topics: [a]"),
        5,
        "unknown MQTT action 'read'",
    ),
    (
        lines(
            *RULE_A,
            "    kafka:",
            "      resource: topic",
            "      names: [t]",
            "      operations: [READ, SNEAK]",
        ),
        7,
        "unknown Kafka operation 'SNEAK'",
    ),
    (
        lines(*RULE_A, "    kafka: {resource: queue, names: [t], operations: [READ]}"),
        4,
        "unknown Kafka resource 'queue'",
    ),
    (
        lines(
            *RULE_A,
            "    kafka: {resource: topic, pattern: prefixed, names: ['*'], operations: [READ]}",
        ),
        4,
        "only with pattern: literal",
    ),
    (
        lines(*RULE_A, "    kafka: {resource: cluster, names: [other], operations: [ALTER]}"),
        4,
        "kafka-cluster",
    ),
    (
        lines("rules:", "  - effect: maybe", "    principals: [a]", "    http: {devices: [x]}"),
        2,
        "unknown effect",
    ),
    (
        lines("rules:", "  - effect: allow", "    http: {devices: [x]}"),
        2,
        "needs the key 'principals'",
    ),
    (
        lines(*RULE_A, "    http: {devices: [x]}", "    mqtt: {actions: [publish], topics: [a]}"),
        2,
        "exactly one of",
    ),
    (
        lines(
            "rules:",
            "  - effect: allow",
            "    principals: ['group:a b']",
            "    http: {devices: [x]}",
        ),
        3,
        "group name",
    ),
    (lines(*RULE_A, "    http: {topics: ['%c/x']}"), 4, "%c has no meaning"),
    (
        lines(
            "roles:",
            "  r:",
            "    rules:",
            "      - effect: allow",
            "        principals: [a]",
            "        http: {devices: [x]}",
        ),
        5,
        "apply to its holders",
    ),
    (lines("super_users: ['root;x']"), 1, "';'"),
    (lines("version: 2"), 1, "unsupported policy version"),
    (lines("rules: ["), 2, "not valid YAML"),
    (
        lines(
            "rules:",
            "  - {id: r, effect: allow, principals: [a], http: {devices: [x]}}",
            "  - {id: r, effect: deny, principals: [a], http: {devices: [x]}}",
        ),
        3,
        "duplicate rule id 'r'",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD_FILES)
def test_malformed_policies_fail_with_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        loads_policy(text, source="policy.yaml")
    assert caught.value.line == line
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"policy.yaml:{line}:")


def test_invalid_utf8_bytes_fail_with_the_line() -> None:
    with pytest.raises(PolicyLoadError) as caught:
        loads_policy(b"principals:\n  - {id: dev-\xff, kind: device}\n")
    assert caught.value.line == 2


def test_nul_in_the_stream_fails_with_the_line() -> None:
    with pytest.raises(PolicyLoadError) as caught:
        loads_policy("version: 1\nrules: [\x00]\n")
    assert caught.value.line == 2


@pytest.mark.parametrize(
    "bad",
    ["", "*", "a b", "a\tb", "a:b", "x" * 256, "\x07bell", 7, None],
)
def test_principal_ids_are_refused(bad: object) -> None:
    with pytest.raises(PrincipalError):
        validate_principal_id(bad)


@pytest.mark.parametrize("good", ["dev-0001", "sensor_7.kitchen", "Gerät-ä", "User@site"])
def test_principal_ids_are_accepted(good: str) -> None:
    assert validate_principal_id(good) == good
