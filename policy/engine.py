"""The decision engine: may this principal do this action on this resource?

Semantics, the same on every plane so nobody is surprised:

* **Default deny.** No matching allow rule means denied; an empty policy denies everything.
* **Deny wins.** Any matching deny rule denies, whatever allows (Kafka's StandardAuthorizer).
* **Super users** are allowed everything, deny rules included (Kafka's ``super.users``).
* **Kafka**: literal names match exactly, literal ``*`` matches every name, prefixed names
  match by prefix; selector ``*`` is Kafka's ``User:*``. ``ALL`` matches every operation.
  An *allow* of READ, WRITE, DELETE or ALTER also allows DESCRIBE, and ALTER_CONFIGS allows
  DESCRIBE_CONFIGS; deny rules imply nothing (as in Kafka).
* **MQTT**: topic filters per MQTT 5 §4.7; ``%u``/``%c`` levels are replaced by the username
  (the principal id) and the client id. A name that is missing, empty or contains ``+``, ``#``,
  ``/`` or NUL is never substituted, so that pattern does not match (allow or deny). Publishing
  needs a topic name. Subscribing to a topic *name* is the per-message delivery check
  (Mosquitto's ``read``); subscribing to a *filter* is allowed only if one allow rule covers
  every topic of the filter and no deny rule could match any of them. ``$share/<g>/<f>`` is
  judged by ``<f>``.
* **HTTP** (``read``): a device id matches a device pattern (``*`` = any run of characters);
  a topic or topic filter is judged like an MQTT subscription. A request without a device id
  (or topic) means "all of them": an allow must then cover all, while any deny concerns it.

``authorize`` never raises for bad input: an invalid topic, unknown action or mismatched
resource is a denied :class:`Decision` whose reason says what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy._matching import (
    Action,
    CompiledRule,
    HttpScope,
    KafkaResource,
    MqttTopic,
    Request,
    Resource,
    compile_rule,
)
from policy._membership import Membership
from policy._targets import parse_operation
from policy.errors import RequestError, TopicError
from policy.model import (
    CLUSTER_NAME,
    WILDCARD,
    HttpAction,
    KafkaOperation,
    KafkaResourceType,
    MqttAction,
    Policy,
    Rule,
)

__all__ = [
    "Action",
    "Authorizer",
    "Decision",
    "Explanation",
    "HttpScope",
    "KafkaResource",
    "MqttTopic",
    "Resource",
    "parse_resource",
]

_MQTT_ACTIONS: dict[str, Action] = {action.value: action for action in MqttAction}
_HTTP_ACTIONS: dict[str, Action] = {action.value: action for action in HttpAction}
_CACHE_LIMIT = 10_000  # entries per cache; cleared when full (names come from the network)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer: ``rule`` is the rule that decided, None for default deny, super users and
    invalid requests; ``reason`` is one sentence for logs and 403 bodies."""

    allowed: bool
    rule: Rule | None
    reason: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """A decision with everything that led to it: every matching allow and deny rule."""

    decision: Decision
    principal: str
    action: str
    resource: Resource
    allowing: tuple[Rule, ...]
    denying: tuple[Rule, ...]
    super_user: bool
    source: str | None

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view (``iotctl policy explain --json``)."""

        def rule_view(rule: Rule | None) -> dict[str, object] | None:
            if rule is None:
                return None
            return {
                "id": rule.id,
                "effect": rule.effect.value,
                "line": rule.line,
                "principals": list(rule.principals),
            }

        return {
            "allowed": self.decision.allowed,
            "reason": self.decision.reason,
            "rule": rule_view(self.decision.rule),
            "principal": self.principal,
            "action": self.action,
            "resource": describe(self.resource),
            "super_user": self.super_user,
            "allowing": [rule_view(rule) for rule in self.allowing],
            "denying": [rule_view(rule) for rule in self.denying],
            "source": self.source,
        }


def _quoted(text: str, limit: int = 80) -> str:
    """``repr`` of ``text``, shortened: names and topics come from the network."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} long)"


def describe(resource: Resource) -> str:
    """A resource as explanations name it."""
    if isinstance(resource, MqttTopic):
        return f"MQTT topic {_quoted(resource.topic)}"
    if isinstance(resource, KafkaResource):
        return f"Kafka {resource.resource_type.value} {_quoted(resource.name)}"
    device = (
        "every device" if resource.device_id is None else f"device {_quoted(resource.device_id)}"
    )
    topic = "every topic" if resource.topic is None else f"topic {_quoted(resource.topic)}"
    return f"HTTP {device}, {topic}"


def _coerce(action: Action | str, resource: Resource) -> Action | str:
    """The typed action, or a reason string when it does not fit the resource."""
    if isinstance(resource, KafkaResource):
        if isinstance(action, KafkaOperation):
            return action
        parsed = parse_operation(action) if type(action) is str else None
        shown = _quoted(action) if isinstance(action, str) else repr(action)
        return parsed if parsed is not None else f"{shown} is not a Kafka operation"
    kind, values = (
        ("MQTT", _MQTT_ACTIONS) if isinstance(resource, MqttTopic) else ("HTTP", _HTTP_ACTIONS)
    )
    if type(action) is str:
        action = values.get(action.lower(), action)
    if action in values.values():
        return action
    shown = _quoted(action) if isinstance(action, str) else repr(action)
    return f"{shown} is not an {kind} action (expected {' or '.join(values)})"


