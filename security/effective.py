"""The effective policy: the policy file, plus registered devices, plus the stack's admin.

What the servers enforce is never the file alone:

* every registered device becomes a ``kind: device`` principal in the ``devices`` group
  (declared as an empty group if the file has none), unless the file already declares it,
  in which case the file's declaration (groups, roles) stands, and it must be a device;
* the deployment's administrator (``admin``) is a ``service`` principal (unless the file
  declares it) and a super user on every plane: it formats Kafka, creates topics and
  applies the policy.

Rules keep their file line numbers, so explanations point into the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from policy import Group, Policy, Principal, PrincipalKind
from security.errors import DeviceError

__all__ = ["DEVICES_GROUP", "credentialed_principals", "effective_policy"]

DEVICES_GROUP = "devices"
"""The group registered devices join."""


def effective_policy(policy: Policy, devices: Iterable[str], *, admin: str | None) -> Policy:
    """``policy`` with ``devices`` as device principals and ``admin`` (if any) as a super
    user; enforcement points that never see the admin (the gateway's per-message check in
    bridge mode) pass None.

    Raises DeviceError when a registered device is the admin or a super user, or is declared
    in the file as another kind (a service, an API client): a device must never inherit
    another principal's rights or its password line.
    """
    declared = {principal.id: principal for principal in policy.principals}
    added: list[Principal] = []
    reserved = policy.super_users if admin is None else policy.super_users | {admin}
    for device_id in sorted(set(devices)):
        if device_id in reserved:
            raise DeviceError(
                f"{device_id!r} is reserved (the administrator or a super user) and cannot be "
                "a device; register the device under another id"
            )
        existing = declared.get(device_id)
        if existing is None:
            added.append(Principal(device_id, PrincipalKind.DEVICE, (DEVICES_GROUP,)))
        elif existing.kind is not PrincipalKind.DEVICE:
            raise DeviceError(
                f"{device_id!r} is registered as a device but the policy declares it as "
                f"{existing.kind.value} (line {existing.line}); rename one of them"
            )
    if admin is not None and admin not in declared:
        added.append(Principal(admin, PrincipalKind.SERVICE))
    groups = policy.groups
    declared_groups = {group.name for group in groups}
    if any(p.kind is PrincipalKind.DEVICE for p in added) and DEVICES_GROUP not in declared_groups:
        groups = (*groups, Group(DEVICES_GROUP, description="registered devices"))
    return dataclasses.replace(
        policy,
        principals=(*policy.principals, *added),
        groups=groups,
        super_users=policy.super_users if admin is None else policy.super_users | {admin},
    )


def credentialed_principals(policy: Policy) -> tuple[str, ...]:
    """Principals that get a generated password (MQTT and Kafka SCRAM): every ``service``
    principal and every super user. Devices get theirs from ``iotctl devices add``;
    ``api_client`` principals use HTTP tokens."""
    names = {p.id for p in policy.principals if p.kind is PrincipalKind.SERVICE}
    return tuple(sorted(names | set(policy.super_users)))
