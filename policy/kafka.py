"""Compiles the policy for Kafka's StandardAuthorizer: ACL bindings and ``super.users``.

Pure functions; creating SCRAM users and calling ``AdminClient.create_acls`` /
``delete_acls`` is the caller's job. :class:`AclBinding` maps one-to-one onto
``confluent_kafka.admin.AclBinding`` (see :meth:`AclBinding.to_confluent`).

Guarantee: with these bindings and ``super.users`` = :func:`super_users_config`, Kafka decides
every request of a principal exactly as :class:`Authorizer` does (Kafka principals are
``User:<id>``; selector ``*`` becomes ``User:*``; groups and roles are expanded to their
members, since Kafka has neither).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from policy._membership import Membership
from policy.errors import GenerationError
from policy.model import (
    WILDCARD,
    Effect,
    KafkaOperation,
    KafkaResourceType,
    KafkaTarget,
    PatternType,
    Policy,
)

__all__ = [
    "AclBinding",
    "AclChanges",
    "Permission",
    "acl_bindings",
    "kafka_principal",
    "plan_acl_changes",
    "super_users_config",
]

_CONFLUENT_RESOURCE = {
    KafkaResourceType.TOPIC: "TOPIC",
    KafkaResourceType.GROUP: "GROUP",
    KafkaResourceType.TRANSACTIONAL_ID: "TRANSACTIONAL_ID",
    KafkaResourceType.CLUSTER: "BROKER",  # librdkafka's name for Kafka's CLUSTER (code 4)
}


class Permission(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"


def kafka_principal(principal_id: str) -> str:
    """``User:<id>``; ``*`` becomes the wildcard principal ``User:*``."""
    return f"User:{principal_id}"


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    """One Kafka ACL, field for field like confluent-kafka's ``AclBinding``."""

    resource_type: KafkaResourceType
    name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: KafkaOperation
    permission: Permission

    def to_confluent(self) -> Any:
        """The ``confluent_kafka.admin.AclBinding`` for AdminClient (imported lazily)."""
        admin = importlib.import_module("confluent_kafka.admin")  # optional until used
        return admin.AclBinding(
            admin.ResourceType[_CONFLUENT_RESOURCE[self.resource_type]],
            self.name,
            admin.ResourcePatternType[self.pattern_type.value.upper()],
            self.principal,
            self.host,
            admin.AclOperation[self.operation.value],
            admin.AclPermissionType[self.permission.value],
        )

    @classmethod
    def from_confluent(cls, binding: Any) -> AclBinding:
        """The inverse of :meth:`to_confluent` (e.g. for ``describe_acls`` results)."""
        resource = {v: k for k, v in _CONFLUENT_RESOURCE.items()}[binding.restype.name]
        return cls(
            resource,
            str(binding.name),
            PatternType(binding.resource_pattern_type.name.lower()),
            str(binding.principal),
            str(binding.host),
            KafkaOperation(binding.operation.name),
            Permission(binding.permission_type.name),
        )


def acl_bindings(policy: Policy) -> tuple[AclBinding, ...]:
    """Every binding the policy's Kafka rules imply, deduplicated and sorted."""
    membership = Membership(policy)
    found: set[AclBinding] = set()
    for rule in policy.rules:
        target = rule.target
        if not isinstance(target, KafkaTarget):
            continue
        members = membership.rule_members(rule)
        principals = [WILDCARD] if members is None else sorted(members)
        permission = Permission.DENY if rule.effect is Effect.DENY else Permission.ALLOW
        for principal in principals:
            for name in target.names:
                for operation in target.operations:
                    found.add(
                        AclBinding(
                            target.resource_type,
                            name,
                            target.pattern_type,
                            kafka_principal(principal),
                            target.host,
                            operation,
                            permission,
                        )
                    )
    return tuple(sorted(found))


def super_users_config(policy: Policy) -> str:
    """The broker's ``super.users`` value, e.g. ``User:admin;User:ops`` (sorted)."""
    for user in policy.super_users:
        if ";" in user or "," in user:  # the loader refuses these; guard hand-built policies
            raise GenerationError(f"super user {user!r} cannot be written to super.users")
    return ";".join(kafka_principal(user) for user in sorted(policy.super_users))


@dataclass(frozen=True, slots=True)
class AclChanges:
    """What to do to reach the policy: create these, then delete those."""

    create: tuple[AclBinding, ...]
    delete: tuple[AclBinding, ...]


def plan_acl_changes(existing: Iterable[AclBinding], desired: Iterable[AclBinding]) -> AclChanges:
    """Bindings to create (desired, missing) and delete (present, no longer desired)."""
    have, want = set(existing), set(desired)
    return AclChanges(tuple(sorted(want - have)), tuple(sorted(have - want)))