class Authorizer:
    """Decides requests against one :class:`Policy`; build once, call from any thread.

    ``authorize`` and ``explain`` always agree: ``explain(...).decision == authorize(...)``.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._membership = Membership(policy)
        self._cache: dict[tuple[str, str | None], tuple[CompiledRule, ...]] = {}
        self._decisions: dict[tuple[object, ...], Decision] = {}

    def _rules_for(self, principal: str, client_id: str | None) -> tuple[CompiledRule, ...]:
        key = (principal, client_id)
        compiled = self._cache.get(key)
        if compiled is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            compiled = tuple(
                compile_rule(rule, principal, client_id)
                for rule in self.policy.rules
                if self._membership.applies(rule, principal)
            )
            self._cache[key] = compiled
        return compiled

    def authorize(
        self,
        principal: str,
        action: Action | str,
        resource: Resource,
        *,
        client_id: str | None = None,
        host: str | None = None,
    ) -> Decision:
        """Decides one request. ``principal`` is a principal id (``User:`` is stripped);
        ``client_id`` fills ``%c``; ``host`` is the client address for Kafka host rules
        (None: only ``*``-host allows match, and every host-specific deny does).

        Decisions are memoised per request (bounded), so the per-message check of a device
        that keeps publishing to the same topics costs a dictionary lookup.
        """
        key = (principal, action, resource, client_id, host)
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) >= _CACHE_LIMIT:
                self._decisions.clear()
            decision = self._evaluate(
                principal, action, resource, client_id, host, stop_early=True
            )[0]
            self._decisions[key] = decision
        return decision

    def explain(
        self,
        principal: str,
        action: Action | str,
        resource: Resource,
        *,
        client_id: str | None = None,
        host: str | None = None,
    ) -> Explanation:
        """The decision plus every matching rule, with their file lines."""
        decision, allowing, denying, is_super = self._evaluate(
            principal, action, resource, client_id, host, stop_early=False
        )
        return Explanation(
            decision,
            principal,
            str(action),
            resource,
            allowing,
            denying,
            is_super,
            self.policy.source,
        )

    def _evaluate(
        self,
        principal: str,
        action: Action | str,
        resource: Resource,
        client_id: str | None,
        host: str | None,
        *,
        stop_early: bool,
    ) -> tuple[Decision, tuple[Rule, ...], tuple[Rule, ...], bool]:
        principal = principal.removeprefix("User:")
        typed = _coerce(action, resource)
        if isinstance(typed, MqttAction | KafkaOperation | HttpAction):
            try:
                request = Request.build(typed, resource)
            except TopicError as exc:
                return Decision(False, None, f"invalid request: {exc}"), (), (), False
        else:
            return Decision(False, None, f"invalid request: {typed}"), (), (), False
        if principal in self.policy.super_users:
            return Decision(True, None, f"{_quoted(principal)} is a super user"), (), (), True
        allowing: list[Rule] = []
        denying: list[Rule] = []
        for compiled in self._rules_for(principal, client_id):
            if request.matches(compiled, host):
                (denying if compiled.deny else allowing).append(compiled.rule)
                if stop_early and denying:
                    break
        verb = f"{_quoted(principal)} {typed.value} {describe(resource)}"
        if denying:
            decision = Decision(False, denying[0], f"{verb}: denied by rule {denying[0].label}")
        elif allowing:
            decision = Decision(True, allowing[0], f"{verb}: allowed by rule {allowing[0].label}")
        else:
            decision = Decision(False, None, f"{verb}: no rule allows it (default deny)")
        return decision, tuple(allowing), tuple(denying), False


def parse_resource(text: str) -> Resource:
    """Parses the CLI form of a resource.

    ``mqtt:<topic or filter>`` · ``kafka:topic:<name>`` · ``kafka:group:<name>`` ·
    ``kafka:transactional_id:<name>`` · ``kafka:cluster`` · ``http:<device id or *>[:<topic>]``.
    Raises RequestError.
    """
    plane, _, rest = text.partition(":")
    if plane == "mqtt" and rest:
        return MqttTopic(rest)
    if plane == "kafka":
        kind, _, name = rest.partition(":")
        try:
            resource_type = KafkaResourceType(kind.lower())
        except ValueError:
            raise RequestError(f"unknown Kafka resource type in {text!r}") from None
        if resource_type is KafkaResourceType.CLUSTER:
            return KafkaResource(resource_type, name or CLUSTER_NAME)
        if name:
            return KafkaResource(resource_type, name)
    if plane == "http" and rest:
        device, _, topic = rest.partition(":")
        return HttpScope(None if device == WILDCARD else device, topic or None)
    raise RequestError(
        f"cannot parse resource {text!r}; expected mqtt:<topic>, kafka:<type>:<name> "
        "or http:<device>[:<topic>]"
    )
