"""Parsing and writing the ``mqtt`` / ``kafka`` / ``http`` part of a rule."""

from __future__ import annotations

from yaml.nodes import Node

from policy._nodes import NodeReader
from policy.errors import PolicyError, PrincipalError
from policy.model import (
    CLUSTER_NAME,
    WILDCARD,
    HttpAction,
    HttpTarget,
    KafkaOperation,
    KafkaResourceType,
    KafkaTarget,
    MqttAction,
    MqttTarget,
    PatternType,
    Target,
    validate_principal_id,
)
from policy.topics import TopicFilter

_KAFKA_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_OPERATIONS = {op.value.replace("_", ""): op for op in KafkaOperation}


def parse_operation(text: str) -> KafkaOperation | None:
    """Kafka operation from ``READ``, ``read``, ``DescribeConfigs``, ``describe-configs``..."""
    return _OPERATIONS.get(text.upper().replace("_", "").replace("-", ""))


def check_rule_filter(text: str, *, placeholders: tuple[str, ...] = ("%u", "%c")) -> str:
    """Validates a rule's topic filter: MQTT 5 valid, not shared, placeholders whole levels."""
    parsed = TopicFilter.parse(text)
    if parsed.share_group is not None:
        raise PolicyError(f"rules name topic filters, not shared subscriptions: {text!r}")
    for level in parsed.levels:
        for placeholder in ("%u", "%c"):
            if placeholder in level and level != placeholder:
                raise PolicyError(f"{placeholder} must be a whole topic level: {text!r}")
            if level == placeholder and placeholder not in placeholders:
                raise PolicyError(f"{placeholder} has no meaning here: {text!r}")
    return text


def check_device_pattern(text: str) -> str:
    """A device id, or a pattern in which ``*`` stands for any run of characters."""
    if text == WILDCARD:
        return text
    try:
        validate_principal_id(text.replace("*", "x"))
    except PrincipalError as exc:
        raise PolicyError(f"invalid device pattern {text!r}: {exc.reason}") from None
    return text


def _filters(reader: NodeReader, node: Node, placeholders: tuple[str, ...]) -> tuple[str, ...]:
    items = reader.sequence(node, "topics")
    if not items:
        reader.fail(node, "topics must not be empty")
    return tuple(
        reader.checked(
            item, "topic filter", lambda t: check_rule_filter(t, placeholders=placeholders)
        )
        for item in items
    )


def parse_mqtt(reader: NodeReader, node: Node) -> MqttTarget:
    entries = reader.mapping(node, "mqtt", ("actions", "topics"), ("actions", "topics"))
    actions: set[MqttAction] = set()
    for item, text in reader.strings(entries["actions"][1], "MQTT action"):
        if text.lower() not in {action.value for action in MqttAction}:
            reader.fail(item, f"unknown MQTT action {text!r}; expected publish or subscribe")
        actions.add(MqttAction(text.lower()))
    if not actions:
        reader.fail(entries["actions"][1], "actions must not be empty")
    return MqttTarget(frozenset(actions), _filters(reader, entries["topics"][1], ("%u", "%c")))


def _kafka_name(
    reader: NodeReader, node: Node, kind: KafkaResourceType, pattern: PatternType
) -> str:
    name = reader.string(node, "Kafka resource name")
    if kind is KafkaResourceType.CLUSTER:
        if name != CLUSTER_NAME or pattern is not PatternType.LITERAL:
            reader.fail(node, f"the cluster resource is the literal name {CLUSTER_NAME!r}")
        return name
    if name == WILDCARD:
        if pattern is PatternType.PREFIXED:
            reader.fail(node, "'*' means every name only with pattern: literal")
        return name
    if kind is KafkaResourceType.TOPIC and (
        not set(name) <= _KAFKA_TOPIC_CHARS or len(name) > 249 or name in (".", "..")
    ):
        reader.fail(node, f"{name!r} is not a legal Kafka topic name (A-Z a-z 0-9 . _ -, <= 249)")
    return name


