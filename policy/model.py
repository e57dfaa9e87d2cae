"""The policy model: principals, groups, roles and allow/deny rules on MQTT, Kafka and HTTP.

Everything is a frozen, slotted dataclass: a loaded :class:`Policy` never changes, so it can
be shared between threads and compared. Line numbers (``line``) point into the policy file
and take no part in equality.

Rules name who they apply to with *selectors*: a principal id, ``group:<name>``,
``role:<name>`` or ``*`` (every principal, like Kafka's ``User:*``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from contracts.identifiers import WILDCARD, id_problem
from policy.errors import PrincipalError

__all__ = [
    "CLUSTER_NAME",
    "WILDCARD",
    "Effect",
    "Group",
    "HttpAction",
    "HttpTarget",
    "KafkaOperation",
    "KafkaResourceType",
    "KafkaTarget",
    "MqttAction",
    "MqttTarget",
    "PatternType",
    "Policy",
    "Principal",
    "PrincipalKind",
    "Role",
    "Rule",
    "Target",
    "validate_name",
    "validate_principal_id",
]


CLUSTER_NAME = "kafka-cluster"
"""The only name Kafka accepts for the cluster resource."""


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class PrincipalKind(StrEnum):
    DEVICE = "device"
    SERVICE = "service"
    API_CLIENT = "api_client"


class MqttAction(StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"


class HttpAction(StrEnum):
    READ = "read"


class KafkaOperation(StrEnum):
    """Kafka ACL operations (``AclOperation``); values are Kafka's names."""

    ALL = "ALL"
    READ = "READ"
    WRITE = "WRITE"
    CREATE = "CREATE"
    DELETE = "DELETE"
    ALTER = "ALTER"
    DESCRIBE = "DESCRIBE"
    DESCRIBE_CONFIGS = "DESCRIBE_CONFIGS"
    ALTER_CONFIGS = "ALTER_CONFIGS"
    IDEMPOTENT_WRITE = "IDEMPOTENT_WRITE"


class KafkaResourceType(StrEnum):
    TOPIC = "topic"
    GROUP = "group"
    TRANSACTIONAL_ID = "transactional_id"
    CLUSTER = "cluster"


class PatternType(StrEnum):
    """How a Kafka rule's name selects resources: the exact name (or ``*``), or a prefix."""

    LITERAL = "literal"
    PREFIXED = "prefixed"


def validate_principal_id(value: object) -> str:
    """Returns ``value`` if it can name a principal on MQTT, Kafka and HTTP alike: the id
    grammar of :mod:`contracts.identifiers`. Raises PrincipalError with the reason.
    """
    if not isinstance(value, str):
        raise PrincipalError("a principal id must be a string", value)
    problem = id_problem(value)
    if problem is not None:
        raise PrincipalError(f"a principal id {problem}", value)
    return value


def validate_name(value: object, kind: str) -> str:
    """Returns ``value`` if it is a valid group or role name: ``[A-Za-z0-9._-]``, 1-100 long."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 100
        or not all(char.isascii() and (char.isalnum() or char in "._-") for char in value)
    ):
        raise PrincipalError(f"a {kind} name must be 1-100 characters of A-Z a-z 0-9 . _ -", value)
    return value


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone who connects: a device, a service or an API client (``id`` is its username)."""

    id: str
    kind: PrincipalKind
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Group:
    """A named set of principals (members list it in ``groups``); may grant roles."""

    name: str
    roles: tuple[str, ...] = ()
    description: str = ""
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Role:
    """A named bundle of rules (their selector is ``role:<name>``), held by principals
    directly or through a group."""

    name: str
    description: str = ""
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """MQTT topic filters; whole levels ``%u``/``%c`` stand for username / client id."""

    actions: frozenset[MqttAction]
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class KafkaTarget:
    """Kafka resources of one type, selected by literal names (``*`` = all) or prefixes."""

    resource_type: KafkaResourceType
    names: tuple[str, ...]
    pattern_type: PatternType
    operations: frozenset[KafkaOperation]
    host: str = WILDCARD


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """What an HTTP client may read: device ids (``*`` globs) and MQTT topic filters.

    None means the dimension is not constrained by this rule.
    """

    devices: tuple[str, ...] | None
    topics: tuple[str, ...] | None


Target = MqttTarget | KafkaTarget | HttpTarget


@dataclass(frozen=True, slots=True)
class Rule:
    """One allow or deny statement. ``principals`` holds selectors."""

    effect: Effect
    principals: tuple[str, ...]
    target: Target
    id: str | None = None
    description: str = ""
    line: int | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """How explanations name the rule: its id, else its line, else a generic name."""
        if self.id:
            return f"'{self.id}'"
        if self.line is not None:
            return f"at line {self.line}"
        return "(unnamed)"


@dataclass(frozen=True, slots=True)
class Policy:
    """The whole policy. An empty policy denies everything."""

    principals: tuple[Principal, ...] = ()
    groups: tuple[Group, ...] = ()
    roles: tuple[Role, ...] = ()
    rules: tuple[Rule, ...] = ()
    super_users: frozenset[str] = frozenset()
    source: str | None = field(default=None, compare=False)

    def principal(self, principal_id: str) -> Principal | None:
        """The declared principal with this id, if any."""
        for principal in self.principals:
            if principal.id == principal_id:
                return principal
        return None
