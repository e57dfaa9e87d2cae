"""Whether one rule matches one request; the semantics are documented in ``engine.py``.

Rules are compiled per (principal, client id): ``%u``/``%c`` substituted once and filters
split into levels, so a decision costs a few tuple comparisons per rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.errors import TopicError
from policy.model import (
    WILDCARD,
    Effect,
    HttpAction,
    HttpTarget,
    KafkaOperation,
    KafkaResourceType,
    KafkaTarget,
    MqttAction,
    MqttTarget,
    PatternType,
    Rule,
)
from policy.topics import (
    TopicFilter,
    covers_levels,
    overlaps_levels,
    substitute,
    validate_topic_name,
)

Action = MqttAction | KafkaOperation | HttpAction
Levels = tuple[str, ...]

_DESCRIBE_IMPLIED_BY = frozenset(
    {KafkaOperation.READ, KafkaOperation.WRITE, KafkaOperation.DELETE, KafkaOperation.ALTER}
)


@dataclass(frozen=True, slots=True)
class MqttTopic:
    """An MQTT topic name (publish, delivery) or topic filter (subscribe)."""

    topic: str


@dataclass(frozen=True, slots=True)
class KafkaResource:
    resource_type: KafkaResourceType
    name: str


@dataclass(frozen=True, slots=True)
class HttpScope:
    """What an HTTP query reads; None means every device (or every topic)."""

    device_id: str | None = None
    topic: str | None = None


Resource = MqttTopic | KafkaResource | HttpScope


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule as it applies to one principal and client id."""

    rule: Rule
    filters: tuple[Levels, ...]  # substituted MQTT/HTTP topic filters; () for Kafka
    deny: bool


def compile_rule(rule: Rule, username: str, client_id: str | None) -> CompiledRule:
    target = rule.target
    topics: tuple[str, ...] = ()
    if isinstance(target, MqttTarget | HttpTarget) and target.topics is not None:
        topics = target.topics
    filters = []
    for pattern in topics:
        concrete = substitute(pattern, username=username, client_id=client_id)
        if concrete is None:
            continue
        try:
            filters.append(TopicFilter.parse(concrete).levels)
        except TopicError:
            continue  # only a name so long that no valid topic could match the result

    return CompiledRule(rule, tuple(filters), rule.effect is Effect.DENY)


def glob(pattern: str, text: str) -> bool:
    """``*`` matches any run of characters; nothing else is special."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == text
    if not text.startswith(parts[0]) or not text[len(parts[0]) :].endswith(parts[-1]):
        return False
    position, end = len(parts[0]), len(text) - len(parts[-1])
    for part in parts[1:-1]:
        found = text.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return position <= end


@dataclass(frozen=True, slots=True)
class Request:
    """A validated request; ``levels`` is the MQTT/HTTP topic (name or effective filter)."""

    action: Action
    resource: Resource
    levels: Levels | None

    @classmethod
    def build(cls, action: Action, resource: Resource) -> Request:
        """Raises TopicError when the topic is not valid for the action."""
        levels: Levels | None = None
        if isinstance(resource, MqttTopic):
            if action is MqttAction.PUBLISH:
                levels = tuple(validate_topic_name(resource.topic).split("/"))
            else:
                levels = TopicFilter.parse(resource.topic).levels
        elif isinstance(resource, HttpScope) and resource.topic is not None:
            levels = TopicFilter.parse(resource.topic).levels
        return cls(action, resource, levels)

    def _topic_match(self, compiled: CompiledRule) -> bool:
        levels = self.levels
        assert levels is not None  # noqa: S101 - set by build() for MQTT/HTTP topics
        if compiled.deny:  # a deny concerns every request it could match
            return any(overlaps_levels(f, levels) for f in compiled.filters)
        return any(covers_levels(f, levels) for f in compiled.filters)  # allows must cover

    def matches(self, compiled: CompiledRule, host: str | None) -> bool:
        target = compiled.rule.target
        resource = self.resource
        if isinstance(resource, MqttTopic):
            return (
                isinstance(target, MqttTarget)
                and self.action in target.actions
                and self._topic_match(compiled)
            )
        if isinstance(resource, KafkaResource):
            return isinstance(target, KafkaTarget) and _kafka_matches(
                target, compiled.deny, self.action, resource, host
            )
        return isinstance(target, HttpTarget) and self._http_matches(compiled, target, resource)

    def _http_matches(self, compiled: CompiledRule, target: HttpTarget, scope: HttpScope) -> bool:
        if target.devices is not None:
            if scope.device_id is None:
                if not compiled.deny and WILDCARD not in target.devices:
                    return False
            elif not any(glob(pattern, scope.device_id) for pattern in target.devices):
                return False
        if target.topics is not None:
            if self.levels is None:
                return compiled.deny or "#" in target.topics
            return self._topic_match(compiled)
        return True


def _kafka_matches(
    target: KafkaTarget, deny: bool, action: Action, resource: KafkaResource, host: str | None
) -> bool:
    if target.resource_type is not resource.resource_type:
        return False
    if not (target.host in (WILDCARD, host) or (host is None and deny)):
        return False
    ops = target.operations
    if not (KafkaOperation.ALL in ops or action in ops) and not (
        not deny
        and (
            (action is KafkaOperation.DESCRIBE and ops & _DESCRIBE_IMPLIED_BY)
            or (action is KafkaOperation.DESCRIBE_CONFIGS and KafkaOperation.ALTER_CONFIGS in ops)
        )
    ):
        return False
    if target.pattern_type is PatternType.PREFIXED:
        return any(resource.name.startswith(prefix) for prefix in target.names)
    return any(name in (WILDCARD, resource.name) for name in target.names)
