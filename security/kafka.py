"""Kafka enforcement through confluent-kafka's AdminClient: SCRAM users and ACL bindings.

:func:`read_state` asks the broker for its SCRAM-SHA-512 users and ACL bindings;
:func:`plan` compares them with what the policy wants; :func:`execute` carries the plan out
in a safe order: users first (upserts, then deletions), then ACLs (creations before
deletions, so an access that is kept never disappears in between). Each step is
idempotent; if the broker fails half-way, running the same apply again converges.

Bindings the policy model cannot express (other resource types or operations, e.g.
``CLUSTER_ACTION``) are reported as ``foreign`` and left alone.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

# The defining modules: confluent_kafka.admin re-exports these without marking them public.
from confluent_kafka.admin._acl import AclBindingFilter, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from contracts.kafka import KafkaClientSettings
from policy import AclBinding, AclChanges, plan_acl_changes
from security.credentials import Credential
from security.errors import ApplyError

__all__ = ["KafkaPlan", "KafkaState", "admin_client", "execute", "plan", "read_state"]

SCRAM_ITERATIONS = 8192
_QUIET = logging.getLogger("security.kafka.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
_ANY = AclBindingFilter(
    ResourceType.ANY,
    None,  # type: ignore[arg-type]  # None matches any name (documented; stubs say str)
    ResourcePatternType.ANY,
    None,  # type: ignore[arg-type]  # any principal
    None,  # type: ignore[arg-type]  # any host
    AclOperation.ANY,
    AclPermissionType.ANY,
)


def admin_client(client: KafkaClientSettings, timeout_s: float = 10.0) -> AdminClient:
    """An AdminClient connecting as ``client``'s principal; librdkafka's noise goes nowhere."""
    config: dict[str, Any] = client.confluent_config()
    config.update({"socket.timeout.ms": int(timeout_s * 1000), "logger": _QUIET})
    return AdminClient(config)


@dataclass(frozen=True, slots=True)
class KafkaState:
    """What the broker has: SCRAM-SHA-512 users and ACL bindings."""

    users: frozenset[str]
    bindings: frozenset[AclBinding]
    foreign: tuple[str, ...] = ()
    """Bindings outside the policy model, as text; never touched."""


@dataclass(frozen=True, slots=True)
class KafkaPlan:
    """Users to create, to refresh (re-set from the secrets file) and to delete; ACL changes."""

    create_users: tuple[str, ...]
    refresh_users: tuple[str, ...]
    delete_users: tuple[str, ...]
    acls: AclChanges

    @property
    def empty(self) -> bool:
        return not (self.create_users or self.delete_users or self.acls.create or self.acls.delete)


def _wait(futures: Mapping[Any, Any], what: str, timeout_s: float) -> None:
    for key, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            raise ApplyError(f"Kafka refused to {what} {key}: {exc.args[0]}") from exc
        except TimeoutError as exc:  # concurrent.futures.TimeoutError is TimeoutError
            raise ApplyError(f"Kafka did not answer in {timeout_s:.0f}s to {what} {key}") from exc


def read_state(admin: AdminClient, timeout_s: float = 15.0) -> KafkaState:
    """The broker's SCRAM users and ACL bindings; ApplyError if it does not answer."""
    try:
        every_user = admin.describe_user_scram_credentials()
        if isinstance(every_user, dict):  # only when users are named
            raise TypeError("describe_user_scram_credentials() returned one future per user")
        described = every_user.result(timeout=timeout_s)
        raw_bindings = admin.describe_acls(_ANY, request_timeout=timeout_s).result(
            timeout=timeout_s
        )
    except KafkaException as exc:
        raise ApplyError(f"cannot read Kafka's users and ACLs: {exc.args[0]}") from exc
    except TimeoutError as exc:
        raise ApplyError(f"Kafka did not answer within {timeout_s:.0f}s") from exc
    users = frozenset(
        name
        for name, description in dict(described).items()
        if any(
            info.mechanism == ScramMechanism.SCRAM_SHA_512
            for info in description.scram_credential_infos
        )
    )
    bindings, foreign = set(), []
    for raw in raw_bindings:
        try:
            bindings.add(AclBinding.from_confluent(raw))
        except (KeyError, ValueError):
            foreign.append(str(raw))
    return KafkaState(users, frozenset(bindings), tuple(sorted(foreign)))


def plan(
    state: KafkaState,
    users: Iterable[str],
    bindings: Iterable[AclBinding],
    *,
    keep_users: Iterable[str] = (),
) -> KafkaPlan:
    """What :func:`execute` must do to reach ``users`` and ``bindings``.

    ``keep_users`` (the stack's admin) are never created, refreshed or deleted.
    """
    keep = set(keep_users)
    wanted = set(users) - keep
    return KafkaPlan(
        create_users=tuple(sorted(wanted - state.users)),
        refresh_users=tuple(sorted(wanted & state.users)),
        delete_users=tuple(sorted(state.users - wanted - keep)),
        acls=plan_acl_changes(state.bindings, bindings),
    )


def _exact(binding: AclBinding) -> AclBindingFilter:
    raw = binding.to_confluent()
    return AclBindingFilter(
        raw.restype,
        raw.name,
        raw.resource_pattern_type,
        raw.principal,
        raw.host,
        raw.operation,
        raw.permission_type,
    )


def execute(
    admin: AdminClient,
    steps: KafkaPlan,
    credentials: Mapping[str, Credential],
    timeout_s: float = 30.0,
) -> None:
    """Carries ``steps`` out (see the module docstring); ApplyError names what failed."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            user, info, credentials[user].password.encode(), secrets.token_bytes(32)
        )
        for user in (*steps.create_users, *steps.refresh_users)
    ]
    if upserts:
        _wait(admin.alter_user_scram_credentials(upserts), "set the SCRAM user", timeout_s)
    deletions: list[UserScramCredentialAlteration] = [
        UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
        for user in steps.delete_users
    ]
    if deletions:
        _wait(admin.alter_user_scram_credentials(deletions), "delete the SCRAM user", timeout_s)
    if steps.acls.create:
        created = admin.create_acls(
            [binding.to_confluent() for binding in steps.acls.create], request_timeout=timeout_s
        )
        _wait(created, "create the ACL", timeout_s)
    if steps.acls.delete:
        deleted = admin.delete_acls(
            [_exact(binding) for binding in steps.acls.delete], request_timeout=timeout_s
        )
        _wait(deleted, "delete the ACLs matching", timeout_s)
