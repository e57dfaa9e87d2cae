"""Typed access to the policy file's YAML nodes, failing with the node's line number."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from policy.errors import PolicyError, PolicyLoadError

NULL_TAG = "tag:yaml.org,2002:null"


class NodeReader:
    """Typed access to YAML nodes that fails with the node's line number."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: Node, reason: str) -> NoReturn:
        raise PolicyLoadError(reason, line=node.start_mark.line + 1, source=self.source)

    def mapping(
        self, node: Node, what: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, tuple[ScalarNode, Node]]:
        """The entries of a mapping node; unknown, duplicate or missing keys fail."""
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping")
        entries: dict[str, tuple[ScalarNode, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode) or key.tag == NULL_TAG:
                self.fail(key, f"keys of {what} must be strings")
            name = str(key.value)
            if name in entries:
                first = entries[name][0].start_mark.line + 1
                self.fail(key, f"duplicate key {name!r} in {what} (first on line {first})")
            if allowed and name not in allowed:
                self.fail(key, f"unknown key {name!r} in {what}; expected one of {list(allowed)}")
            entries[name] = (key, value)
        for name in required:
            if name not in entries:
                self.fail(node, f"{what} needs the key {name!r}")
        return entries

    def sequence(self, node: Node, what: str) -> list[Node]:
        """Items of a sequence; a single scalar counts as a one-item list."""
        if isinstance(node, ScalarNode) and node.tag != NULL_TAG:
            return [node]
        if not isinstance(node, SequenceNode):
            self.fail(node, f"{what} must be a list")
        return list(node.value)

    def string(self, node: Node, what: str) -> str:
        """The scalar's text as written (``123`` is the string "123"); null/empty fails."""
        if not isinstance(node, ScalarNode):
            self.fail(node, f"{what} must be a string")
        if node.tag == NULL_TAG or node.value == "":
            self.fail(node, f"{what} must not be empty")
        return str(node.value)

    def strings(self, node: Node, what: str) -> list[tuple[Node, str]]:
        return [(item, self.string(item, what)) for item in self.sequence(node, what)]

    def checked(self, node: Node, what: str, check: Callable[[str], str]) -> str:
        """Runs a validator (raising PolicyError) on the node's text, failing at the node."""
        text = self.string(node, what)
        try:
            return check(text)
        except PolicyError as exc:
            self.fail(node, str(exc))

    def body(
        self, node: Node, what: str, allowed: tuple[str, ...]
    ) -> dict[str, tuple[ScalarNode, Node]]:
        """Like :meth:`mapping`, but a null value (``name:`` alone) is an empty mapping."""
        if isinstance(node, ScalarNode) and node.tag == NULL_TAG:
            return {}
        return self.mapping(node, what, allowed)

    def optional_string(self, entries: dict[str, tuple[ScalarNode, Node]], key: str) -> str:
        return self.string(entries[key][1], key) if key in entries else ""
