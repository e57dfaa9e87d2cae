"""Schema evolution: the classic cases in every Confluent mode, and where the avro checker errs."""

from __future__ import annotations

import json
from typing import Any

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from contracts.avro import (
    AvroSchema,
    CompatibilityMode,
    IncompatibleSchemaError,
    SchemaParseError,
    check_compatibility,
    decode,
    encode,
    parse_schema,
    reader_writer_incompatibilities,
)
from tests.fakes import InMemorySchemas

NAMESPACE = "test.compat"


def record(*fields: dict[str, Any], name: str = "Reading", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": NAMESPACE, "fields": list(fields), **extra}


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Kind", "symbols": list(symbols), **extra}


A = field("a", "int")
INNER_X = record(field("x", "int"), name="Inner")
INNER_XY = record(field("x", "int"), field("y", "int"), name="Inner")

# (name, old schema, new schema, backward problem path, forward problem path); None = compatible.
# backward: the new schema reads old data; forward: the old schema reads new data.
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str | None, str | None]] = [
    ("add field with default", record(A), record(A, field("b", "string", default="")), None, None),
    ("add field without default", record(A), record(A, field("b", "string")), "b", None),
    (
        "remove field with default",
        record(A, field("b", "string", default="")),
        record(A),
        None,
        None,
    ),
    ("remove field without default", record(A, field("b", "string")), record(A), None, "b"),
    ("rename field with alias", record(A), record(field("a2", "int", aliases=["a"])), None, "a"),
    ("rename field without alias", record(A), record(field("a2", "int")), "a2", "a"),
    (
        "rename record with alias",
        record(A),
        record(A, name="Sample", aliases=["Reading"]),
        None,
        "",
    ),
    (
        "widen union",
        record(field("a", ["null", "int"])),
        record(field("a", ["null", "int", "string"])),
        None,
        "a",
    ),
    (
        "narrow union",
        record(field("a", ["null", "int", "string"])),
        record(field("a", ["null", "int"])),
        "a",
        None,
    ),
    ("int to long", record(A), record(field("a", "long")), None, "a"),
    ("long to int", record(field("a", "long")), record(A), "a", None),
    ("int to float", record(A), record(field("a", "float")), None, "a"),
    ("string to bytes", record(field("a", "string")), record(field("a", "bytes")), None, None),
    ("string to int", record(field("a", "string")), record(A), "a", "a"),
    (
        "make optional",
        record(field("a", "string")),
        record(field("a", ["null", "string"], default=None)),
        None,
        "a",
    ),
    (
        "enum symbol added, no enum default",
        record(field("k", enum("A", "B"))),
        record(field("k", enum("A", "B", "C"))),
        None,
        "k",
    ),
    (
        "enum symbol added, enum default",
        record(field("k", enum("A", "B", default="A"))),
        record(field("k", enum("A", "B", "C", default="A"))),
        None,
        None,
    ),
    (
        "enum symbol removed, enum default",
        record(field("k", enum("A", "B", "C", default="A"))),
        record(field("k", enum("A", "B", default="A"))),
        None,
        None,
    ),
    (
        "enum symbol removed, no enum default",
        record(field("k", enum("A", "B", "C"))),
        record(field("k", enum("A", "B"))),
        "k",
        None,
    ),
    (
        "fixed size changed",
        record(field("f", {"type": "fixed", "name": "F", "size": 4})),
        record(field("f", {"type": "fixed", "name": "F", "size": 8})),
        "f",
        "f",
    ),
    (
        "nested field added without default",
        record(field("inner", INNER_X)),
        record(field("inner", INNER_XY)),
        "inner.y",
        None,
    ),
    (
        "array items int to long",
        record(field("a", {"type": "array", "items": "int"})),
        record(field("a", {"type": "array", "items": "long"})),
        None,
        "a",
    ),
    (
        "map values float to double",
        record(field("a", {"type": "map", "values": "float"})),
        record(field("a", {"type": "map", "values": "double"})),
        None,
        "a",
    ),
]


def expected_problems(
    mode: CompatibilityMode, backward: str | None, forward: str | None
) -> set[tuple[str, str]]:
    problems = set()
    if mode.backward and backward is not None:
        problems.add(("backward", backward))
    if mode.forward and forward is not None:
        problems.add(("forward", forward))
    return problems