def parse_kafka(reader: NodeReader, node: Node) -> KafkaTarget:
    keys = ("resource", "names", "pattern", "operations", "host")
    entries = reader.mapping(node, "kafka", keys, ("resource", "operations"))
    kind_node = entries["resource"][1]
    kind_text = reader.string(kind_node, "resource").lower()
    if kind_text not in {kind.value for kind in KafkaResourceType}:
        reader.fail(
            kind_node,
            f"unknown Kafka resource {kind_text!r}; expected one of topic, "
            "group, transactional_id, cluster",
        )
    kind = KafkaResourceType(kind_text)
    pattern = PatternType.LITERAL
    if "pattern" in entries:
        pattern_node = entries["pattern"][1]
        pattern_text = reader.string(pattern_node, "pattern").lower()
        if pattern_text not in {p.value for p in PatternType}:
            reader.fail(
                pattern_node, f"unknown pattern {pattern_text!r}; expected literal or prefixed"
            )
        pattern = PatternType(pattern_text)
    if "names" in entries:
        items = reader.sequence(entries["names"][1], "names")
        if not items:
            reader.fail(entries["names"][1], "names must not be empty")
        names = tuple(_kafka_name(reader, item, kind, pattern) for item in items)
    elif kind is KafkaResourceType.CLUSTER:
        names = (CLUSTER_NAME,)
    else:
        reader.fail(node, "kafka needs the key 'names'")
    operations: set[KafkaOperation] = set()
    for item, text in reader.strings(entries["operations"][1], "Kafka operation"):
        operation = parse_operation(text)
        if operation is None:
            reader.fail(
                item,
                f"unknown Kafka operation {text!r}; expected one of "
                f"{[op.value for op in KafkaOperation]}",
            )
        operations.add(operation)
    if not operations:
        reader.fail(entries["operations"][1], "operations must not be empty")
    host = WILDCARD
    if "host" in entries:
        host_node = entries["host"][1]
        host = reader.string(host_node, "host")
        if any(char.isspace() or char in ",;" for char in host):
            reader.fail(host_node, f"invalid host {host!r}")
    return KafkaTarget(kind, names, pattern, frozenset(operations), host)


def parse_http(reader: NodeReader, node: Node) -> HttpTarget:
    entries = reader.mapping(node, "http", ("actions", "devices", "topics"))
    if "devices" not in entries and "topics" not in entries:
        reader.fail(node, "http needs 'devices', 'topics' or both")
    if "actions" in entries:
        for item, text in reader.strings(entries["actions"][1], "HTTP action"):
            if text.lower() != HttpAction.READ.value:
                reader.fail(item, f"unknown HTTP action {text!r}; expected read")
    devices = None
    if "devices" in entries:
        items = reader.sequence(entries["devices"][1], "devices")
        if not items:
            reader.fail(entries["devices"][1], "devices must not be empty")
        devices = tuple(reader.checked(item, "device", check_device_pattern) for item in items)
    topics = _filters(reader, entries["topics"][1], ("%u",)) if "topics" in entries else None
    return HttpTarget(devices, topics)


def dump_target(target: Target) -> dict[str, object]:
    """The ``mqtt``/``kafka``/``http`` mapping of a rule, as the loader reads it."""
    if isinstance(target, MqttTarget):
        actions = [action.value for action in MqttAction if action in target.actions]
        return {"mqtt": {"actions": actions, "topics": list(target.topics)}}
    if isinstance(target, KafkaTarget):
        operations = [op.value for op in KafkaOperation if op in target.operations]
        body: dict[str, object] = {
            "resource": target.resource_type.value,
            "names": list(target.names),
            "pattern": target.pattern_type.value,
            "operations": operations,
        }
        if target.host != WILDCARD:
            body["host"] = target.host
        return {"kafka": body}
    body = {}
    if target.devices is not None:
        body["devices"] = list(target.devices)
    if target.topics is not None:
        body["topics"] = list(target.topics)
    return {"http": body}
