"""MQTT 5 topic names and topic filters, exactly as MQTT 5 §4.7 (and §4.8.2 for shared ones).

This module is the platform's one home for topic matching: the policy engine and the
gateway's routes both import it. Guarantees:

* Validation accepts exactly what MQTT 5 allows: at least one character, at most 65,535 bytes
  of UTF-8, no U+0000, no lone surrogates; empty levels are fine (``/``, ``a//b``); in a filter
  ``#`` is alone in the last level and ``+`` alone in its level; a topic name has no wildcard.
  A ``max_levels`` guard (200 by default, like Mosquitto's hierarchy limit) rejects hostile
  input with thousands of levels.
* Matching follows §4.7.1-§4.7.2: ``sport/#`` matches ``sport``; ``+`` matches one level,
  including an empty one; a filter starting with ``+`` or ``#`` never matches a topic that
  starts with ``$``.
* ``$share/<group>/<filter>`` is a shared subscription (§4.8.2): it is validated as such and
  matches what ``<filter>`` matches.
* Bad input raises :class:`TopicError` with a ``reason``; nothing else is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from policy.errors import TopicError

__all__ = [
    "DEFAULT_MAX_LEVELS",
    "MAX_TOPIC_BYTES",
    "SharedSubscription",
    "TopicFilter",
    "covers",
    "covers_levels",
    "is_substitutable",
    "matches",
    "overlaps",
    "overlaps_levels",
    "parse_shared_subscription",
    "substitute",
    "validate_topic_filter",
    "validate_topic_name",
]

MAX_TOPIC_BYTES = 65_535
"""MQTT strings are length-prefixed with two bytes (§1.5.4)."""

DEFAULT_MAX_LEVELS = 200
"""Topics with more levels are refused: no real topic needs them, an attacker does."""

_SHARE_PREFIX = "$share/"
_UNSAFE_IN_NAMES = ("+", "#", "/", "\x00")


@dataclass(frozen=True, slots=True)
class SharedSubscription:
    """``$share/<group>/<topic_filter>``: one subscriber of ``group`` gets each message."""

    group: str
    topic_filter: str


def _text(value: str | bytes, kind: str) -> str:
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise TopicError(f"{kind} is not valid UTF-8", value) from None
    elif isinstance(value, str):
        text = value
    else:
        raise TopicError(f"{kind} must be str or bytes, not {type(value).__name__}", repr(value))
    if not text:
        raise TopicError(f"{kind} is empty (MQTT 5 §4.7.3 needs at least one character)", value)
    if len(text) > MAX_TOPIC_BYTES:  # cheap early exit before encoding hostile input
        raise TopicError(f"{kind} is longer than {MAX_TOPIC_BYTES} bytes", value)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise TopicError(f"{kind} is not valid UTF-8 (lone surrogate)", value) from None
    if size > MAX_TOPIC_BYTES:
        raise TopicError(f"{kind} is longer than {MAX_TOPIC_BYTES} bytes", value)
    if "\x00" in text:
        raise TopicError(f"{kind} contains U+0000 (NUL)", value)
    return text


def _check_levels(text: str, kind: str, max_levels: int, original: str | bytes) -> None:
    if text.count("/") + 1 > max_levels:
        raise TopicError(f"{kind} has more than {max_levels} levels", original)


def validate_topic_name(topic: str | bytes, *, max_levels: int = DEFAULT_MAX_LEVELS) -> str:
    """Returns ``topic`` as text if it is a valid MQTT 5 topic name, else raises TopicError."""
    text = _text(topic, "topic name")
    if "+" in text or "#" in text:
        raise TopicError("topic name contains a wildcard ('+' or '#')", topic)
    _check_levels(text, "topic name", max_levels, topic)
    return text


def _validate_plain_filter(text: str, original: str | bytes, max_levels: int) -> tuple[str, ...]:
    _check_levels(text, "topic filter", max_levels, original)
    levels = tuple(text.split("/"))
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level:
            if level != "#":
                raise TopicError("'#' must occupy a whole level", original)
            if index != last:
                raise TopicError("'#' must be the last level", original)
        if "+" in level and level != "+":
            raise TopicError("'+' must occupy a whole level", original)
    return levels


def _split_shared(text: str, original: str | bytes) -> tuple[str, str]:
    group, sep, inner = text[len(_SHARE_PREFIX) :].partition("/")
    if not group:
        raise TopicError("shared subscription has an empty ShareName", original)
    if "+" in group or "#" in group:
        raise TopicError("ShareName contains a wildcard ('+' or '#')", original)
    if not sep or not inner:
        raise TopicError("shared subscription has no topic filter after the ShareName", original)
    return group, inner


@dataclass(frozen=True, slots=True)
class TopicFilter:
    """A validated topic filter, ready to match many topics quickly.

    ``levels`` are those of the effective filter (the part after ``$share/<group>/`` for a
    shared subscription, whose group is ``share_group``).
    """

    text: str
    levels: tuple[str, ...]
    share_group: str | None = None

    @classmethod
    def parse(
        cls,
        topic_filter: str | bytes,
        *,
        max_levels: int = DEFAULT_MAX_LEVELS,
        shared: bool = True,
    ) -> TopicFilter:
        """Validates ``topic_filter``; raises TopicError with the reason when it is invalid.

        With ``shared=False`` a ``$share/...`` filter is an ordinary filter (MQTT 3.1.1, and
        how Mosquitto reads its acl_file).
        """
        text = _text(topic_filter, "topic filter")
        if shared and text.startswith(_SHARE_PREFIX):
            group, inner = _split_shared(text, topic_filter)
            return cls(text, _validate_plain_filter(inner, topic_filter, max_levels), group)
        return cls(text, _validate_plain_filter(text, topic_filter, max_levels))

    @property
    def effective(self) -> str:
        """The filter that selects topics (without any ``$share/<group>/`` prefix)."""
        return "/".join(self.levels)

    @property
    def has_wildcards(self) -> bool:
        return any(level in ("+", "#") for level in self.levels)

    def matches(self, topic: str | bytes) -> bool:
        """True iff the topic name matches; raises TopicError if ``topic`` is not valid."""
        return _match_levels(self.levels, tuple(validate_topic_name(topic).split("/")))


@lru_cache(maxsize=4096)
def _parsed(topic_filter: str | bytes) -> TopicFilter:
    return TopicFilter.parse(topic_filter)


def validate_topic_filter(
    topic_filter: str | bytes, *, max_levels: int = DEFAULT_MAX_LEVELS
) -> str:
    """Returns ``topic_filter`` as text if it is a valid MQTT 5 topic filter (shared ones
    included), else raises TopicError."""
    return TopicFilter.parse(topic_filter, max_levels=max_levels).text


def parse_shared_subscription(topic_filter: str | bytes) -> SharedSubscription | None:
    """The group and filter of ``$share/<group>/<filter>``; None for a non-shared filter.

    Raises TopicError when the filter is invalid, shared or not.
    """
    parsed = TopicFilter.parse(topic_filter)
    if parsed.share_group is None:
        return None
    return SharedSubscription(parsed.share_group, parsed.effective)


def _match_levels(filter_levels: tuple[str, ...], topic_levels: tuple[str, ...]) -> bool:
    if topic_levels[0].startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    count = len(topic_levels)
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True  # also matches the parent level: ``sport/#`` matches ``sport``
        if index >= count:
            return False
        if level not in ("+", topic_levels[index]):
            return False
    return len(filter_levels) == count


def matches(topic_filter: str | bytes, topic: str | bytes) -> bool:
    """True iff ``topic`` (a topic name) matches ``topic_filter``.

    Raises TopicError when either is invalid. Parsed filters are cached, so calling this in a
    hot loop with a few distinct filters costs one split of the topic per call.
    """
    return _parsed(topic_filter).matches(topic)


def _starts_with_dollar_literal(levels: tuple[str, ...]) -> bool:
    return levels[0].startswith("$")


def _leading_wildcard(levels: tuple[str, ...]) -> bool:
    return levels[0] in ("+", "#")


def _parent_is_empty(levels: tuple[str, ...], index: int) -> bool:
    """True iff the topic made of ``levels[:index]`` can only be empty (not a topic)."""
    return index == 0 or (index == 1 and levels[0] == "")


def covers(outer: str | bytes, inner: str | bytes) -> bool:
    """True iff every topic that ``inner`` matches is also matched by ``outer``.

    Both are topic filters (shared ones are reduced to their effective filter); raises
    TopicError when either is invalid. Used to decide whether a subscription stays within
    what a rule allows.
    """
    return covers_levels(_parsed(outer).levels, _parsed(inner).levels)


def covers_levels(o: tuple[str, ...], n: tuple[str, ...]) -> bool:
    """:func:`covers` on the levels of two already validated filters."""
    if _leading_wildcard(o) and _starts_with_dollar_literal(n):
        return False
    for index, level in enumerate(o):
        if level == "#":
            return True
        if index >= len(n):
            return False
        other = n[index]
        if other == "#":
            # '#' also matches its parent, which '+/#' does not, unless that parent is not a
            # topic at all: nothing (a leading '#') or the empty string (``/#``).
            return o[index:] == ("+", "#") and _parent_is_empty(n, index)
        if level == "+":
            continue
        if other != level:
            return False
    return len(o) == len(n)


def overlaps(first: str | bytes, second: str | bytes) -> bool:
    """True iff at least one topic name is matched by both filters.

    Raises TopicError when either is invalid. Used to decide whether a deny rule could
    concern a subscription.
    """
    return overlaps_levels(_parsed(first).levels, _parsed(second).levels)


def overlaps_levels(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """:func:`overlaps` on the levels of two already validated filters."""
    if (_leading_wildcard(a) and _starts_with_dollar_literal(b)) or (
        _leading_wildcard(b) and _starts_with_dollar_literal(a)
    ):
        return False
    for index in range(max(len(a), len(b))):
        x = a[index] if index < len(a) else None
        y = b[index] if index < len(b) else None
        if x == "#" and y == "#":
            return True
        if x == "#" or y == "#":
            # The other filter either goes on (any deeper topic works) or ends here, and then
            # the common topic is the parent of '#', which must not be the empty string.
            ended = x is None or y is None
            return not ended or not (_parent_is_empty(a, index) or _parent_is_empty(b, index))
        if x is None or y is None:
            return False
        if x != y and "+" not in (x, y):
            return False
    return True


def is_substitutable(name: str | None) -> bool:
    """True iff ``name`` may replace ``%u``/``%c``: non-empty, valid UTF-8, and free of
    ``+``, ``#``, ``/`` and NUL (which would widen or break the filter)."""
    if not name or any(char in name for char in _UNSAFE_IN_NAMES):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def substitute(topic_filter: str, *, username: str | None, client_id: str | None) -> str | None:
    """Replaces whole ``%u`` / ``%c`` levels with the username / client id.

    Returns None (the pattern does not match anything) when a needed name is missing or not
    :func:`is_substitutable`: such a name is never substituted, so ``+``, ``#`` or ``/`` in a
    username can never widen a pattern. A filter without placeholders is returned unchanged.
    """
    if "%" not in topic_filter:
        return topic_filter
    out: list[str] = []
    for level in topic_filter.split("/"):
        if level == "%u":
            value = username
        elif level == "%c":
            value = client_id
        else:
            out.append(level)
            continue
        if value is None or not is_substitutable(value):
            return None
        out.append(value)
    return "/".join(out)