@pytest.mark.parametrize("mode", list(CompatibilityMode))
@pytest.mark.parametrize(
    ("old", "new", "backward", "forward"),
    [pytest.param(old, new, b, f, id=name) for name, old, new, b, f in CASES],
)
def test_classic_evolution_in_every_mode(
    mode: CompatibilityMode,
    old: dict[str, Any],
    new: dict[str, Any],
    backward: str | None,
    forward: str | None,
) -> None:
    result = check_compatibility(parse_schema(new), [parse_schema(old)], mode)
    expected = (
        set() if mode is CompatibilityMode.NONE else expected_problems(mode, backward, forward)
    )
    assert {(i.direction, i.path) for i in result.incompatibilities} == expected
    assert result.compatible == (not expected)
    assert all(i.version == 1 and i.reason and i.message for i in result.incompatibilities)


# --- the verdicts hold when data is actually decoded ----------------------------------------


PRIMITIVE_EXAMPLES: dict[str, Any] = {
    "null": None,
    "boolean": True,
    "int": 7,
    "long": 8,
    "float": 1.5,
    "double": 2.5,
    "string": "s",
    "bytes": b"b",
}


def example(schema: AvroSchema) -> Any:
    """A valid value that uses the last enum symbol and the last union branch."""
    named: dict[str, Any] = {}

    def build(node: Any) -> Any:
        if isinstance(node, str):
            return build(named[node]) if node in named else PRIMITIVE_EXAMPLES[node]
        if isinstance(node, list):
            return build(node[-1])
        kind = node["type"]
        if kind in ("record", "enum", "fixed"):
            named[node["name"]] = node
        builders = {
            "record": lambda: {f["name"]: build(f["type"]) for f in node["fields"]},
            "enum": lambda: node["symbols"][-1],
            "fixed": lambda: bytes(node["size"]),
            "array": lambda: [build(node["items"])],
            "map": lambda: {"k": build(node["values"])},
        }
        return builders[kind]() if kind in builders else build(kind)

    return build(schema.parsed)


@pytest.mark.parametrize(
    ("old", "new", "backward", "forward"),
    [pytest.param(old, new, b, f, id=name) for name, old, new, b, f in CASES],
)
def test_compatible_verdicts_decode_in_practice(
    old: dict[str, Any], new: dict[str, Any], backward: str | None, forward: str | None
) -> None:
    registry = InMemorySchemas()
    old_schema, new_schema = parse_schema(old), parse_schema(new)
    old_writer = registry.register("s-value", old_schema)
    new_writer = registry.register("s-value", new_schema)
    if backward is None:
        decode(encode(example(old_schema), old_writer), registry, reader=new_schema)
    if forward is None:
        decode(encode(example(new_schema), new_writer), registry, reader=old_schema)


# --- transitive modes -------------------------------------------------------------------------

B_WITH_DEFAULT = field("b", "int", default=0)
B_REQUIRED = field("b", "int")


def test_backward_checks_latest_only_and_transitive_checks_all() -> None:
    history = [parse_schema(record(A)), parse_schema(record(A, B_WITH_DEFAULT))]
    new = parse_schema(record(A, B_REQUIRED))  # reads v2 data, not v1 data (no b there)
    assert check_compatibility(new, history, CompatibilityMode.BACKWARD).compatible
    result = check_compatibility(new, history, CompatibilityMode.BACKWARD_TRANSITIVE)
    assert [(i.version, i.direction, i.path) for i in result.incompatibilities] == [
        (1, "backward", "b")
    ]
    full = check_compatibility(new, history, CompatibilityMode.FULL_TRANSITIVE)
    assert [(i.version, i.direction, i.path) for i in full.incompatibilities] == [
        (1, "backward", "b")
    ]


def test_forward_checks_latest_only_and_transitive_checks_all() -> None:
    history = [parse_schema(record(A, B_REQUIRED)), parse_schema(record(A, B_WITH_DEFAULT))]
    new = parse_schema(record(A))  # v2 can default b, v1 cannot
    assert check_compatibility(new, history, CompatibilityMode.FORWARD).compatible
    assert check_compatibility(new, history, CompatibilityMode.FULL).compatible
    result = check_compatibility(new, history, CompatibilityMode.FORWARD_TRANSITIVE)
    assert [(i.version, i.direction, i.path) for i in result.incompatibilities] == [
        (1, "forward", "b")
    ]


def test_none_accepts_anything_and_empty_history_is_compatible() -> None:
    unrelated = [parse_schema({"type": "array", "items": "string"})]
    assert check_compatibility(
        parse_schema(record(A)), unrelated, CompatibilityMode.NONE
    ).compatible
    for mode in CompatibilityMode:
        assert check_compatibility(parse_schema(record(A)), [], mode).compatible


def test_error_names_field_reason_and_version() -> None:
    result = check_compatibility(
        parse_schema(record(A, field("b", "string"))),
        [parse_schema(record(A))],
        CompatibilityMode.FULL,
    )
    with pytest.raises(IncompatibleSchemaError) as info:
        result.raise_for_incompatible()
    message = str(info.value)
    assert "'b'" in message
    assert "reader_field_missing_default_value" in message
    assert "version 1" in message
    assert info.value.incompatibilities == result.incompatibilities
    assert info.value.reason == "schema_incompatible"


