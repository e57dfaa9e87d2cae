"""The decision engine, table-driven from the cases of Kafka's authorizer tests
(StandardAuthorizerTest, AclAuthorizerTest) and Mosquitto's ACL semantics, plus properties."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import (
    Authorizer,
    Effect,
    Group,
    HttpScope,
    HttpTarget,
    KafkaOperation,
    KafkaResource,
    KafkaResourceType,
    KafkaTarget,
    MqttAction,
    MqttTarget,
    MqttTopic,
    PatternType,
    Policy,
    Principal,
    PrincipalKind,
    RequestError,
    Rule,
    parse_resource,
)
from policy.model import Target

TOPIC = KafkaResourceType.TOPIC
GROUP = KafkaResourceType.GROUP
LITERAL, PREFIXED = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = Effect.ALLOW, Effect.DENY
Op = KafkaOperation


def kafka_rule(
    effect: Effect,
    principal: str,
    kind: KafkaResourceType,
    name: str,
    pattern: PatternType,
    *ops: KafkaOperation,
    host: str = "*",
) -> Rule:
    return Rule(effect, (principal,), KafkaTarget(kind, (name,), pattern, frozenset(ops), host))


def mqtt_rule(effect: Effect, principal: str, actions: str, *topics: str) -> Rule:
    chosen = {"publish": {MqttAction.PUBLISH}, "subscribe": {MqttAction.SUBSCRIBE}}
    return Rule(
        effect,
        (principal,),
        MqttTarget(frozenset(chosen.get(actions, set(MqttAction))), topics),
    )


def authorizer(*rules: Rule, super_users: Sequence[str] = ()) -> Authorizer:
    return Authorizer(Policy(rules=rules, super_users=frozenset(super_users)))


def allowed(
    auth: Authorizer,
    principal: str,
    action: object,
    kind: KafkaResourceType,
    name: str,
    host: str | None = None,
) -> bool:
    return auth.authorize(principal, action, KafkaResource(kind, name), host=host).allowed  # type: ignore[arg-type]


# --- Kafka: StandardAuthorizerTest ------------------------------------------------------


def foo_acl(op: KafkaOperation, effect: Effect) -> Rule:
    return kafka_rule(effect, "bob", TOPIC, "foo_", PREFIXED, op)


@pytest.mark.parametrize("op", [Op.DESCRIBE, Op.READ, Op.WRITE, Op.DELETE, Op.ALTER])
def test_these_allows_imply_describe(op: KafkaOperation) -> None:
    assert allowed(authorizer(foo_acl(op, ALLOW)), "bob", Op.DESCRIBE, TOPIC, "foo_bar")


def test_create_does_not_imply_describe() -> None:
    assert not allowed(authorizer(foo_acl(Op.CREATE, ALLOW)), "bob", Op.DESCRIBE, TOPIC, "foo_bar")


@pytest.mark.parametrize("op", [Op.READ, Op.WRITE, Op.DELETE, Op.ALTER])
def test_deny_acls_imply_nothing(op: KafkaOperation) -> None:
    auth = authorizer(foo_acl(op, DENY), foo_acl(Op.DESCRIBE, ALLOW))
    assert allowed(auth, "bob", Op.DESCRIBE, TOPIC, "foo_bar")
    assert not allowed(auth, "bob", op, TOPIC, "foo_bar")


@pytest.mark.parametrize("op", [Op.DESCRIBE_CONFIGS, Op.ALTER_CONFIGS])
def test_these_allows_imply_describe_configs(op: KafkaOperation) -> None:
    assert allowed(authorizer(foo_acl(op, ALLOW)), "bob", Op.DESCRIBE_CONFIGS, TOPIC, "foo_bar")


def test_alter_configs_deny_does_not_deny_describe_configs() -> None:
    auth = authorizer(foo_acl(Op.ALTER_CONFIGS, DENY), foo_acl(Op.DESCRIBE_CONFIGS, ALLOW))
    assert allowed(auth, "bob", Op.DESCRIBE_CONFIGS, TOPIC, "foo_bar")
    assert not allowed(auth, "bob", Op.ALTER_CONFIGS, TOPIC, "foo_bar")


def test_principal_matching_and_the_wildcard_principal() -> None:
    auth = authorizer(
        foo_acl(Op.READ, ALLOW), kafka_rule(DENY, "*", GROUP, "bar", LITERAL, Op.READ)
    )
    assert allowed(auth, "bob", Op.READ, TOPIC, "foo_bar")
    assert allowed(auth, "User:bob", Op.READ, TOPIC, "foo_bar")  # Kafka's principal form
    assert not allowed(auth, "alice", Op.READ, TOPIC, "foo_bar")
    assert not allowed(auth, "alice", Op.READ, GROUP, "bar")


def test_simple_authorizations() -> None:
    auth = authorizer(
        foo_acl(Op.READ, ALLOW),
        foo_acl(Op.WRITE, ALLOW),
        kafka_rule(ALLOW, "*", GROUP, "bar", LITERAL, Op.DESCRIBE_CONFIGS),
        kafka_rule(ALLOW, "*", GROUP, "bar", LITERAL, Op.ALTER_CONFIGS),
    )
    assert allowed(auth, "bob", Op.READ, TOPIC, "foo_")
    assert allowed(auth, "fred", Op.ALTER_CONFIGS, GROUP, "bar")


@pytest.mark.parametrize(
    ("principal", "op", "name", "expected"),
    [
        ("alice", Op.WRITE, "foo", True),
        ("alice", Op.DESCRIBE_CONFIGS, "bar", True),
        ("alice", Op.DESCRIBE, "baz", False),
        ("bob", Op.WRITE, "foo", True),
        ("bob", Op.READ, "bar", False),
        ("bob", Op.DESCRIBE, "baz", True),
        ("malory", Op.DESCRIBE, "foo", True),
        ("malory", Op.WRITE, "bar", False),
        ("malory", Op.READ, "baz", False),
    ],
)
def test_topic_acl_with_operation_all(
    principal: str, op: KafkaOperation, name: str, expected: bool
) -> None:
    auth = authorizer(
        kafka_rule(ALLOW, "*", TOPIC, "foo", LITERAL, Op.ALL),
        kafka_rule(ALLOW, "alice", TOPIC, "bar", PREFIXED, Op.ALL),
        kafka_rule(ALLOW, "bob", TOPIC, "baz", LITERAL, Op.ALL),
    )
    assert allowed(auth, principal, op, TOPIC, name) is expected


MANY_ACLS = (
    kafka_rule(ALLOW, "*", TOPIC, "green2", LITERAL, Op.READ),
    kafka_rule(ALLOW, "bob", TOPIC, "green", PREFIXED, Op.READ),
    kafka_rule(ALLOW, "bob", TOPIC, "betamax4", LITERAL, Op.READ),
    kafka_rule(ALLOW, "bob", TOPIC, "betamax", LITERAL, Op.READ),
    kafka_rule(ALLOW, "*", TOPIC, "beta", PREFIXED, Op.READ),
    kafka_rule(ALLOW, "*", TOPIC, "alpha", PREFIXED, Op.READ),
    kafka_rule(DENY, "bob", TOPIC, "alp", PREFIXED, Op.READ),
    kafka_rule(ALLOW, "bob", GROUP, "*", LITERAL, Op.WRITE),
    kafka_rule(DENY, "*", GROUP, "wheel", LITERAL, Op.WRITE),
)


@pytest.mark.parametrize(
    ("op", "kind", "name", "expected"),
    [
        (Op.READ, TOPIC, "green1", True),
        (Op.WRITE, GROUP, "wheel", False),
        (Op.READ, TOPIC, "alpha", False),
        (Op.WRITE, GROUP, "arbitrary", True),
        (Op.READ, TOPIC, "ala", False),
        (Op.READ, TOPIC, "betamax", True),
        (Op.READ, TOPIC, "betamax42", True),  # via prefixed "beta" for User:*
    ],
)
def test_authorization_with_many_acls(
    op: KafkaOperation, kind: KafkaResourceType, name: str, expected: bool
) -> None:
    assert allowed(authorizer(*MANY_ACLS), "bob", op, kind, name) is expected


# --- Kafka: AclAuthorizerTest -----------------------------------------------------------

HOST1, HOST2 = "192.168.1.1", "192.168.1.2"
TOPIC_ACLS = (
    kafka_rule(ALLOW, "alice", TOPIC, "t", LITERAL, Op.READ, host=HOST1),
    kafka_rule(ALLOW, "alice", TOPIC, "t", LITERAL, Op.READ, host=HOST2),
    kafka_rule(DENY, "alice", TOPIC, "t", LITERAL, Op.READ, host=HOST1),
    kafka_rule(ALLOW, "alice", TOPIC, "t", LITERAL, Op.WRITE, host=HOST1),
    kafka_rule(ALLOW, "alice", TOPIC, "t", LITERAL, Op.DESCRIBE),
    kafka_rule(ALLOW, "rob", TOPIC, "t", LITERAL, Op.READ),
    kafka_rule(ALLOW, "batman", TOPIC, "t", LITERAL, Op.WRITE),
)


@pytest.mark.parametrize(
    ("principal", "host", "op", "expected"),
    [
        ("alice", HOST2, Op.READ, True),
        ("alice", HOST1, Op.READ, False),  # the host-specific deny wins
        ("alice", HOST1, Op.WRITE, True),
        ("alice", HOST2, Op.WRITE, False),
        ("alice", HOST1, Op.DESCRIBE, True),  # the READ deny does not deny DESCRIBE
        ("alice", HOST2, Op.DESCRIBE, True),
        ("alice", HOST1, Op.ALTER, False),
        ("alice", HOST2, Op.ALTER, False),
        ("rob", HOST1, Op.DESCRIBE, True),
        ("batman", HOST1, Op.DESCRIBE, True),
        ("rob", HOST1, Op.READ, True),
        ("batman", HOST1, Op.WRITE, True),
        ("alice", None, Op.READ, False),  # unknown host: host allows miss, host denies hit
    ],
)
def test_topic_acls_with_hosts(
    principal: str, host: str | None, op: KafkaOperation, expected: bool
) -> None:
    assert allowed(authorizer(*TOPIC_ACLS), principal, op, TOPIC, "t", host=host) is expected


def test_deny_takes_precedence() -> None:
    auth = authorizer(
        kafka_rule(ALLOW, "alice", TOPIC, "t", LITERAL, Op.READ),
        kafka_rule(DENY, "alice", TOPIC, "t", LITERAL, Op.READ, host=HOST1),
    )
    assert not allowed(auth, "alice", Op.READ, TOPIC, "t", host=HOST1)
    assert allowed(auth, "alice", Op.READ, TOPIC, "t", host=HOST2)


def test_allow_all_access() -> None:
    auth = authorizer(kafka_rule(ALLOW, "*", TOPIC, "t", LITERAL, Op.ALL))
    assert allowed(auth, "random", Op.READ, TOPIC, "t", host="10.0.0.9")


def test_super_users_bypass_deny() -> None:
    auth = authorizer(kafka_rule(DENY, "*", TOPIC, "t", LITERAL, Op.ALL), super_users=["root"])
    assert allowed(auth, "root", Op.READ, TOPIC, "t")
    assert allowed(auth, "User:root", Op.ALTER, TOPIC, "other")
    assert not allowed(auth, "alice", Op.READ, TOPIC, "t")


def test_wildcard_resource() -> None:
    auth = authorizer(kafka_rule(ALLOW, "alice", TOPIC, "*", LITERAL, Op.READ, host=HOST1))
    assert allowed(auth, "alice", Op.READ, TOPIC, "anything", host=HOST1)
    assert not allowed(auth, "alice", Op.WRITE, TOPIC, "anything", host=HOST1)
    assert not allowed(auth, "alice", Op.READ, TOPIC, "anything", host=HOST2)
    assert not allowed(auth, "alice", Op.READ, GROUP, "anything", host=HOST1)


def test_no_acl_found_means_denied() -> None:
    assert not allowed(authorizer(), "alice", Op.READ, TOPIC, "t")


ALL_REAL_OPS = [op for op in Op if op is not Op.ALL]


@pytest.mark.parametrize(
    ("granted", "implied"),
    [
        (Op.ALL, set(ALL_REAL_OPS)),
        (Op.READ, {Op.READ, Op.DESCRIBE}),
        (Op.WRITE, {Op.WRITE, Op.DESCRIBE}),
        (Op.DELETE, {Op.DELETE, Op.DESCRIBE}),
        (Op.ALTER, {Op.ALTER, Op.DESCRIBE}),
        (Op.DESCRIBE, {Op.DESCRIBE}),
        (Op.ALTER_CONFIGS, {Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS}),
        (Op.DESCRIBE_CONFIGS, {Op.DESCRIBE_CONFIGS}),
        (Op.CREATE, {Op.CREATE}),
    ],
)
def test_implications_of_allow_and_deny(
    granted: KafkaOperation, implied: set[KafkaOperation]
) -> None:
    allow = authorizer(kafka_rule(ALLOW, "alice", TOPIC, "t", LITERAL, granted))
    for op in ALL_REAL_OPS:
        assert allowed(allow, "alice", op, TOPIC, "t") is (op in implied)
    deny = authorizer(
        kafka_rule(ALLOW, "alice", TOPIC, "t", LITERAL, Op.ALL),
        kafka_rule(DENY, "alice", TOPIC, "t", LITERAL, granted),
    )
    for op in ALL_REAL_OPS:
        assert allowed(deny, "alice", op, TOPIC, "t") is not (granted is Op.ALL or op is granted)


@pytest.mark.parametrize(
    ("rule", "name", "expected"),
    [
        (kafka_rule(ALLOW, "alice", TOPIC, "f", LITERAL, Op.READ), "f", True),
        (kafka_rule(ALLOW, "alice", TOPIC, "f", LITERAL, Op.READ), "foo", False),
        (kafka_rule(ALLOW, "alice", TOPIC, "f", PREFIXED, Op.READ), "foo", True),
        (kafka_rule(ALLOW, "alice", TOPIC, "foo", PREFIXED, Op.READ), "fo", False),
        (kafka_rule(ALLOW, "alice", TOPIC, "*", PREFIXED, Op.READ), "foo", False),  # literal '*'
        (kafka_rule(ALLOW, "alice", TOPIC, "*", PREFIXED, Op.READ), "*x", True),
    ],
)
def test_literal_prefixed_and_single_character_names(rule: Rule, name: str, expected: bool) -> None:
    assert allowed(authorizer(rule), "alice", Op.READ, TOPIC, name) is expected


def test_deny_on_prefix_beats_allow_on_literal() -> None:
    auth = authorizer(
        kafka_rule(ALLOW, "alice", TOPIC, "foo-1", LITERAL, Op.READ),
        kafka_rule(DENY, "alice", TOPIC, "foo", PREFIXED, Op.READ),
    )
    assert not allowed(auth, "alice", Op.READ, TOPIC, "foo-1")


def test_operation_names_are_accepted_in_kafka_spellings() -> None:
    auth = authorizer(kafka_rule(ALLOW, "alice", TOPIC, "t", LITERAL, Op.DESCRIBE_CONFIGS))
    for spelling in ("DESCRIBE_CONFIGS", "DescribeConfigs", "describe-configs"):
        assert allowed(auth, "alice", spelling, TOPIC, "t")
    decision = auth.authorize("alice", "Sneak", KafkaResource(TOPIC, "t"))
    assert not decision.allowed
    assert "not a Kafka operation" in decision.reason


# --- MQTT: Mosquitto semantics ----------------------------------------------------------


def mqtt(
    auth: Authorizer, principal: str, action: str, topic: str, client_id: str | None = None
) -> bool:
    return auth.authorize(principal, action, MqttTopic(topic), client_id=client_id).allowed


@pytest.mark.parametrize(
    ("username", "client_id", "action", "topic", "expected"),
    [
        ("alice", "c1", "publish", "devices/alice/telemetry", True),
        ("alice", "c1", "publish", "devices/bob/telemetry", False),
        ("alice", "c1", "subscribe", "devices/alice/telemetry", False),  # write only
        ("alice", "c1", "subscribe", "clients/c1/cmd", True),
        ("alice", "c2", "subscribe", "clients/c1/cmd", False),
        ("alice", None, "subscribe", "clients/c1/cmd", False),  # no client id, no match
        ("alice", "c1", "subscribe", "both/alice/c1", True),
        ("alice", "c1", "subscribe", "both/c1/alice", False),
        # Mosquitto's protection: + # / in a name is never substituted.
        ("a+b", "c1", "publish", "devices/a+b/telemetry", False),
        ("alice", "c+", "subscribe", "clients/+/cmd", False),
        ("alice", "#", "subscribe", "clients/#", False),
        ("alice", "x/y", "subscribe", "clients/x/y/cmd", False),
        ("a/b", "c1", "publish", "devices/a/b/telemetry", False),
    ],
)
def test_pattern_substitution(
    username: str, client_id: str | None, action: str, topic: str, expected: bool
) -> None:
    auth = authorizer(
        mqtt_rule(ALLOW, "*", "publish", "devices/%u/telemetry"),
        mqtt_rule(ALLOW, "*", "subscribe", "clients/%c/cmd"),
        mqtt_rule(ALLOW, "*", "subscribe", "both/%u/%c"),
    )
    assert mqtt(auth, username, action, topic, client_id) is expected


def test_deny_wins_over_readwrite_and_dollar_topics_need_their_own_rule() -> None:
    auth = authorizer(
        mqtt_rule(ALLOW, "alice", "both", "#"),
        mqtt_rule(DENY, "alice", "both", "secret/#"),
        mqtt_rule(ALLOW, "ops", "subscribe", "$SYS/#"),
    )
    assert mqtt(auth, "alice", "publish", "a/b")
    assert mqtt(auth, "alice", "subscribe", "a/b")
    assert not mqtt(auth, "alice", "publish", "secret")
    assert not mqtt(auth, "alice", "subscribe", "secret/x/y")
    assert not mqtt(auth, "alice", "subscribe", "$SYS/broker/uptime")
    assert mqtt(auth, "ops", "subscribe", "$SYS/broker/uptime")
    assert not mqtt(auth, "ops", "subscribe", "$SYS2/x")


@pytest.mark.parametrize(
    ("subscription", "expected"),
    [
        ("devices/d1/telemetry", True),
        ("devices/d1/status", True),  # covered by devices/+/+
        ("$share/gw/devices/d1/+", True),  # judged by its filter
        ("devices/#", False),  # wider than any allow rule
        ("devices/d9/telemetry", False),  # denied topic
        ("devices/+/telemetry", False),  # covered, but the deny could match devices/d9/...
        ("+/+/telemetry", False),  # no rule covers it
    ],
)
def test_subscribing_to_filters(subscription: str, expected: bool) -> None:
    auth = authorizer(
        mqtt_rule(ALLOW, "gw", "subscribe", "devices/+/telemetry", "devices/+/+"),
        mqtt_rule(DENY, "gw", "subscribe", "devices/d9/#"),
    )
    assert mqtt(auth, "gw", "subscribe", subscription) is expected


def test_shared_subscriptions_are_judged_by_their_filter() -> None:
    auth = authorizer(mqtt_rule(ALLOW, "gw", "subscribe", "devices/+/telemetry"))
    assert mqtt(auth, "gw", "subscribe", "$share/gw/devices/+/telemetry")
    assert mqtt(auth, "gw", "subscribe", "devices/+/telemetry")
    assert not mqtt(auth, "gw", "subscribe", "$share/gw/devices/#")


def test_wildcard_deny_blocks_overlapping_subscriptions() -> None:
    auth = authorizer(
        mqtt_rule(ALLOW, "gw", "subscribe", "devices/#"),
        mqtt_rule(DENY, "gw", "subscribe", "devices/d9/#"),
    )
    assert not mqtt(auth, "gw", "subscribe", "devices/#")
    assert not mqtt(auth, "gw", "subscribe", "devices/+/telemetry")
    assert mqtt(auth, "gw", "subscribe", "devices/d1/#")


@pytest.mark.parametrize(
    ("action", "topic", "reason"),
    [
        ("publish", "devices/+/telemetry", "wildcard"),
        ("publish", "", "empty"),
        ("subscribe", "a/#/b", "last level"),
        ("fly", "a", "not an MQTT action"),
    ],
)
def test_bad_mqtt_requests_are_denied_with_a_reason(action: str, topic: str, reason: str) -> None:
    auth = authorizer(mqtt_rule(ALLOW, "*", "both", "#"))
    decision = auth.authorize("alice", action, MqttTopic(topic))
    assert not decision.allowed
    assert decision.rule is None
    assert reason in decision.reason


# --- HTTP scopes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (HttpScope("sensor-1", "devices/sensor-1/telemetry"), True),
        (HttpScope("sensor-1"), False),  # every topic: the rule limits topics
        (HttpScope("sensor-1", "devices/+/telemetry"), True),
        (HttpScope("sensor-1", "devices/#"), False),
        (HttpScope("dev-1", "devices/dev-1/telemetry"), True),
        (HttpScope("dev-2", "devices/dev-2/telemetry"), False),
        (HttpScope(None, "devices/x/telemetry"), False),  # all devices: not allowed
        (HttpScope("sensor-9", "devices/sensor-9/telemetry"), False),  # denied device
        (HttpScope("gizmo", "devices/gizmo/telemetry"), False),
    ],
)
def test_http_scopes(scope: HttpScope, expected: bool) -> None:
    auth = authorizer(
        Rule(ALLOW, ("dash",), HttpTarget(("dev-1", "sensor-*"), ("devices/+/telemetry",))),
        Rule(DENY, ("dash",), HttpTarget(("sensor-9",), None)),
    )
    assert auth.authorize("dash", "read", scope).allowed is expected


def test_http_deny_without_device_concerns_every_device() -> None:
    auth = authorizer(
        Rule(ALLOW, ("ops",), HttpTarget(("*",), None)),
        Rule(DENY, ("ops",), HttpTarget(("secret-*",), None)),
    )
    assert auth.authorize("ops", "read", HttpScope("dev-1")).allowed
    assert not auth.authorize("ops", "read", HttpScope(None)).allowed
    assert not auth.authorize("ops", "read", HttpScope("secret-7")).allowed


def test_http_topics_with_username_placeholder() -> None:
    auth = authorizer(Rule(ALLOW, ("*",), HttpTarget(None, ("devices/%u/#",))))
    assert auth.authorize("dev-1", "read", HttpScope("x", "devices/dev-1/telemetry")).allowed
    assert not auth.authorize("dev-1", "read", HttpScope("x", "devices/dev-2/telemetry")).allowed


# --- groups, roles, explain, parse_resource ---------------------------------------------


def test_groups_and_roles_select_principals() -> None:
    policy = Policy(
        principals=(
            Principal("d1", PrincipalKind.DEVICE, groups=("devices",)),
            Principal("svc", PrincipalKind.SERVICE, roles=("ingest",)),
        ),
        groups=(Group("devices", roles=("device",)),),
        rules=(
            mqtt_rule(ALLOW, "role:device", "publish", "devices/%u/telemetry"),
            mqtt_rule(ALLOW, "role:ingest", "subscribe", "devices/+/telemetry"),
            mqtt_rule(DENY, "group:devices", "publish", "devices/+/commands"),
        ),
    )
    auth = Authorizer(policy)
    assert mqtt(auth, "d1", "publish", "devices/d1/telemetry")
    assert not mqtt(auth, "svc", "publish", "devices/svc/telemetry")
    assert mqtt(auth, "svc", "subscribe", "devices/d1/telemetry")
    assert not mqtt(auth, "stranger", "subscribe", "devices/d1/telemetry")


def test_explain_lists_every_matching_rule_with_lines() -> None:
    allow = replace(mqtt_rule(ALLOW, "*", "both", "#"), id="all", line=3)
    deny = replace(mqtt_rule(DENY, "alice", "publish", "secret/#"), line=9)
    auth = authorizer(allow, deny)
    explanation = auth.explain("alice", "publish", MqttTopic("secret/x"))
    assert explanation.decision == auth.authorize("alice", "publish", MqttTopic("secret/x"))
    assert explanation.decision.rule == deny
    assert explanation.allowing == (allow,)
    assert explanation.denying == (deny,)
    view = explanation.as_dict()
    assert view["allowed"] is False
    assert view["rule"] == {"id": None, "effect": "deny", "line": 9, "principals": ["alice"]}
    assert "denied by rule at line 9" in str(view["reason"])


def test_super_user_decisions_say_so() -> None:
    decision = authorizer(super_users=["root"]).authorize("root", "publish", MqttTopic("a"))
    assert decision.allowed
    assert decision.rule is None
    assert "super user" in decision.reason


@pytest.mark.parametrize(
    ("text", "resource"),
    [
        ("mqtt:devices/+/telemetry", MqttTopic("devices/+/telemetry")),
        ("kafka:topic:iot.telemetry.v1", KafkaResource(TOPIC, "iot.telemetry.v1")),
        ("kafka:group:g:with:colons", KafkaResource(GROUP, "g:with:colons")),
        ("kafka:cluster", KafkaResource(KafkaResourceType.CLUSTER, "kafka-cluster")),
        ("http:dev-1", HttpScope("dev-1")),
        ("http:*:devices/#", HttpScope(None, "devices/#")),
    ],
)
def test_parse_resource(text: str, resource: object) -> None:
    assert parse_resource(text) == resource


@pytest.mark.parametrize("text", ["", "mqtt:", "kafka:queue:x", "kafka:topic:", "smtp:x"])
def test_parse_resource_errors(text: str) -> None:
    with pytest.raises(RequestError):
        parse_resource(text)


# --- properties -------------------------------------------------------------------------

PRINCIPALS = ["alice", "bob", "d1"]
SELECTORS = st.sampled_from(["*", "alice", "bob", "group:g"])
FILTERS = st.sampled_from(["#", "a/#", "a/+", "a/b", "+/b", "%u/#", "a/%u", "$SYS/#", "%c/+"])
TOPIC_NAMES = st.sampled_from(["a", "a/b", "a/alice", "alice/x", "b/b", "$SYS/x", "c1/z"])
NAMES = st.sampled_from(["t", "t1", "tx", "*", "u"])
OPS = st.sets(st.sampled_from(list(Op)), min_size=1, max_size=3).map(frozenset)


def targets() -> st.SearchStrategy[Target]:
    mqtt_targets = st.builds(
        MqttTarget,
        st.sets(st.sampled_from(list(MqttAction)), min_size=1).map(frozenset),
        st.lists(FILTERS, min_size=1, max_size=2).map(tuple),
    )
    kafka_targets = st.builds(
        KafkaTarget,
        st.sampled_from([TOPIC, GROUP]),
        st.lists(NAMES, min_size=1, max_size=2).map(tuple),
        st.sampled_from([LITERAL, PREFIXED]),
        OPS,
        st.sampled_from(["*", HOST1]),
    ).filter(lambda t: not (t.pattern_type is PREFIXED and "*" in t.names))
    http_targets = st.builds(
        HttpTarget,
        st.one_of(st.none(), st.lists(st.sampled_from(["d1", "d*", "*"]), min_size=1).map(tuple)),
        st.one_of(
            st.none(), st.lists(FILTERS.filter(lambda f: "%c" not in f), min_size=1).map(tuple)
        ),
    ).filter(lambda t: t.devices is not None or t.topics is not None)
    return st.one_of(mqtt_targets, kafka_targets, http_targets)


rules = st.builds(
    Rule,
    st.sampled_from([ALLOW, DENY]),
    st.lists(SELECTORS, min_size=1, max_size=2).map(tuple),
    targets(),
)
policies = st.builds(
    lambda rs, sus: Policy(
        principals=(
            Principal("alice", PrincipalKind.DEVICE, groups=("g",)),
            Principal("bob", PrincipalKind.SERVICE),
        ),
        groups=(Group("g"),),
        rules=tuple(rs),
        super_users=frozenset(sus),
    ),
    st.lists(rules, max_size=6),
    st.sets(st.sampled_from(PRINCIPALS), max_size=1),
)
requests = st.one_of(
    st.tuples(st.sampled_from(["publish", "subscribe"]), TOPIC_NAMES.map(MqttTopic)),
    st.tuples(
        st.sampled_from([MqttAction.SUBSCRIBE]),
        st.sampled_from(["a/#", "+/b", "a/+", "#"]).map(MqttTopic),
    ),
    st.tuples(
        st.sampled_from(list(Op)), st.builds(KafkaResource, st.sampled_from([TOPIC, GROUP]), NAMES)
    ),
    st.tuples(
        st.just("read"),
        st.builds(
            HttpScope, st.sampled_from([None, "d1", "d2"]), st.sampled_from([None, "a/b", "a/#"])
        ),
    ),
)
hosts = st.sampled_from([None, HOST1, HOST2])


def exact_deny(resource: object) -> Rule:
    """A deny rule for every principal that certainly matches ``resource``."""
    if isinstance(resource, MqttTopic):
        return Rule(
            DENY, ("*",), MqttTarget(frozenset(MqttAction), ("#", "$SYS/#", resource.topic))
        )
    if isinstance(resource, KafkaResource):
        return Rule(
            DENY, ("*",), KafkaTarget(resource.resource_type, ("*",), LITERAL, frozenset({Op.ALL}))
        )
    return Rule(DENY, ("*",), HttpTarget(("*",), None))


@settings(max_examples=300, deadline=None)
@given(
    policies, SELECTORS.filter(lambda s: ":" not in s and s != "*") | st.just("d1"), requests, hosts
)
def test_deny_always_wins(
    policy: Policy, principal: str, request: tuple[object, object], host: str | None
) -> None:
    action, resource = request
    with_deny = replace(policy, rules=(*policy.rules, exact_deny(resource)))
    decision = Authorizer(with_deny).authorize(
        principal, action, resource, client_id="c1", host=host
    )  # type: ignore[arg-type]
    assert decision.allowed is (principal in policy.super_users)


@settings(max_examples=300, deadline=None)
@given(policies, st.sampled_from(PRINCIPALS), requests, hosts, rules, st.integers(0, 6))
def test_adding_an_allow_never_turns_allow_into_deny(
    policy: Policy,
    principal: str,
    request: tuple[object, object],
    host: str | None,
    extra: Rule,
    at: int,
) -> None:
    action, resource = request
    before = Authorizer(policy).authorize(principal, action, resource, client_id="c1", host=host)  # type: ignore[arg-type]
    allow = replace(extra, effect=ALLOW)
    rules_after = (*policy.rules[:at], allow, *policy.rules[at:])
    after = Authorizer(replace(policy, rules=rules_after)).authorize(
        principal,
        action,
        resource,
        client_id="c1",
        host=host,  # type: ignore[arg-type]
    )
    if before.allowed:
        assert after.allowed


@settings(max_examples=300, deadline=None)
@given(policies, st.sampled_from(PRINCIPALS), requests, hosts, rules)
def test_adding_a_deny_never_turns_deny_into_allow(
    policy: Policy, principal: str, request: tuple[object, object], host: str | None, extra: Rule
) -> None:
    action, resource = request
    before = Authorizer(policy).authorize(principal, action, resource, host=host)  # type: ignore[arg-type]
    after = Authorizer(
        replace(policy, rules=(replace(extra, effect=DENY), *policy.rules))
    ).authorize(
        principal,
        action,
        resource,
        host=host,  # type: ignore[arg-type]
    )
    if not before.allowed:
        assert not after.allowed


@settings(max_examples=200, deadline=None)
@given(policies, st.sampled_from(PRINCIPALS), requests)
def test_rule_order_does_not_change_decisions(
    policy: Policy, principal: str, request: tuple[object, object]
) -> None:
    action, resource = request
    reordered = replace(policy, rules=tuple(reversed(policy.rules)))
    first = Authorizer(policy).authorize(principal, action, resource, client_id="c1")  # type: ignore[arg-type]
    second = Authorizer(reordered).authorize(principal, action, resource, client_id="c1")  # type: ignore[arg-type]
    assert first.allowed == second.allowed


@settings(deadline=None)
@given(st.sampled_from([*PRINCIPALS, "stranger"]), requests, hosts)
def test_an_empty_policy_denies_everything(
    principal: str, request: tuple[object, object], host: str | None
) -> None:
    action, resource = request
    decision = Authorizer(Policy()).authorize(
        principal, action, resource, client_id="c1", host=host
    )  # type: ignore[arg-type]
    assert not decision.allowed
    assert decision.rule is None


@settings(max_examples=200, deadline=None)
@given(policies, st.sampled_from(PRINCIPALS), requests, hosts)
def test_explain_agrees_with_authorize(
    policy: Policy, principal: str, request: tuple[object, object], host: str | None
) -> None:
    action, resource = request
    auth = Authorizer(policy)
    decision = auth.authorize(principal, action, resource, client_id="c1", host=host)  # type: ignore[arg-type]
    explanation = auth.explain(principal, action, resource, client_id="c1", host=host)  # type: ignore[arg-type]
    assert explanation.decision == decision
    if explanation.super_user:
        assert decision.allowed
    else:
        assert decision.allowed == (bool(explanation.allowing) and not explanation.denying)


def test_reasons_stay_short_for_hostile_input() -> None:
    auth = authorizer(mqtt_rule(ALLOW, "*", "both", "a/%u/#"))
    decision = auth.authorize("x" * 70_000, "publish", MqttTopic("a/b"))
    assert not decision.allowed
    assert len(decision.reason) < 300
    invalid = auth.authorize("x", "publish", MqttTopic("a/+" * 30_000))
    assert len(invalid.reason) < 300


def test_repeated_requests_get_the_same_decision() -> None:
    auth = authorizer(mqtt_rule(ALLOW, "*", "publish", "devices/%u/telemetry"))
    first = auth.authorize("d1", "publish", MqttTopic("devices/d1/telemetry"), client_id="c")
    again = auth.authorize(
        "d1", MqttAction.PUBLISH, MqttTopic("devices/d1/telemetry"), client_id="c"
    )
    assert first.allowed
    assert again is first  # memoised: the per-message check is a dictionary lookup
