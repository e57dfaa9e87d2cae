"""Compiles the policy for Mosquitto 2: its ``password_file`` and its ``acl_file``.

Pure functions returning text; writing the files and reloading the broker (SIGHUP) is the
caller's job. The acl_file makes Mosquitto decide exactly as :class:`Authorizer` does for
publish and for per-message delivery (``subscribe`` on a topic name) for every user the policy
knows, or :class:`GenerationError` explains why that is impossible. How:

* Each known user gets a ``user`` section with ``%u`` already replaced by its id; Mosquitto
  checks ``deny`` lines first in a section, so deny wins as in the engine.
* Mosquitto's ``deny`` denies reading and writing; a deny of one action only is written when
  it cannot block the other action anywhere that action is allowed, dropped when it is
  redundant (nothing it denies is allowed), and refused otherwise.
* ``%c`` rules become ``pattern`` lines. Mosquitto reads patterns only after a user section
  allowed nothing, so they must apply to ``*`` and must be allows.
* Super users get ``readwrite #`` and ``readwrite $SYS/#`` (Mosquitto cannot name every
  ``$``-topic; the engine allows them all).

Caveat from the real broker (2.0.11): it substitutes ``%c`` as raw text, so a client id
containing ``/`` reaches deeper levels, where the engine never substitutes it. Set
``use_username_as_clientid true`` or avoid ``%c``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping

from policy._membership import GROUP_PREFIX, ROLE_PREFIX, Membership
from policy.errors import GenerationError, PrincipalError
from policy.model import (
    WILDCARD,
    Effect,
    MqttAction,
    MqttTarget,
    Policy,
    Rule,
    validate_principal_id,
)
from policy.topics import overlaps, substitute

__all__ = [
    "DEFAULT_ITERATIONS",
    "generate_acl_file",
    "generate_password_file",
    "hash_password",
    "known_users",
    "verify_password",
]

DEFAULT_ITERATIONS = 101
"""mosquitto_passwd's default PBKDF2 iteration count (Mosquitto 2.0)."""

