"""Mosquitto: password hashes (checked with the real mosquitto_passwd), the acl_file model of
Mosquitto 2.0, generation from the policy and import, each with identical decisions."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from policy import (
    Authorizer,
    Effect,
    GenerationError,
    Group,
    MosquittoAcl,
    MosquittoAclError,
    MqttAction,
    MqttTarget,
    MqttTopic,
    Policy,
    Principal,
    PrincipalKind,
    Rule,
    dump_policy,
    generate_acl_file,
    generate_password_file,
    hash_password,
    import_mosquitto_acl,
    load_policy,
    loads_policy,
    verify_password,
)
from policy.mosquitto import known_users

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "policy.example.yaml"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
needs_mosquitto_passwd = pytest.mark.skipif(
    not Path(MOSQUITTO_PASSWD).exists(), reason="mosquitto_passwd is not installed"
)


# --- password_file ----------------------------------------------------------------------


def mosquitto_passwd_line(tmp_path: Path, user: str, password: str, *flags: str) -> str:
    target = tmp_path / "passwords"
    subprocess.run(
        [MOSQUITTO_PASSWD, *flags, "-c", "-b", str(target), user, password],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return target.read_text().strip()


@needs_mosquitto_passwd
def test_hashes_written_by_mosquitto_passwd_verify(tmp_path: Path) -> None:
    line = mosquitto_passwd_line(tmp_path, "dev-1", "s3cret pässword")
    user, encoded = line.split(":", 1)
    assert user == "dev-1"
    assert encoded.startswith("$7$101$")
    assert verify_password("s3cret pässword", encoded)
    assert not verify_password("s3cret password", encoded)


@needs_mosquitto_passwd
def test_our_hash_is_byte_identical_to_mosquitto_passwd_for_the_same_salt(tmp_path: Path) -> None:
    import base64  # noqa: PLC0415 - only this test needs it

    encoded = mosquitto_passwd_line(tmp_path, "dev-1", "hunter2").split(":", 1)[1]
    salt = base64.b64decode(encoded.split("$")[3])
    assert hash_password("hunter2", salt=salt) == encoded


@needs_mosquitto_passwd
def test_legacy_sha512_hashes_verify(tmp_path: Path) -> None:
    encoded = mosquitto_passwd_line(tmp_path, "old", "pw", "-H", "sha512").split(":", 1)[1]
    assert encoded.startswith("$6$")
    assert verify_password("pw", encoded)
    assert not verify_password("pw2", encoded)


def test_hash_password_format_and_round_trip() -> None:
    encoded = hash_password("secret")
    _, kind, iterations, salt, digest = encoded.split("$")
    assert (kind, iterations, len(salt), len(digest)) == ("7", "101", 16, 88)
    assert verify_password("secret", encoded)
    assert not verify_password("Secret", encoded)
    assert hash_password("x") != hash_password("x")  # fresh salt each time
    assert verify_password("x", hash_password("x", iterations=1000))
    with pytest.raises(ValueError, match="12-byte salt"):
        hash_password("x", salt=b"short")


@pytest.mark.parametrize(
    "encoded",
    ["", "plain", "$7$101$abc$def", "$7$0$AAAAAAAAAAAAAAAA$" + "A" * 88, "$5$x$y", "$7$x$y$z"],
)
def test_malformed_hashes_never_verify(encoded: str) -> None:
    assert not verify_password("anything", encoded)


def test_password_file() -> None:
    hashes = {"dev-2": hash_password("b"), "dev-1": hash_password("a")}
    text = generate_password_file(hashes)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [f"dev-1:{hashes['dev-1']}", f"dev-2:{hashes['dev-2']}"]
    with pytest.raises(GenerationError, match="':'"):
        generate_password_file({"a:b": hash_password("x")})
    with pytest.raises(GenerationError, match="not one Mosquitto reads"):
        generate_password_file({"dev-1": "plaintext"})
    policy = Policy(principals=(Principal("dev-1", PrincipalKind.DEVICE),))
    with pytest.raises(GenerationError, match="not in the policy"):
        generate_password_file(hashes, policy)


# --- the acl_file model of Mosquitto 2.0 --------------------------------------------------

ACL = dedent(
    """\
    # anonymous clients
    topic read public/#

    user alice
    topic write own/alice/#
    topic read cmd/alice
    topic readwrite shared/#
    topic deny shared/secret

    user bob
    topic bobzone/#
    pattern write pc/%c/x
    pattern write pu/%u/x
    pattern write in/a%cb
    pattern read deliver/%c
    pattern deny pc/blocked/x
    """
)


@pytest.mark.parametrize(
    ("username", "client_id", "topic", "access", "expected"),
    [
        (None, "anon", "public/news", "read", True),
        (None, "anon", "public/news", "write", False),
        (None, "anon", "pu/x/x", "write", False),  # %u patterns skip clients without username
        (None, "anon", "pc/anon/x", "write", True),
        ("alice", "a1", "own/alice/t", "write", True),
        ("alice", "a1", "own/bob/t", "write", False),
        ("alice", "a1", "cmd/alice", "write", False),  # read only
        ("alice", "a1", "shared/x", "read", True),
        ("alice", "a1", "shared/secret", "read", False),  # deny lines come first
        ("bob", "b1", "bobzone/a", "write", True),  # no access word: readwrite
        ("bob", "b1", "bobzone/a", "read", True),
        ("bob", "dev1", "pc/dev1/x", "write", True),
        ("bob", "dev1", "pu/bob/x", "write", True),
        ("bob", "q", "in/aqb", "write", True),  # 2.0 substitutes inside a level
        ("bob", "a/b", "pc/a/b/x", "write", True),  # ... and '/' as raw text (2.0.11, checked)
        ("bob", "a/b", "pc/a/x", "write", False),
        ("bob", "x+y", "pc/x+y/x", "write", False),  # dangerous client id
        ("bob", "x+y", "bobzone/a", "write", True),  # the user's own lines come first
        ("carol", "blocked", "pc/blocked/x", "write", False),  # pattern deny
        ("carol", "c", "bobzone/a", "write", False),  # no section: patterns only
        ("alice", "a1", "$SYS/broker/uptime", "read", False),
    ],
)
def test_mosquitto_acl_model(
    username: str | None, client_id: str, topic: str, access: str, expected: bool
) -> None:
    acl = MosquittoAcl.parse(ACL)
    assert (
        acl.allows(username=username, client_id=client_id, topic=topic, access=access) is expected
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("topic\n", 1, "empty topic"),
        ("user alice\ntopic sneak a/b\n", 2, "invalid access type"),
        ("user\n", 1, "missing username"),
        ("permit a\n", 1, "invalid line"),
        ("\n  # indented comment\n", 2, "invalid line"),  # Mosquitto only skips '#' at column 0
        ("topic read a/#/b\n", 1, "invalid ACL topic"),
    ],
)
def test_acl_files_mosquitto_refuses(text: str, line: int, message: str) -> None:
    with pytest.raises(MosquittoAclError) as caught:
        MosquittoAcl.parse(text)
    assert caught.value.line == line
    assert message in str(caught.value)


def test_acl_parsing_quirks() -> None:
    acl = MosquittoAcl.parse("user  alice  \ntopic read\ntopic  write   a b  \n")
    ((name, _, entries),) = acl.users
    assert name == "alice"
    assert [(e.topic, sorted(e.access)) for e in entries] == [
        ("read", ["read", "write"]),  # a lone word is the topic, with readwrite
        ("a b", ["write"]),  # topics may contain spaces
    ]


# --- generating the acl_file ----------------------------------------------------------------


def test_generated_acl_for_the_example() -> None:
    text = generate_acl_file(load_policy(EXAMPLE))
    assert (
        "user dev-0001\n"
        "topic write devices/dev-0001/telemetry\n"
        "topic read devices/dev-0001/commands\n" in text
    )
    assert "user gateway\ntopic read devices/+/telemetry\ntopic write devices/+/commands\n" in text
    assert "user ops-admin\ntopic readwrite #\ntopic readwrite $SYS/#\n" in text
    assert "user dashboard" not in text  # no MQTT access at all
    assert "pattern" not in text
    acl = MosquittoAcl.parse(text)
    assert acl.allows(
        username="dev-0001", client_id="x", topic="devices/dev-0001/telemetry", access="write"
    )
    assert not acl.allows(
        username="dev-0001", client_id="x", topic="devices/dev-0002/telemetry", access="write"
    )


def mqtt(effect: Effect, who: str, actions: set[MqttAction], *topics: str, line: int = 1) -> Rule:
    return Rule(effect, (who,), MqttTarget(frozenset(actions), topics), line=line)


PUB, SUB = {MqttAction.PUBLISH}, {MqttAction.SUBSCRIBE}
BOTH = PUB | SUB


def test_client_id_rules_become_patterns() -> None:
    policy = Policy(
        principals=(Principal("d1", PrincipalKind.DEVICE),),
        rules=(mqtt(Effect.ALLOW, "*", PUB, "clients/%c/%u/out"),),
    )
    assert generate_acl_file(policy).endswith("pattern write clients/%c/%u/out\n")


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ((mqtt(Effect.ALLOW, "d1", PUB, "c/%c"),), "is not for '*'"),
        ((mqtt(Effect.DENY, "*", PUB, "c/%c"),), "pattern denies"),
        (
            (mqtt(Effect.ALLOW, "d1", BOTH, "a/#"), mqtt(Effect.DENY, "d1", PUB, "a/b")),
            "also blocks the other action",
        ),
        ((mqtt(Effect.ALLOW, "d1", PUB, " a/b"),), "leading/trailing blanks"),
    ],
)
def test_policies_mosquitto_cannot_express_are_refused(
    rules: tuple[Rule, ...], message: str
) -> None:
    policy = Policy(principals=(Principal("d1", PrincipalKind.DEVICE),), rules=rules)
    with pytest.raises(GenerationError, match=message):
        generate_acl_file(policy)


def test_single_action_denies_are_written_or_dropped_when_faithful() -> None:
    policy = Policy(
        principals=(Principal("d1", PrincipalKind.DEVICE),),
        rules=(
            mqtt(Effect.ALLOW, "d1", PUB, "a/#"),
            mqtt(Effect.DENY, "d1", PUB, "a/secret"),  # written: blocks a publish allow
            mqtt(Effect.ALLOW, "d1", SUB, "cmd/d1"),
            mqtt(Effect.DENY, "d1", PUB, "cmd/#"),  # dropped: nothing allows publishing there
        ),
    )
    text = generate_acl_file(policy)
    assert "topic deny a/secret\n" in text
    assert "cmd/#" not in text


# --- properties: generated acl_file == engine; imported rules == acl_file ------------------

USERS = ["alice", "bob", "carol"]
CLIENT_IDS = ["c1", "alice", "bob"]
TOPICS = [
    "a",
    "a/b",
    "a/alice",
    "a/bob",
    "alice/x",
    "bob/x",
    "c1/x",
    "alice/c1",
    "$SYS/x",
    "b/c1",
]
FILTERS = [
    "#",
    "a/#",
    "a/+",
    "a/b",
    "+/x",
    "%u/#",
    "a/%u",
    "%u/x",
    "%c/x",
    "%u/%c",
    "$SYS/#",
    "b/+",
]

policy_rules = st.builds(
    lambda effect, who, actions, topics: Rule(effect, (who,), MqttTarget(actions, topics)),
    st.sampled_from(list(Effect)),
    st.sampled_from(["*", "alice", "bob", "group:g"]),
    st.sets(st.sampled_from(list(MqttAction)), min_size=1).map(frozenset),
    st.lists(st.sampled_from(FILTERS), min_size=1, max_size=2).map(tuple),
)
mqtt_policies = st.builds(
    lambda rules, supers: Policy(
        principals=(
            Principal("alice", PrincipalKind.DEVICE, groups=("g",)),
            Principal("bob", PrincipalKind.DEVICE),
            Principal("carol", PrincipalKind.SERVICE, groups=("g",)),
        ),
        groups=(Group("g"),),
        rules=tuple(rules),
        super_users=frozenset(supers),
    ),
    st.lists(policy_rules, max_size=5),
    st.sets(st.sampled_from(USERS), max_size=1),
)


@settings(max_examples=300, deadline=None)
@given(mqtt_policies)
def test_mosquitto_decides_like_the_engine_with_the_generated_acl_file(policy: Policy) -> None:
    try:
        text = generate_acl_file(policy)
    except GenerationError:
        assume(False)
        return
    acl = MosquittoAcl.parse(text)
    engine = Authorizer(policy)
    for user in known_users(policy):
        for client_id in CLIENT_IDS:
            for topic in TOPICS:
                if topic.startswith("$") and user in policy.super_users:
                    continue  # Mosquitto can only name $SYS; the engine allows all $-topics
                for access, action in (("write", "publish"), ("read", "subscribe")):
                    expected = engine.authorize(user, action, MqttTopic(topic), client_id=client_id)
                    got = acl.allows(username=user, client_id=client_id, topic=topic, access=access)  # type: ignore[arg-type]
                    assert got == expected.allowed, (user, client_id, topic, access, text)


ACL_FILTERS = ["#", "a/#", "a/+", "a/b", "+/x", "$SYS/#", "b/+", "alice/#"]
PATTERN_FILTERS = ["%u/#", "a/%u", "%c/x", "%u/%c", "b/%c", "a/+"]
ACCESS = ["read", "write", "readwrite", "deny", ""]


@st.composite
def acl_files(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["user", "topic", "pattern"]))
        if kind == "user":
            lines.append(f"user {draw(st.sampled_from(USERS[:2]))}")
            continue
        access = draw(st.sampled_from(ACCESS))
        pool = ACL_FILTERS if kind == "topic" else PATTERN_FILTERS
        lines.append(" ".join(part for part in (kind, access, draw(st.sampled_from(pool))) if part))
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None)
@given(acl_files())
def test_imported_rules_decide_like_mosquitto(text: str) -> None:
    try:
        imported = import_mosquitto_acl(text)
    except MosquittoAclError:
        assume(False)
        return
    acl = MosquittoAcl.parse(text)
    engine = Authorizer(imported.to_policy())
    for user in USERS:  # carol has no section: patterns only, in both
        for client_id in CLIENT_IDS:
            for topic in TOPICS:
                for access, action in (("write", "publish"), ("read", "subscribe")):
                    expected = acl.allows(
                        username=user, client_id=client_id, topic=topic, access=access
                    )  # type: ignore[arg-type]
                    got = engine.authorize(user, action, MqttTopic(topic), client_id=client_id)
                    assert got.allowed == expected, (user, client_id, topic, access, text)


def test_import_example_and_round_trip_into_policy_yaml() -> None:
    text = dedent(
        """\
        topic read public/#
        user dev-1
        topic write devices/dev-1/telemetry
        topic read devices/dev-1/commands
        user gateway
        topic read devices/+/telemetry
        pattern read clients/%c/in
        """
    )
    imported = import_mosquitto_acl(text)
    assert imported.principals == ("dev-1", "gateway")
    assert "anonymous" in imported.warnings[0]
    assert [(r.line, r.principals, r.effect) for r in imported.rules] == [
        (3, ("dev-1",), Effect.ALLOW),
        (4, ("dev-1",), Effect.ALLOW),
        (6, ("gateway",), Effect.ALLOW),
        (7, ("*",), Effect.ALLOW),
    ]
    policy = imported.to_policy()
    assert loads_policy(dump_policy(policy)) == policy


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("user alice\ntopic read a/#\npattern deny a/%u\n", 3, "overridden for user 'alice'"),
        ("pattern write dev-%u/x\n", 1, "inside a level"),
        ("user alice\ntopic write a/%u\n", 2, "literal text in a user section"),
        ("user a:b\ntopic read x\n", 1, "cannot be a principal"),
        ("topic sneak x\n", 1, "invalid access type"),
    ],
)
def test_imports_that_cannot_keep_decisions_fail(text: str, line: int, message: str) -> None:
    with pytest.raises(MosquittoAclError) as caught:
        import_mosquitto_acl(text)
    assert caught.value.line == line
    assert message in str(caught.value)


def test_super_users_are_not_denied_by_generated_denies() -> None:
    policy = Policy(
        principals=(Principal("root", PrincipalKind.SERVICE),),
        rules=(mqtt(Effect.DENY, "*", BOTH, "#"),),
        super_users=frozenset({"root"}),
    )
    acl = MosquittoAcl.parse(generate_acl_file(policy))
    assert acl.allows(username="root", client_id="r", topic="a/b", access="write")
    assert Authorizer(replace(policy)).authorize("root", "publish", MqttTopic("a/b")).allowed
