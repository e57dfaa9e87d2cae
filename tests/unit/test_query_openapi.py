"""The OpenAPI document declares every time as its two fields (``contracts.times``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streams.query import openapi_document

DURATIONS = frozenset({"end_age_ms", "window_ms"})
"""``_ms`` fields that are lengths of time, not instants: they have no RFC 3339 twin."""


def _objects(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object with ``properties`` anywhere in ``node``, with where it is."""
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            yield path, node
        for key, value in node.items():
            yield from _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _objects(item, f"{path}/{i}")


def _types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def test_every_time_field_has_its_millisecond_twin_and_back() -> None:
    objects = list(_objects(openapi_document()["components"]))
    times = 0
    for path, schema in objects:
        properties, required = schema["properties"], set(schema.get("required", []))
        for name, field in properties.items():
            if field.get("format") == "date-time":
                times += 1
                twin = properties.get(f"{name}_ms")
                assert twin is not None, f"{path}: {name} has no {name}_ms"
                assert "integer" in _types(twin), f"{path}: {name}_ms is not an integer"
                assert _types(field) <= {"string", "null"}, f"{path}: {name}"
                assert (name in required) == (f"{name}_ms" in required), f"{path}: {name}"
            elif name.endswith("_ms") and name not in DURATIONS:
                text = properties.get(name.removesuffix("_ms"), {})
                assert text.get("format") == "date-time", f"{path}: {name} has no string twin"
    assert times >= 11  # Device (3), presence, Point (2), Aggregates (2), alerts (2), Health