_SALT_BYTES = 12  # Mosquitto refuses any other salt length
_HEADER = "# Generated from the security policy by policy; edits are overwritten.\n"
_ACCESS = {
    frozenset({MqttAction.PUBLISH}): "write",
    frozenset({MqttAction.SUBSCRIBE}): "read",
    frozenset(MqttAction): "readwrite",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(
    password: str, *, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """``$7$<iterations>$<salt>$<hash>``: PBKDF2-HMAC-SHA512 as ``mosquitto_passwd`` writes it.

    A fresh random 12-byte salt is used unless one is given (tests only).
    """
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    if len(salt) != _SALT_BYTES:
        raise ValueError(f"Mosquitto needs a {_SALT_BYTES}-byte salt")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def _decode(encoded: str) -> tuple[str, int, bytes, bytes] | None:
    parts = encoded.split("$")
    try:
        if len(parts) == 5 and parts[0] == "" and parts[1] == "7":
            iterations = int(parts[2])
            salt, digest = (
                base64.b64decode(parts[3], validate=True),
                base64.b64decode(parts[4], validate=True),
            )
            kind = "7"
        elif len(parts) == 4 and parts[0] == "" and parts[1] == "6":
            iterations = 1
            salt, digest = (
                base64.b64decode(parts[2], validate=True),
                base64.b64decode(parts[3], validate=True),
            )
            kind = "6"
        else:
            return None
    except (ValueError, binascii.Error):
        return None
    if iterations < 1 or len(salt) != _SALT_BYTES or len(digest) != 64:
        return None
    return kind, iterations, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True iff ``password`` matches a Mosquitto hash (``$7$`` PBKDF2-SHA512 or ``$6$``
    salted SHA-512). A malformed hash never matches. Constant-time comparison."""
    decoded = _decode(encoded)
    if decoded is None:
        return False
    kind, iterations, salt, digest = decoded
    secret = password.encode("utf-8")
    if kind == "7":
        actual = hashlib.pbkdf2_hmac("sha512", secret, salt, iterations)
    else:
        actual = hashlib.sha512(secret + salt).digest()
    return hmac.compare_digest(actual, digest)


def known_users(policy: Policy) -> tuple[str, ...]:
    """Users the acl_file is generated for: declared principals, super users and ids that
    rules name directly; sorted."""
    names = {p.id for p in policy.principals} | set(policy.super_users)
    for rule in policy.rules:
        names.update(
            s
            for s in rule.principals
            if s != WILDCARD and not s.startswith((GROUP_PREFIX, ROLE_PREFIX))
        )
    return tuple(sorted(names))


def generate_password_file(hashes: Mapping[str, str], policy: Policy | None = None) -> str:
    """``username:hash`` lines, sorted, for Mosquitto's ``password_file``.

    ``hashes`` maps usernames to hashes from :func:`hash_password` (or mosquitto_passwd).
    With ``policy``, every username must be one of :func:`known_users`, so that nobody can
    log in whom the acl_file does not describe. Raises GenerationError on bad input.
    """
    allowed = set(known_users(policy)) if policy is not None else None
    lines = [_HEADER]
    for username in sorted(hashes):
        try:
            validate_principal_id(username)
        except PrincipalError as exc:
            raise GenerationError(f"cannot write user to password_file: {exc}") from None
        if allowed is not None and username not in allowed:
            raise GenerationError(f"{username!r} has a password but is not in the policy")
        if _decode(hashes[username]) is None:
            raise GenerationError(f"the password hash of {username!r} is not one Mosquitto reads")
        lines.append(f"{username}:{hashes[username]}\n")
    return "".join(lines)


def _check_line_safe(topic: str, rule: Rule) -> str:
    if topic != topic.strip() or "\n" in topic or "\r" in topic:
        raise GenerationError(
            f"topic filter {topic!r} has leading/trailing blanks or a line break, which "
            "Mosquitto's acl_file cannot hold",
            line=rule.line,
        )
    return topic


def _uses_client_id(topic: str) -> bool:
    return "%c" in topic.split("/")


class _Section:
    """The acl_file lines of one user, plus what decides whether a deny can be written."""

    def __init__(self, user: str, patterns: list[tuple[Rule, str]]) -> None:
        self.user = user
        self.allows: list[tuple[frozenset[MqttAction], str]] = []
        for rule, topic in patterns:  # %c allows: any client id, approximated by '+'
            assert isinstance(rule.target, MqttTarget)  # noqa: S101 - only MQTT rules here
            levels = [
                "+" if level == "%c" else user if level == "%u" else level
                for level in topic.split("/")
            ]
            self.allows.append((rule.target.actions, "/".join(levels)))
        self.allow_lines: list[str] = []
        self.denies: list[tuple[Rule, frozenset[MqttAction], str]] = []

    def add(self, rule: Rule, actions: frozenset[MqttAction], topic: str) -> None:
        if rule.effect is Effect.DENY:
            self.denies.append((rule, actions, topic))
        else:
            self.allows.append((actions, topic))
            self.allow_lines.append(f"topic {_ACCESS[actions]} {topic}")

    def lines(self) -> list[str]:
        deny_lines = []
        for rule, actions, topic in self.denies:
            need = any(actions & a and overlaps(topic, t) for a, t in self.allows)
            over = any((a - actions) and overlaps(topic, t) for a, t in self.allows)
            if need and over:
                raise GenerationError(
                    f"deny rule {rule.label} denies only {', '.join(sorted(actions))} on "
                    f"{topic!r} for {self.user!r}, but Mosquitto's deny also blocks the other "
                    "action, which another rule allows there; split the topics",
                    line=rule.line,
                )
            if not over:
                deny_lines.append(f"topic deny {topic}")
        body = list(dict.fromkeys(deny_lines + self.allow_lines))
        return [f"user {self.user}", *body] if body else []


def _client_id_patterns(rules: list[Rule]) -> list[tuple[Rule, str]]:
    patterns: list[tuple[Rule, str]] = []
    for rule in rules:
        assert isinstance(rule.target, MqttTarget)  # noqa: S101 - only MQTT rules here
        for topic in rule.target.topics:
            if not _uses_client_id(topic):
                continue
            if WILDCARD not in rule.principals:
                raise GenerationError(
                    f"rule {rule.label} uses %c but is not for '*': Mosquitto's patterns "
                    "apply to every user",
                    line=rule.line,
                )
            if rule.effect is Effect.DENY:
                raise GenerationError(
                    f"deny rule {rule.label} uses %c: Mosquitto reads pattern denies only "
                    "after a user's own allows, so it could not win",
                    line=rule.line,
                )
            patterns.append((rule, _check_line_safe(topic, rule)))
    return patterns


def _user_lines(
    user: str, rules: list[Rule], patterns: list[tuple[Rule, str]], membership: Membership
) -> list[str]:
    section = _Section(user, patterns)
    for rule in rules:
        assert isinstance(rule.target, MqttTarget)  # noqa: S101 - only MQTT rules here
        if not membership.applies(rule, user):
            continue
        for topic in rule.target.topics:
            concrete = (
                None if _uses_client_id(topic) else substitute(topic, username=user, client_id=None)
            )
            if concrete is not None:
                section.add(rule, rule.target.actions, _check_line_safe(concrete, rule))
    return section.lines()


def generate_acl_file(policy: Policy) -> str:
    """The ``acl_file`` text for the policy's MQTT rules (see the module docstring).

    Deterministic: users sorted, lines in rule order. Raises GenerationError when Mosquitto
    could not decide like the engine.
    """
    membership = Membership(policy)
    rules = [r for r in policy.rules if isinstance(r.target, MqttTarget)]
    patterns = _client_id_patterns(rules)
    out = [_HEADER]
    for user in known_users(policy):
        if user in policy.super_users:
            out.append(f"\nuser {user}\ntopic readwrite #\ntopic readwrite $SYS/#\n")
            continue
        lines = _user_lines(user, rules, patterns, membership)
        if lines:
            out.append("\n" + "\n".join(lines) + "\n")
    if patterns:
        out.append("\n# Patterns: %u is the username, %c the client id.\n")
        pattern_lines = []
        for rule, topic in patterns:
            assert isinstance(rule.target, MqttTarget)  # noqa: S101 - only MQTT rules here
            pattern_lines.append(f"pattern {_ACCESS[rule.target.actions]} {topic}\n")
        out.extend(dict.fromkeys(pattern_lines))
    return "".join(out)
