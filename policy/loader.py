"""Reads the one YAML policy file into a :class:`Policy`, and writes one back.

Loading is all-or-nothing: the first problem raises :class:`PolicyLoadError` with the line
of the offending YAML node (unknown or duplicate keys, duplicate principals, invalid topic
filters, unknown actions or operations, unusable principal ids, invalid UTF-8, ...), and no
partial policy is ever returned. An empty file is an empty policy, which denies everything.
See ``config/policy.example.yaml`` for the format.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import yaml
from yaml.nodes import Node, ScalarNode

from policy._nodes import NULL_TAG, NodeReader
from policy._targets import dump_target, parse_http, parse_kafka, parse_mqtt
from policy.errors import PolicyError, PolicyLoadError
from policy.model import (
    WILDCARD,
    Effect,
    Group,
    Policy,
    Principal,
    PrincipalKind,
    Role,
    Rule,
    Target,
    validate_name,
    validate_principal_id,
)

__all__ = ["dump_policy", "load_policy", "loads_policy"]

_TOP_KEYS = ("version", "super_users", "principals", "groups", "roles", "rules")
_RULE_KEYS = ("id", "description", "effect", "principals", "mqtt", "kafka", "http")


def _selector(reader: NodeReader, node: Node) -> str:
    text = reader.string(node, "principal selector")
    kind, sep, name = text.partition(":")
    try:
        if text == WILDCARD:
            return text
        if sep and kind in ("group", "role"):
            return f"{kind}:{validate_name(name, kind)}"
        return validate_principal_id(text)
    except PolicyError as exc:
        reader.fail(node, f"invalid principal selector: {exc}")


def _rule(reader: NodeReader, node: Node, role: str | None, seen_ids: dict[str, int]) -> Rule:
    entries = reader.mapping(node, "a rule", _RULE_KEYS, ("effect",))
    planes = [name for name in ("mqtt", "kafka", "http") if name in entries]
    if len(planes) != 1:
        reader.fail(node, "a rule needs exactly one of 'mqtt', 'kafka' or 'http'")
    effect_node = entries["effect"][1]
    effect_text = reader.string(effect_node, "effect").lower()
    if effect_text not in ("allow", "deny"):
        reader.fail(effect_node, f"unknown effect {effect_text!r}; expected allow or deny")
    if role is None:
        if "principals" not in entries:
            reader.fail(node, "a rule needs the key 'principals' (ids, group:<g>, role:<r>, *)")
        items = reader.sequence(entries["principals"][1], "principals")
        if not items:
            reader.fail(entries["principals"][1], "principals must not be empty")
        principals = tuple(_selector(reader, item) for item in items)
    else:
        if "principals" in entries:
            reader.fail(entries["principals"][0], "rules inside a role apply to its holders")
        principals = (f"role:{role}",)
    rule_id = None
    if "id" in entries:
        id_node = entries["id"][1]
        rule_id = reader.string(id_node, "rule id")
        if rule_id in seen_ids:
            reader.fail(
                id_node, f"duplicate rule id {rule_id!r} (first on line {seen_ids[rule_id]})"
            )
        seen_ids[rule_id] = id_node.start_mark.line + 1
    plane = planes[0]
    target: Target
    if plane == "mqtt":
        target = parse_mqtt(reader, entries[plane][1])
    elif plane == "kafka":
        target = parse_kafka(reader, entries[plane][1])
    else:
        target = parse_http(reader, entries[plane][1])
    description = reader.optional_string(entries, "description")
    return Rule(
        effect=Effect(effect_text),
        principals=principals,
        target=target,
        id=rule_id,
        description=description,
        line=node.start_mark.line + 1,
    )


def _principals(reader: NodeReader, node: Node) -> tuple[Principal, ...]:
    seen: dict[str, int] = {}
    result = []
    for item in reader.sequence(node, "principals"):
        entries = reader.mapping(
            item, "a principal", ("id", "kind", "groups", "roles", "description"), ("id", "kind")
        )
        id_node = entries["id"][1]
        principal_id = reader.checked(id_node, "principal id", validate_principal_id)
        if principal_id in seen:
            reader.fail(
                id_node,
                f"duplicate principal {principal_id!r} (first on line {seen[principal_id]})",
            )
        seen[principal_id] = id_node.start_mark.line + 1
        kind_node = entries["kind"][1]
        kind = reader.string(kind_node, "kind")
        if kind not in {member.value for member in PrincipalKind}:
            reader.fail(kind_node, f"unknown kind {kind!r}; expected device, service or api_client")
        groups = _names(reader, entries, "groups", "group")
        roles = _names(reader, entries, "roles", "role")
        result.append(
            Principal(principal_id, PrincipalKind(kind), groups, roles, item.start_mark.line + 1)
        )
    return tuple(result)


def _names(
    reader: NodeReader, entries: dict[str, tuple[ScalarNode, Node]], key: str, kind: str
) -> tuple[str, ...]:
    if key not in entries:
        return ()
    return tuple(
        reader.checked(item, key, partial(validate_name, kind=kind))
        for item in reader.sequence(entries[key][1], key)
    )


def _policy(reader: NodeReader, root: Node | None) -> Policy:
    if root is None or (isinstance(root, ScalarNode) and root.tag == NULL_TAG):
        return Policy(source=reader.source)
    top = reader.mapping(root, "the policy", _TOP_KEYS)
    if "version" in top and reader.string(top["version"][1], "version") != "1":
        reader.fail(top["version"][1], "unsupported policy version; expected 1")
    principals = _principals(reader, top["principals"][1]) if "principals" in top else ()
    groups: list[Group] = []
    if "groups" in top:
        for key, value in reader.mapping(top["groups"][1], "groups", ()).values():
            name = reader.checked(key, "group name", partial(validate_name, kind="group"))
            body = reader.body(value, f"group {name!r}", ("roles", "description"))
            roles_of = _names(reader, body, "roles", "role")
            description = reader.optional_string(body, "description")
            groups.append(Group(name, roles_of, description, key.start_mark.line + 1))
    roles: list[Role] = []
    rules: list[Rule] = []
    seen_ids: dict[str, int] = {}
    if "roles" in top:
        for key, value in reader.mapping(top["roles"][1], "roles", ()).values():
            name = reader.checked(key, "role name", partial(validate_name, kind="role"))
            body = reader.body(value, f"role {name!r}", ("rules", "description"))
            roles.append(
                Role(name, reader.optional_string(body, "description"), key.start_mark.line + 1)
            )
            if "rules" in body:
                items = reader.sequence(body["rules"][1], "rules")
                rules.extend(_rule(reader, item, name, seen_ids) for item in items)
    if "rules" in top:
        items = reader.sequence(top["rules"][1], "rules")
        rules.extend(_rule(reader, item, None, seen_ids) for item in items)
    super_users: frozenset[str] = frozenset()
    if "super_users" in top:
        super_users = frozenset(
            reader.checked(item, "super user", validate_principal_id)
            for item in reader.sequence(top["super_users"][1], "super_users")
        )
    rules.sort(key=lambda rule: rule.line or 0)  # file order, role rules included
    return Policy(
        tuple(principals), tuple(groups), tuple(roles), tuple(rules), super_users, reader.source
    )


def loads_policy(text: str | bytes, *, source: str = "<policy>") -> Policy:
    """Parses policy YAML; raises PolicyLoadError (with ``line``) for any problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PolicyLoadError(f"not valid YAML: {exc.problem}", line=line, source=source) from exc
    except yaml.reader.ReaderError as exc:
        line = None
        if isinstance(text, bytes | str):
            line = text[: exc.position].count(b"\n" if isinstance(text, bytes) else "\n") + 1  # type: ignore[arg-type]
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        if exc.encoding == "unicode":
            reason = f"character U+{code:04X} is not allowed in YAML ({exc.reason})"
        else:
            reason = f"not valid {exc.encoding}: byte 0x{code:02x} ({exc.reason})"
        raise PolicyLoadError(reason, line=line, source=source) from exc
    return _policy(NodeReader(source), root)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Reads and parses the policy file at ``path`` (bytes are decoded as strict UTF-8)."""
    return loads_policy(Path(path).read_bytes(), source=str(path))


def dump_policy(policy: Policy) -> str:
    """YAML text that :func:`loads_policy` reads back into an equal policy.

    Role rules are written as top-level rules with the selector ``role:<name>``.
    """
    data: dict[str, object] = {"version": 1}
    if policy.super_users:
        data["super_users"] = sorted(policy.super_users)
    if policy.principals:
        data["principals"] = [
            {"id": p.id, "kind": p.kind.value}
            | ({"groups": list(p.groups)} if p.groups else {})
            | ({"roles": list(p.roles)} if p.roles else {})
            for p in policy.principals
        ]
    if policy.groups:
        data["groups"] = {
            g.name: ({"roles": list(g.roles)} if g.roles else {})
            | ({"description": g.description} if g.description else {})
            for g in policy.groups
        }
    if policy.roles:
        data["roles"] = {
            r.name: {"description": r.description} if r.description else {} for r in policy.roles
        }
    if policy.rules:
        data["rules"] = [
            ({"id": rule.id} if rule.id else {})
            | {"effect": rule.effect.value, "principals": list(rule.principals)}
            | ({"description": rule.description} if rule.description else {})
            | dump_target(rule.target)
            for rule in policy.rules
        ]
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
