"""``check(policy)``: findings a human should look at before applying a policy.

Findings never change decisions; they point at rules that name unknown principals, can
never match, or never have an effect because another rule covers them. Shadowing claims
are sound: a rule is reported as shadowed or redundant only when coverage is certain
(some complex overlaps are not detected).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from policy._membership import GROUP_PREFIX, ROLE_PREFIX, Membership
from policy.model import (
    WILDCARD,
    Effect,
    HttpTarget,
    KafkaOperation,
    KafkaResourceType,
    KafkaTarget,
    MqttTarget,
    PatternType,
    Policy,
    Rule,
    Target,
)
from policy.topics import covers

__all__ = ["Finding", "FindingKind", "check"]

_ALL_OPS = frozenset(KafkaOperation)
_APPLICABLE: dict[KafkaResourceType, frozenset[KafkaOperation]] = {
    KafkaResourceType.TOPIC: frozenset(
        {
            KafkaOperation.READ,
            KafkaOperation.WRITE,
            KafkaOperation.CREATE,
            KafkaOperation.DELETE,
            KafkaOperation.ALTER,
            KafkaOperation.DESCRIBE,
            KafkaOperation.DESCRIBE_CONFIGS,
            KafkaOperation.ALTER_CONFIGS,
        }
    ),
    KafkaResourceType.GROUP: frozenset(
        {KafkaOperation.READ, KafkaOperation.DESCRIBE, KafkaOperation.DELETE}
    ),
    KafkaResourceType.TRANSACTIONAL_ID: frozenset({KafkaOperation.WRITE, KafkaOperation.DESCRIBE}),
    KafkaResourceType.CLUSTER: frozenset(
        {
            KafkaOperation.CREATE,
            KafkaOperation.ALTER,
            KafkaOperation.DESCRIBE,
            KafkaOperation.DESCRIBE_CONFIGS,
            KafkaOperation.ALTER_CONFIGS,
            KafkaOperation.IDEMPOTENT_WRITE,
        }
    ),
}
"""Operations Kafka checks on each resource type (besides ALL)."""


class FindingKind(StrEnum):
    UNKNOWN_PRINCIPAL = "unknown-principal"
    UNKNOWN_GROUP = "unknown-group"
    UNKNOWN_ROLE = "unknown-role"
    NEVER_MATCHES = "never-matches"
    SHADOWED = "shadowed"
    REDUNDANT = "redundant"
    CLIENT_ID_PATTERN = "client-id-pattern"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem; ``line`` points into the policy file when known."""

    kind: FindingKind
    message: str
    line: int | None
    rule: Rule | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.kind.value}: {self.message}"


def _effective_ops(target: KafkaTarget, effect: Effect) -> frozenset[KafkaOperation]:
    ops = set(target.operations)
    if KafkaOperation.ALL in ops:
        return _ALL_OPS
    if effect is Effect.ALLOW:
        if ops & {
            KafkaOperation.READ,
            KafkaOperation.WRITE,
            KafkaOperation.DELETE,
            KafkaOperation.ALTER,
        }:
            ops.add(KafkaOperation.DESCRIBE)
        if KafkaOperation.ALTER_CONFIGS in ops:
            ops.add(KafkaOperation.DESCRIBE_CONFIGS)
    return frozenset(ops)


def _topic_covers(outer: str, inner: str) -> bool:
    # A placeholder in the first level may become a '$' name, which wildcards never match.
    if inner.split("/", maxsplit=1)[0] in ("%u", "%c") and outer.split("/", maxsplit=1)[0] in (
        "+",
        "#",
    ):
        return False
    return covers(outer, inner)


def _all_topics_covered(outer: tuple[str, ...] | None, inner: tuple[str, ...] | None) -> bool:
    if outer is None:
        return True
    if inner is None:
        return "#" in outer
    return all(any(_topic_covers(o, i) for o in outer) for i in inner)


def _device_covers(outer: str, inner: str) -> bool:
    if outer in (WILDCARD, inner):
        return True
    return outer.count("*") == 1 and outer.endswith("*") and inner.startswith(outer[:-1])


def _kafka_name_covers(outer: KafkaTarget, name: str, pattern: PatternType) -> bool:
    for candidate in outer.names:
        if outer.pattern_type is PatternType.LITERAL:
            if candidate == WILDCARD or (pattern is PatternType.LITERAL and candidate == name):
                return True
        elif name != WILDCARD and name.startswith(candidate):
            return True
    return False


def _target_covers(
    outer: Target, inner: Target, outer_effect: Effect, inner_effect: Effect
) -> bool:
    if isinstance(outer, MqttTarget) and isinstance(inner, MqttTarget):
        return inner.actions <= outer.actions and _all_topics_covered(outer.topics, inner.topics)
    if isinstance(outer, KafkaTarget) and isinstance(inner, KafkaTarget):
        return (
            outer.resource_type is inner.resource_type
            and outer.host in (WILDCARD, inner.host)
            and _effective_ops(inner, inner_effect) <= _effective_ops(outer, outer_effect)
            and all(_kafka_name_covers(outer, n, inner.pattern_type) for n in inner.names)
        )
    if isinstance(outer, HttpTarget) and isinstance(inner, HttpTarget):
        if outer.devices is not None:
            if inner.devices is None:
                if WILDCARD not in outer.devices:
                    return False
            elif not all(any(_device_covers(o, i) for o in outer.devices) for i in inner.devices):
                return False
        return _all_topics_covered(outer.topics, inner.topics)
    return False


