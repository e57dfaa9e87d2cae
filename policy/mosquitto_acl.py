"""Existing Mosquitto ``acl_file``s: parse them, decide as Mosquitto 2.0 does, import them.

:class:`MosquittoAcl` models ``mosquitto_acl_check_default`` of Mosquitto 2.0 (checked against
2.0.11), so tests can compare our engine with what the broker would decide:

1. the user's own section (``topic`` lines after ``user <name>``; for clients without a
   username, the lines before the first ``user``): a matching ``deny`` denies; else a matching
   line granting the access allows;
2. otherwise, when ``pattern`` lines exist, a username or client id containing ``+`` or ``#``
   is denied outright; then patterns (``%u``/``%c`` substituted as raw text anywhere): a
   matching ``deny`` denies, else a matching pattern granting the access allows;
3. everything else is denied.

Mosquitto never refuses a SUBSCRIBE through its acl_file (2.0 leaves it as a FIXME); ``read``
is checked per delivered message, against the topic name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from policy.errors import MosquittoAclError, PolicyError
from policy.model import (
    WILDCARD,
    Effect,
    MqttAction,
    MqttTarget,
    Policy,
    Principal,
    PrincipalKind,
    Rule,
    validate_principal_id,
)
from policy.topics import TopicFilter, overlaps

__all__ = ["AclEntry", "ImportedAcl", "MosquittoAcl", "import_mosquitto_acl"]

Access = Literal["read", "write"]
_ACCESS_WORDS = {
    "read": frozenset({"read"}),
    "write": frozenset({"write"}),
    "readwrite": frozenset({"read", "write"}),
    "deny": frozenset(),
}
_TOPIC_HIERARCHY_LIMIT = 200  # Mosquitto counts '/' separators, so 201 levels pass


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One ``topic``/``pattern`` line; an empty ``access`` is ``deny``."""

    topic: str
    access: frozenset[str]
    line: int

    @property
    def is_deny(self) -> bool:
        return not self.access


def _matches(acl_filter: str, topic: str) -> bool:
    try:
        return TopicFilter.parse(acl_filter, shared=False, max_levels=1 << 16).matches(topic)
    except PolicyError:
        return False  # Mosquitto: MOSQ_ERR_INVAL, result false


