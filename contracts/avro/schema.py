"""Parsed Avro schemas: parse once, keep everything the data path needs.

:func:`parse_schema` validates a schema (fastavro's parser plus the default-value rules the
specification states and fastavro does not enforce) and returns an immutable
:class:`AvroSchema` holding the fastavro-parsed form, the Parsing Canonical Form, its
CRC-64-AVRO fingerprint and the compiled bounds-checked binary reader. Results are cached by
the schema's JSON text, so calling it on every message is cheap.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from contracts.avro._binary import BinaryReader, DecodeLimits, compile_reader
from contracts.avro.errors import SchemaParseError

__all__ = ["AvroSchema", "parse_schema"]

_INT32 = (-(2**31), 2**31)
_INT64 = (-(2**63), 2**63)
_NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})
_DEFAULT_LIMITS = DecodeLimits()


def _is_int_in(value: Any, bounds: tuple[int, int]) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and bounds[0] <= value < bounds[1]


def _is_byte_string(value: Any) -> bool:
    return isinstance(value, str) and all(ord(ch) < 256 for ch in value)


_PRIMITIVE_DEFAULTS: dict[str, Callable[[Any], bool]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "int": lambda v: _is_int_in(v, _INT32),
    "long": lambda v: _is_int_in(v, _INT64),
    "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "double": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "bytes": _is_byte_string,
}

SchemaSource = str | Mapping[str, Any] | Sequence[Any]


@dataclass(frozen=True, slots=True)
class AvroSchema:
    """One valid Avro schema. Immutable; equality and hash are by exact JSON text.

    ``parsed`` is fastavro's form (logical types intact; used to encode), ``canonical`` the
    Parsing Canonical Form (two schemas with equal canonical forms read the same bytes the
    same way), ``fingerprint`` its CRC-64-AVRO as 16 hex digits, ``name`` the full name of a
    named top-level type.
    """

    text: str
    definition: Any = field(compare=False, repr=False)
    name: str | None = field(compare=False)
    canonical: str = field(compare=False, repr=False)
    fingerprint: str = field(compare=False, repr=False)
    parsed: Any = field(compare=False, repr=False)
    resolving: Any = field(compare=False, repr=False)
    reader: BinaryReader = field(compare=False, repr=False)
    check_encoded: bool = field(compare=False, repr=False)

    def read_binary(
        self, data: bytes, offset: int = 0, limits: DecodeLimits = _DEFAULT_LIMITS
    ) -> Any:
        """Decodes ``data[offset:]`` (exactly one value) written with this schema.

        Safe on hostile bytes: returns or raises a ``SerdeError`` subclass, in linear time.
        Logical types stay in their underlying type (``timestamp-millis`` -> ``int``).
        """
        return self.reader.read(data, offset, limits)

    def check_binary(
        self, data: bytes, offset: int = 0, limits: DecodeLimits = _DEFAULT_LIMITS
    ) -> None:
        """Validates ``data[offset:]`` exactly as :meth:`read_binary` would, building nothing."""
        self.reader.check(data, offset, limits)


def parse_schema(source: SchemaSource) -> AvroSchema:
    """Parses and validates a schema given as JSON text or as its JSON value.

    Raises ``SchemaParseError`` naming the problem (and the field, for a bad default).
    Cached: equal JSON text returns the same ``AvroSchema`` object.
    """
    if isinstance(source, str):
        try:
            definition = json.loads(source)
        except json.JSONDecodeError as exc:
            raise SchemaParseError(f"schema is not valid JSON: {exc}") from exc
    else:
        definition = source
    try:
        text = json.dumps(definition, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise SchemaParseError(f"schema is not a JSON value: {exc}") from exc
    return _parse_text(text)


@functools.lru_cache(maxsize=512)
def _parse_text(text: str) -> AvroSchema:
    definition = json.loads(text)
    named: dict[str, Any] = {}
    try:
        # Defaults are checked by the stricter _check_defaults, whose messages name the field;
        # fastavro's own check (a subset) is skipped so that all default errors read alike.
        parsed = fastavro.parse_schema(definition, named_schemas=named, _ignore_default_error=True)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise SchemaParseError(f"invalid Avro schema: {exc}") from exc
    _check_defaults(named)
    try:
        resolving = fastavro.parse_schema(_strip_logical_types(definition))
        canonical = to_parsing_canonical_form(definition)
    except Exception as exc:
        raise SchemaParseError(f"invalid Avro schema: {exc}") from exc
    name = parsed["name"] if isinstance(parsed, dict) and _kind(parsed) in _NAMED_KINDS else None
    try:
        reader = compile_reader(parsed, named)
    except (KeyError, SyntaxError, RecursionError) as exc:  # a schema fastavro let through
        raise SchemaParseError(f"cannot compile a reader for the schema: {exc!r}") from exc
    return AvroSchema(
        text=text,
        definition=definition,
        name=name,
        canonical=canonical,
        fingerprint=fingerprint(canonical, "CRC-64-AVRO"),
        parsed=parsed,
        resolving=resolving,
        reader=reader,
        check_encoded=_uses_unchecked_types(parsed, named),
    )


def _strip_logical_types(node: Any) -> Any:
    """A copy without ``logicalType`` keys (defaults, being data, are left untouched)."""
    if isinstance(node, list):
        return [_strip_logical_types(item) for item in node]
    if isinstance(node, dict):
        return {
            key: value if key == "default" else _strip_logical_types(value)
            for key, value in node.items()
            if key != "logicalType"
        }
    return node


def _resolve(node: Any, named: Mapping[str, Any]) -> Any:
    while True:
        if isinstance(node, str) and node in named:
            node = named[node]
        elif isinstance(node, dict) and not isinstance(node["type"], str):
            node = node["type"]
        elif isinstance(node, dict) and node["type"] in named:
            node = named[node["type"]]
        else:
            return node


def _kind(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "union"
    return str(node["type"])


def _uses_unchecked_types(parsed: Any, named: Mapping[str, Any]) -> bool:
    """Whether fastavro may encode data our reader rejects (``int`` out of range, ``fixed``
    of the wrong length); the serde re-checks its output only for such schemas."""
    seen: set[str] = set()

    def walk(node: Any) -> bool:
        node = _resolve(node, named)
        kind = _kind(node)
        children: list[Any] = []
        if kind in ("record", "error") and node["name"] not in seen:
            seen.add(node["name"])
            children = [f["type"] for f in node["fields"]]
        elif kind == "union":
            children = list(node)
        elif kind in ("array", "map"):
            children = [node["items" if kind == "array" else "values"]]
        return kind in ("int", "fixed") or any(walk(child) for child in children)

    return walk(parsed)


def _check_defaults(named: Mapping[str, Any]) -> None:
    """Enforces the specification's default rules on every named type.

    A field default must be valid for the field's type, and for a union for its FIRST
    branch; an enum default must be one of its symbols. (fastavro checks only part of this.)
    """
    for type_name, node in named.items():
        kind = _kind(node)
        if kind == "enum" and "default" in node and node["default"] not in node["symbols"]:
            raise SchemaParseError(
                f"enum {type_name}: default {node['default']!r} is not one of its symbols"
            )
        if kind not in ("record", "error"):
            continue
        for fld in node["fields"]:
            if "default" in fld and not _default_ok(fld["type"], fld["default"], named):
                raise SchemaParseError(
                    f"field {type_name}.{fld['name']}: default {fld['default']!r} is not a "
                    f"valid value of its type (for a union: of its first branch)"
                )


def _default_ok(node: Any, value: Any, named: Mapping[str, Any]) -> bool:
    node = _resolve(node, named)
    kind = _kind(node)
    if kind in _PRIMITIVE_DEFAULTS:
        ok = _PRIMITIVE_DEFAULTS[kind](value)
    elif kind == "fixed":
        ok = _is_byte_string(value) and len(value) == node["size"]
    elif kind == "enum":
        ok = isinstance(value, str) and value in node["symbols"]
    elif kind == "union":
        ok = _default_ok(node[0], value, named)
    elif kind == "array":
        ok = isinstance(value, list) and all(_default_ok(node["items"], v, named) for v in value)
    elif kind == "map":
        ok = isinstance(value, dict) and all(
            _default_ok(node["values"], v, named) for v in value.values()
        )
    elif kind in ("record", "error"):
        ok = isinstance(value, dict) and all(
            _default_ok(f["type"], value[f["name"]], named)
            if f["name"] in value
            else "default" in f
            for f in node["fields"]
        )
    else:
        ok = False
    return ok
