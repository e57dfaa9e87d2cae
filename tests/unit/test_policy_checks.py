"""``check(policy)``: unknown principals, rules that can never match, shadowed rules."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

from policy import FindingKind, check, load_policy, loads_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "policy.example.yaml"


def kinds(text: str) -> list[tuple[FindingKind, int | None]]:
    return [(finding.kind, finding.line) for finding in check(loads_policy(dedent(text)))]


def test_the_example_is_clean() -> None:
    assert check(load_policy(EXAMPLE)) == ()


def test_unknown_principals_groups_and_roles() -> None:
    found = kinds(
        """\
        super_users: [ghost-admin]
        principals:
          - {id: d1, kind: device, groups: [nowhere], roles: [nothing]}
        groups:
          g: {roles: [missing]}
        rules:
          - {effect: allow, principals: [ghost], http: {devices: [x]}}
          - {effect: allow, principals: ["group:nope", "role:nada"], http: {devices: [y]}}
        """
    )
    assert (FindingKind.UNKNOWN_PRINCIPAL, None) in found  # the super user
    assert (FindingKind.UNKNOWN_GROUP, 3) in found
    assert (FindingKind.UNKNOWN_ROLE, 3) in found
    assert (FindingKind.UNKNOWN_ROLE, 5) in found
    assert (FindingKind.UNKNOWN_PRINCIPAL, 7) in found
    assert (FindingKind.UNKNOWN_GROUP, 8) in found
    assert (FindingKind.UNKNOWN_ROLE, 8) in found
    assert (FindingKind.NEVER_MATCHES, 8) in found  # no member, no holder


def policy_text(header: list[str], *rules: str) -> str:
    """``header`` lines, ``rules:``, then one flow-style rule per line."""
    return "\n".join([*header, "rules:", *(f"  - {{{rule}}}" for rule in rules)]) + "\n"


SERVICE = ["principals: [{id: s, kind: service}]"]
ALLOW_S, DENY_S = "effect: allow, principals: [s], ", "effect: deny, principals: [s], "


def test_inapplicable_kafka_operations_never_match() -> None:
    found = kinds(
        policy_text(
            SERVICE,
            ALLOW_S + "kafka: {resource: group, names: [g], operations: [WRITE]}",
            ALLOW_S + "kafka: {resource: cluster, operations: [READ, IDEMPOTENT_WRITE]}",
            ALLOW_S + "kafka: {resource: topic, names: [t], operations: [ALL]}",
        )
    )
    assert found == [(FindingKind.NEVER_MATCHES, 3), (FindingKind.NEVER_MATCHES, 4)]


def test_allow_covered_by_a_deny_is_shadowed() -> None:
    found = kinds(
        policy_text(
            ["principals: [{id: d1, kind: device, groups: [devices]}]", "groups: {devices: {}}"],
            'effect: deny, principals: ["*"], '
            'mqtt: {actions: [publish, subscribe], topics: ["secret/#"]}',
            'effect: allow, principals: ["group:devices"], '
            'mqtt: {actions: [publish], topics: ["secret/+/x"]}',
            'effect: allow, principals: [d1], mqtt: {actions: [publish], topics: ["public/#"]}',
        )
    )
    assert found == [(FindingKind.SHADOWED, 5)]


READ_DENY = DENY_S + "kafka: {resource: topic, names: [t], operations: [READ]}"
READ_ALLOW = ALLOW_S + "kafka: {resource: topic, names: [t], operations: [READ]}"
DENY_ALL = DENY_S + "kafka: {resource: topic, names: ['*'], operations: [ALL]}"


def test_kafka_implication_prevents_a_false_shadowing_claim() -> None:
    # The deny of READ leaves the implied DESCRIBE of the allow in force: not shadowed.
    assert kinds(policy_text(SERVICE, READ_DENY, READ_ALLOW)) == []
    assert kinds(policy_text(SERVICE, READ_DENY, READ_ALLOW, DENY_ALL)) == [
        (FindingKind.REDUNDANT, 3),  # the READ deny is within the ALL deny
        (FindingKind.SHADOWED, 4),  # the allow is entirely denied
    ]


def test_redundant_rules_covered_by_broader_ones() -> None:
    d1 = "effect: allow, principals: [d1], "
    found = kinds(
        policy_text(
            ["principals: [{id: s, kind: service}, {id: d1, kind: device}]"],
            ALLOW_S
            + "kafka: {resource: topic, pattern: prefixed, names: [iot.], operations: [READ]}",
            ALLOW_S + "kafka: {resource: topic, names: [iot.telemetry.v1], operations: [DESCRIBE]}",
            'effect: allow, principals: ["*"], '
            'mqtt: {actions: [publish], topics: ["devices/+/telemetry"]}',
            d1 + 'mqtt: {actions: [publish], topics: ["devices/%u/telemetry"]}',
            d1 + 'http: {devices: ["d*"], topics: ["a/#"]}',
            d1 + 'http: {devices: ["d1"], topics: ["a/b"]}',
            d1 + 'http: {devices: ["d1"], topics: ["a/b"]}',
        )
    )
    # line 4: DESCRIBE is implied by the prefixed READ; line 6: %u is within '+';
    # lines 8 and 9 are within line 7, and identical to each other (reported once each).
    assert found == [
        (FindingKind.REDUNDANT, 4),
        (FindingKind.REDUNDANT, 6),
        (FindingKind.REDUNDANT, 8),
        (FindingKind.REDUNDANT, 9),
    ]


def test_placeholder_in_the_first_level_is_not_claimed_covered_by_a_wildcard() -> None:
    # %u could be a '$' name, which '+' never matches: no redundancy claim.
    found = kinds(
        policy_text(
            ["principals: [{id: d1, kind: device}]"],
            'effect: allow, principals: ["*"], mqtt: {actions: [publish], topics: ["+/x"]}',
            'effect: allow, principals: [d1], mqtt: {actions: [publish], topics: ["%u/x"]}',
        )
    )
    assert found == []


def test_client_id_patterns_are_flagged() -> None:
    text = policy_text(
        [], 'effect: allow, principals: ["*"], mqtt: {actions: [publish], topics: ["c/%c"]}'
    )
    found = check(loads_policy(text))
    assert [f.kind for f in found] == [FindingKind.CLIENT_ID_PATTERN]
    assert "prefer %u" in str(found[0])
