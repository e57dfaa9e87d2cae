"""Schema evolution rules: the seven Confluent compatibility modes.

*backward* = the new schema can read data written with an old one (consumers upgrade first);
*forward* = an old schema can read data written with the new one (producers upgrade first);
*full* = both. Non-transitive modes compare with the latest version only, transitive modes
with every version. NONE accepts anything.

The reader/writer rules are those of ``avro.compatibility.ReaderWriterCompatibilityChecker``
(type promotions, unions, enums, fixed sizes, record names), with these corrections, each
shown by a test in ``tests/unit/test_avro_compatibility.py``:

* **relative aliases** - the specification lets a named type's aliases be relative to its
  namespace; the avro checker compares them verbatim with the writer's *full* name, so a
  rename ``Old`` -> ``New`` with ``"aliases": ["Old"]`` is wrongly incompatible. We qualify
  aliases before checking.
* **field defaults** - the avro package accepts a default that is not a valid value of the
  field's type (or of a union's first branch) and then calls a reader relying on it
  compatible, although reading fails. :func:`~contracts.avro.schema.parse_schema` rejects
  such schemas, so they never reach a compatibility check.
* **missing field whose type is an enum with a default** - the avro checker compares the enum
  with the whole writer *record* and reports a meaningless type mismatch. An enum default only
  covers unknown symbols, never a missing field: we report the missing field default.
* **diagnostics** - the avro checker merges the messages and locations of several problems
  into unordered sets with index-based locations (``/fields/3/type``); we keep one entry per
  problem with the field path (``metrics``, ``inner.value``).
"""

from __future__ import annotations

import ast
import enum
import functools
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import avro.errors
import avro.schema
from avro.compatibility import (
    CompatibleResult,
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    SchemaIncompatibilityType,
    incompatible,
    lookup_writer_field,
    merge,
)

from contracts.avro.errors import (
    Direction,
    Incompatibility,
    IncompatibleSchemaError,
    SchemaParseError,
)
from contracts.avro.schema import AvroSchema

__all__ = [
    "CompatibilityMode",
    "CompatibilityResult",
    "Incompatibility",
    "check_compatibility",
    "reader_writer_incompatibilities",
]

_NAMED = frozenset({"record", "error", "enum", "fixed"})


class CompatibilityMode(enum.StrEnum):
    """Confluent Schema Registry compatibility levels (same names and meaning)."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def backward(self) -> bool:
        """Whether the new schema must read data of older versions."""
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        """Whether older versions must read data of the new schema."""
        return self.value.startswith(("FORWARD", "FULL"))

    @property
    def transitive(self) -> bool:
        """Whether every earlier version is checked, not only the latest."""
        return self.value.endswith("_TRANSITIVE")


@dataclass(frozen=True, slots=True)
class CompatibilityResult:
    """Outcome of checking a new schema against a subject's history under a mode."""

    mode: CompatibilityMode
    incompatibilities: tuple[Incompatibility, ...]

    @property
    def compatible(self) -> bool:
        return not self.incompatibilities

    def raise_for_incompatible(self) -> None:
        """Raises ``IncompatibleSchemaError`` (naming the first field and reason) if needed."""
        if self.incompatibilities:
            first = self.incompatibilities[0]
            more = len(self.incompatibilities) - 1
            raise IncompatibleSchemaError(
                f"schema is not {self.mode} compatible: {first.describe()}"
                + (f" (and {more} more)" if more else ""),
                self.incompatibilities,
            )


def check_compatibility(
    new: AvroSchema, history: Sequence[AvroSchema], mode: CompatibilityMode
) -> CompatibilityResult:
    """Checks ``new`` against ``history`` (oldest first) under ``mode``; reports every problem.

    An empty history is always compatible. Pure and cached per schema pair.
    """
    issues: list[Incompatibility] = []
    if mode is not CompatibilityMode.NONE and history:
        first = 0 if mode.transitive else len(history) - 1
        for version, old in enumerate(history[first:], start=first + 1):
            pairs: list[tuple[AvroSchema, AvroSchema, Direction]] = []
            if mode.backward:
                pairs.append((new, old, "backward"))
            if mode.forward:
                pairs.append((old, new, "forward"))
            for reader, writer, direction in pairs:
                issues.extend(
                    Incompatibility(i.path, i.reason, i.message, version, direction)
                    for i in reader_writer_incompatibilities(reader, writer)
                )
    return CompatibilityResult(mode, tuple(issues))