def test_every_problem_is_reported_with_its_own_path() -> None:
    old = record(A, field("s", "string"), field("inner", INNER_X))
    new = record(
        field("a", "string"), field("s", "int"), field("inner", INNER_XY), field("c", "long")
    )
    problems = reader_writer_incompatibilities(parse_schema(new), parse_schema(old))
    assert sorted((i.path, i.reason) for i in problems) == [
        ("a", "type_mismatch"),
        ("c", "reader_field_missing_default_value"),
        ("inner.y", "reader_field_missing_default_value"),
        ("s", "type_mismatch"),
    ]


# --- where the avro package's checker is wrong ------------------------------------------------


def avro_checker_compatible(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    return result.compatibility is SchemaCompatibilityType.compatible


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(record(A), record(A, name="Sample", aliases=["Reading"]), id="record"),
        pytest.param(
            record(field("k", enum("A"))),
            record(field("k", {**enum("A"), "name": "Kind2", "aliases": ["Kind"]})),
            id="enum",
        ),
        pytest.param(
            record(field("f", {"type": "fixed", "name": "F", "size": 2})),
            record(field("f", {"type": "fixed", "name": "G", "size": 2, "aliases": ["F"]})),
            id="fixed",
        ),
    ],
)
def test_avro_checker_ignores_relative_aliases(old: dict[str, Any], new: dict[str, Any]) -> None:
    """The spec allows aliases relative to the type's namespace; avro compares them verbatim."""
    assert not avro_checker_compatible(reader=new, writer=old)
    assert reader_writer_incompatibilities(parse_schema(new), parse_schema(old)) == ()
    registry = InMemorySchemas()  # and fastavro resolves them, so the data really is readable
    writer = registry.register("s-value", parse_schema(old))
    decode(encode(example(parse_schema(old)), writer), registry, reader=parse_schema(new))


@pytest.mark.parametrize(
    "bad_field",
    [
        pytest.param(field("b", "int", default="x"), id="string-default-for-int"),
        pytest.param(field("b", ["null", "int"], default=5), id="union-default-not-first-branch"),
        pytest.param(field("b", ["int", "null"], default=None), id="null-default-int-first"),
        pytest.param(field("b", "int", default=2**40), id="int-default-out-of-range"),
        pytest.param(
            field("b", {"type": "array", "items": "int"}, default=["x"]), id="array-item-type"
        ),
        pytest.param(
            field("b", {"type": "fixed", "name": "F", "size": 2}, default="abc"), id="fixed-size"
        ),
    ],
)
def test_avro_checker_accepts_invalid_defaults(bad_field: dict[str, Any]) -> None:
    """A reader adding a field with an invalid default is not readable; avro calls it fine."""
    assert avro_checker_compatible(reader=record(A, bad_field), writer=record(A))
    with pytest.raises(SchemaParseError, match=r"Reading\.b"):
        parse_schema(record(A, bad_field))


def test_avro_checker_misreports_a_missing_field_of_enum_type() -> None:
    reader = record(A, field("k", enum("A", "B", default="A")))
    checker_result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(record(A)))
    )
    assert checker_result.messages == {"reader type: enum not compatible with writer type: record"}
    problems = reader_writer_incompatibilities(parse_schema(reader), parse_schema(record(A)))
    assert [(i.path, i.reason) for i in problems] == [("k", "reader_field_missing_default_value")]


def test_avro_checker_merges_problems_into_unordered_sets() -> None:
    old = record(A, field("s", "string"))
    new = record(field("a", "string"), field("s", "int"))
    checker_result = ReaderWriterCompatibilityChecker().get_compatibility(
        avro.schema.parse(json.dumps(new)), avro.schema.parse(json.dumps(old))
    )
    assert checker_result.locations == {"/fields/0/type", "/fields/1/type"}  # indexes, no names
    problems = reader_writer_incompatibilities(parse_schema(new), parse_schema(old))
    assert {i.path for i in problems} == {"a", "s"}


def test_failed_attempts_on_other_union_branches_are_not_reported() -> None:
    rec_a = record(field("a", "int"), field("z", "int"), name="RecA")
    rec_b = record(field("b", "int"), name="RecB")
    old = record(field("v", rec_b))
    new = record(field("v", [rec_a, rec_b]), field("extra", "int"))
    problems = reader_writer_incompatibilities(parse_schema(new), parse_schema(old))
    assert [(i.path, i.reason) for i in problems] == [
        ("extra", "reader_field_missing_default_value")
    ]