def _principals_cover(membership: Membership, outer: Rule, inner: Rule) -> bool:
    outer_members = membership.rule_members(outer)
    if outer_members is None:
        return True
    inner_members = membership.rule_members(inner)
    return inner_members is not None and inner_members <= outer_members


def _declaration_findings(policy: Policy) -> list[Finding]:
    declared = {p.id for p in policy.principals}
    groups = {g.name for g in policy.groups}
    roles = {r.name for r in policy.roles}
    unknown = FindingKind.UNKNOWN_PRINCIPAL
    found = [
        Finding(unknown, f"super user {user!r} is not declared", None)
        for user in sorted(policy.super_users - declared)
    ]
    for p in policy.principals:
        found.extend(
            Finding(FindingKind.UNKNOWN_GROUP, f"{p.id!r} is in undeclared group {g!r}", p.line)
            for g in p.groups
            if g not in groups
        )
        found.extend(
            Finding(FindingKind.UNKNOWN_ROLE, f"{p.id!r} holds undeclared role {r!r}", p.line)
            for r in p.roles
            if r not in roles
        )
    for g in policy.groups:
        found.extend(
            Finding(
                FindingKind.UNKNOWN_ROLE, f"group {g.name!r} grants undeclared role {r!r}", g.line
            )
            for r in g.roles
            if r not in roles
        )
    return found


def _selector_findings(policy: Policy, membership: Membership) -> list[Finding]:
    known = {
        GROUP_PREFIX: ({g.name for g in policy.groups}, FindingKind.UNKNOWN_GROUP),
        ROLE_PREFIX: ({r.name for r in policy.roles}, FindingKind.UNKNOWN_ROLE),
        "": ({p.id for p in policy.principals}, FindingKind.UNKNOWN_PRINCIPAL),
    }
    found: list[Finding] = []
    for rule in policy.rules:
        for selector in rule.principals:
            if selector == WILDCARD:
                continue
            prefix = next((p for p in (GROUP_PREFIX, ROLE_PREFIX) if selector.startswith(p)), "")
            names, kind = known[prefix]
            if selector[len(prefix) :] not in names:
                message = f"rule {rule.label} names undeclared {selector!r}"
                found.append(Finding(kind, message, rule.line, rule))
        members = membership.rule_members(rule)
        if members is not None and not members:
            message = f"rule {rule.label} applies to no declared principal"
            found.append(Finding(FindingKind.NEVER_MATCHES, message, rule.line, rule))
    return found


def _rule_findings(rule: Rule) -> list[Finding]:
    target = rule.target
    found: list[Finding] = []
    if isinstance(target, KafkaTarget) and KafkaOperation.ALL not in target.operations:
        useless = target.operations - _APPLICABLE[target.resource_type]
        if useless:
            names = ", ".join(sorted(op.value for op in useless))
            kind = target.resource_type.value
            found.append(
                Finding(
                    FindingKind.NEVER_MATCHES,
                    f"rule {rule.label}: Kafka never checks {names} on a {kind}",
                    rule.line,
                    rule,
                )
            )
    if isinstance(target, MqttTarget) and any("%c" in t.split("/") for t in target.topics):
        found.append(
            Finding(
                FindingKind.CLIENT_ID_PATTERN,
                f"rule {rule.label} uses %c: clients choose their client id, so prefer %u "
                "(or make Mosquitto use the username as client id)",
                rule.line,
                rule,
            )
        )
    return found


def check(policy: Policy) -> tuple[Finding, ...]:
    """All findings, in file order per kind. An empty result means nothing to report."""
    membership = Membership(policy)
    found = _declaration_findings(policy) + _selector_findings(policy, membership)
    rules = policy.rules
    for index, rule in enumerate(rules):
        found.extend(_rule_findings(rule))
        for other_index, other in enumerate(rules):
            if other_index == index or not _principals_cover(membership, other, rule):
                continue
            if other.effect is Effect.DENY and rule.effect is Effect.ALLOW:
                if _target_covers(other.target, rule.target, other.effect, rule.effect):
                    found.append(
                        Finding(
                            FindingKind.SHADOWED,
                            f"allow rule {rule.label} never allows anything: "
                            f"deny rule {other.label} covers it",
                            rule.line,
                            rule,
                        )
                    )
                    break
            elif other.effect is rule.effect and _target_covers(
                other.target, rule.target, other.effect, rule.effect
            ):
                mutual = _principals_cover(membership, rule, other) and _target_covers(
                    rule.target, other.target, rule.effect, other.effect
                )
                if mutual and other_index > index:
                    continue  # equivalent rules: report only the later one
                found.append(
                    Finding(
                        FindingKind.REDUNDANT,
                        f"rule {rule.label} is covered by rule {other.label}",
                        rule.line,
                        rule,
                    )
                )
                break
    return tuple(found)