def reader_writer_incompatibilities(
    reader: AvroSchema, writer: AvroSchema
) -> tuple[Incompatibility, ...]:
    """Every reason ``reader`` cannot read data written with ``writer``; empty if it can."""
    return _pair(reader.text, writer.text)


@functools.lru_cache(maxsize=1024)
def _pair(reader_text: str, writer_text: str) -> tuple[Incompatibility, ...]:
    checker = _Checker()
    result = checker.get_compatibility(_avro_schema(reader_text), _avro_schema(writer_text))
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return ()
    found = list(checker.found)
    found.extend(checker.residual(result, 0, ""))
    return tuple(found)


@functools.lru_cache(maxsize=512)
def _avro_schema(text: str) -> avro.schema.Schema:
    definition = _qualify_aliases(json.loads(text), "")
    try:
        return avro.schema.parse(json.dumps(definition))
    except avro.errors.AvroException as exc:
        raise SchemaParseError(f"the avro package rejects the schema: {exc}") from exc


def _qualify_aliases(node: Any, namespace: str) -> Any:
    """A copy in which every named type's relative aliases are qualified with its namespace."""
    if isinstance(node, list):
        return [_qualify_aliases(item, namespace) for item in node]
    if not isinstance(node, dict):
        return node
    out = dict(node)
    kind = node.get("type")
    if isinstance(kind, str) and kind in _NAMED and isinstance(node.get("name"), str):
        name: str = node["name"]
        if "." in name:
            namespace = name.rpartition(".")[0]
        elif isinstance(node.get("namespace"), str):
            namespace = node["namespace"]
        if isinstance(node.get("aliases"), list):
            out["aliases"] = [
                f"{namespace}.{alias}" if namespace and "." not in alias else alias
                for alias in node["aliases"]
            ]
    for key in ("type", "fields", "items", "values"):
        if key in node:
            out[key] = _qualify_aliases(node[key], namespace)
    return out


class _Checker(ReaderWriterCompatibilityChecker):
    """The avro checker with our record-field rule and per-problem diagnostics."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.found: list[Incompatibility] = []
        self.path: list[str] = []

    def check_reader_writer_record_fields(
        self, reader: Any, writer: Any, location: list[str]
    ) -> SchemaCompatibilityResult:
        result = CompatibleResult
        for field in reader.fields:
            self.path.append(field.name)
            here = [*location, "fields", field.name]
            writer_field = lookup_writer_field(writer_schema=writer, reader_field=field)
            if writer_field is None:
                field_result = CompatibleResult
                if not field.has_default:
                    reason = SchemaIncompatibilityType.reader_field_missing_default_value
                    message = "the writer's data lacks this field and it has no default"
                    field_result = incompatible(reason, message, here)
                    self.found.append(Incompatibility(".".join(self.path), reason.value, message))
            else:
                before = len(self.found)
                field_result = self.get_compatibility(field.type, writer_field.type, "type", here)
                if field_result.compatibility is SchemaCompatibilityType.incompatible:
                    self.found.extend(self.residual(field_result, before, ".".join(self.path)))
                else:  # drop what failed attempts on other union branches recorded
                    del self.found[before:]
            result = merge(result, field_result)
            self.path.pop()
        return result

    def residual(
        self, result: SchemaCompatibilityResult, since: int, path: str
    ) -> list[Incompatibility]:
        """Problems in ``result`` not already recorded (deeper) since ``self.found[since]``."""
        if result.compatibility is not SchemaCompatibilityType.incompatible:
            return []
        deeper = self.found[since:]
        messages = sorted({_stable(m) for m in result.messages} - {i.message for i in deeper})
        types = Counter(t.value for t in result.incompatibilities)
        types.subtract(i.reason for i in deeper)
        reasons = sorted(t for t, n in types.items() if n > 0)
        reason = "+".join(reasons) if reasons else "incompatible"
        return [Incompatibility(path, reason, message) for message in messages]


def _stable(message: str) -> str:
    """The avro checker reports missing enum symbols as ``str(set)``, whose order follows the
    hash seed; list them sorted so every process words a rejection the same way."""
    if message.startswith("{'") and message.endswith("'}"):
        try:
            symbols = ast.literal_eval(message)
        except (ValueError, SyntaxError):
            return message
        if isinstance(symbols, set):
            return "writer symbols the reader lacks: " + ", ".join(sorted(map(str, symbols)))
    return message
