"""MQTT 5 §4.7 topic names and filters: the specification's examples, Mosquitto's own
util_topic test cases (rewritten as tables), and properties against reference matchers."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy import (
    TopicError,
    TopicFilter,
    matches,
    parse_shared_subscription,
    validate_topic_filter,
    validate_topic_name,
)
from policy.topics import (
    covers,
    is_substitutable,
    overlaps,
    substitute,
)

# --- MQTT 5 §4.7.1.2, §4.7.1.3, §4.7.2 and §4.7.3 examples -------------------------------

SPEC_CASES = [
    # §4.7.1.2 multi-level wildcard
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "sport/tennis/player1", True),
    # §4.7.1.3 single-level wildcard
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    # §4.7.2 topics beginning with $
    ("#", "$SYS/broker/clients", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    # §4.7.3: case sensitive, spaces allowed, empty levels are levels
    ("ACCOUNTS", "Accounts", False),
    ("Accounts payable", "Accounts payable", True),
    ("/finance", "finance", False),
    ("/finance", "/finance", True),
]

# Mosquitto test/unit/util_topic_test.c: TEST_valid_matching / TEST_valid_no_matching
MOSQUITTO_MATCHING = [
    ("foo/#", "foo/", True),
    ("foo/#", "foo", True),
    ("foo//bar", "foo//bar", True),
    ("foo//+", "foo//bar", True),
    ("foo/+/+/baz", "foo///baz", True),
    ("foo/bar/+", "foo/bar/", True),
    ("foo/bar", "foo/bar", True),
    ("foo/+", "foo/bar", True),
    ("foo/+/baz", "foo/bar/baz", True),
    ("A/B/+/#", "A/B/B/C", True),
    ("foo/+/#", "foo/bar/baz", True),
    ("foo/+/#", "foo/bar", True),
    ("#", "foo/bar/baz", True),
    ("#", "/foo/bar", True),
    ("/#", "/foo/bar", True),
    ("test/6/#", "test/3", False),
    ("foo/bar", "foo", False),
    ("foo/+", "foo/bar/baz", False),
    ("foo/+/baz", "foo/bar/bar", False),
    ("foo/+/#", "fo2/bar/baz", False),
    ("/#", "foo/bar", False),
    ("#", "$SYS/bar", False),
    ("$BOB/bar", "$SYS/bar", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), SPEC_CASES + MOSQUITTO_MATCHING)
def test_matching_examples(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected
    assert TopicFilter.parse(topic_filter).matches(topic) is expected


INVALID_FILTERS = [
    ("", "empty"),
    ("sport/tennis#", "'#' must occupy a whole level"),
    ("sport/tennis/#/ranking", "'#' must be the last level"),
    ("#/", "'#' must be the last level"),
    ("sport+", "'+' must occupy a whole level"),
    ("+foo", "'+' must occupy a whole level"),
    ("fo+o", "'+' must occupy a whole level"),
    ("foo/+bar", "'+' must occupy a whole level"),
    ("#foo", "'#' must occupy a whole level"),
    ("foo/#a", "'#' must occupy a whole level"),
    ("/#a", "'#' must occupy a whole level"),
    ("a\x00b", "NUL"),
    ("$share/", "empty ShareName"),
    ("$share//x", "empty ShareName"),
    ("$share/g+/x", "ShareName contains a wildcard"),
    ("$share/g", "no topic filter"),
    ("$share/g/", "no topic filter"),
    ("$share/g/a+", "'+' must occupy a whole level"),
]


@pytest.mark.parametrize(("topic_filter", "reason"), INVALID_FILTERS)
def test_invalid_filters_are_rejected_with_a_reason(topic_filter: str, reason: str) -> None:
    with pytest.raises(TopicError) as caught:
        validate_topic_filter(topic_filter)
    assert reason in caught.value.reason


VALID_FILTERS = [
    "sport/tennis/player1/#",
    "#",
    "+",
    "+/+",
    "/+",
    "sport/+/player1",
    "/",
    "//",
    "a//b",
    "$SYS/#",
    "Accounts payable",
    "sub/ /topic",
    "$share/gw/devices/+/telemetry",
    "$share/g/#",
    "$sharex/a",
    "$share",
]


@pytest.mark.parametrize("topic_filter", VALID_FILTERS)
def test_valid_filters(topic_filter: str) -> None:
    assert validate_topic_filter(topic_filter) == topic_filter


@pytest.mark.parametrize(
    "topic",
    [
        "+pub/topic",
        "pub+/topic",
        "pub/+topic",
        "pub/topic+",
        "pub/topic/+",
        "#pub/topic",
        "pub#/topic",
        "pub/#topic",
        "pub/topic#",
        "pub/topic/#",
        "+/pub/topic",
        "",
        "a\x00",
    ],
)
def test_invalid_topic_names(topic: str) -> None:
    with pytest.raises(TopicError):
        validate_topic_name(topic)


@pytest.mark.parametrize("topic", ["pub/topic", "pub//topic", "pub/ /topic", "/", "$SYS/x"])
def test_valid_topic_names(topic: str) -> None:
    assert validate_topic_name(topic) == topic


@pytest.mark.parametrize(
    ("topic_filter", "topic"),
    [("+foo", "+foo"), ("foo+", "fooa"), ("foo/#", "foo/+"), ("foo/+", "foo/#"), ("#foo", "x")],
)
def test_invalid_input_to_matches_raises_instead_of_matching(topic_filter: str, topic: str) -> None:
    # Mosquitto's TEST_invalid_but_matching: naive matching would say yes; it must fail.
    with pytest.raises(TopicError):
        matches(topic_filter, topic)


def test_length_limit_is_in_utf8_bytes() -> None:
    assert validate_topic_name("a" * 65_535)
    with pytest.raises(TopicError, match="65535 bytes"):
        validate_topic_name("a" * 65_536)
    with pytest.raises(TopicError, match="65535 bytes"):
        validate_topic_name("é" * 32_768)  # 65,536 bytes in 32,768 characters


def test_level_guard_rejects_hostile_depth_and_is_configurable() -> None:
    deep = "/".join(["a"] * 201)
    with pytest.raises(TopicError, match="more than 200 levels"):
        validate_topic_name(deep)
    with pytest.raises(TopicError, match="more than 200 levels"):
        validate_topic_filter(deep + "/#")
    assert validate_topic_name("/".join(["a"] * 200))
    assert validate_topic_name(deep, max_levels=300) == deep


def test_utf8_rules() -> None:
    assert validate_topic_name("température/°C".encode()) == "température/°C"
    with pytest.raises(TopicError, match="not valid UTF-8"):
        validate_topic_name(b"a/\xff")
    with pytest.raises(TopicError, match="not valid UTF-8"):
        validate_topic_name("a/\udc80")  # lone surrogate (e.g. from surrogateescape)
    with pytest.raises(TopicError, match="NUL"):
        validate_topic_filter(b"a/\x00/#")


def test_shared_subscriptions_are_parsed_and_match_by_their_filter() -> None:
    shared = parse_shared_subscription("$share/gw/devices/+/telemetry")
    assert shared is not None
    assert (shared.group, shared.topic_filter) == ("gw", "devices/+/telemetry")
    assert parse_shared_subscription("devices/+/telemetry") is None
    assert matches("$share/gw/devices/+/telemetry", "devices/d1/telemetry")
    assert not matches("$share/gw/#", "$SYS/x")
    # Not shared: the ordinary $-filter "$share" and MQTT 3.1.1-style parsing.
    assert TopicFilter.parse("$share/g/x", shared=False).levels == ("$share", "g", "x")


# --- properties ------------------------------------------------------------------------

TOPIC_LEVELS = st.sampled_from(["", "a", "b", "ab", "$SYS", "$x", " ", "é"])
FILTER_LEVELS = st.sampled_from(["", "a", "b", "$SYS", "$x", "+"])
topics = st.lists(TOPIC_LEVELS, min_size=1, max_size=5).map("/".join).filter(bool)


@st.composite
def filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(FILTER_LEVELS, min_size=0, max_size=4))
    if draw(st.booleans()) or not levels:
        levels.append("#")
    text = "/".join(levels)
    return text or "#"


def reference_matches(topic_filter: str, topic: str) -> bool:
    """An independent matcher: the filter compiled to a regular expression."""
    levels = topic_filter.split("/")
    multi = levels[-1] == "#"
    if multi:
        levels = levels[:-1]
    body = "/".join("[^/]*" if level == "+" else re.escape(level) for level in levels)
    pattern = body
    if multi:  # '#' also matches the parent level
        pattern = f"{body}(?:/.*)?" if levels else ".*"
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    return re.fullmatch(pattern, topic, flags=re.DOTALL) is not None


@given(filters(), topics)
def test_matches_agrees_with_the_regex_reference(topic_filter: str, topic: str) -> None:
    assert matches(topic_filter, topic) == reference_matches(topic_filter, topic)


SMALL_LEVELS = st.sampled_from(["", "a", "$x", "+"])
BRUTE_FORCE_TOPICS = [
    "/".join(levels)
    for size in range(1, 6)
    for levels in itertools.product(["", "a", "$x", "z"], repeat=size)
    if "/".join(levels)
]
"""Every topic of up to 5 levels over the filters' literals plus one other value: enough to
witness any difference between filters of up to 4 levels."""


@st.composite
def small_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(SMALL_LEVELS, min_size=0, max_size=3))
    if draw(st.booleans()) or not levels:
        levels.append("#")
    return "/".join(levels) or "#"


@settings(max_examples=150, deadline=None)
@given(small_filters(), small_filters())
def test_covers_iff_every_topic_of_inner_matches_outer(outer: str, inner: str) -> None:
    expected = all(matches(outer, t) for t in BRUTE_FORCE_TOPICS if matches(inner, t))
    assert covers(outer, inner) == expected


@settings(max_examples=150, deadline=None)
@given(small_filters(), small_filters())
def test_overlaps_iff_some_topic_matches_both(first: str, second: str) -> None:
    expected = any(matches(first, t) and matches(second, t) for t in BRUTE_FORCE_TOPICS)
    assert overlaps(first, second) == expected


@given(filters(), topics)
def test_covers_and_overlaps_agree_with_matches_on_topic_names(
    topic_filter: str, topic: str
) -> None:
    expected = matches(topic_filter, topic)
    assert covers(topic_filter, topic) == expected
    assert overlaps(topic_filter, topic) == expected


# --- %u / %c substitution ----------------------------------------------------------------


@given(st.text(min_size=1, max_size=8), st.sampled_from(["+", "#", "/"]))
def test_names_with_wildcards_or_separators_are_never_substituted(name: str, bad: str) -> None:
    hostile = name + bad
    assert not is_substitutable(hostile)
    assert substitute("devices/%u/telemetry", username=hostile, client_id="c") is None
    assert substitute("devices/%c/telemetry", username="u", client_id=hostile) is None


@pytest.mark.parametrize(
    ("pattern", "username", "client_id", "expected"),
    [
        ("%u", "username", None, "username"),
        ("%u/test", "username", None, "username/test"),
        ("test/%u/%u/test", "username", None, "test/username/username/test"),
        ("%u/%c", "username", "clientid", "username/clientid"),
        ("test/%count", "u", "c", "test/%count"),  # not a placeholder
        ("%c", None, None, None),  # no client id: the pattern does not match
        ("%u", "", None, None),
        ("%u", "a\x00b", None, None),
        ("plain/topic", None, None, "plain/topic"),
    ],
)
def test_substitution_table(
    pattern: str, username: str | None, client_id: str | None, expected: str | None
) -> None:
    assert substitute(pattern, username=username, client_id=client_id) == expected