def _substitute_raw(pattern: str, username: str | None, client_id: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(pattern):
        pair = pattern[index : index + 2]
        if pair == "%c":
            out.append(client_id)
            index += 2
        elif pair == "%u" and username is not None:
            out.append(username)
            index += 2
        else:
            out.append(pattern[index])
            index += 1
    return "".join(out)


def _decide(
    entries: tuple[AclEntry, ...], access: Access, match: Callable[[AclEntry], bool]
) -> bool | None:
    if any(entry.is_deny and match(entry) for entry in entries):
        return False
    if any(access in entry.access and match(entry) for entry in entries):
        return True
    return None


@dataclass(frozen=True, slots=True)
class MosquittoAcl:
    """A parsed acl_file. ``users`` keeps file order; a repeated ``user`` line adds to it."""

    anonymous: tuple[AclEntry, ...]
    users: tuple[tuple[str, int, tuple[AclEntry, ...]], ...]
    patterns: tuple[AclEntry, ...]

    @classmethod
    def parse(cls, text: str) -> MosquittoAcl:
        """Parses like Mosquitto 2.0's ``aclfile__parse``; raises MosquittoAclError where
        Mosquitto would refuse to start."""
        anonymous: list[AclEntry] = []
        users: dict[str, tuple[int, list[AclEntry]]] = {}
        patterns: list[AclEntry] = []
        current: list[AclEntry] = anonymous
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.rstrip(" \t\n\r\v\f")
            if line.startswith("#"):
                continue
            keyword, _, rest = line.lstrip(" ").partition(" ")
            if not keyword:
                continue
            if keyword == "user":
                name = rest.strip(" \t\n\r\v\f")
                if not name:
                    raise MosquittoAclError("missing username", line=number)
                current = users.setdefault(name, (number, []))[1]
            elif keyword in ("topic", "pattern"):
                access_word, _, topic = rest.lstrip(" ").partition(" ")
                if not access_word:
                    raise MosquittoAclError("empty topic", line=number)
                topic = topic.strip(" \t\n\r\v\f")
                if not topic:
                    access_word, topic = "readwrite", access_word
                if access_word not in _ACCESS_WORDS:
                    raise MosquittoAclError(f"invalid access type {access_word!r}", line=number)
                try:
                    TopicFilter.parse(topic, shared=False, max_levels=_TOPIC_HIERARCHY_LIMIT + 1)
                except PolicyError as exc:
                    raise MosquittoAclError(f"invalid ACL topic: {exc}", line=number) from None
                entry = AclEntry(topic, _ACCESS_WORDS[access_word], number)
                (patterns if keyword == "pattern" else current).append(entry)
            else:
                raise MosquittoAclError(f"invalid line {line!r}", line=number)
        return cls(
            tuple(anonymous),
            tuple((name, first, tuple(entries)) for name, (first, entries) in users.items()),
            tuple(patterns),
        )

    def user_entries(self, username: str | None) -> tuple[AclEntry, ...] | None:
        """The section that applies to ``username`` (None: anonymous), if there is one."""
        if username is None:
            return self.anonymous or None
        for name, _, entries in self.users:
            if name == username:
                return entries
        return None

    def allows(self, *, username: str | None, client_id: str, topic: str, access: Access) -> bool:
        """What Mosquitto 2.0 decides for one publish (``write``) or delivery (``read``)."""
        own = self.user_entries(username)
        if own is None and not self.patterns:
            return False
        if own is not None:
            decided = _decide(own, access, lambda entry: _matches(entry.topic, topic))
            if decided is not None:
                return decided
        if not self.patterns:
            return False
        if any(char in name for name in (username or "", client_id) for char in "+#"):
            return False
        usable = tuple(e for e in self.patterns if username is not None or "%u" not in e.topic)
        decided = _decide(
            usable,
            access,
            lambda entry: _matches(_substitute_raw(entry.topic, username, client_id), topic),
        )
        return bool(decided)


@dataclass(frozen=True, slots=True)
class ImportedAcl:
    """Rules equivalent to an acl_file for every authenticated user whose client id is a
    safe name (no ``+``, ``#`` or ``/``); ``warnings`` lists what was left out."""

    rules: tuple[Rule, ...]
    principals: tuple[str, ...]
    warnings: tuple[str, ...]

    def to_policy(self, kind: PrincipalKind = PrincipalKind.DEVICE) -> Policy:
        """A policy declaring every user of the acl_file as ``kind``, with the rules."""
        principals = tuple(Principal(name, kind) for name in self.principals)
        return Policy(principals=principals, rules=self.rules)


def _actions(entry: AclEntry) -> frozenset[MqttAction]:
    if entry.is_deny:
        return frozenset(MqttAction)
    names = {"read": MqttAction.SUBSCRIBE, "write": MqttAction.PUBLISH}
    return frozenset(names[word] for word in entry.access)


def _rule(entry: AclEntry, selector: str) -> Rule:
    return Rule(
        effect=Effect.DENY if entry.is_deny else Effect.ALLOW,
        principals=(selector,),
        target=MqttTarget(_actions(entry), (entry.topic,)),
        description=f"imported from acl_file line {entry.line}",
        line=entry.line,
    )


def _check_placeholders(entry: AclEntry, *, pattern: bool) -> None:
    levels = entry.topic.split("/")
    for placeholder in ("%u", "%c"):
        if placeholder not in entry.topic:
            continue
        if not pattern:
            raise MosquittoAclError(
                f"{placeholder} in {entry.topic!r} is literal text in a user section, which "
                "the policy cannot express",
                line=entry.line,
            )
        if any(placeholder in level and level != placeholder for level in levels):
            raise MosquittoAclError(
                f"{placeholder} inside a level of {entry.topic!r}: only whole-level "
                "placeholders can be imported",
                line=entry.line,
            )
    if entry.topic.startswith("$share/"):
        raise MosquittoAclError("rules cannot name '$share/...' topics", line=entry.line)


def import_mosquitto_acl(text: str) -> ImportedAcl:
    """Migrates an acl_file into policy rules with identical decisions.

    Raises MosquittoAclError (with the line) when the file is invalid or some decision could
    not be kept: usernames that are not valid principal ids, placeholders inside a level, or
    a ``pattern deny`` that a user's own allow overrides in Mosquitto (the policy's deny
    would win).
    """
    acl = MosquittoAcl.parse(text)
    warnings: list[str] = []
    if acl.anonymous:
        lines = ", ".join(str(entry.line) for entry in acl.anonymous)
        warnings.append(f"lines {lines} are for anonymous clients, which the platform refuses")
    rules: list[Rule] = []
    for name, first_line, entries in acl.users:
        try:
            validate_principal_id(name)
        except PolicyError as exc:
            raise MosquittoAclError(
                f"user {name!r} cannot be a principal: {exc}", line=first_line
            ) from None
        for entry in entries:
            _check_placeholders(entry, pattern=False)
            rules.append(_rule(entry, name))
    for entry in acl.patterns:
        _check_placeholders(entry, pattern=True)
        if "%u" not in entry.topic and "%c" not in entry.topic:
            warnings.append(
                f"line {entry.line}: pattern without %u/%c applies to every user (Mosquitto "
                "also refuses it to client ids containing '+' or '#')"
            )
        if entry.is_deny:
            for name, _, entries in acl.users:
                levels = [
                    name if lv == "%u" else "+" if lv == "%c" else lv
                    for lv in entry.topic.split("/")
                ]
                for own in entries:
                    if own.access and overlaps(own.topic, "/".join(levels)):
                        raise MosquittoAclError(
                            f"pattern deny {entry.topic!r} is overridden for user {name!r} by "
                            f"line {own.line} in Mosquitto; with deny-wins it would not be",
                            line=entry.line,
                        )
        rules.append(_rule(entry, WILDCARD))
    principals = tuple(name for name, _, _ in acl.users)
    return ImportedAcl(tuple(rules), principals, tuple(warnings))
